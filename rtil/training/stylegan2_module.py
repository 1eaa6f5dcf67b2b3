"""StyleGAN2 RTIL family training (manual optimisation, NV-style phases).

Every step, for each trained member k (all of G0..GK, or one drawn per step):
  Gmain  softplus(-D(Gk(z))) weighted by the member weight
  Greg   every `pl_interval` steps: path-length penalty (one running mean per member) x interval
  Dmain  softplus(D(Gk(z))) weighted, plus softplus(-D(x)) on the real batch
  Dreg   every `r1_interval` steps: R1 = gamma/2 ||grad D(x)||^2 x interval
then the EMA generator is updated. Adam's lr and betas get the lazy-regularisation correction
c = interval / (interval + 1).
"""

import torch

from rtil.cli_checks import Ranged
from rtil.config import build_family
from rtil.models.stylegan2 import Discriminator, Generator
from rtil.training import losses
from rtil.training.base import SHARED_RANGES, GanModule
from rtil.training.distributed import average_buffers
from rtil.training.ema import ema_beta, update_ema
from rtil.training.rtil_settings import rtil_config


class StyleGAN2Module(GanModule):
    """Trains a StyleGAN2 generator family with the RTIL Gaussian latents.

    Args:
        resolution, img_channels, z_dim, w_dim, mapping_layers, mapping_lr_mul, channel_base,
            channel_max: the generator and discriminator architecture (see rtil.models.stylegan2.Generator);
            channel_table: optional explicit {resolution: channels} (the Generator's `channels`).
        conv_clamp: clamp the generator's layer outputs to +-conv_clamp (NVlabs' float16 setting; None: off).
        mbstd_group_size: discriminator minibatch-stddev group (must divide the per-device batch).
        rtil: the RTIL Gaussian family, as in model configs and generator files: {kind: gaussian,
            cut_points: [...], sigma: 1.0} (`cut_points[i]`: where member i + 1 and later add their latent);
            None (or no cut points) = vanilla training. See rtil.training.rtil_settings.
        member_weighting: "equal" (RTIL authors' code) or "lambda" (paper: lambda for G0, 1 - lambda shared).
        member_lambda: lambda for "lambda" weighting.
        member_sampling: "all" members every step, or "one" member drawn per step (cheaper).
        lr, betas: Adam settings before the lazy-regularisation correction.
        r1_gamma, r1_interval: R1 weight and its lazy interval (0 disables R1).
        pl_weight, pl_interval, pl_batch_shrink, pl_decay: path-length regularisation (0 disables it).
        style_mixing_prob: probability of mixing two latents in a batch.
        ema_kimg, ema_rampup: generator EMA half-life in thousands of images, optional ramp-up.
        total_kimg: stop after this many thousand images (None: let the trainer decide).
        seed: seeds every random draw of training (with the iteration and rank).
        rtil_cut_points, rtil_sigma: deprecated flat form of `rtil` (translated, with a DeprecationWarning).
    """

    rtil_kind = "gaussian"
    # The valid range of every numeric init argument (rtil.cli_checks.Ranged), checked before anything is built.
    RANGES = {**SHARED_RANGES,
              "w_dim": Ranged(int, 1),
              "mapping_layers": Ranged(int, 1),
              "mapping_lr_mul": Ranged(float, 0, open_low=True),
              "conv_clamp": Ranged(float, 0, open_low=True),  # None: no clamping
              "r1_gamma": Ranged(float, 0),  # 0: no R1
              "r1_interval": Ranged(int, 1),
              "pl_weight": Ranged(float, 0),  # 0: no path-length regularisation
              "pl_interval": Ranged(int, 1),
              "pl_batch_shrink": Ranged(int, 1),
              "pl_decay": Ranged(float, 0, 1, open_low=True),  # 0 would hold the running mean at 0
              "style_mixing_prob": Ranged(float, 0, 1),
              "ema_kimg": Ranged(float, 0),  # 0: G_ema is a copy of G
              "ema_rampup": Ranged(float, 0, open_low=True),  # None: no ramp-up (0 would make G_ema a copy of G)
              "rtil_cut_points": Ranged(int, 0),  # deprecated flat form of `rtil`; the family checks they exist in G
              "rtil_sigma": Ranged(float, 0)}

    def __init__(self, resolution: int = 32, img_channels: int = 1, z_dim: int = 128, w_dim: int = 128,
                 mapping_layers: int = 4, mapping_lr_mul: float = 0.01, channel_base: int = 4096,
                 channel_max: int = 128, channel_table: dict[int, int] | None = None, conv_clamp: float | None = None,
                 mbstd_group_size: int = 4,
                 rtil: dict | None = None, member_weighting: str = "equal", member_lambda: float = 0.5,
                 member_sampling: str = "all", lr: float = 0.0025, betas: tuple[float, float] = (0.0, 0.99),
                 r1_gamma: float = 0.05, r1_interval: int = 16,
                 pl_weight: float = 2.0, pl_interval: int = 4, pl_batch_shrink: int = 2, pl_decay: float = 0.01,
                 style_mixing_prob: float = 0.9, ema_kimg: float = 10.0, ema_rampup: float | None = None,
                 total_kimg: float | None = None, seed: int = 0,
                 rtil_cut_points: list[int] | None = None, rtil_sigma: float | None = None):
        super().__init__()
        self._check_settings(locals())
        rtil = rtil_config(rtil, self.rtil_kind, dict(rtil_cut_points=rtil_cut_points, rtil_sigma=rtil_sigma))
        self._save_hyperparameters(rtil, ["rtil_cut_points", "rtil_sigma"])
        arch = dict(resolution=resolution, img_channels=img_channels, channel_base=channel_base,
                    channel_max=channel_max, channels=channel_table)
        G = Generator(z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers, mapping_lr_mul=mapping_lr_mul,
                      conv_clamp=conv_clamp, **arch)
        D = Discriminator(mbstd_group_size=mbstd_group_size, **arch)
        family = build_family(rtil)
        self._setup_networks(G, D, family, member_weighting, member_lambda, member_sampling, seed)
        self.register_buffer("pl_mean", torch.zeros(self.num_members))

    def configure_optimizers(self):
        h = self.hparams

        def adam(params, interval):
            c = interval / (interval + 1) if interval > 0 else 1.0
            return torch.optim.Adam(params, lr=h.lr * c, betas=(float(h.betas[0]) ** c, float(h.betas[1]) ** c),
                                    eps=1e-8)

        return [adam(self.G.parameters(), h.pl_interval if h.pl_weight > 0 else 0),
                adam(self.D.parameters(), h.r1_interval if h.r1_gamma > 0 else 0)]

    # ---- sampling -------------------------------------------------------------------------------
    def mixed_styles(self, z: torch.Tensor, gen: torch.Generator, update_w_avg: bool = False) -> torch.Tensor:
        """W+ (B, num_ws, w_dim) for z; with probability style_mixing_prob the layers from a random
        cutoff on use the styles of a second latent."""
        ws = self.G.styles(z, update_w_avg=update_w_avg)
        if self.hparams.style_mixing_prob > 0:
            mix = torch.rand((), device=self.device, generator=gen) < self.hparams.style_mixing_prob
            cutoff = int(torch.randint(1, self.G.num_ws, (), device=self.device, generator=gen))
            if bool(mix):
                z2 = torch.randn(z.shape, device=self.device, generator=gen)
                ws2 = self.G.styles(z2)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return ws

    def fakes(self, member: int, batch: int, gen: torch.Generator, update_w_avg: bool = False):
        """(images, ws) of member `member` for a fresh batch of latents."""
        z = torch.randn(batch, self.G.z_dim, device=self.device, generator=gen)
        ws = self.mixed_styles(z, gen, update_w_avg)
        inject = self.family.sample(self.G, member, batch, gen, self.device) if member > 0 else None
        return self.G(z, ws=ws, inject=inject, generator=gen), ws

    # ---- one training iteration -----------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        reals = batch[0] if isinstance(batch, (list, tuple)) else batch
        h = self.hparams
        b = reals.shape[0]
        opt_g, opt_d = self.optimizers()
        gen = self.step_generator()
        members = self.members_for_step(gen)
        it = int(self.iteration)
        logs = {}

        # Gmain (+ Greg): one backward per member keeps only one member's graph in memory.
        self.toggle_optimizer(opt_g)
        loss_g = 0.0
        for member, weight in members:
            fake, _ = self.fakes(member, b, gen, update_w_avg=True)
            loss = losses.g_nonsaturating(self.D(fake))
            self.manual_backward(weight * loss)
            loss_g += weight * loss.detach()
        average_buffers([self.G.mapping.w_avg])  # each rank moved w_avg with its own latents
        logs["loss/G"] = loss_g
        if h.pl_weight > 0 and it % h.pl_interval == 0:
            pl_batch = max(1, b // h.pl_batch_shrink)
            for member, weight in members:
                fake, ws = self.fakes(member, pl_batch, gen)
                lengths = losses.path_lengths(fake, ws, gen)
                with torch.no_grad():
                    self.pl_mean[member].lerp_(lengths.mean().detach().float(), h.pl_decay)
                average_buffers([self.pl_mean])  # every rank's penalty uses the mean over all ranks' lengths
                penalty = (lengths - self.pl_mean[member]).square().mean()
                self.manual_backward(weight * h.pl_weight * h.pl_interval * penalty + 0 * fake[:, 0, 0, 0].sum())
                logs[f"reg/pl_penalty_G{member}"] = penalty.detach()
        self.step_optimizer(opt_g, self.G)
        self.untoggle_optimizer(opt_g)

        # Dmain (+ Dreg).
        self.toggle_optimizer(opt_d)
        real_logits = self.D(reals)
        loss_d = losses.d_logistic_real(real_logits)
        with torch.no_grad():
            member_fakes = [(weight, self.fakes(member, b, gen)[0]) for member, weight in members]
        for weight, fake in member_fakes:
            loss_d = loss_d + weight * losses.d_logistic_fake(self.D(fake))
        self.manual_backward(loss_d)
        logs["loss/D"] = loss_d.detach()
        logs["D/real_logit"] = real_logits.detach().mean()
        self.step_optimizer(opt_d, self.D)
        if h.r1_gamma > 0 and it % h.r1_interval == 0:
            reals_grad = reals.detach().requires_grad_(True)
            logits = self.D(reals_grad)
            r1 = losses.r1_penalty(logits, reals_grad).mean()
            self.manual_backward(h.r1_gamma / 2 * h.r1_interval * r1 + 0 * logits.sum())
            self.step_optimizer(opt_d, self.D)
            logs["reg/r1"] = r1.detach()
        self.untoggle_optimizer(opt_d)

        self.check_finite(**{k: v for k, v in logs.items() if k.startswith("loss/")})
        global_batch = self.global_batch(b)
        self.nimg += global_batch
        self.iteration += 1
        update_ema(self.G_ema, self.G, ema_beta(global_batch, h.ema_kimg, int(self.nimg), h.ema_rampup))
        for member in range(self.num_members):
            logs[f"reg/pl_mean_G{member}"] = self.pl_mean[member]
        logs["progress/kimg"] = self.nimg.float() / 1000
        self.log_dict(logs, prog_bar=False, on_step=True, on_epoch=False, batch_size=b)
        self.log("kimg", self.nimg.float() / 1000, prog_bar=True, on_step=True, on_epoch=False, batch_size=b)
        if self.reached_total_kimg():
            self.trainer.should_stop = True

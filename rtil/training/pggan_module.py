"""PGGAN RTIL family training (manual optimisation, progressive growing, WGAN-GP).

Every step, at the level of detail `lod` given by the kimg clock (see `lod_schedule`):
  reals  faded to the same level of detail as the generator's output (G.images_at_lod)
  codes  for each trained member k (all of G0..GK, or one drawn per step): z_k and, for fused
         members, per-sample Dirichlet(1) weights
  D      sum_k w_k [D(G_k(z_k)) - D(x) + drift D(x)^2 + gp_lambda (||grad D(x_hat_k)|| - 1)^2]
  G      -sum_k w_k D(G_k(z_k)), from the same codes as the D step (the RTIL authors reuse the
         D step's fakes; G is unchanged in between, so the images are the same)
then the EMA generator is updated with a fixed beta per G step. Adam's moments are reset whenever
floor(lod) or ceil(lod) changes, if `reset_optimizer_per_lod` (the official PGGAN's reset_opt_for_new_lod).
"""

import math

import torch

from rtil.cli_checks import Ranged
from rtil.config import build_family
from rtil.errors import RtilError
from rtil.latents import dirichlet_weights
from rtil.models.pggan import OFFICIAL_LATENT_GAIN, Discriminator, Generator
from rtil.training import losses
from rtil.training.base import SHARED_RANGES, GanModule
from rtil.training.ema import update_ema
from rtil.training.rtil_settings import rtil_config


def lod_schedule(kimg: float, max_lod: int, training_kimg: float, transition_kimg: float) -> float:
    """The official PGGAN level of detail after `kimg` thousand images, in [0, max_lod].

    Training starts at 4x4 (lod = max_lod). Each phase of `training_kimg + transition_kimg` trains
    the current level for `training_kimg`, then fades the next level in linearly over
    `transition_kimg` (lod falls by 1); after the last fade, lod stays 0 (full resolution).
    """
    phase_kimg = training_kimg + transition_kimg
    phase = math.floor(kimg / phase_kimg)
    into_phase = kimg - phase * phase_kimg
    fade = max(into_phase - training_kimg, 0.0) / transition_kimg if transition_kimg > 0 else 0.0
    return max(max_lod - phase - fade, 0.0)


def lod_phase(lod: float) -> int:
    """floor(lod) + ceil(lod): 2n while training level n stably, 2n + 1 while fading from n to n - 1
    (a new value exactly when floor or ceil of lod changes)."""
    return math.floor(lod) + math.ceil(lod)


class PGGANModule(GanModule):
    """Trains a PGGAN generator family with the RTIL Dirichlet fusion (DirichletFusion).

    Args:
        resolution, img_channels, z_dim, channel_base, channel_max: the generator and discriminator
            architecture (see rtil.models.pggan.Generator); channel_table: optional explicit
            {resolution: channels} (the networks' `channels`).
        upsample_mode: "nearest" (official PGGAN) or "bilinear" (RTIL authors).
        normalize_latent: pixel-normalise z (official) or not (RTIL authors).
        pixel_norm_first, first_block_convs, latent_gain, torgb_gain: the generator's remaining layer
            options (official defaults; the RTIL authors use True, 2, sqrt(2 z_dim / (16 C_4)), sqrt(2)).
        mbstd_group_size: discriminator minibatch-stddev group (must divide the per-device batch).
        rtil: the RTIL Dirichlet family, as in model configs and generator files: {kind: dirichlet,
            codes_per_member: [...] (codes N fused by each extended member G1..GK), cut_point: 4 (where the codes
            are fused; lowered while that block is not grown yet)}; None (or no members) = vanilla training.
            See rtil.training.rtil_settings.
        member_weighting: "equal" (RTIL authors' code) or "lambda" (paper: lambda for G0, 1 - lambda shared).
        member_lambda: lambda for "lambda" weighting.
        member_sampling: "all" members every step, or "one" member drawn per step (cheaper).
        lr, betas: Adam settings of both networks.
        gp_lambda: WGAN-GP weight (target gradient norm 1).
        drift: weight of the drift penalty D(x)^2 on real logits.
        ema_beta: generator EMA decay per G step.
        progressive: grow from 4x4 with the schedule below; False trains at full resolution throughout.
        lod_training_kimg: thousands of images each level trains before the next fades in.
        lod_transition_kimg: thousands of images over which the next level fades in.
        reset_optimizer_per_lod: reset both Adam states whenever floor or ceil of lod changes.
        total_kimg: stop after this many thousand images (None: let the trainer decide).
        seed: seeds every random draw of training (with the iteration and rank).
        rtil_codes_per_member, rtil_cut_point: deprecated flat form of `rtil` (translated, with a
            DeprecationWarning).
    """

    rtil_kind = "dirichlet"
    # The valid range of every numeric init argument (rtil.cli_checks.Ranged), checked before anything is built.
    RANGES = {**SHARED_RANGES,
              "first_block_convs": Ranged(int, 1, 2),
              "latent_gain": Ranged(float, 0, open_low=True),  # 0 would make every image the same
              "torgb_gain": Ranged(float, 0, open_low=True),  # 0 would make every image blank
              "gp_lambda": Ranged(float, 0),  # 0: no gradient penalty
              "drift": Ranged(float, 0),
              "ema_beta": Ranged(float, 0, 1),  # 0: G_ema is a copy of G
              "lod_training_kimg": Ranged(float, 0),  # with lod_transition_kimg: a positive sum, if progressive
              "lod_transition_kimg": Ranged(float, 0),
              "rtil_codes_per_member": Ranged(int, 1),  # deprecated flat form of `rtil`
              "rtil_cut_point": Ranged(int, 1)}  # the family checks that it exists in G

    def __init__(self, resolution: int = 32, img_channels: int = 1, z_dim: int = 128, channel_base: int = 2048,
                 channel_max: int = 128, channel_table: dict[int, int] | None = None, upsample_mode: str = "nearest",
                 normalize_latent: bool = True, pixel_norm_first: bool = False, first_block_convs: int = 1,
                 latent_gain: float = OFFICIAL_LATENT_GAIN, torgb_gain: float = 1.0, mbstd_group_size: int = 4,
                 rtil: dict | None = None, member_weighting: str = "equal", member_lambda: float = 0.5,
                 member_sampling: str = "all", lr: float = 0.001, betas: tuple[float, float] = (0.0, 0.99),
                 gp_lambda: float = 10.0,
                 drift: float = 0.001, ema_beta: float = 0.999, progressive: bool = True,
                 lod_training_kimg: float = 600.0, lod_transition_kimg: float = 600.0,
                 reset_optimizer_per_lod: bool = True, total_kimg: float | None = None, seed: int = 0,
                 rtil_codes_per_member: list[int] | None = None, rtil_cut_point: int | None = None):
        super().__init__()
        self._check_settings(locals())
        if progressive and lod_training_kimg + lod_transition_kimg <= 0:
            raise RtilError(f"lod_training_kimg and lod_transition_kimg must have a positive sum, got "
                            f"{lod_training_kimg} and {lod_transition_kimg} (or set progressive=False)")
        rtil = rtil_config(rtil, self.rtil_kind, dict(rtil_codes_per_member=rtil_codes_per_member,
                                                      rtil_cut_point=rtil_cut_point))
        self._save_hyperparameters(rtil, ["rtil_codes_per_member", "rtil_cut_point"])
        arch = dict(resolution=resolution, img_channels=img_channels, channel_base=channel_base,
                    channel_max=channel_max, channels=channel_table)
        G = Generator(z_dim=z_dim, upsample_mode=upsample_mode, normalize_latent=normalize_latent,
                      pixel_norm_first=pixel_norm_first, first_block_convs=first_block_convs,
                      latent_gain=latent_gain, torgb_gain=torgb_gain, **arch)
        D = Discriminator(mbstd_group_size=mbstd_group_size, **arch)
        family = build_family(rtil)
        self._setup_networks(G, D, family, member_weighting, member_lambda, member_sampling, seed)
        # The lod phase (see `lod_phase`) Adam was last reset for; -1 = none yet. Saved for exact resume.
        self.register_buffer("optimizer_lod_phase", torch.full((), -1, dtype=torch.long))

    def configure_optimizers(self):
        h = self.hparams
        betas = (float(h.betas[0]), float(h.betas[1]))
        return [torch.optim.Adam(self.G.parameters(), lr=h.lr, betas=betas, eps=1e-8),
                torch.optim.Adam(self.D.parameters(), lr=h.lr, betas=betas, eps=1e-8)]

    # ---- progressive growing --------------------------------------------------------------------
    @property
    def max_lod(self) -> int:
        """The lod of the 4x4 level."""
        return self.G.num_blocks - 1

    def lod_at(self, kimg: float) -> float:
        """The level of detail after `kimg` thousand images (0 throughout if not progressive)."""
        h = self.hparams
        if not h.progressive:
            return 0.0
        return lod_schedule(kimg, self.max_lod, h.lod_training_kimg, h.lod_transition_kimg)

    def set_lod(self, lod: float) -> None:
        for net in (self.G, self.D, self.G_ema):
            net.set_lod(lod)

    def reset_optimizers_on_new_lod(self, lod: float, optimizers) -> bool:
        """Clear the Adam moments of `optimizers` when `lod` enters a new lod phase; True if reset."""
        phase = lod_phase(lod)
        if not self.hparams.reset_optimizer_per_lod or phase == int(self.optimizer_lod_phase):
            return False
        for opt in optimizers:
            getattr(opt, "optimizer", opt).state.clear()  # unwrap LightningOptimizer
        self.optimizer_lod_phase.fill_(phase)
        return True

    # ---- sampling -------------------------------------------------------------------------------
    def draw_codes(self, member: int, batch: int, gen: torch.Generator):
        """(z, weights) for member `member`: z (B, z_dim) for vanilla training, else codes
        (B, N, z_dim) with Dirichlet fusion weights (B, N), or None when N = 1."""
        if self.family is None:
            return torch.randn(batch, self.G.z_dim, device=self.device, generator=gen), None
        z = self.family.sample_z(self.G, member, batch, gen, self.device)
        n = z.shape[1]
        return z, (dirichlet_weights(batch, n, gen, self.device) if n > 1 else None)

    def fakes(self, member: int, z: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """Images (B, C, R, R) of member `member` at the current lod, from `draw_codes`' output."""
        if self.family is None:
            return self.G(z)
        return self.family.generate(self.G, z, member, weights=weights)

    # ---- one training iteration -----------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        reals = batch[0] if isinstance(batch, (list, tuple)) else batch
        h = self.hparams
        b = reals.shape[0]
        opt_g, opt_d = self.optimizers()
        lod = self.lod_at(self.kimg)
        self.set_lod(lod)
        reset = self.reset_optimizers_on_new_lod(lod, (opt_g, opt_d))
        reals = self.G.images_at_lod(reals)
        gen = self.step_generator()
        members = self.members_for_step(gen)
        codes = [self.draw_codes(member, b, gen) for member, _ in members]
        logs = {}

        # D: WGAN-GP over the members, one shared real batch.
        self.toggle_optimizer(opt_d)
        real_logits = self.D(reals)
        loss_d, gp, fake_logit = 0.0, 0.0, 0.0
        for (member, weight), (z, weights) in zip(members, codes, strict=True):
            with torch.no_grad():
                fake = self.fakes(member, z, weights)
            fake_logits = self.D(fake)
            penalty = losses.gradient_penalty(self.D, reals, fake, gen).mean()
            loss_d = loss_d + weight * (losses.wgan_gp_d(real_logits, fake_logits, h.drift) + h.gp_lambda * penalty)
            gp = gp + weight * penalty.detach()
            fake_logit = fake_logit + weight * fake_logits.detach().mean()
        self.manual_backward(loss_d)
        self.step_optimizer(opt_d, self.D)
        self.untoggle_optimizer(opt_d)
        logs["loss/D"] = loss_d.detach()
        logs["reg/gp"] = gp
        logs["D/real_logit"] = real_logits.detach().mean()
        logs["D/fake_logit"] = fake_logit

        # G: one backward per member keeps only one member's graph in memory.
        self.toggle_optimizer(opt_g)
        loss_g = 0.0
        for (member, weight), (z, weights) in zip(members, codes, strict=True):
            loss = -self.D(self.fakes(member, z, weights)).mean()
            self.manual_backward(weight * loss)
            loss_g = loss_g + weight * loss.detach()
        self.step_optimizer(opt_g, self.G)
        self.untoggle_optimizer(opt_g)
        logs["loss/G"] = loss_g

        self.check_finite(**{k: v for k, v in logs.items() if k.startswith("loss/")})
        self.nimg += self.global_batch(b)
        self.iteration += 1
        update_ema(self.G_ema, self.G, h.ema_beta)  # copies the lod buffer too
        logs["progress/kimg"] = self.nimg.float() / 1000
        logs["progress/lod"] = lod
        logs["progress/optimizer_reset"] = float(reset)
        self.log_dict(logs, prog_bar=False, on_step=True, on_epoch=False, batch_size=b)
        self.log("kimg", self.nimg.float() / 1000, prog_bar=True, on_step=True, on_epoch=False, batch_size=b)
        self.log("lod", lod, prog_bar=True, on_step=True, on_epoch=False, batch_size=b)
        if self.reached_total_kimg():
            self.trainer.should_stop = True

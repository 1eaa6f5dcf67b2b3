"""What the StyleGAN2 and PGGAN training modules share: networks and their EMA copy, the kimg
clock, per-step random generators, RTIL member selection, gradient sync, the NaN guard, and the
generator record written into checkpoints and exported files."""

import copy
import inspect
import math

import pytorch_lightning as pl
import torch

from rtil.checkpoints import generator_record
from rtil.cli_checks import SEED_RANGE, Ranged, check_ranges
from rtil.errors import RtilError
from rtil.latents import member_weights
from rtil.training.distributed import average_gradients, disable_ddp_gradient_sync

MEMBER_SAMPLING = ("all", "one")

# The valid range of the numeric settings both training modules have (each module's RANGES adds its own). None, where
# a setting's type allows it, is always accepted.
SHARED_RANGES = {
    "resolution": Ranged(int, 8),  # a power of two (the networks check that)
    "img_channels": Ranged(int, 1, 3),  # 1 or 3 (the networks check that)
    "z_dim": Ranged(int, 1),
    "channel_base": Ranged(int, 1),
    "channel_max": Ranged(int, 1),
    "mbstd_group_size": Ranged(int, 1),
    "member_lambda": Ranged(float, 0, 1),
    "lr": Ranged(float, 0, open_low=True),
    "betas": Ranged(float, 0, 1, open_high=True),  # both of Adam's betas
    "total_kimg": Ranged(float, 0, open_low=True),  # None: the trainer decides when to stop
    "seed": SEED_RANGE,
}


class GanModule(pl.LightningModule):
    """Base LightningModule (manual optimisation). Subclasses build G, D and the RTIL family and
    call `_setup_networks`, then implement `training_step` with the helpers below."""

    rtil_kind: str  # the RTIL family kind the subclass trains: "gaussian" or "dirichlet" (see rtil_settings)
    RANGES: dict[str, Ranged] = SHARED_RANGES  # every numeric init argument's valid range; subclasses extend it

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def _save_hyperparameters(self, rtil: dict | None, flat_keys: list[str]) -> None:
        """Save the caller's init arguments as hyper-parameters with the RTIL family as the normalised nested
        `rtil` and without the deprecated flat keys: what checkpoints, logs and resume checks see (under
        LightningCLI, Lightning saves the command's arguments as given, flat keys included)."""
        self.save_hyperparameters(ignore=flat_keys, frame=inspect.currentframe().f_back)
        self.remove_ignored_hparams(flat_keys)
        self.hparams["rtil"] = rtil
        self._hparams_initial = copy.deepcopy(self.hparams)  # what the loggers record

    def _check_settings(self, settings: dict) -> None:
        """Clear errors, before any network is built, for numeric settings outside their range (`RANGES`); they
        would otherwise fail deep inside torch, train forever or silently do nothing. `settings`: the caller's
        init arguments."""
        check_ranges(self.RANGES, settings)
        if len(settings["betas"]) != 2:
            raise RtilError(f"betas must be two numbers in [0, 1), got {settings['betas']}")

    def _setup_networks(self, G, D, family, member_weighting: str, member_lambda: float,
                        member_sampling: str, seed: int) -> None:
        if member_sampling not in MEMBER_SAMPLING:
            raise RtilError(f"member_sampling must be one of {MEMBER_SAMPLING}, got {member_sampling!r}")
        if family is not None:
            family.check(G)
        self.G, self.D = G, D
        self.G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        self.family = family
        self.num_members = family.num_members if family is not None else 1
        self.member_weights = member_weights(self.num_members, member_weighting, member_lambda)
        self.member_sampling = member_sampling
        self.seed = seed
        self.register_buffer("nimg", torch.zeros((), dtype=torch.long))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    # ---- clocks and randomness ------------------------------------------------------------------
    @property
    def kimg(self) -> float:
        return self.nimg.item() / 1000.0

    def global_batch(self, local_batch: int) -> int:
        return local_batch * self.trainer.world_size if self._trainer is not None else local_batch

    def step_generator(self, phase: int = 0) -> torch.Generator:
        """A torch.Generator seeded by (seed, iteration, rank, phase): every random draw of a step
        is reproducible, differs across ranks, and needs no RNG state in checkpoints."""
        rank = self.global_rank if self._trainer is not None else 0
        key = ((self.seed * 0x9E3779B1 + int(self.iteration)) * 8 + phase) * 65536 + rank
        return torch.Generator(device=self.device).manual_seed(key % (2 ** 63))

    def members_for_step(self, gen: torch.Generator) -> list[tuple[int, float]]:
        """(member, loss weight) pairs trained this step: all members with their weights, or one
        member drawn with probability equal to its weight (the same objective in expectation)."""
        if self.member_sampling == "all":
            return list(enumerate(self.member_weights))
        probs = torch.tensor(self.member_weights, device=self.device)
        return [(int(torch.multinomial(probs, 1, generator=gen)), 1.0)]

    # ---- optimisation ---------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx) -> int | None:
        # Lightning re-enables DDP's reducer after every step; rtil averages gradients itself.
        disable_ddp_gradient_sync(self.trainer.strategy.model)
        if self.reached_total_kimg():  # a resumed run that had finished: not one batch more (-1 ends the epoch)
            self.trainer.should_stop = True
            return -1
        return None

    def reached_total_kimg(self) -> bool:
        """Whether the kimg clock has reached the hyper-parameter total_kimg (never, if it is None)."""
        total = self.hparams.get("total_kimg")
        return total is not None and int(self.nimg) >= total * 1000

    def check_finite(self, **values: torch.Tensor) -> None:
        """Stop with a clear message if a loss is NaN/Inf (before any bad weights are saved)."""
        for name, value in values.items():
            if not math.isfinite(float(value)):
                raise RtilError(
                    f"{name} became {float(value)} at kimg {self.kimg:.2f} (iteration {int(self.iteration)}); "
                    f"training stopped and no checkpoint was written after this point. Resume from the last good "
                    f"checkpoint with a lower learning rate or a different regularisation weight.")

    def step_optimizer(self, optimizer, module: torch.nn.Module) -> None:
        """Average gradients across processes, step, and clear the gradients."""
        average_gradients(module.parameters())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # ---- export ---------------------------------------------------------------------------------
    def set_init_source(self, record: dict | None) -> None:
        """Record the file this run's weights started from (train.py --init_from): the hyper-parameter `init_from`
        (logged, saved in checkpoints) and the `init_from` entry of exported files' provenance."""
        if record is None:
            return
        self.hparams["init_from"] = _plain(record)
        self._hparams_initial = copy.deepcopy(self.hparams)

    def provenance(self) -> dict:
        info = {"source": "rtil training", "kimg": round(self.kimg, 3), "iteration": int(self.iteration),
                "training_module": type(self).__name__, "hyper_parameters": _plain(dict(self.hparams))}
        if "init_from" in self.hparams:
            info["init_from"] = _plain(self.hparams["init_from"])
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "describe"):
            info["data"] = _plain(dm.describe())
        return info

    def generator_record(self) -> dict:
        rtil = self.family.to_config() if self.family is not None else None
        return generator_record(self.G_ema, self.G, rtil=rtil, provenance=self.provenance())

    def on_train_start(self) -> None:
        # A resumed run gets its optimisers' learning rates and betas back from the checkpoint; the run's own
        # settings win (a resume may lower the learning rate, see rtil.training.cli.RESUMABLE_CHANGES).
        for restored, fresh in zip(self.trainer.optimizers, self.configure_optimizers(), strict=True):
            for group, new in zip(restored.param_groups, fresh.param_groups, strict=True):
                group["lr"], group["betas"] = new["lr"], new["betas"]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # A resumed run of an --init_from run keeps naming the file it started from.
        self.set_init_source((checkpoint.get("hyper_parameters") or {}).get("init_from"))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # What `python -m rtil export` needs besides the weights: plain, weights-only-loadable values.
        rec = self.generator_record()
        checkpoint["rtil_generator"] = {k: rec[k] for k in ("format", "version", "family", "arch", "rtil",
                                                              "provenance")}


def _plain(value):
    """Keep only JSON-like values (for provenance stored in weights-only files)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)

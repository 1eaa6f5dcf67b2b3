"""Callbacks: per-member sample grids, throughput logging, and the generator export at the end of fit."""

import time
from pathlib import Path
from weakref import proxy

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.utilities import rank_zero_warn
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from rtil.atomic_files import atomic_torch_save, replace_durably, save_image_atomically
from rtil.cli_checks import SEED_RANGE, Ranged, check_ranges
from rtil.members import member_grid


def log_dir(trainer: pl.Trainer) -> Path:
    """The run's directory: the first logger's log_dir, else the trainer's default_root_dir."""
    for logger in trainer.loggers:
        d = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
        if d:
            return Path(d)
    return Path(trainer.default_root_dir)


class SampleGrid(pl.Callback):
    """Every `every_kimg` thousand images, writes a grid of EMA-generator samples: one row per RTIL
    member, from fixed latents and const noise (so grids are comparable over training), to
    <log_dir>/samples/kimg<k>.png and to Weights & Biases when a WandbLogger is attached."""

    RANGES = {"every_kimg": Ranged(float, 0, open_low=True), "num_samples": Ranged(int, 1), "seed": SEED_RANGE}

    def __init__(self, every_kimg: float = 5.0, num_samples: int = 8, seed: int = 1234):
        check_ranges(self.RANGES, locals(), prefix="samples.")
        self.every_kimg = every_kimg
        self.num_samples = num_samples
        self.seed = seed
        self._next_kimg = None

    @torch.no_grad()
    def grid(self, module) -> torch.Tensor:
        """Images (members * num_samples, C, H, W) in [0, 1] as one grid tensor (C, H', W')."""
        images = member_grid(module.G_ema, module.family, self.num_samples, self.seed, device=module.device)
        images = (images.clamp(-1, 1) + 1) / 2
        return make_grid(images.float().cpu(), nrow=self.num_samples, padding=1)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self._next_kimg is None:
            self._next_kimg = (module.kimg // self.every_kimg) * self.every_kimg
        if module.kimg >= self._next_kimg:
            self.write(trainer, module)
            while self._next_kimg <= module.kimg:
                self._next_kimg += self.every_kimg

    def on_train_end(self, trainer, module):
        self.write(trainer, module)

    def write(self, trainer, module):
        if not trainer.is_global_zero:
            return
        grid = self.grid(module)
        path = log_dir(trainer) / "samples" / f"kimg{module.kimg:08.2f}.png"
        save_image_atomically(grid, path)
        for logger in trainer.loggers:
            if isinstance(logger, pl.loggers.WandbLogger):
                logger.log_image("samples", [grid], step=trainer.global_step,
                                 caption=[f"rows: G0..G{module.num_members - 1}, kimg {module.kimg:.1f}"])


class SampleQuality(pl.Callback):
    """Every `every_kimg` thousand images (None: never), the sample quality of every RTIL member of the EMA
    generator, logged as quality/fdd_g<k> (the digits Fréchet distance against the test digits, with
    `num_samples` samples; digits data only, no downloaded weights needed) and, with `fid`, quality/fid_g<k> and
    quality/kid_g<k> (torchmetrics with the FID Inception weights, `fid_num_gen` generated images against up to
    `fid_num_real` training images; reported unavailable, once, when the weights are not there)."""

    RANGES = {"every_kimg": Ranged(float, 0, open_low=True),  # None: never
              "num_samples": Ranged(int, 2), "fid_num_gen": Ranged(int, 2),  # a covariance needs two images
              "fid_num_real": Ranged(int, 2),  # None: every training image
              "seed": SEED_RANGE}

    def __init__(self, every_kimg: float | None = None, num_samples: int = 1000, fid: bool = False,
                 fid_num_gen: int = 5000, fid_num_real: int | None = 5000, offline: bool = False, seed: int = 123):
        check_ranges(self.RANGES, locals(), prefix="quality.")
        self.every_kimg, self.num_samples, self.seed = every_kimg, num_samples, seed
        self.fid, self.fid_num_gen, self.fid_num_real, self.offline = fid, fid_num_gen, fid_num_real, offline
        self._next_kimg = None
        self._extractor = None
        self._fid_unavailable = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.every_kimg is None:
            return
        if self._next_kimg is None:
            self._next_kimg = (module.kimg // self.every_kimg + 1) * self.every_kimg
        if module.kimg >= self._next_kimg:
            self.measure(trainer, module)
            while self._next_kimg <= module.kimg:
                self._next_kimg += self.every_kimg

    @torch.no_grad()
    def measure(self, trainer, module) -> dict:
        """The quality numbers now (rank 0 computes and logs them; other ranks return {})."""
        if not trainer.is_global_zero:
            return {}
        from rtil.data.digits import digits_images
        from rtil.evaluation.digits_fd import digits_fd
        from rtil.members import member_images

        data = trainer.datamodule
        G, values = module.G_ema, {}
        for member in range(module.num_members):
            if getattr(data, "dataset", None) == "digits":
                samples = member_images(G, module.family, member, self.num_samples, self.seed, noise_mode="random",
                                        device=module.device)
                test = digits_images("test", G.resolution, G.img_channels)
                values[f"quality/fdd_g{member}"] = digits_fd(samples.cpu(), test)
            if self.fid:
                values.update(self._fid(data, G, module, member))
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)
        return values

    def _fid(self, data, G, module, member) -> dict:
        from rtil.evaluation.sample_quality import fid_kid, load_inception, real_image_batches

        if self._extractor is None and self._fid_unavailable is None:
            self._extractor, self._fid_unavailable = load_inception(self.offline)
            if self._extractor is None:
                rank_zero_warn(f"FID/KID during training: unavailable ({self._fid_unavailable})")
        if self._extractor is None:
            return {}
        source = "digits" if data.dataset == "digits" else data.path
        real = real_image_batches(source, G.resolution, G.img_channels, num_images=self.fid_num_real)
        values = fid_kid(G, module.family, real, self.fid_num_gen, self._extractor.to(module.device), member,
                         seed=self.seed)
        return {f"quality/fid_g{member}": values["fid"], f"quality/kid_g{member}": values["kid_mean"]}


class KimgProgressBar(ProgressBar):
    """Training progress on the kimg clock (the module's image counter), with seconds per kimg and the time left
    (tqdm's ETA), instead of Lightning's "Epoch 0: 238/?" of an endless data stream."""

    def __init__(self):
        super().__init__()
        self._enabled, self._bar, self._start = True, None, None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, module):
        if not (self._enabled and trainer.is_global_zero):
            return
        total = module.hparams.get("total_kimg")
        total = max(total, round(module.kimg, 3)) if total is not None else None
        self._bar = tqdm(total=total, initial=round(module.kimg, 3), unit="kimg", desc="training", dynamic_ncols=True,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total_fmt} kimg "
                                    "[{elapsed}<{remaining}{postfix}]")
        self._start = (time.perf_counter(), module.kimg)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self._bar is None:
            return
        done = round(module.kimg, 3)
        if self._bar.total is not None and done > self._bar.total:  # the last batch passes total_kimg: the bar
            self._bar.total = done                                   # ends at 100% of what was done, not beyond
        self._bar.update(done - self._bar.n)
        seconds, kimg = time.perf_counter() - self._start[0], module.kimg - self._start[1]
        if kimg > 0:
            self._bar.set_postfix_str(f"{seconds / kimg:.0f} s/kimg", refresh=False)

    def on_train_end(self, trainer, module):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Throughput(pl.Callback):
    """Logs images/s (global), kimg per hour and the number of unreadable images skipped by the
    data pipeline every `every_n_steps` training steps."""

    RANGES = {"every_n_steps": Ranged(int, 1)}

    def __init__(self, every_n_steps: int = 20):
        check_ranges(self.RANGES, locals(), prefix="throughput.")
        self.every_n_steps = every_n_steps
        self._t0 = None
        self._nimg0 = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self._t0 is None:
            self._t0, self._nimg0 = time.perf_counter(), int(module.nimg)
            return
        if int(module.iteration) % self.every_n_steps == 0:
            dt = time.perf_counter() - self._t0
            rate = (int(module.nimg) - self._nimg0) / max(dt, 1e-9)
            logs = {"speed/img_per_s": rate, "speed/kimg_per_h": rate * 3.6}
            skipped = getattr(trainer.datamodule, "num_skipped", None) if trainer.datamodule is not None else None
            if skipped is not None:
                logs["data/skipped_images"] = float(skipped)  # unreadable images skipped so far
            module.log_dict(logs, on_step=True, on_epoch=False)
            self._t0, self._nimg0 = time.perf_counter(), int(module.nimg)


class KimgCheckpoint(ModelCheckpoint):
    """Lightning checkpoints every `every_kimg` thousand training images (all kept by default, save_top_k=-1,
    like NVlabs' snapshots), plus `last.ckpt` for `fit --ckpt_path last`. The kimg clock is the module's own
    image counter, not Lightning's global_step (which counts every optimizer step of a GAN iteration).

    Writes are atomic on any filesystem: each checkpoint is written to a temporary file next to its target
    and renamed over it, so a crash leaves the previous file whole (Lightning's own save stages the file in
    the temp dir, which on a cluster is usually another filesystem). A training state with a non-finite
    weight or optimiser statistic is never written: the run's last good checkpoint stays the newest."""

    RANGES = {"every_kimg": Ranged(float, 0, open_low=True),
              "save_top_k": Ranged(int, -1)}  # -1: keep every checkpoint, 0: none but last.ckpt, k: the newest k

    def __init__(self, dirpath: str | None = None, every_kimg: float = 10.0, save_top_k: int = -1,
                 filename: str = "kimg{progress/kimg:08.2f}", save_last: bool = True):
        check_ranges(self.RANGES, locals(), prefix="checkpoint.")
        super().__init__(dirpath=dirpath, filename=filename, save_top_k=save_top_k, save_last=save_last,
                         every_n_train_steps=0, every_n_epochs=0, auto_insert_metric_name=False)
        self.every_kimg = every_kimg
        self._next_kimg = None

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        bad = non_finite_state(trainer)
        if bad:
            last = self._last_checkpoint_saved or "none written yet"
            rank_zero_warn(f"not writing {Path(filepath).name}: {bad} is not finite at kimg "
                           f"{trainer.lightning_module.kimg:.2f}; the last good checkpoint is {last}")
            return
        tmp = f"{filepath}.partial"
        trainer.save_checkpoint(tmp, self.save_weights_only)
        if trainer.is_global_zero:
            replace_durably(tmp, filepath)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._next_kimg is None:
            self._next_kimg = (pl_module.kimg // self.every_kimg + 1) * self.every_kimg
        if pl_module.kimg < self._next_kimg or self._should_skip_saving_checkpoint(trainer):
            return
        while self._next_kimg <= pl_module.kimg:
            self._next_kimg += self.every_kimg
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_train_end(self, trainer, pl_module):
        if not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)


def non_finite_state(trainer) -> str | None:
    """The name of the first parameter, buffer or optimiser statistic of the training state that holds a NaN or
    an infinity, or None if all are finite."""
    for name, tensor in trainer.lightning_module.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    for i, optimizer in enumerate(trainer.optimizers):
        for state in optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
                    return f"optimizer {i} {key}"
    return None


class ExportGenerator(pl.Callback):
    """Writes the portable generator file (rtil.load_generator) at the end of fit, atomically,
    to `path` or <log_dir>/generator.pt."""

    RANGES = {}  # no numeric settings

    def __init__(self, path: str | None = None):
        self.path = path

    def on_train_end(self, trainer, module):
        if not trainer.is_global_zero:
            return
        path = Path(self.path) if self.path else log_dir(trainer) / "generator.pt"
        atomic_torch_save(module.generator_record(), path)
        print(f"exported generator: {path}")

"""Machinery shared by the inversion solvers (CSGM, ILO, mGANprior, PULSE restarts).

Conventions used by every solver:

- Batched: B images are solved at once. Every image has its own variables, its own operator draw (the
  operator holds one per image) and its own random initialisation, drawn from a per-image torch.Generator
  seeded by (seed, image index), so an image gets the same start whatever the batch it is solved in.
- Per-image losses: each image's loss is a mean over *its own* measurements; the optimiser minimises the sum
  over images. Variables are separate and Adam/SGD act elementwise, so images never interact.
- Restarts: R independent initialisations per image are stacked as rows r * B + b (restart-major); the
  operator is applied to each restart's B rows in turn.
- Honest selection: a solver returns, per image, the recorded iterate with the lowest *measurement* loss
  (select="best") or the last one (select="last"). Regularisers and perceptual terms are not part of the
  selection loss, and the ground truth is never seen.
- Images are (B, C, H, W) in [-1, 1].
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from rtil.errors import RtilError
from rtil.models.state import SynthesisState

SELECTIONS = ("best", "last")
OPTIMIZERS = ("adam", "sgd")
SOLVER_STREAM = 0x501E  # keeps solver draws independent of operator draws made with the same seed
LPIPS_MIN_SIZE = 32  # LPIPS-AlexNet needs images of at least 32 x 32 pixels

Progress = Callable[[int], None] | None


# ------------------------------------------------------------------------------------------------- result


@dataclass
class SolveResult:
    """What a solver returns for a batch of B images.

    images:            (B, C, H, W) in [-1, 1], the selected iterate per image.
    measurement_loss:  (B,) mean squared measurement error of the selected iterate.
    loss_history:      (R, T, B) measurement loss of every recorded iterate (R restarts, T iterates each).
    selected_restart:  (B,) restart of the selected iterate.
    selected_step:     (B,) index into the T recorded iterates of the selected one.
    feasible:          (B,) measurement_loss <= tolerance (PULSE), or None when the solver has no tolerance.
    round_losses:      (rounds, B) measurement loss of each round's last iterate (ILO), or None.
    info:              solver-specific notes (e.g. whether the perceptual term was used).
    """

    images: torch.Tensor
    measurement_loss: torch.Tensor
    loss_history: torch.Tensor
    selected_restart: torch.Tensor
    selected_step: torch.Tensor
    feasible: torch.Tensor | None = None
    round_losses: torch.Tensor | None = None
    info: dict = field(default_factory=dict)


class Solver:
    """What every solver dataclass shares: its name (`method`), the number of optimisation steps a
    progress bar counts, and its settings as a plain dict for result files."""

    method = ""

    @property
    def total_steps(self) -> int:
        return self.steps

    def settings(self) -> dict:
        return {"method": self.method, **asdict(self)}


# ------------------------------------------------------------------------------------------- randomness


def image_generators(batch_size: int, seed: int, item_offset: int = 0, stream: int = SOLVER_STREAM
                     ) -> list[torch.Generator]:
    """One CPU generator per image; image i's generator depends only on (stream, seed, item_offset + i).
    Different streams give independent draws for the same seed (solver starts vs. measurement noise)."""
    if int(seed) < 0 or int(item_offset) < 0:
        raise RtilError(f"seed and item_offset must be >= 0, got {seed} and {item_offset}")
    gens = []
    for index in range(item_offset, item_offset + batch_size):
        words = np.random.SeedSequence([stream, int(seed), index]).generate_state(2, dtype=np.uint32)
        gens.append(torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1])))
    return gens


def randn_rows(gens: Sequence[torch.Generator], shape: Sequence[int], restarts: int = 1,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """N(0, 1) draws (restarts * B, *shape), row r * B + b from image b's generator (restarts in order)."""
    per_image = [torch.randn(restarts, *shape, generator=g) for g in gens]
    return torch.stack(per_image, dim=1).reshape(restarts * len(gens), *shape).to(device)


# ------------------------------------------------------------------------------------------------ losses


def apply_per_restart(operator, images: torch.Tensor) -> torch.Tensor:
    """A x for rows r * B + b: (R * B, C, H, W) -> (R * B, *measurement_shape), image b's operator on row b."""
    b = operator.batch_size
    if images.shape[0] % b:
        raise RtilError(f"{images.shape[0]} rows are not a whole number of restarts of {b} images")
    return torch.cat([operator(chunk) for chunk in images.split(b)])


def measurement_loss(operator, images: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row mean squared measurement error, (R * B,): mean over that row's image's measurements."""
    restarts = images.shape[0] // operator.batch_size
    target = y.repeat(restarts, *([1] * (y.ndim - 1)))
    return (apply_per_restart(operator, images) - target).pow(2).flatten(1).mean(1)


def geocross(latents: torch.Tensor) -> torch.Tensor:
    """PULSE's geodesic cross loss per row: latents (N, L, D) -> (N,), the mean over all pairs (i, j) of the
    L rows of D * angle(i, j)^2 / 8. Zero when L = 1. Computed per image (no mixing across rows)."""
    n, num, dim = latents.shape
    if num == 1:
        return latents.new_zeros(n)
    a, b = latents[:, :, None, :], latents[:, None, :, :]
    dist = ((a - b).pow(2).sum(-1) + 1e-9).sqrt()
    anti = ((a + b).pow(2).sum(-1) + 1e-9).sqrt()
    angle = 2 * torch.atan2(dist, anti)
    return (dim * angle.pow(2)).mean(dim=(1, 2)) / 8


SNA_MEASUREMENT = "measurement"


def check_stochastic_noise(value) -> None:
    """SNA settings are a std >= 0 (in [-1, 1] image units) or "measurement" (the operator's noise std)."""
    if value == SNA_MEASUREMENT:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise RtilError(f"stochastic_noise must be a std >= 0 or {SNA_MEASUREMENT!r} (the measurement noise std), "
                        f"got {value!r}")


def stochastic_noise_std(value, operator) -> float:
    """The SNA std for `operator`: `value`, or the operator's measurement noise std for "measurement"."""
    return float(operator.noise_std) if value == SNA_MEASUREMENT else float(value)


def perceptual_status(weight: float, perceptual, operator) -> str:
    """Whether the perceptual (LPIPS) term is used: 'off', 'unavailable', 'not applicable' or 'on'.

    The term compares A x with y as images, so it needs image-shaped measurements (masks, down-sampling,
    denoising) of at least LPIPS_MIN_SIZE pixels; compressed-sensing measurements are not images."""
    if weight == 0:
        return "off"
    shape = operator.measurement_shape
    if len(shape) != 3 or min(shape[1:]) < LPIPS_MIN_SIZE:
        return "not applicable"
    if perceptual is None:
        return "unavailable"
    return "on"


class MeasurementObjective:
    """Data terms of the loss for rows r * B + b of candidate images (restart-major).

    __call__(images) -> (data_loss (N,), measurement_loss (N,)): measurement MSE (of the images with
    stochastic noise added, if its std is > 0) + perceptual_weight * LPIPS(A x, y) when active;
    measurement_loss is the plain MSE of the clean images, the quantity used for selection.
    stochastic_noise: SNA std, or "measurement" for the operator's own noise std (0 for noiseless tasks).
    """

    def __init__(self, operator, y: torch.Tensor, gens: Sequence[torch.Generator], perceptual=None,
                 perceptual_weight: float = 0.0, stochastic_noise: float | str = 0.0):
        if y.shape[0] != operator.batch_size:
            raise RtilError(f"{y.shape[0]} measurements for an operator of {operator.batch_size} images")
        self.operator, self.y, self.gens = operator, y, gens
        self.status = perceptual_status(perceptual_weight, perceptual, operator)
        self.perceptual = perceptual if self.status == "on" else None
        self.perceptual_weight = perceptual_weight
        self.stochastic_noise = stochastic_noise_std(stochastic_noise, operator)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clean = measurement_loss(self.operator, images, self.y)
        data = clean
        if self.stochastic_noise > 0:
            noise = randn_rows(self.gens, images.shape[1:], images.shape[0] // len(self.gens), images.device)
            data = measurement_loss(self.operator, images + self.stochastic_noise * noise, self.y)
        if self.perceptual is not None:
            restarts = images.shape[0] // self.operator.batch_size
            target = (self.y.repeat(restarts, 1, 1, 1) + 1) / 2
            data = data + self.perceptual_weight * self.perceptual((apply_per_restart(self.operator, images) + 1) / 2,
                                                                   target)
        return data, clean


# ------------------------------------------------------------------------------------ optimisation loop


def learning_rate(step: int, steps: int, lr: float, warmup: float, rampdown: float) -> float:
    """ILO/StyleGAN2-projector schedule at t = step / steps: linear warm-up over the first `warmup` fraction,
    then flat, then a cosine decay to 0 over the last `rampdown` fraction (rampdown 0: no decay)."""
    t = step / steps
    scale = min(1.0, t / warmup) if warmup > 0 else 1.0
    if rampdown > 0:
        scale *= 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown))
    return lr * scale


def check_schedule(lr: float, warmup: float, rampdown: float, optimizer: str = "adam") -> None:
    if not lr > 0:
        raise RtilError(f"lr must be > 0, got {lr}")
    if not (0 <= warmup <= 1 and 0 <= rampdown <= 1):
        raise RtilError(f"warmup and rampdown are fractions of the steps in [0, 1], got {warmup} and {rampdown}")
    if optimizer not in OPTIMIZERS:
        raise RtilError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def check_select(select: str) -> None:
    if select not in SELECTIONS:
        raise RtilError(f"select must be one of {SELECTIONS} (selection by measurement loss or the last iterate), "
                        f"got {select!r}")


class IterateTracker:
    """Records the measurement loss of every iterate of N rows and keeps, per row, the selected one:
    the lowest measurement loss so far (select="best"; NaN losses never win) or the latest (select="last")."""

    def __init__(self, select: str = "best"):
        check_select(select)
        self.select = select
        self.losses: list[torch.Tensor] = []
        self.images: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None
        self.step: torch.Tensor | None = None

    def new_round(self) -> None:
        """Forget the selected iterates (the loss history stays): the selection then comes from later records
        only, e.g. ILO's final round."""
        self.images = self.loss = self.step = None

    def last_losses(self) -> torch.Tensor:
        """(N,) measurement loss of the latest recorded iterate."""
        return self.losses[-1]

    def record(self, images: torch.Tensor, loss: torch.Tensor) -> None:
        images, loss = images.detach(), loss.detach().float()
        step = len(self.losses)
        self.losses.append(loss.cpu())
        if self.images is None or self.select == "last":
            self.images, self.loss = images.clone(), loss.clone()
            self.step = torch.full_like(loss, step, dtype=torch.long)
            return
        better = ~loss.isnan() & ((loss < self.loss) | self.loss.isnan())
        self.images = torch.where(better.view(-1, *([1] * (images.ndim - 1))), images, self.images)
        self.loss = torch.where(better, loss, self.loss)
        self.step = torch.where(better, torch.full_like(self.step, step), self.step)

    def result(self, batch_size: int, feasibility_tolerance: float | None = None, info: dict | None = None,
               round_losses: torch.Tensor | None = None) -> SolveResult:
        """Per image, the selected iterate of the restart whose selected loss is lowest (rows r * B + b)."""
        restarts = self.loss.shape[0] // batch_size
        loss = self.loss.view(restarts, batch_size)
        restart = torch.nan_to_num(loss, nan=math.inf).argmin(0)
        rows = restart * batch_size + torch.arange(batch_size, device=restart.device)
        history = torch.stack(self.losses).view(len(self.losses), restarts, batch_size).permute(1, 0, 2)
        selected = self.loss[rows]
        feasible = None if feasibility_tolerance is None else selected <= feasibility_tolerance
        return SolveResult(images=self.images[rows], measurement_loss=selected, loss_history=history,
                           selected_restart=restart.cpu(), selected_step=self.step[rows].cpu(),
                           feasible=None if feasible is None else feasible.cpu(), round_losses=round_losses,
                           info=dict(info or {}))


def run_optimizer(params: list[torch.Tensor], render: Callable[[], torch.Tensor],
                  loss: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], steps: int, lr: float,
                  warmup: float, rampdown: float, tracker: IterateTracker, optimizer: str = "adam",
                  after_step: Callable[[], None] | None = None, progress: Progress = None) -> None:
    """`steps` optimiser steps on `params`. Each step renders the images (N, C, H, W), evaluates
    loss(images) -> (total (N,), measurement (N,)), records the iterate in `tracker`, and steps on the sum of
    the per-row totals; `after_step` (projections) runs after every step. The LR follows `learning_rate`."""
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup, rampdown)
        images = render()
        total, measured = loss(images)
        tracker.record(images, measured)
        opt.zero_grad(set_to_none=True)
        total.sum().backward()
        opt.step()
        if after_step is not None:
            after_step()
        if progress is not None:
            progress(1)


@torch.no_grad()
def record_final(render: Callable[[], torch.Tensor], loss: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                 tracker: IterateTracker) -> None:
    """Record the iterate left by the last optimiser step."""
    images = render()
    tracker.record(images, loss(images)[1])


# ------------------------------------------------------------------------------------- generator helpers


def generator_device(G) -> torch.device:
    return next(G.buffers()).device


def check_generator(G, operator, y: torch.Tensor) -> None:
    """Raise if the operator's images do not have the generator's shape."""
    expected = (G.img_channels, G.resolution, G.resolution)
    if tuple(operator.image_shape) != expected:
        raise RtilError(f"the operator works on images {tuple(operator.image_shape)} but the generator makes "
                        f"{expected}")
    if tuple(y.shape) != (operator.batch_size, *operator.measurement_shape):
        raise RtilError(f"measurements of shape {tuple(y.shape)} do not fit the operator "
                        f"{(operator.batch_size, *operator.measurement_shape)}")


def first_style_after(cut: int) -> int:
    """StyleGAN2: index of the first W+ row (and noise map) used when synthesising from cut point `cut`.

    Continuing from cut c >= 1 runs ToRGB of block c - 1 (style 2c - 1) and blocks c.. (styles and noise
    layers from 2c - 1 on); from cut 0 everything is used (see rtil/models/stylegan2.py)."""
    return 0 if cut == 0 else 2 * cut - 1


NOISE_STARTS = ("const", "random")


def check_noise_start(value: str) -> None:
    if value not in NOISE_STARTS:
        raise RtilError(f"noise_start must be one of {NOISE_STARTS}, got {value!r}")


def start_noises(G, gens: Sequence[torch.Generator], restarts: int, noise_start: str,
                 device: torch.device | str) -> list[torch.Tensor]:
    """StyleGAN2 noise maps to start from, one (restarts * B, 1, H, W) tensor per layer (rows r * B + b):
    the generator's stored const maps ("const"), or N(0, 1) draws from image b's generator rescaled to the
    sphere of radius sqrt(H W) ("random")."""
    if noise_start == "const":
        return [n.expand(restarts * len(gens), -1, -1, -1).clone() for n in G.make_noises(1, "const")]
    noises = [randn_rows(gens, (1, *hw), restarts, device) for hw in G.noise_shapes()]
    to_sphere_(noises, [math.sqrt(h * w) for h, w in G.noise_shapes()], dims=(1, 2, 3))
    return noises


def stylegan2_state(G, cut: int, features: torch.Tensor | None, ws: torch.Tensor, noises: list[torch.Tensor],
                    img: torch.Tensor | None) -> SynthesisState:
    """The StyleGAN2 state at `cut`: `features` at the cut (ignored at cut 0, where the const input is used)."""
    if cut == 0:
        return G.start_state(ws, noises)
    return SynthesisState(x=features, cut=cut, ws=ws, noises=list(noises), img=img)


def to_sphere_(tensors: Sequence[torch.Tensor], radii: Sequence[torch.Tensor], dims) -> None:
    """Rescale each tensor in place so its norm over `dims` equals the matching radius (keepdim shape)."""
    with torch.no_grad():
        for t, r in zip(tensors, radii, strict=True):
            t.mul_(r / torch.linalg.vector_norm(t, dim=dims, keepdim=True).clamp(min=1e-12))


def norms(tensors: Sequence[torch.Tensor], dims) -> list[torch.Tensor]:
    return [torch.linalg.vector_norm(t.detach(), dim=dims, keepdim=True) for t in tensors]

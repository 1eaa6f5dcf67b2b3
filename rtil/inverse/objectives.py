"""The loss terms of the solvers, per row of candidate images (rows r * B + b: restart r of image b).

Each image's loss is a mean over *its own* measurements; optimisers minimise the sum over rows. Variables
are separate and Adam/SGD act elementwise, so images never interact.
"""

from collections.abc import Sequence

import torch

from rtil.errors import RtilError
from rtil.inverse.randomness import randn, randn_rows

LPIPS_MIN_SIZE = 32  # LPIPS-AlexNet needs images of at least 32 x 32 pixels
SNA_MEASUREMENT = "measurement"


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
    L rows of D * angle(i, j)^2 / 8. Zero when L <= 1. Computed per image (no mixing across rows)."""
    n, num, dim = latents.shape
    if num <= 1:
        return latents.new_zeros(n)
    a, b = latents[:, :, None, :], latents[:, None, :, :]
    dist = ((a - b).pow(2).sum(-1) + 1e-9).sqrt()
    anti = ((a + b).pow(2).sum(-1) + 1e-9).sqrt()
    angle = 2 * torch.atan2(dist, anti)
    return (dim * angle.pow(2)).mean(dim=(1, 2)) / 8


def add_stochastic_noise(images: torch.Tensor, sigma: float,
                         generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """ILO's Stochastic Noise Addition (SNA): images + sigma * e, e ~ N(0, I) fresh at every call.

    Solvers apply it to the *generated* images before the forward operator in the loss, loss(A(SNA(G(z))), y),
    so that the generator is not pushed to reproduce the measurement noise (typically sigma = the known noise
    level). images: (N, C, H, W); generator: one generator, or one per image for restart-major rows
    (see randn_rows). The noise is not part of the graph; gradients pass through unchanged.
    """
    if sigma < 0:
        raise RtilError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return images
    if isinstance(generator, Sequence):
        noise = randn_rows(generator, images.shape[1:], images.shape[0] // len(generator), images.device, images.dtype)
    else:
        noise = randn(images.shape, generator, images.dtype, images.device)
    return images + sigma * noise


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
            noisy = add_stochastic_noise(images, self.stochastic_noise, self.gens)
            data = measurement_loss(self.operator, noisy, self.y)
        if self.perceptual is not None:
            restarts = images.shape[0] // self.operator.batch_size
            target = (self.y.repeat(restarts, 1, 1, 1) + 1) / 2
            data = data + self.perceptual_weight * self.perceptual((apply_per_restart(self.operator, images) + 1) / 2,
                                                                   target)
        return data, clean

"""Linear forward operators y = A x (+ noise) for compressed sensing, inpainting, super-resolution and denoising.

Every operator maps images x (B, C, H, W) in [-1, 1] to measurements y (B, ...) and back with its exact
adjoint (transpose). Operators are differentiable, batched and hold one random draw per batch item.

Randomness: a random operator derives one seed per item from `seed` (or from a user `generator`), so the
draw of item i depends only on (seed, item_offset + i), never on the batch size. Build the operators for
images k..k+B-1 of a data set with `item_offset=k` and every image gets the same operator in every run,
whatever the batching: vanilla and RTIL models are then compared on identical measurements.
Draws are made on the CPU and stored as buffers, so `.to(device)` moves them.
"""

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rtil.errors import RtilError
from rtil.inverse.randomness import randn

DOWNSAMPLE_FACTORS = (1, 2, 4, 8, 16)
CS_NORMALIZATIONS = ("sqrt_n", "none")


def item_generators(batch_size: int, seed: int = 0, generator: torch.Generator | None = None,
                    item_offset: int = 0) -> list[torch.Generator]:
    """One CPU generator per batch item; item i is seeded by draw number item_offset + i of the source."""
    if int(item_offset) < 0:
        raise RtilError(f"item_offset must be >= 0, got {item_offset}")
    source = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    seeds = torch.randint(0, 2**62, (item_offset + batch_size,), generator=source, device=source.device)
    return [torch.Generator().manual_seed(int(s)) for s in seeds[item_offset:].tolist()]


def _check_image_shape(image_shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise RtilError(f"image_shape must be (C, H, W) with positive sizes, got {tuple(image_shape)}")
    return shape


def _check_ratio(ratio, what: str = "ratio") -> float:
    if ratio is None or not 0 < float(ratio) <= 1:
        raise RtilError(f"{what} must be in (0, 1], got {ratio}")
    return float(ratio)


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


class ForwardOperator(nn.Module, ABC):
    """A linear measurement operator A with measurement noise of standard deviation `noise_std`.

    image_shape: (C, H, W) of the images; batch_size: number of images (one draw each);
    noise_std: standard deviation of the additive Gaussian noise of `measure`, in measurement units (the [-1, 1]
    image units for masks, down-sampling and denoising; about the same for normalised CS, see CompressedSensing).
    """

    def __init__(self, image_shape, batch_size: int, noise_std: float = 0.0):
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        if int(batch_size) < 1:
            raise RtilError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        if noise_std is None or not 0 <= float(noise_std) < float("inf"):
            raise RtilError(f"noise_std must be a finite number >= 0, got {noise_std}")
        self.noise_std = float(noise_std)

    @property
    @abstractmethod
    def measurement_shape(self) -> tuple[int, ...]:
        """Shape of one item's measurement (without the batch dimension)."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x: images (B, C, H, W) -> measurements (B, *measurement_shape), noise-free."""

    @abstractmethod
    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y: measurements (B, *measurement_shape) -> images (B, C, H, W)."""

    def measure(self, x: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None = None
                ) -> torch.Tensor:
        """A x + noise_std * e with e ~ N(0, I) drawn from `generator` (global RNG if None). A sequence of
        B generators draws item b's noise from generator b, so it does not depend on the batch it is in."""
        y = self.forward(x)
        if self.noise_std == 0:
            return y
        if isinstance(generator, Sequence):
            if len(generator) != y.shape[0]:
                raise RtilError(f"{len(generator)} noise generators for a batch of {y.shape[0]} measurements")
            noise = torch.stack([randn(y.shape[1:], g, y.dtype, y.device) for g in generator])
        else:
            noise = randn(y.shape, generator, y.dtype, y.device)
        return y + self.noise_std * self._restrict_noise(noise)

    def _restrict_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """Hook for operators whose measurements are partly structural zeros (masks)."""
        return noise

    def describe(self) -> dict:
        """JSON-serialisable settings of this operator, for result files."""
        return {"operator": type(self).__name__, "image_shape": list(self.image_shape),
                "batch_size": self.batch_size, "noise_std": self.noise_std, **self._settings()}

    def _settings(self) -> dict:
        return {}

    def _check_images(self, x: torch.Tensor) -> None:
        if tuple(x.shape) != (self.batch_size, *self.image_shape):
            raise RtilError(f"{type(self).__name__} expects images of shape {(self.batch_size, *self.image_shape)}, "
                            f"got {tuple(x.shape)}")

    def _check_measurements(self, y: torch.Tensor) -> None:
        if tuple(y.shape) != (self.batch_size, *self.measurement_shape):
            raise RtilError(f"{type(self).__name__} expects measurements of shape "
                            f"{(self.batch_size, *self.measurement_shape)}, got {tuple(y.shape)}")


def _random_settings(seed, generator, item_offset) -> dict:
    return {"seed": None if generator is not None else int(seed),
            "generator": "user-supplied" if generator is not None else None, "item_offset": int(item_offset)}


# ----------------------------------------------------------------------------------------------- compressed sensing


def _cs_sizes(op: "ForwardOperator", ratio: float, normalization: str) -> None:
    """Set op.ratio, op.n (pixels), op.m (measurements), op.normalization and op.scale for a CS operator."""
    op.ratio = _check_ratio(ratio)
    if normalization not in CS_NORMALIZATIONS:
        raise RtilError(f"normalization must be one of {CS_NORMALIZATIONS}, got {normalization!r}")
    op.n = math.prod(op.image_shape)
    op.m = round(op.ratio * op.n)
    if op.m < 1:
        raise RtilError(f"ratio {ratio} gives no measurement for {op.n} pixels; use a larger ratio")
    op.normalization = normalization
    op.scale = 1 / math.sqrt(op.n) if normalization == "sqrt_n" else 1.0


class CompressedSensing(ForwardOperator):
    """Partial circulant matrix with random signs, applied by FFT (never stored densely).

    Over the flattened image vector x (n = C*H*W entries): y = scale * P_Omega( f (*) (s . x) ), where
    (*) is circular convolution of length n, f ~ N(0, 1)^n a Gaussian filter, s a Rademacher +-1 vector and
    P_Omega keeps m = round(ratio * n) distinct entries (sorted). Per item, f, s and Omega are drawn in that order.

    Scaling: with normalization="sqrt_n" (default), scale = 1 / sqrt(n), so for a fixed x every measurement
    is ~ N(0, mean(x^2)), E[A^T A] = (m / n) I and the measurement MSE of an error e is about its pixel MSE,
    at every ratio. normalization="none" (scale 1) is the unnormalised operator of the RTIL and ILO code,
    whose measurement MSE is n times larger (n = 196 608 at 3x256x256).
    Memory: O(n) per item (filter spectrum, int8 signs, int64 indices).
    """

    def __init__(self, image_shape, batch_size: int, ratio: float, seed: int = 0,
                 generator: torch.Generator | None = None, item_offset: int = 0, noise_std: float = 0.0,
                 normalization: str = "sqrt_n"):
        super().__init__(image_shape, batch_size, noise_std)
        _cs_sizes(self, ratio, normalization)
        self._random = _random_settings(seed, generator, item_offset)
        spectra, signs, indices = [], [], []
        for g in item_generators(self.batch_size, seed, generator, item_offset):
            f = torch.randn(self.n, generator=g, dtype=torch.float64)
            spectra.append(torch.fft.rfft(f).to(torch.complex64))
            signs.append(torch.randint(0, 2, (self.n,), generator=g, dtype=torch.int8) * 2 - 1)
            indices.append(torch.randperm(self.n, generator=g)[: self.m].sort().values)
        self.register_buffer("spectrum", torch.stack(spectra))  # (B, n // 2 + 1) complex, rfft of f
        self.register_buffer("signs", torch.stack(signs))  # (B, n) int8, +-1
        self.register_buffer("indices", torch.stack(indices))  # (B, m) int64

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        return (self.m,)

    @property
    def filters(self) -> torch.Tensor:
        """The Gaussian filters f (B, n), recovered from their spectra."""
        return torch.fft.irfft(self.spectrum, n=self.n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_images(x)
        spectrum = self.spectrum.to(_complex_dtype(x.dtype))
        v = x.reshape(self.batch_size, self.n) * self.signs
        conv = torch.fft.irfft(torch.fft.rfft(v) * spectrum, n=self.n)
        return conv.gather(1, self.indices) * self.scale

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_measurements(y)
        spectrum = self.spectrum.to(_complex_dtype(y.dtype))
        full = y.new_zeros(self.batch_size, self.n).scatter(1, self.indices, y)
        # The transpose of a circular convolution is the circular correlation: conjugate spectrum.
        corr = torch.fft.irfft(torch.fft.rfft(full) * spectrum.conj(), n=self.n)
        return (corr * self.signs * self.scale).reshape(self.batch_size, *self.image_shape)

    def _settings(self) -> dict:
        return {"ratio": self.ratio, "num_measurements": self.m, "normalization": self.normalization,
                "matrix": "partial circulant with random signs (FFT)", **self._random}


class GaussianCS(ForwardOperator):
    """Dense i.i.d. Gaussian matrix, y = scale * G x with G (m, n) ~ N(0, 1), for small images only.

    Same scaling convention as `CompressedSensing` (scale 1 / sqrt(n) or 1). Stores B * m * n floats and
    refuses to build more than `max_entries` of them.
    """

    def __init__(self, image_shape, batch_size: int, ratio: float, seed: int = 0,
                 generator: torch.Generator | None = None, item_offset: int = 0, noise_std: float = 0.0,
                 normalization: str = "sqrt_n", max_entries: int = 2**26):
        super().__init__(image_shape, batch_size, noise_std)
        _cs_sizes(self, ratio, normalization)
        entries = self.batch_size * self.m * self.n
        if entries > max_entries:
            raise RtilError(f"a dense Gaussian CS matrix for batch {self.batch_size}, image {self.image_shape} and "
                            f"ratio {self.ratio} has {entries:,} entries (limit {max_entries:,}); use the "
                            f"circulant operator (task 'cs', CompressedSensing), a smaller batch, or raise max_entries")
        self._random = _random_settings(seed, generator, item_offset)
        matrices = [randn((self.m, self.n), g, torch.float32)
                    for g in item_generators(self.batch_size, seed, generator, item_offset)]
        self.register_buffer("matrix", torch.stack(matrices))  # (B, m, n)

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        return (self.m,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_images(x)
        v = x.reshape(self.batch_size, self.n, 1)
        return torch.bmm(self.matrix.to(x.dtype), v).squeeze(-1) * self.scale

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_measurements(y)
        x = torch.bmm(self.matrix.to(y.dtype).transpose(1, 2), y.unsqueeze(-1)) * self.scale
        return x.reshape(self.batch_size, *self.image_shape)

    def _settings(self) -> dict:
        return {"ratio": self.ratio, "num_measurements": self.m, "normalization": self.normalization,
                "matrix": "dense i.i.d. Gaussian", **self._random}


# ------------------------------------------------------------------------------------------------------- inpainting


class _MaskOperator(ForwardOperator):
    """y = mask * x (image-shaped measurements); the adjoint is the same product. `mask` is (B, 1 or C, H, W)."""

    def _set_mask(self, mask: torch.Tensor) -> None:
        self.register_buffer("mask", mask.to(torch.float32))

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        return self.image_shape

    @property
    def observed_fraction(self) -> torch.Tensor:
        """Fraction of observed pixels per item, (B,)."""
        return self.mask.mean(dim=(1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_images(x)
        return x * self.mask.to(x.dtype)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_measurements(y)
        return y * self.mask.to(y.dtype)

    def _restrict_noise(self, noise: torch.Tensor) -> torch.Tensor:
        return noise * self.mask.to(noise.dtype)  # missing pixels stay exactly 0


class RandomMask(_MaskOperator):
    """Each pixel is observed with probability `ratio` (Bernoulli), the same for all channels."""

    def __init__(self, image_shape, batch_size: int, ratio: float, seed: int = 0,
                 generator: torch.Generator | None = None, item_offset: int = 0, noise_std: float = 0.0):
        super().__init__(image_shape, batch_size, noise_std)
        self.ratio = _check_ratio(ratio)
        self._random = _random_settings(seed, generator, item_offset)
        _, h, w = self.image_shape
        masks = [torch.rand(1, h, w, generator=g) < self.ratio
                 for g in item_generators(self.batch_size, seed, generator, item_offset)]
        self._set_mask(torch.stack(masks))

    def _settings(self) -> dict:
        return {"ratio": self.ratio, "observed_fraction": self.observed_fraction.tolist(), **self._random}


class BoxMask(_MaskOperator):
    """A missing rectangle (the same for all channels); everything else is observed.

    Give either `box_size` (h, w) or an int for a square, or `ratio`, the observed fraction: the box then has
    the image's aspect ratio and about (1 - ratio) of its area. `top_left` (row, col) fixes the position;
    None draws a uniformly random position per item.
    """

    def __init__(self, image_shape, batch_size: int, ratio: float | None = None, box_size=None, top_left=None,
                 seed: int = 0, generator: torch.Generator | None = None, item_offset: int = 0,
                 noise_std: float = 0.0):
        super().__init__(image_shape, batch_size, noise_std)
        _, h, w = self.image_shape
        if (ratio is None) == (box_size is None):
            raise RtilError("BoxMask needs exactly one of ratio (observed fraction) or box_size")
        if ratio is not None:
            side = math.sqrt(1 - _check_ratio(ratio))
            box_h, box_w = round(h * side), round(w * side)
        else:
            box_h, box_w = (box_size, box_size) if isinstance(box_size, int) else (int(s) for s in box_size)
        if not (0 <= box_h <= h and 0 <= box_w <= w):
            raise RtilError(f"box size {(box_h, box_w)} does not fit in an image of size {(h, w)}")
        self.ratio, self.box_size = ratio, (box_h, box_w)
        self._random = _random_settings(seed, generator, item_offset)
        if top_left is not None:
            top, left = (int(t) for t in top_left)
            if not (0 <= top <= h - box_h and 0 <= left <= w - box_w):
                raise RtilError(f"a box of size {(box_h, box_w)} at {(top, left)} does not fit in {(h, w)}")
            positions = [(top, left)] * self.batch_size
        else:
            positions = [(int(torch.randint(0, h - box_h + 1, (), generator=g)),
                          int(torch.randint(0, w - box_w + 1, (), generator=g)))
                         for g in item_generators(self.batch_size, seed, generator, item_offset)]
        self.positions = positions
        mask = torch.ones(self.batch_size, 1, h, w)
        for i, (top, left) in enumerate(positions):
            mask[i, :, top : top + box_h, left : left + box_w] = 0
        self._set_mask(mask)

    def _settings(self) -> dict:
        return {"ratio": self.ratio, "box_size": list(self.box_size), "top_left": [list(p) for p in self.positions],
                "observed_fraction": self.observed_fraction.tolist(), **self._random}


def _read_mask_image(path: Path) -> torch.Tensor:
    from PIL import Image

    if not path.is_file():
        raise RtilError(f"mask image {path} does not exist")
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("L")))


class MaskImage(_MaskOperator):
    """A user-supplied mask: nonzero = observed (or missing, with invert=True), used for every item.

    mask: a tensor/array (H, W), (1 or C, H, W) or (1 or B, 1 or C, H, W), or the path of an image file
    (read as grayscale). Conventions differ: mGANprior mask files mark *missing* pixels with 1 (use invert=True).
    """

    def __init__(self, mask, image_shape, batch_size: int = 1, invert: bool = False, noise_std: float = 0.0):
        super().__init__(image_shape, batch_size, noise_std)
        c, h, w = self.image_shape
        self.source = str(mask) if isinstance(mask, (str, Path)) else "tensor"
        m = _read_mask_image(Path(mask)) if isinstance(mask, (str, Path)) else torch.as_tensor(mask)
        m = m.detach().cpu() != 0
        if invert:
            m = ~m
        while m.dim() < 4:
            m = m.unsqueeze(0)
        if m.dim() != 4 or m.shape[0] not in (1, self.batch_size) or m.shape[1] not in (1, c) \
                or tuple(m.shape[2:]) != (h, w):
            raise RtilError(f"mask of shape {tuple(m.shape)} does not fit images {self.image_shape} "
                            f"with batch size {self.batch_size}")
        if not m.any():
            raise RtilError("the mask observes no pixel (nonzero = observed); did you mean invert=True?")
        self.invert = invert
        self._set_mask(m.expand(self.batch_size, -1, -1, -1).clone())

    def _settings(self) -> dict:
        return {"mask": self.source, "invert": self.invert, "observed_fraction": self.observed_fraction.tolist()}


# ------------------------------------------------------------------------------------------------ super-resolution


def keys_cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys (1981) cubic convolution kernel evaluated at positions t."""
    t = t.abs()
    inner = (a + 2) * t**3 - (a + 3) * t**2 + 1
    outer = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, inner, torch.where(t < 2, outer, torch.zeros_like(t)))


def bicubic_taps(factor: int) -> torch.Tensor:
    """Antialiased bicubic taps (4 * factor,) for down-sampling by an even factor, centred and summing to 1."""
    positions = (torch.arange(4 * factor, dtype=torch.float64) - 2 * factor + 0.5) / factor
    taps = keys_cubic(positions)
    return taps / taps.sum()


def _fold_reflect_padding(padded: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Transpose of reflect padding by `pad` on both sides of `dim`: add each padded entry to its source."""
    length = padded.shape[dim] - 2 * pad
    left, middle, right = padded.split([pad, length, pad], dim=dim)
    # Reflect padding copies x[1..pad] (reversed) to the left and x[L-1-pad..L-2] (reversed) to the right.
    middle = middle.clone()
    middle.narrow(dim, 1, pad).add_(left.flip(dim))
    middle.narrow(dim, length - 1 - pad, pad).add_(right.flip(dim))
    return middle


class Downsample(ForwardOperator):
    """Down-sampling by `factor` in {1, 2, 4, 8, 16}: (B, C, H, W) -> (B, C, H / factor, W / factor).

    kind="bicubic": the antialiased Keys (a = -0.5) kernel of PULSE/ILO, 4 * factor taps, separable
    (rows then columns), stride `factor`, reflect padding of 1.5 * factor on each side; each output pixel is
    centred on its factor x factor block. Unlike PULSE/ILO, factor 1 is the identity (theirs shifts by half
    a pixel). kind="area": average pooling over factor x factor blocks. The adjoint is the exact transpose,
    reflect padding included.
    """

    def __init__(self, image_shape, batch_size: int, factor: int, kind: str = "bicubic", noise_std: float = 0.0):
        super().__init__(image_shape, batch_size, noise_std)
        _, h, w = self.image_shape
        if factor not in DOWNSAMPLE_FACTORS:
            raise RtilError(f"down-sampling factor must be one of {DOWNSAMPLE_FACTORS}, got {factor}")
        if h % factor or w % factor:
            raise RtilError(f"factor {factor} does not divide the image size {(h, w)}")
        if kind not in ("bicubic", "area"):
            raise RtilError(f"kind must be 'bicubic' or 'area', got {kind!r}")
        self.factor, self.kind = int(factor), kind
        self.pad = 3 * factor // 2 if factor > 1 else 0
        if kind == "bicubic" and self.pad >= min(h, w):
            raise RtilError(f"bicubic down-sampling by {factor} needs images larger than {self.pad} pixels, "
                            f"got {(h, w)}")
        self.register_buffer("taps", bicubic_taps(factor).to(torch.float32) if factor > 1 else torch.ones(1))

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        c, h, w = self.image_shape
        return (c, h // self.factor, w // self.factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_images(x)
        if self.factor == 1:
            return x
        if self.kind == "area":
            return F.avg_pool2d(x, self.factor)
        c, h, w = self.image_shape
        f, p, k = self.factor, self.pad, self.taps.to(x.dtype)
        v = x.reshape(self.batch_size * c, 1, h, w)
        v = F.conv2d(F.pad(v, (0, 0, p, p), mode="reflect"), k.view(1, 1, -1, 1), stride=(f, 1))
        v = F.conv2d(F.pad(v, (p, p, 0, 0), mode="reflect"), k.view(1, 1, 1, -1), stride=(1, f))
        return v.reshape(self.batch_size, *self.measurement_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_measurements(y)
        if self.factor == 1:
            return y
        f = self.factor
        if self.kind == "area":
            return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1) / f**2
        c, h, w = self.image_shape
        p, k = self.pad, self.taps.to(y.dtype)
        # The forward steps transposed, in reverse order: strided conv -> transposed conv, padding -> folding.
        v = y.reshape(self.batch_size * c, 1, h // f, w // f)
        v = _fold_reflect_padding(F.conv_transpose2d(v, k.view(1, 1, 1, -1), stride=(1, f)), p, dim=-1)
        v = _fold_reflect_padding(F.conv_transpose2d(v, k.view(1, 1, -1, 1), stride=(f, 1)), p, dim=-2)
        return v.reshape(self.batch_size, *self.image_shape)

    def _settings(self) -> dict:
        return {"factor": self.factor, "kind": self.kind}


# ------------------------------------------------------------------------------------------------------- denoising


class Identity(ForwardOperator):
    """y = x (+ noise_std * e in `measure`)."""

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        return self.image_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_images(x)
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_measurements(y)
        return y


class Denoise(Identity):
    """Denoising: identity operator with Gaussian noise of known standard deviation `sigma` (in [-1, 1] units;
    sigma_255 on the 0..255 scale is 2 * sigma_255 / 255). clip=True clips noisy measurements to [-1, 1],
    as in the ILO denoising experiments."""

    def __init__(self, image_shape, batch_size: int, sigma: float, clip: bool = False):
        super().__init__(image_shape, batch_size, noise_std=sigma)
        self.clip = clip

    @property
    def sigma(self) -> float:
        return self.noise_std

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        y = super().measure(x, generator)
        return y.clamp(-1, 1) if self.clip else y

    def _settings(self) -> dict:
        return {"sigma": self.sigma, "clip": self.clip}


# --------------------------------------------------------------------------------------------------------- factory

_TASK_OPTIONS = {
    "cs": {"generator", "item_offset", "noise_std", "normalization"},
    "cs_gaussian": {"generator", "item_offset", "noise_std", "normalization", "max_entries"},
    "inpaint": {"generator", "item_offset", "noise_std"},
    "inpaint_box": {"generator", "item_offset", "noise_std", "box_size", "top_left"},
    "sr": {"noise_std", "kind"},
    "denoise": {"clip"},
}


def build_operator(task: str, image_shape, batch_size: int, ratio: float | None = None, factor: int | None = None,
                   sigma: float | None = None, seed: int = 0, **kw) -> ForwardOperator:
    """Build the operator for `task` in {"cs", "cs_gaussian", "inpaint", "inpaint_box", "sr", "denoise"}.

    ratio: measurement ratio m/n (cs) or observed pixel fraction (inpaint); factor: down-sampling factor (sr);
    sigma: noise standard deviation in [-1, 1] units (denoise). Extra keyword options go to the operator.
    """
    if task not in _TASK_OPTIONS:
        raise RtilError(f"unknown task {task!r}; choose one of {sorted(_TASK_OPTIONS)}")
    unknown = set(kw) - _TASK_OPTIONS[task]
    if unknown:
        raise RtilError(f"task {task!r} does not take option(s) {sorted(unknown)}; "
                        f"it takes {sorted(_TASK_OPTIONS[task])}")
    takes = {"ratio": task in ("cs", "cs_gaussian", "inpaint", "inpaint_box"), "factor": task == "sr",
             "sigma": task == "denoise"}
    for name, value in (("ratio", ratio), ("factor", factor), ("sigma", sigma)):
        if value is not None and not takes[name]:
            raise RtilError(f"task {task!r} does not take {name}")
    if task in ("cs", "cs_gaussian", "inpaint"):
        _check_ratio(ratio, f"ratio of task {task!r}")
    if task == "sr" and factor is None:
        raise RtilError(f"task 'sr' needs factor, one of {DOWNSAMPLE_FACTORS}")
    if task == "denoise" and sigma is None:
        raise RtilError("task 'denoise' needs sigma (noise standard deviation in [-1, 1] units)")

    if task == "cs":
        return CompressedSensing(image_shape, batch_size, ratio, seed=seed, **kw)
    if task == "cs_gaussian":
        return GaussianCS(image_shape, batch_size, ratio, seed=seed, **kw)
    if task == "inpaint":
        return RandomMask(image_shape, batch_size, ratio, seed=seed, **kw)
    if task == "inpaint_box":
        return BoxMask(image_shape, batch_size, ratio=ratio, seed=seed, **kw)
    if task == "sr":
        return Downsample(image_shape, batch_size, factor, **kw)
    return Denoise(image_shape, batch_size, sigma, **kw)

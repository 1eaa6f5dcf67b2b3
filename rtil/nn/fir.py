"""FIR resampling (the StyleGAN2 [1, 3, 3, 1] filter) with depthwise convolutions.

All functions take images (N, C, H, W) and a 2-D filter (kh, kw) that sums to 1.
"""

import torch
import torch.nn.functional as F


def fir_filter(taps=(1, 3, 3, 1), device=None) -> torch.Tensor:
    """Separable 2-D FIR filter (k, k) from 1-D taps, normalised to sum 1."""
    t = torch.as_tensor(taps, dtype=torch.float32, device=device)
    f = torch.outer(t, t)
    return f / f.sum()


def _depthwise(x: torch.Tensor, f: torch.Tensor, gain: float) -> torch.Tensor:
    c = x.shape[1]
    # conv2d computes correlation; flip so that this is a true convolution with f.
    weight = (f.flip([0, 1]) * gain).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return F.conv2d(x, weight, groups=c)


def filter2d(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int, int, int], gain: float = 1.0) -> torch.Tensor:
    """Pad (left, right, top, bottom) with zeros, then convolve every channel with `f`."""
    return _depthwise(F.pad(x, pad), f, gain)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x up-sampling: zero insertion then FIR filtering with gain 4. (N, C, H, W) -> (N, C, 2H, 2W)."""
    n, c, h, w = x.shape
    k = f.shape[0]
    weight = (f * 4).to(x.dtype)[None, None].expand(c, 1, k, k)
    # A stride-2 transposed convolution is zero insertion followed by a full convolution with
    # `weight` (length 2H + k - 2); keeping [lo, lo + 2H) matches padding (k // 2, (k - 1) // 2 - 1).
    y = F.conv_transpose2d(x, weight, stride=2, groups=c)
    lo = (k - 1) // 2
    return y[:, :, lo : lo + 2 * h, lo : lo + 2 * w]


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x down-sampling: FIR filtering then keeping every second pixel. (N, C, H, W) -> (N, C, H/2, W/2)."""
    k = f.shape[0]
    p = k - 2
    lo, hi = (p + 1) // 2, p // 2
    c = x.shape[1]
    weight = f.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, k, k)
    return F.conv2d(F.pad(x, (lo, hi, lo, hi)), weight, stride=2, groups=c)

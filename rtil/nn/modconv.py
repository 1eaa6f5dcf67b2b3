"""Modulated convolution with optional demodulation (StyleGAN2), fused and non-fused forms."""

import torch
import torch.nn.functional as F

from rtil.nn.fir import filter2d


def _upconv(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, groups: int) -> torch.Tensor:
    """Zero-insertion 2x up-sampling, k x k convolution, FIR low-pass (gain 4): (H, W) -> (2H, 2W).

    `weight` is (O, I/groups, k, k). Implemented as a stride-2 transposed convolution (output
    2H + k - 2) followed by the FIR filter with the padding that crops the result to 2H.
    """
    o, i, k, _ = weight.shape
    # conv_transpose2d wants (I, O/groups, k, k); per group, swap the in/out axes.
    w = weight.reshape(groups, o // groups, i, k, k).transpose(1, 2).reshape(groups * i, o // groups, k, k)
    y = F.conv_transpose2d(x, w, stride=2, groups=groups)
    p = (f.shape[0] - 2) - (k - 1)
    pad0, pad1 = (p + 1) // 2 + 1, p // 2 + 1
    return filter2d(y, f, (pad0, pad1, pad0, pad1), gain=4.0)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: bool = False,
    resample_filter: torch.Tensor | None = None,
    fused: bool = False,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Modulated convolution.

    x: (N, I, H, W); weight: (O, I, k, k) already multiplied by its equalized-lr gain;
    styles: (N, I) per-sample input scales; noise: optional tensor added after demodulation,
    broadcastable to the output. Returns (N, O, H, W), or (N, O, 2H, 2W) with `up`.

    The fused form folds the styles into per-sample weights and runs one grouped convolution;
    the non-fused form scales the activations instead and shares one weight across the batch
    (faster to train). Both compute the same function.
    """
    n, i, h, w = x.shape
    o, _, k, _ = weight.shape
    if up and resample_filter is None:
        raise ValueError("up-sampling modulated conv needs a resample_filter")
    dcoefs = None
    if demodulate:
        # sum_{i,kh,kw} (W[o,i] * s[n,i])^2 = sum_i s[n,i]^2 * |W[o,i]|^2, a (N, I) x (I, O) product:
        # the same value as on the modulated weights, without materialising (N, O, I, k, k).
        dcoefs = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)  # (N, O)

    if fused:
        wmod = weight[None] * styles[:, None, :, None, None]
        if dcoefs is not None:
            wmod = wmod * dcoefs[:, :, None, None, None]
        wmod = wmod.reshape(n * o, i, k, k).to(x.dtype)
        xg = x.reshape(1, n * i, h, w)
        if up:
            y = _upconv(xg, wmod, resample_filter, groups=n)
        else:
            y = F.conv2d(xg, wmod, padding=k // 2, groups=n)
        y = y.reshape(n, o, *y.shape[2:])
    else:
        xs = x * styles[:, :, None, None].to(x.dtype)
        wd = weight.to(x.dtype)
        y = _upconv(xs, wd, resample_filter, groups=1) if up else F.conv2d(xs, wd, padding=k // 2)
        if dcoefs is not None:
            y = y * dcoefs[:, :, None, None].to(y.dtype)
    if noise is not None:
        y = y + noise.to(y.dtype)
    return y

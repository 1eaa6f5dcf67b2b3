"""PGGAN building blocks: equalized-lr ("wscale") layers and 2x resampling.

PGGAN's equalized learning rate (Karras et al. 2018, and the RTIL authors' port) stores weights
N(0, 1) and multiplies them at run time by gain / sqrt(fan_in); the bias is stored raw and added
after the scaled weights. (rtil.nn.EqualConv2d instead puts the sqrt(2) gain after the
activation, which scales the bias too, so PGGAN weights would not load into it unchanged.)
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

HE_GAIN = math.sqrt(2.0)
UPSAMPLE_MODES = ("nearest", "bilinear")
DOWNSAMPLE_MODES = ("avgpool", "bilinear")


class WScaleConv2d(nn.Module):
    """k x k convolution with "same" padding, (N, I, H, W) -> (N, O, H, W); weight scale gain / sqrt(I k k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = HE_GAIN):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.weight.shape[-1] // 2)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"in={i}, out={o}, k={k}, scale={self.scale:.4g}"


class WScaleLinear(nn.Module):
    """Fully connected layer (N, I) -> (N, O); weight scale gain / sqrt(I)."""

    def __init__(self, in_features: int, out_features: int, gain: float = HE_GAIN):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, scale={self.scale:.4g}"


class LatentTo4x4(nn.Module):
    """Dense layer from a latent to a 4x4 feature map: z (N, z_dim) -> (N, C, 4, 4).

    The weight is stored as (z_dim, C, 4, 4), the layout of a 4x4 transposed convolution of a
    1x1 input (which computes the same thing as the official dense layer reshaped to (C, 4, 4));
    it is scaled by `scale` and one bias per channel is added.
    """

    def __init__(self, z_dim: int, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(z_dim, channels, 4, 4))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.scale = scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z @ (self.weight * self.scale).flatten(1)
        return x.view(z.shape[0], -1, 4, 4) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"z_dim={self.weight.shape[0]}, channels={self.weight.shape[1]}, scale={self.scale:.4g}"


def upsample2x(x: torch.Tensor, mode: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 2H, 2W): 'nearest' (pixel repeat) or 'bilinear' (align_corners=False)."""
    if mode == "nearest":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    if mode == "bilinear":
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    raise ValueError(f"upsample mode must be one of {UPSAMPLE_MODES}, got {mode!r}")


def downsample2x(x: torch.Tensor, mode: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H/2, W/2): 'avgpool' (2x2 mean) or 'bilinear' (x0.5, align_corners=False).

    For an exact factor of 2 the two are the same function: bilinear sampling at the centre of
    every 2x2 cell averages its four pixels.
    """
    if mode == "avgpool":
        return F.avg_pool2d(x, 2)
    if mode == "bilinear":
        return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    raise ValueError(f"downsample mode must be one of {DOWNSAMPLE_MODES}, got {mode!r}")

"""Layers with equalized learning rate (Karras et al.): weights are stored N(0, 1) / lr_mul and
scaled at run time by lr_mul / sqrt(fan_in); biases are stored raw and scaled by lr_mul."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from rtil.nn.fir import filter2d, fir_filter

LRELU_GAIN = math.sqrt(2.0)


def bias_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, gain: float = LRELU_GAIN) -> torch.Tensor:
    """leaky_relu(x + bias, 0.2) * gain, with `bias` (C,) broadcast over dim 1."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    return F.leaky_relu(x, 0.2) * gain


class EqualLinear(nn.Module):
    """Fully connected layer (N, in) -> (N, out), optionally followed by leaky ReLU x sqrt(2)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return bias_leaky_relu(F.linear(x, w), b)
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, lr_mul={self.lr_mul}, act={self.activation}"


class EqualConv2d(nn.Module):
    """k x k convolution (N, in, H, W) -> (N, out, H', W') with equalized lr.

    `down=True` applies the [1, 3, 3, 1] FIR low-pass before a stride-2 convolution (H' = H / 2),
    as in the StyleGAN2 discriminator. Otherwise the padding keeps the size ("same").
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: bool = False, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.activation = activation
        self.down = down
        self.kernel_size = kernel_size
        if down:
            self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        k = self.kernel_size
        if self.down:
            # Filter then strided conv; the padding makes the pair equal to "filter, downsample, conv".
            p = (self.resample_filter.shape[0] - 2) + (k - 1)
            x = filter2d(x, self.resample_filter, ((p + 1) // 2, p // 2, (p + 1) // 2, p // 2))
            y = F.conv2d(x, w, stride=2)
        else:
            y = F.conv2d(x, w, padding=k // 2)
        if self.activation:
            return bias_leaky_relu(y, self.bias)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1).to(y.dtype)
        return y

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"in={i}, out={o}, k={k}, down={self.down}, act={self.activation}"

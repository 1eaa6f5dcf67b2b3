"""Pure-PyTorch building blocks shared by the StyleGAN2 and PGGAN models."""

from rtil.nn.equalized import EqualConv2d, EqualLinear, bias_leaky_relu
from rtil.nn.fir import downsample2d, filter2d, fir_filter, upsample2d
from rtil.nn.layers import MinibatchStdDev, at_least_float32, normalize_2nd_moment
from rtil.nn.modconv import modulated_conv2d

__all__ = [
    "EqualConv2d",
    "EqualLinear",
    "MinibatchStdDev",
    "at_least_float32",
    "bias_leaky_relu",
    "downsample2d",
    "filter2d",
    "fir_filter",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "upsample2d",
]

"""Normalisation layers: pixel norm (`normalize_2nd_moment`, used as a function by both generators) and
minibatch standard deviation."""

import torch
from torch import nn

from rtil.errors import RtilError


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, or unchanged when it is float64: half-precision values (autocast) are summed in float32,
    and a model run in float64 (the solver regression tests) stays in float64."""
    return x if x.dtype == torch.float64 else x.float()


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) along `dim` (StyleGAN's z normalisation, PGGAN's pixel norm)."""
    return x * torch.rsqrt(x.square().mean(dim=dim, keepdim=True) + eps)


class MinibatchStdDev(nn.Module):
    """Appends `num_features` channels holding the mean standard deviation of the features
    across groups of `group_size` samples. (N, C, H, W) -> (N, C + num_features, H, W).

    Groups are strided (sample n is in group slot n // (N / G)), as in the official StyleGAN2
    code; the group is min(group_size, N) and must divide N.
    """

    def __init__(self, group_size: int = 4, num_features: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g != 0:
            raise RtilError(f"minibatch-stddev group size {g} must divide the per-device batch size {n}; "
                            f"choose a batch size that is a multiple of {g} or change mbstd_group_size")
        f = self.num_features
        y = at_least_float32(x.reshape(g, n // g, f, c // f, h, w))
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (N/G, F, C/F, H, W)
        y = y.mean(dim=(2, 3, 4))  # (N/G, F)
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)  # (N, F, H, W)
        return torch.cat([x, y], dim=1)

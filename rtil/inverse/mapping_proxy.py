"""The Gaussianised latent space of a StyleGAN2 generator (PULSE's and ILO's "mapping proxy").

The mapping network ends with a leaky ReLU (slope 0.2), so its outputs w are far from Gaussian, but
u = leaky_relu^{-1}(w) (slope 1 / 0.2 on the negative side) is close to Gaussian per dimension. With the
per-dimension mean and standard deviation of u over many samples w = mapping(z),

    w = leaky_relu(std * v + mean, 0.2),     v ~ N(0, I)

gives w distributed roughly like the mapping network's outputs, and a latent v on the sphere of radius
sqrt(w_dim) stays in the typical set. The fit is made FROM THE GENERATOR'S OWN MAPPING NETWORK (never from a
stored file: the RTIL authors reused FFHQ-1024's fit for their retrained 256-px networks). Our mapping's last
layer multiplies by sqrt(2) after the leaky ReLU; as leaky ReLU is positively homogeneous, that gain is
absorbed into mean and std, and the proxy is exact for it.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rtil.errors import RtilError
from rtil.inverse.randomness import randn

SLOPE = 0.2


def leaky_relu_inverse(w: torch.Tensor, slope: float = SLOPE) -> torch.Tensor:
    """The inverse of leaky_relu(., slope): negative entries are divided by `slope`."""
    return torch.where(w >= 0, w, w / slope)


@dataclass
class MappingProxy:
    """w = leaky_relu(std * v + mean, slope): Gaussianised latents v (..., w_dim) -> styles w (..., w_dim).

    mean, std: (w_dim,) statistics of leaky_relu^{-1}(mapping(z)); num_samples, seed: how they were fitted.
    """

    mean: torch.Tensor
    std: torch.Tensor
    num_samples: int
    seed: int
    slope: float = SLOPE

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(v * self.std + self.mean, self.slope)

    def inverse(self, w: torch.Tensor) -> torch.Tensor:
        """Styles w (..., w_dim) -> Gaussianised latents v."""
        return (leaky_relu_inverse(w, self.slope) - self.mean) / self.std

    def describe(self) -> dict:
        return {"fitted_from": "this generator's mapping network", "num_samples": self.num_samples,
                "seed": self.seed, "slope": self.slope, "mean_of_mean": float(self.mean.mean()),
                "mean_of_std": float(self.std.mean())}


@torch.no_grad()
def fit_mapping_proxy(G, num_samples: int = 20000, seed: int = 0, batch_size: int = 4096) -> MappingProxy:
    """Fit the proxy of generator G from `num_samples` draws z ~ N(0, I) (seeded), in float64."""
    if not isinstance(getattr(G, "mapping", None), torch.nn.Module):
        raise RtilError("the mapping proxy needs a generator with a mapping network (a StyleGAN2): it Gaussianises "
                        "the mapping network's output")
    if num_samples < 2:
        raise RtilError(f"the mapping proxy needs at least 2 samples, got {num_samples}")
    device = G.mapping.w_avg.device
    gen = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(G.w_dim, dtype=torch.float64, device=device)
    total_sq = torch.zeros_like(total)
    done = 0
    while done < num_samples:
        n = min(batch_size, num_samples - done)
        z = randn((n, G.z_dim), gen, torch.float32, device)
        u = leaky_relu_inverse(G.mapping(z)).double()
        total += u.sum(0)
        total_sq += u.pow(2).sum(0)
        done += n
    mean = total / num_samples
    var = (total_sq - num_samples * mean.pow(2)) / (num_samples - 1)
    std = var.clamp(min=1e-12).sqrt()
    return MappingProxy(mean=mean.float(), std=std.float(), num_samples=num_samples, seed=int(seed))

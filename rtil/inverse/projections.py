"""Projections for the solvers: onto l1 balls (ILO's constraint on deviations) and spheres (latents, noises)."""

import math

import torch

from rtil.errors import RtilError


def _per_sample(value, batch_size: int, like: torch.Tensor) -> torch.Tensor:
    """A scalar or (B,) value as a (B, 1) tensor on the device and dtype of `like`."""
    v = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if v.dim() == 0:
        v = v.expand(batch_size)
    if v.shape != (batch_size,):
        raise RtilError(f"expected a scalar or one value per sample ({batch_size},), got shape {tuple(v.shape)}")
    return v.reshape(batch_size, 1)


def project_l1_ball(x: torch.Tensor, radius, center: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean projection of each sample x[i] onto {p : ||p - center[i]||_1 <= radius[i]}.

    x: (B, ...) any shape, flattened per sample; radius: float or (B,) tensor, >= 0; center: like x, or None
    for the origin. Sort-based algorithm of Duchi et al. (2008), O(n log n) per sample. Points already inside
    are returned unchanged, radius 0 gives the center. Returns a new tensor (differentiable almost everywhere).
    """
    b = x.shape[0]
    r = _per_sample(radius, b, x)
    if (r < 0).any():
        raise RtilError(f"l1-ball radius must be >= 0, got {radius}")
    c = torch.zeros_like(x) if center is None else center.expand_as(x)
    d = (x - c).reshape(b, -1)
    magnitude = d.abs()
    inside = magnitude.sum(1, keepdim=True) <= r

    # The projection is sign(d) * max(|d| - theta, 0); theta is set by the rho largest magnitudes.
    u = magnitude.sort(dim=1, descending=True).values
    cumulative = u.cumsum(dim=1)
    k = torch.arange(1, u.shape[1] + 1, device=x.device, dtype=x.dtype)
    rho = ((u * k > cumulative - r) * k).amax(dim=1, keepdim=True).clamp(min=1)
    theta = ((cumulative.gather(1, rho.long() - 1) - r) / rho).clamp(min=0)
    p = c.reshape(b, -1) + d.sign() * (magnitude - theta).clamp(min=0)
    p = torch.where(r == 0, c.reshape(b, -1), p)
    return torch.where(inside, x.reshape(b, -1), p).reshape(x.shape)


@torch.no_grad()
def project_l1_ball_(x: torch.Tensor, radius, center: torch.Tensor | None = None) -> torch.Tensor:
    """In-place `project_l1_ball` (e.g. on a parameter after an optimiser step); returns x."""
    return x.copy_(project_l1_ball(x, radius, center))


def project_to_sphere(x: torch.Tensor, dim=-1, radius=None, eps: float = 1e-12) -> torch.Tensor:
    """Rescale x so that its Euclidean norm over `dim` (int or tuple) is `radius`, by default sqrt(d) with
    d the number of entries reduced over (the typical norm of N(0, I) vectors: ILO/PULSE latents and noises).
    radius may be a tensor broadcastable to the reduced norms (keepdim shape), e.g. the norms at round start."""
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if radius is None:
        radius = math.sqrt(math.prod(x.shape[i] for i in dims))
    norm = torch.linalg.vector_norm(x, dim=dims, keepdim=True).clamp(min=eps)
    return x * (radius / norm)


@torch.no_grad()
def project_to_sphere_(x: torch.Tensor, dim=-1, radius=None, eps: float = 1e-12) -> torch.Tensor:
    """In-place `project_to_sphere`; returns x."""
    return x.copy_(project_to_sphere(x, dim, radius, eps))


def norms(tensors, dims) -> list[torch.Tensor]:
    """The Euclidean norm of each tensor over `dims` (keepdim shape), e.g. to keep it on that sphere."""
    return [torch.linalg.vector_norm(t.detach(), dim=dims, keepdim=True) for t in tensors]

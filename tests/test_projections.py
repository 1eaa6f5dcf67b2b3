import math

import pytest
import torch

from rtil.errors import RtilError
from rtil.inverse.projections import project_l1_ball, project_l1_ball_, project_to_sphere, project_to_sphere_


def soft_threshold(v, tau):
    return v.sign() * (v.abs() - tau).clamp(min=0)


def reference_threshold(d, radius, iterations=200):
    """Bisection on tau >= 0 such that ||soft_threshold(d, tau)||_1 = radius (for ||d||_1 > radius)."""
    lo, hi = 0.0, float(d.abs().max())
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if soft_threshold(d, mid).abs().sum() > radius:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_matches_bisection_reference_and_kkt():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 7, generator=gen, dtype=torch.float64)
    center = torch.randn(4, 3, 5, 7, generator=gen, dtype=torch.float64) * 0.1
    radius = torch.tensor([1.0, 5.0, 20.0, 0.3], dtype=torch.float64)
    p = project_l1_ball(x, radius, center)
    assert p.shape == x.shape
    for i in range(4):
        d = (x[i] - center[i]).flatten()
        assert d.abs().sum() > radius[i]  # outside: the projection is on the sphere
        tau = reference_threshold(d, float(radius[i]))
        expected = center[i].flatten() + soft_threshold(d, tau)
        assert torch.allclose(p[i].flatten(), expected, atol=1e-9)
        # KKT: ||p - c||_1 = r and p - c = soft_threshold(x - c, tau) for some tau >= 0.
        assert torch.isclose((p[i] - center[i]).abs().sum(), radius[i], atol=1e-9)
        dp = (p[i] - center[i]).flatten()
        active = dp != 0
        taus = (d - dp)[active] * d[active].sign()
        assert taus.min() >= 0 and torch.allclose(taus, taus.mean().expand_as(taus), atol=1e-9)
        assert (d[~active].abs() <= taus.mean() + 1e-9).all()


def test_inside_unchanged_radius_zero_and_origin_center():
    x = torch.tensor([[0.1, -0.2, 0.3], [1.0, 2.0, -3.0], [4.0, 0.0, 1.0]])
    p = project_l1_ball(x, torch.tensor([1.0, 6.0, 0.0]))
    assert torch.equal(p[0], x[0]) and torch.equal(p[1], x[1])  # inside / on the boundary: exact
    assert torch.equal(p[2], torch.zeros(3))
    center = torch.full_like(x, 0.5)
    assert torch.equal(project_l1_ball(x, 0.0, center), center)
    # By hand: [3, -2] with r = 3 has tau = 1 (5 - 2 tau = 3); [10, 0.5] with r = 2 has tau = 8 (only 10 survives).
    q = project_l1_ball(torch.tensor([[3.0, -2.0], [10.0, 0.5]]), torch.tensor([3.0, 2.0]))
    assert torch.allclose(q, torch.tensor([[2.0, -1.0], [2.0, 0.0]]))


def test_in_place_and_errors():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 50, generator=gen)
    expected = project_l1_ball(x, 2.0)
    param = torch.nn.Parameter(x.clone())
    out = project_l1_ball_(param, 2.0)
    assert out is param and torch.allclose(param.data, expected)
    with pytest.raises(RtilError, match="radius"):
        project_l1_ball(x, -1.0)
    with pytest.raises(RtilError, match="one value per sample"):
        project_l1_ball(x, torch.ones(2))


def test_project_to_sphere():
    gen = torch.Generator().manual_seed(2)
    latents = torch.randn(2, 14, 512, generator=gen)
    p = project_to_sphere(latents, dim=-1)
    assert torch.allclose(torch.linalg.vector_norm(p, dim=-1), torch.full((2, 14), math.sqrt(512)))
    noise = torch.randn(2, 1, 8, 8, generator=gen)
    q = project_to_sphere(noise, dim=(1, 2, 3))
    assert torch.allclose(q.flatten(1).norm(dim=1), torch.full((2,), 8.0))
    radius = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)
    assert torch.allclose(project_to_sphere(noise, (1, 2, 3), radius).flatten(1).norm(dim=1), torch.tensor([1.0, 3.0]))
    project_to_sphere_(noise, dim=(2, 3))
    assert torch.allclose(torch.linalg.vector_norm(noise, dim=(2, 3)), torch.full((2, 1), 8.0))

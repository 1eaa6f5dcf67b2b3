"""deepinv physics as rtil operators: the same measurements as rtil's own operators where the two define the
same operator, adjointness, noise, and rtil solvers running on them."""

import pytest
import torch

from conftest import tiny_stylegan2
from rtil.errors import RtilError
from rtil.inverse.csgm import CSGM
from rtil.inverse.deepinv_physics import DeepinvPhysics
from rtil.inverse.operators import Downsample, GaussianCS, MaskImage

dinv = pytest.importorskip("deepinv")
SHAPE = (1, 16, 16)


def physics_cases():
    torch.manual_seed(0)
    return {"cs": dinv.physics.CompressedSensing(m=64, img_size=SHAPE),
            "inpainting": dinv.physics.Inpainting(img_size=SHAPE, mask=0.5),
            "downsampling": dinv.physics.Downsampling(img_size=SHAPE, factor=2, filter="bicubic")}


def test_deepinv_inpainting_measures_like_our_mask_operator():
    physics = physics_cases()["inpainting"]
    ours = MaskImage(physics.mask[0, 0], SHAPE, batch_size=3)
    theirs = DeepinvPhysics(physics, SHAPE, batch_size=3)
    x = torch.rand(3, *SHAPE) * 2 - 1
    assert torch.equal(theirs(x), ours(x)) and torch.equal(theirs.adjoint(ours(x)), ours.adjoint(ours(x)))


def test_deepinv_box_downsampling_measures_like_our_area_downsampling():
    physics = dinv.physics.Downsampling(img_size=SHAPE, factor=2, filter=torch.ones(1, 1, 2, 2) / 4)
    x = torch.rand(3, *SHAPE) * 2 - 1
    assert torch.equal(DeepinvPhysics(physics, SHAPE, 3)(x), Downsample(SHAPE, 3, factor=2, kind="area")(x))


def test_deepinv_compressed_sensing_measures_like_our_gaussian_cs_with_its_matrix():
    physics = physics_cases()["cs"]
    ours = GaussianCS(SHAPE, 1, ratio=64 / 256)
    ours.matrix.copy_(physics._A[None] / ours.scale)  # deepinv's draw in our operator
    x = torch.rand(1, *SHAPE) * 2 - 1
    torch.testing.assert_close(DeepinvPhysics(physics, SHAPE, 1)(x), ours(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["cs", "inpainting", "downsampling"])
def test_deepinv_physics_are_the_same_linear_maps_and_adjoint(name):
    physics = physics_cases()[name]
    operator = DeepinvPhysics(physics, SHAPE, batch_size=2)
    x = torch.randn(2, *SHAPE)
    y = torch.randn(2, *operator.measurement_shape)
    assert torch.equal(operator(x), physics.A(x))
    torch.testing.assert_close((operator(x) * y).sum(), (x * operator.adjoint(y)).sum(), rtol=1e-4, atol=1e-4)


def test_noise_models_and_bad_physics():
    noisy = dinv.physics.Inpainting(img_size=SHAPE, mask=0.5, noise_model=dinv.physics.GaussianNoise(sigma=0.1))
    assert DeepinvPhysics(noisy, SHAPE, 2).noise_std == pytest.approx(0.1)
    poisson = dinv.physics.Inpainting(img_size=SHAPE, mask=0.5, noise_model=dinv.physics.PoissonNoise(gain=0.1))
    with pytest.raises(RtilError, match="not Gaussian"):
        DeepinvPhysics(poisson, SHAPE, 2)
    assert DeepinvPhysics(poisson, SHAPE, 2, noise_std=0.05).noise_std == 0.05
    with pytest.raises(RtilError, match="expects images"):
        DeepinvPhysics(noisy, SHAPE, 2)(torch.zeros(3, *SHAPE))


@pytest.mark.parametrize("name", ["cs", "inpainting", "downsampling"])
def test_rtil_solvers_run_on_deepinv_physics(name):
    G = tiny_stylegan2(16, 1).eval().requires_grad_(False)
    operator = DeepinvPhysics(physics_cases()[name], SHAPE, batch_size=2)
    with torch.no_grad():
        x = G(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), noise_mode="const")
    y = operator(x)
    result = CSGM(steps=30, restarts=1).solve(G, operator, y)
    assert result.images.shape == x.shape and torch.isfinite(result.measurement_loss).all()
    assert result.measurement_loss.mean() < ((operator(torch.zeros_like(x)) - y) ** 2).flatten(1).mean(1).mean()

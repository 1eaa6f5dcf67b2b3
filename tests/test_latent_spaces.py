"""The latent-space layer: one interface over both families, checked states at cuts, one fusion rule."""

import pytest
import torch

from conftest import tiny_stylegan2
from rtil.errors import RtilError
from rtil.inverse.latent_spaces import SPACES, latent_space, prepare_proxy
from rtil.inverse.randomness import image_generators
from rtil.latents import fuse_states
from rtil.models.pggan import Generator as PGGAN
from rtil.models.protocol import CutPointGenerator


def generators():
    torch.manual_seed(0)
    return {"stylegan2": tiny_stylegan2(16, 1).eval(),
            "pggan": PGGAN(z_dim=16, resolution=16, img_channels=1, channel_base=128, channel_max=16).eval()}


@pytest.mark.parametrize("family", ["stylegan2", "pggan"])
def test_both_families_are_cut_point_generators(family):
    assert isinstance(generators()[family], CutPointGenerator)


@pytest.mark.parametrize("family", ["stylegan2", "pggan"])
@pytest.mark.parametrize("name", SPACES)
def test_every_space_draws_rows_and_renders_images_of_the_generator(family, name):
    G = generators()[family]
    space = latent_space(G, name, proxy=prepare_proxy(G, 200, 0))
    latent, noises = space.draw(image_generators(3, seed=0), restarts=2)
    assert latent.ndim == 3 and latent.shape[0] == 6
    assert len(noises) == len(G.noise_shapes())
    assert G.synthesize(space.start_state(latent, noises)).shape == (6, 1, 16, 16)
    rows = G.num_ws if family == "stylegan2" and name in ("w+", "gaussian-w+") else 1  # a PGGAN has only z
    assert tuple(latent.shape[1:]) == (rows, 16)
    assert space.name == (name if family == "stylegan2" else "z")


def test_an_image_gets_the_same_start_whatever_its_batch():
    G = generators()["stylegan2"]
    space = latent_space(G, "gaussian-w+", proxy=prepare_proxy(G, 200, 0), noise_start="random")
    batch, batch_noises = space.draw(image_generators(3, seed=4), restarts=2)
    alone, alone_noises = space.draw(image_generators(1, seed=4, item_offset=2), restarts=2)
    assert torch.equal(batch[[2, 5]], alone) and torch.equal(batch_noises[0][[2, 5]], alone_noises[0])


def test_the_gaussianised_space_needs_the_proxy():
    with pytest.raises(RtilError, match="mapping proxy"):
        latent_space(generators()["stylegan2"], "gaussian-w+")
    with pytest.raises(RtilError, match="latent space must be"):
        latent_space(generators()["stylegan2"], "s-space")


@pytest.mark.parametrize("family", ["stylegan2", "pggan"])
def test_state_at_rebuilds_a_state_and_refuses_wrong_shapes(family):
    G = generators()[family]
    space = latent_space(G, "w+")
    latent, noises = space.draw(image_generators(2, seed=0))
    state = G.advance(space.start_state(latent, noises), 2)
    rebuilt = G.state_at(2, state.x, state.ws, state.noises, state.img)
    assert torch.equal(G.synthesize(rebuilt), G.synthesize(state))
    with pytest.raises(RtilError, match="features at cut 2"):
        G.state_at(2, state.x[:, :1], state.ws, state.noises, state.img)
    if family == "pggan":
        with pytest.raises(RtilError, match="no styles"):
            G.state_at(2, state.x, ws=torch.zeros(2, 4, 16))
    else:
        with pytest.raises(RtilError, match="skip image"):
            G.state_at(2, state.x, state.ws, state.noises, None)
        assert G.first_style_after(0) == 0 and G.first_style_after(2) == 3


def test_fusion_weights_the_skip_image_by_the_channel_mean_of_the_weights():
    G = generators()["stylegan2"]
    space = latent_space(G, "w")
    codes, noises = space.draw(image_generators(1, seed=0), codes=2)
    state = G.advance(space.start_state(codes, noises), 3)
    channels = G.cut_shape(3)[0]
    weights = torch.rand(1, 2, channels)
    fused = fuse_states(state, weights)
    per_code = weights.mean(dim=2)
    expected = per_code[0, 0] * state.img[0] + per_code[0, 1] * state.img[1]
    torch.testing.assert_close(fused.img[0], expected)
    torch.testing.assert_close(fused.x[0], (weights[0, :, :, None, None] * state.x).sum(0))

"""StyleGAN2 generator/discriminator: shapes, noise modes, cut points, RTIL Gaussian family."""

import pytest
import torch

from conftest import perturb_, tiny_stylegan2
from rtil.errors import RtilError
from rtil.latents import GaussianLatents
from rtil.models.stylegan2 import Discriminator, channel_table


@pytest.mark.parametrize("resolution", [8, 16, 32])
@pytest.mark.parametrize("img_channels", [1, 3])
def test_shapes(resolution, img_channels):
    G = tiny_stylegan2(resolution, img_channels)
    D = Discriminator(resolution, img_channels, channel_base=128, channel_max=16)
    z = torch.randn(4, 16)
    img = G(z)
    assert img.shape == (4, img_channels, resolution, resolution)
    assert D(img).shape == (4, 1)
    assert G.num_ws == 2 * (resolution.bit_length() - 1) - 2
    assert G.num_layers == G.num_ws - 1 == len(G.noise_shapes())


def test_channel_table_formula_and_override():
    assert channel_table(64, 16384, 512) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256}
    assert channel_table(64, 16384, 256) == {4: 256, 8: 256, 16: 256, 32: 256, 64: 256}
    assert channel_table(8, 0, 0, {4: 7, 8: 5}) == {4: 7, 8: 5}
    with pytest.raises(RtilError):
        channel_table(16, 0, 0, {4: 7, 8: 5})


def test_bad_construction_and_inputs_are_clear_errors():
    with pytest.raises(RtilError, match="power of two"):
        tiny_stylegan2(resolution=12)
    with pytest.raises(RtilError, match="img_channels"):
        tiny_stylegan2(img_channels=2)
    G = tiny_stylegan2()
    with pytest.raises(RtilError, match="z must have shape"):
        G(torch.randn(2, 7))
    with pytest.raises(RtilError, match="noise_mode"):
        G(torch.randn(2, 16), noise_mode="sometimes")
    with pytest.raises(RtilError, match="cut point"):
        G.features(torch.randn(2, 16), upto=G.num_blocks + 1)
    D = Discriminator(16, 3, channel_base=128, channel_max=16)
    with pytest.raises(RtilError, match="discriminator expects"):
        D(torch.randn(4, 1, 16, 16))
    with pytest.raises(RtilError, match="group size"):
        D(torch.randn(6, 3, 16, 16))


def test_noise_modes():
    G = tiny_stylegan2().eval()
    z = torch.randn(2, 16)
    torch.testing.assert_close(G(z, noise_mode="const"), G(z, noise_mode="const"), rtol=0, atol=0)
    assert not torch.equal(G(z, noise_mode="random"), G(z, noise_mode="random"))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(G(z, generator=g1), G(z, generator=g2), rtol=0, atol=0)
    assert not torch.equal(G(z, noise_mode="none"), G(z, noise_mode="const"))
    # 'none' equals const noise whose maps are all zero.
    zeros = [torch.zeros(s) for s in G.noise_shapes()]
    out_none = G(z, noise_mode="none")
    G.set_const_noises(zeros)
    torch.testing.assert_close(G(z, noise_mode="const"), out_none, rtol=0, atol=0)


def test_fused_and_nonfused_generator_agree():
    G = tiny_stylegan2()
    z = torch.randn(3, 16)
    state = G.start_state(G.styles(z), G.make_noises(3, "const"))
    fused = G.synthesize(state, fused=True)
    nonfused = G.synthesize(state, fused=False)
    torch.testing.assert_close(fused, nonfused, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_cut_point_round_trip(training):
    G = tiny_stylegan2(32).train(training)
    z = torch.randn(3, 16)
    full = G(z, noise_mode="const")
    for i in range(G.num_blocks + 1):
        state = G.features(z, upto=i, noise_mode="const")
        assert state.cut == i and state.x.shape[1:] == G.cut_shape(i)
        torch.testing.assert_close(G.synthesize(state), full, rtol=0, atol=0)
        # Stepwise advancing gives the same state.
        if i > 0:
            prev = G.features(z, upto=i - 1, noise_mode="const")
            torch.testing.assert_close(G.advance(prev, i).x, state.x, rtol=0, atol=0)


def test_modified_features_change_only_what_follows():
    G = tiny_stylegan2(32).eval()
    z = torch.randn(2, 16)
    state = G.features(z, upto=2, noise_mode="const")
    moved = state.with_features(state.x + 1.0)
    assert not torch.allclose(G.synthesize(moved), G.synthesize(state))
    with pytest.raises(ValueError):
        state.with_features(torch.zeros(2, 1, 1, 1))


def test_styles_and_w_avg():
    G = tiny_stylegan2()
    z = torch.randn(5, 16)
    ws = G.styles(z)
    assert ws.shape == (5, G.num_ws, 16)
    assert torch.equal(ws[:, 0], ws[:, -1])
    assert torch.count_nonzero(G.mapping.w_avg) == 0
    G.styles(z, update_w_avg=True)
    w = G.mapping(z)
    torch.testing.assert_close(G.mapping.w_avg, 0.005 * w.mean(0), rtol=1e-5, atol=1e-7)
    # Truncation psi = 0 gives w_avg for every sample.
    torch.testing.assert_close(G.styles(z, truncation_psi=0.0)[:, 0], G.mapping.w_avg.expand(5, -1))


def test_rtil_zero_latents_give_exactly_g0():
    G = tiny_stylegan2(32).eval()
    family = GaussianLatents(cut_points=[1, 2, 3, 4], sigma=1.0)
    family.check(G)
    z = torch.randn(3, 16)
    g0 = G(z, noise_mode="const")
    for member in range(family.num_members):
        latents = family.sample(G, member, 3)
        assert sorted(latents) == [1, 2, 3, 4][:member]
        zeros = {c: torch.zeros_like(t) for c, t in latents.items()}
        torch.testing.assert_close(family.generate(G, z, member, zeros, noise_mode="const"), g0, rtol=0, atol=0)
        if member > 0:
            assert not torch.allclose(family.generate(G, z, member, latents, noise_mode="const"), g0)


def test_rtil_latents_are_added_at_the_cut_points_cumulatively():
    G = tiny_stylegan2(32).eval()
    family = GaussianLatents(cut_points=[1, 3], sigma=0.5)
    z = torch.randn(2, 16)
    gen = torch.Generator().manual_seed(0)
    latents = family.sample(G, 2, 2, gen)
    assert latents[1].shape == (2, *G.cut_shape(1)) and latents[3].shape == (2, *G.cut_shape(3))
    assert abs(latents[3].std().item() - 0.5) < 0.05
    # Manual construction through the cut-point interface.
    s = G.features(z, upto=1, noise_mode="const")
    s = G.advance(s.with_features(s.x + latents[1]), 3)
    manual = G.synthesize(s.with_features(s.x + latents[3]))
    torch.testing.assert_close(family.generate(G, z, 2, latents, noise_mode="const"), manual, rtol=0, atol=0)


def test_inject_at_cut_zero_modifies_the_constant_input():
    G = tiny_stylegan2(16).eval()
    z = torch.randn(2, 16)
    offset = torch.randn(2, *G.cut_shape(0))
    state = G.features(z, upto=0, noise_mode="const")
    manual = G.synthesize(state.with_features(state.x + offset))
    torch.testing.assert_close(G(z, noise_mode="const", inject={0: offset}), manual, rtol=0, atol=0)


def test_rtil_family_validation():
    G = tiny_stylegan2(16)
    with pytest.raises(RtilError, match="does not exist"):
        GaussianLatents(cut_points=[1, 9]).check(G)
    with pytest.raises(RtilError):
        GaussianLatents(cut_points=[1, 1])
    with pytest.raises(RtilError, match="member"):
        GaussianLatents(cut_points=[1]).sample(G, 2, 1)


def test_gradients_reach_every_parameter():
    G = tiny_stylegan2(16).train()
    D = perturb_(Discriminator(16, 3, channel_base=128, channel_max=16))
    D(G(torch.randn(4, 16))).sum().backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_conv_clamp_bounds_every_layer_output_and_is_recorded_only_when_set():
    from rtil.models.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=8, w_dim=8, resolution=16, img_channels=1, mapping_layers=1, channel_base=64,
                  channel_max=8, conv_clamp=0.1)
    peaks = []
    hooks = [m.register_forward_hook(lambda m, i, o: peaks.append(o.abs().max().item()))
             for b in G.blocks for m in ([b.conv1, b.torgb] if b.is_first else [b.conv0, b.conv1, b.torgb])]
    G(torch.randn(4, 8), noise_mode="const")
    for h in hooks:
        h.remove()
    assert max(peaks) <= 0.1 + 1e-6 and G.config["conv_clamp"] == 0.1
    assert "conv_clamp" not in Generator(z_dim=8, w_dim=8, resolution=16, img_channels=1, mapping_layers=1,
                                         channel_base=64, channel_max=8).config

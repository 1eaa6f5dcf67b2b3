"""PGGAN generator / discriminator: shapes, progressive growing, cut points, RTIL fusion, export."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

import rtil
from rtil.errors import RtilError
from rtil.latents import DirichletFusion, dirichlet_weights
from rtil.models import DISCRIMINATORS, GENERATORS
from rtil.models.pggan import Discriminator, Generator, rtil_authors_arch

Z_DIM = 8


def with_biases(module, seed):
    """Random non-zero biases (they start at 0), so that bias handling is tested too."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return module


def make_G(resolution=16, img_channels=3, style="official", seed=0):
    torch.manual_seed(seed)
    if style == "rtil":
        resolutions = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        channels = {r: 16 if r <= 16 else 8 for r in resolutions}  # like the authors': wider at low resolution
        arch = rtil_authors_arch(z_dim=Z_DIM, resolution=resolution, channels=channels)
        arch["img_channels"] = img_channels
        return with_biases(Generator(**arch), seed)
    G = Generator(z_dim=Z_DIM, resolution=resolution, img_channels=img_channels, channel_base=128, channel_max=16)
    return with_biases(G, seed)


def make_D(resolution=16, img_channels=3, seed=0, **kw):
    torch.manual_seed(seed)
    D = Discriminator(resolution=resolution, img_channels=img_channels, channel_base=128, channel_max=16, **kw)
    return with_biases(D, seed)


def latents(batch=2, seed=1):
    return torch.randn(batch, Z_DIM, generator=torch.Generator().manual_seed(seed))


def all_lods(G):
    return [0.0, 0.5, 1.0, 0.25 + (G.num_blocks - 2), float(G.num_blocks - 1)]


def test_registered():
    assert GENERATORS["pggan"] is Generator and DISCRIMINATORS["pggan"] is Discriminator
    assert Generator.family == "pggan"


@pytest.mark.parametrize("resolution", [8, 16, 32])
@pytest.mark.parametrize("img_channels", [1, 3])
@pytest.mark.parametrize("style", ["official", "rtil"])
def test_shapes(resolution, img_channels, style):
    G = make_G(resolution, img_channels, style)
    D = make_D(resolution, img_channels)
    assert G.num_blocks == int(math.log2(resolution)) - 1
    z = latents(4)
    with torch.no_grad():
        for lod in all_lods(G):
            G.set_lod(lod)
            D.set_lod(lod)
            img = G(z)
            assert img.shape == (4, img_channels, resolution, resolution)
            assert torch.isfinite(img).all()
            assert D(img).shape == (4, 1)
    for cut in range(G.num_blocks + 1):
        assert G.features(z, upto=cut).x.shape[1:] == G.cut_shape(cut)


def test_config_is_json_and_rebuilds():
    for style in ("official", "rtil"):
        G = make_G(16, style=style)
        G2 = Generator(**json.loads(json.dumps(G.config)))
        G2.load_state_dict(G.state_dict())
        z = latents()
        assert torch.equal(G(z), G2(z))
    D = make_D()
    assert Discriminator(**json.loads(json.dumps(D.config))).config == D.config


def test_rtil_arch_options():
    arch = rtil_authors_arch()
    assert arch["channels"] == {4: 256, 8: 256, 16: 256, 32: 256, 64: 128, 128: 64, 256: 64}
    assert arch["latent_gain"] == pytest.approx(0.5)  # sqrt(2 * 512 / (16 * 256))
    G = Generator(**rtil_authors_arch(z_dim=Z_DIM, resolution=8, channels={4: 4, 8: 4}))
    assert len(G.blocks[0].convs) == 2 and G.blocks[0].latent.scale == pytest.approx(math.sqrt(2 / (4 * 16)))
    assert G.blocks[1].torgb.scale == pytest.approx(math.sqrt(2 / 4))


def test_bad_arguments():
    with pytest.raises(RtilError):
        Generator(resolution=12)
    with pytest.raises(RtilError):
        Generator(resolution=8, img_channels=2)
    with pytest.raises(RtilError):
        Generator(resolution=8, upsample_mode="bicubic")
    with pytest.raises(RtilError):
        Discriminator(resolution=8, downsample_mode="nearest")
    G, D = make_G(16), make_D(16)
    for bad in (-0.1, G.num_blocks - 0.9, float("nan")):
        with pytest.raises(RtilError):
            G.set_lod(bad)
        with pytest.raises(RtilError):
            D.set_lod(bad)
    z = latents()
    with pytest.raises(RtilError):
        G(z, truncation_psi=0.7)
    with pytest.raises(RtilError):
        G(z, noise_mode="bogus")
    with pytest.raises(RtilError):
        G(z, ws=torch.zeros(2, 4, Z_DIM))
    with pytest.raises(RtilError):
        G(torch.randn(2, Z_DIM + 1))
    with pytest.raises(RtilError):
        D(torch.randn(2, 3, 8, 8))
    with pytest.raises(RtilError):
        G.cut_shape(G.num_blocks + 1)
    G(z, noise_mode="const", update_w_avg=True)  # accepted for API uniformity


@pytest.mark.parametrize("style", ["official", "rtil"])
def test_lod_continuity(style):
    G = make_G(32, style=style)
    z = latents()
    eps = 1e-5
    with torch.no_grad():
        for k in range(G.num_blocks):
            G.set_lod(k)
            at = G(z)
            if k > 0:
                G.set_lod(k - eps)
                assert (G(z) - at).abs().max() < 1e-3, "jump when the next level starts fading in"
            if k < G.num_blocks - 1:
                G.set_lod(k + eps)
                assert (G(z) - at).abs().max() < 1e-3, "jump when the fade completes"


def test_lod_selects_levels():
    G = make_G(16)
    z = latents()
    with torch.no_grad():
        G.set_lod(G.num_blocks - 1)
        assert G.current_resolution == 4 and G.highest_cut == 1
        low = G(z)
        assert torch.equal(low, low[..., ::4, ::4].repeat_interleave(4, -1).repeat_interleave(4, -2))  # nearest up
        G.blocks[-1].convs[0].weight.data.add_(1.0)  # unused at this lod
        assert torch.equal(G(z), low)
        G.set_lod(0.5)
        assert G.current_resolution == 16 and G.highest_cut == G.num_blocks - 1
        assert G.synthesize(G.start_state(z), full_resolution=False).shape[-1] == 16


@pytest.mark.parametrize("style", ["official", "rtil"])
def test_cut_point_round_trip(style):
    G = make_G(16, style=style)
    z = latents()
    with torch.no_grad():
        for lod in all_lods(G):
            G.set_lod(lod)
            ref = G(z)
            for cut in range(G.highest_cut + 1):
                state = G.features(z, upto=cut)
                assert state.cut == cut and state.ws is None and state.noises is None and state.img is None
                assert torch.allclose(G.synthesize(state), ref, atol=1e-6, rtol=0)
            if G.highest_cut < G.num_blocks:
                with pytest.raises(RtilError):
                    G.synthesize(G.features(z, upto=G.highest_cut + 1))


def test_inject_adds_at_cut():
    G = make_G(16)
    z = latents()
    with torch.no_grad():
        for cut in range(G.num_blocks + 1):
            delta = torch.randn(2, *G.cut_shape(cut), generator=torch.Generator().manual_seed(cut))
            state = G.features(z, upto=cut)
            by_hand = G.synthesize(state.with_features(state.x + delta))
            assert torch.allclose(G(z, inject={cut: delta}), by_hand, atol=1e-6, rtol=0)
            assert torch.allclose(G.synthesize(G.features(z, upto=cut, inject={cut: delta})), by_hand, atol=1e-6)


def test_latent_normalisation():
    z = latents()
    official, authors = make_G(8), make_G(8, style="rtil")
    assert torch.allclose(official.features(z, upto=0).x, z / z.square().mean(1, keepdim=True).sqrt(), atol=1e-6)
    assert torch.equal(authors.features(z, upto=0).x, z)
    assert torch.allclose(official(z), official(3 * z), atol=1e-5)  # pixel norm makes the scale of z irrelevant


def test_dirichlet_fusion_family():
    G = make_G(16, style="rtil")
    fam = DirichletFusion(codes_per_member=[3, 5], cut_point=4)
    z = latents(2)
    with torch.no_grad():
        for lod in all_lods(G):
            G.set_lod(lod)
            ref = G(z)
            assert torch.equal(fam.generate(G, z, member=0), ref)
            same = z[:, None].expand(-1, 3, -1)
            assert torch.allclose(fam.generate(G, same, member=1, generator=torch.Generator().manual_seed(0)), ref,
                                  atol=1e-5, rtol=0)
            codes = fam.sample_z(G, 2, 2, generator=torch.Generator().manual_seed(1))
            one_hot = F.one_hot(torch.tensor([4, 1]), 5).float()
            picked = G(torch.stack([codes[0, 4], codes[1, 1]]))
            assert torch.allclose(fam.generate(G, codes, member=2, weights=one_hot), picked, atol=1e-5, rtol=0)
            a = fam.generate(G, codes, member=2, generator=torch.Generator().manual_seed(7))
            b = fam.generate(G, codes, member=2, generator=torch.Generator().manual_seed(7))
            assert torch.equal(a, b) and a.shape == ref.shape


def test_fusion_is_linear_in_the_features():
    G = make_G(16, style="rtil")
    codes = latents(6).view(2, 3, Z_DIM)
    w = dirichlet_weights(2, 3, torch.Generator().manual_seed(3))
    cut = 2
    with torch.no_grad():
        feats = G.features(codes.reshape(6, Z_DIM), upto=cut).x.view(2, 3, *G.cut_shape(cut))
        fused = (w[:, :, None, None, None] * feats).sum(1)
        by_hand = G.synthesize(G.features(codes[:, 0], upto=cut).with_features(fused))
        out = DirichletFusion(codes_per_member=[3], cut_point=cut).generate(G, codes, member=1, weights=w)
    assert torch.allclose(out, by_hand, atol=1e-6, rtol=0)


def test_dirichlet_weights_on_simplex_and_seeded():
    w = dirichlet_weights(64, 10, torch.Generator().manual_seed(0))
    assert w.shape == (64, 10) and (w >= 0).all()
    assert torch.allclose(w.sum(1), torch.ones(64), atol=1e-6)
    assert torch.equal(w, dirichlet_weights(64, 10, torch.Generator().manual_seed(0)))
    assert not torch.equal(w, dirichlet_weights(64, 10, torch.Generator().manual_seed(1)))


def test_export_and_load_restores_lod(tmp_path):
    G = make_G(16, style="rtil")
    G.set_lod(1.25)
    z = latents()
    with torch.no_grad():
        ref = G(z)
    family = DirichletFusion(codes_per_member=[2], cut_point=2)
    path = rtil.save_generator(tmp_path / "g.pt", G, rtil=family.to_config())
    L = rtil.load_generator(path)
    assert float(L.lod) == 1.25 and L.config == G.config and L.rtil["kind"] == "dirichlet"
    assert torch.equal(L(z), ref)


def test_images_at_lod_matches_generator_level_of_detail():
    G = make_G(16)  # nearest up-sampling: a generated image is already at its own level of detail
    z = latents()
    with torch.no_grad():
        for lod in (0.0, 1.0, 2.0):
            G.set_lod(lod)
            img = G(z)
            assert torch.allclose(G.images_at_lod(img), img, atol=1e-6, rtol=0)
        G.set_lod(0)
        real = torch.randn(2, 3, 16, 16)
        assert torch.equal(G.images_at_lod(real), real)


def test_discriminator_lod():
    D = make_D(16, mbstd_group_size=2)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        D.set_lod(D.num_blocks - 1)  # 4x4 only: sees just the 4x4 averages of the input
        coarse = F.avg_pool2d(x, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)
        assert torch.allclose(D(x), D(coarse), atol=1e-5, rtol=0)
        D.set_lod(1.0)
        at = D(x)
        D.blocks[-1].conv0.weight.data.add_(1.0)  # the 16x16 block is unused at lod 1
        assert torch.equal(D(x), at)
        D.set_lod(1.0 - 1e-5)
        assert (D(x) - at).abs().max() < 1e-3
        D.set_lod(0.0)
        assert not torch.allclose(D(x), at)
    bil = make_D(16, downsample_mode="bilinear", mbstd_group_size=2)
    bil.load_state_dict(make_D(16, mbstd_group_size=2).state_dict())
    ref = make_D(16, mbstd_group_size=2)
    with torch.no_grad():
        assert torch.allclose(bil(x), ref(x), atol=1e-5)  # bilinear x0.5 == 2x2 average pooling

"""Importing the RTIL authors' PGGAN checkpoints (their key layout is written out by hand here)."""

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

import rtil
from rtil.errors import RtilError
from rtil.importers.rtil_pggan import convert_rtil_pggan, load_rtil_pggan, rtil_lod

Z_DIM = 8
CHANNELS = {4: 8, 8: 8, 16: 4, 32: 4}  # shaped like theirs: C at low resolutions, fewer above


def authors_state_dict(channels=CHANNELS, z_dim=Z_DIM, seed=0, pixel_norm=True, prefix=""):
    """Random tensors under the authors' generator keys: input_layer (ConvTranspose2d z -> 4x4),
    progression_{r} (ConvBlock: conv, [PixelNorm], LReLU, conv, [PixelNorm], LReLU) and to_rgb_{r}."""
    g = torch.Generator().manual_seed(seed)
    sd = {"input_layer.0.conv.weight_orig": torch.randn(z_dim, channels[4], 4, 4, generator=g),
          "input_layer.0.conv.bias": 0.1 * torch.randn(channels[4], generator=g)}
    second = 3 if pixel_norm else 2
    for r, c in channels.items():
        c_in = channels[max(r // 2, 4)]
        for index, fan_in in ((0, c_in), (second, c)):
            sd[f"progression_{r}.conv.{index}.conv.weight_orig"] = torch.randn(c, fan_in, 3, 3, generator=g)
            sd[f"progression_{r}.conv.{index}.conv.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"to_rgb_{r}.conv.weight_orig"] = torch.randn(3, c, 1, 1, generator=g)
        sd[f"to_rgb_{r}.conv.bias"] = 0.1 * torch.randn(3, generator=g)
    return {prefix + k: v for k, v in sd.items()}


def training_checkpoint(path, step=3, alpha=1, rtil_run=True, z_number=(2, 3), prefix=""):
    ckpt = {"g": authors_state_dict(seed=1, prefix=prefix), "g_ema": authors_state_dict(seed=2, prefix=prefix),
            "d": {}, "g_optimizer": {}, "d_optimizer": {}, "alpha": alpha, "step": step, "iteration": 123,
            "args": argparse.Namespace(rtil=rtil_run, z_number=list(z_number), channel=8, path="./ffhq")}
    torch.save(ckpt, path)
    return ckpt


def lrelu_after_pixel_norm(x):
    return F.leaky_relu(x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + 1e-8), 0.2)


def test_detects_architecture_and_growth_state(tmp_path):
    ckpt = training_checkpoint(tmp_path / "c.pt", step=2, alpha=0.25)
    G, prov = load_rtil_pggan(tmp_path / "c.pt")
    assert G.resolution == 32 and G.z_dim == Z_DIM and G.channels == CHANNELS and G.num_blocks == 4
    assert G.config["upsample_mode"] == "bilinear" and not G.config["normalize_latent"]
    assert float(G.lod) == pytest.approx(1.75)  # top level 16 px (step 2), 25% faded in
    assert torch.equal(G.blocks[2].convs[1].weight, ckpt["g_ema"]["progression_16.conv.3.conv.weight_orig"])
    assert prov["weights"] == "g_ema" and prov["step"] == 2 and prov["alpha"] == 0.25
    assert prov["trained_z_number"] == [2, 3] and prov["iteration"] == 123
    G_raw, _ = load_rtil_pggan(tmp_path / "c.pt", weights="g", step=3, alpha=1)
    assert torch.equal(G_raw.blocks[0].latent.weight, ckpt["g"]["input_layer.0.conv.weight_orig"])
    assert float(G_raw.lod) == 0.0


def test_rtil_lod():
    assert rtil_lod(6, 1, 7) == 0.0
    assert rtil_lod(6, 0.3, 7) == pytest.approx(0.7)
    assert rtil_lod(0, 0.5, 7) == 6.0  # no fade at step 0
    assert rtil_lod(9, 1, 7) == 0.0  # clamped like their forward
    assert rtil_lod(2, -1, 7) == 4.0  # alpha < 0: no fade
    with pytest.raises(RtilError):
        rtil_lod(-1, 1, 7)


def test_matches_hand_computation_at_4x4(tmp_path):
    """At step 0 the authors' generator is to_rgb_4(progression_4(input_layer(z))) with every weight
    scaled by sqrt(2 / fan_in), where the transposed conv's fan-in is taken as C_4 * 16."""
    sd = authors_state_dict()
    torch.save(sd, tmp_path / "bare.pt")
    G, prov = load_rtil_pggan(tmp_path / "bare.pt", step=0)
    assert prov["weights"] == "state_dict" and prov["growth_state_from"] == "arguments"
    z = torch.randn(3, Z_DIM, generator=torch.Generator().manual_seed(5))
    c = CHANNELS[4]
    w = sd["input_layer.0.conv.weight_orig"] * math.sqrt(2 / (c * 16))
    x = torch.einsum("bz,zchw->bchw", z, w) + sd["input_layer.0.conv.bias"].view(1, -1, 1, 1)
    x = lrelu_after_pixel_norm(x)
    for i in (0, 3):
        w = sd[f"progression_4.conv.{i}.conv.weight_orig"] * math.sqrt(2 / (c * 9))
        x = lrelu_after_pixel_norm(F.conv2d(x, w, sd[f"progression_4.conv.{i}.conv.bias"], padding=1))
    rgb = F.conv2d(x, sd["to_rgb_4.conv.weight_orig"] * math.sqrt(2 / c), sd["to_rgb_4.conv.bias"])
    with torch.no_grad():
        ours = G.synthesize(G.start_state(z), full_resolution=False)
        assert ours.shape == (3, 3, 4, 4)
        assert torch.allclose(ours, rgb, atol=1e-5, rtol=0)
        full = G(z)
    up = rgb
    for _ in range(3):
        up = F.interpolate(up, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(full, up, atol=1e-5, rtol=0)


def test_fade_in_by_hand(tmp_path):
    """(1 - alpha) * up(rgb of the level below) + alpha * rgb of the new level, at step 1."""
    torch.save(authors_state_dict(), tmp_path / "bare.pt")
    z = torch.randn(2, Z_DIM, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        below = load_rtil_pggan(tmp_path / "bare.pt", step=0)[0]
        new = load_rtil_pggan(tmp_path / "bare.pt", step=1, alpha=1)[0]
        fading = load_rtil_pggan(tmp_path / "bare.pt", step=1, alpha=0.3)[0]
        native = [g.synthesize(g.start_state(z), full_resolution=False) for g in (below, new, fading)]
    up = F.interpolate(native[0], scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(native[2], 0.7 * up + 0.3 * native[1], atol=1e-5, rtol=0)


def test_module_prefix_and_no_pixel_norm(tmp_path):
    torch.save(authors_state_dict(prefix="module.", pixel_norm=False), tmp_path / "dp.pt")
    G, prov = load_rtil_pggan(tmp_path / "dp.pt")
    assert prov["key_prefix_stripped"] == "module." and G.config["pixel_norm"] is False
    assert G(torch.randn(2, Z_DIM)).shape == (2, 3, 32, 32)


def test_convert_writes_rtil_generator_file(tmp_path):
    training_checkpoint(tmp_path / "c.pt", step=3, alpha=1, prefix="module.")
    out = convert_rtil_pggan(tmp_path / "c.pt", tmp_path / "out.pt")
    G, _ = load_rtil_pggan(tmp_path / "c.pt")
    L = rtil.load_generator(out)
    z = torch.randn(2, Z_DIM)
    with torch.no_grad():
        assert torch.equal(L(z), G(z))
    assert L.family == "pggan" and float(L.lod) == 0.0
    assert L.rtil == {"kind": "dirichlet", "codes_per_member": [2, 3], "cut_point": 4}  # 32x32 block output
    assert L.provenance["source"] == "rtil-pggan" and len(L.provenance["source_sha256"]) == 64
    default = rtil.load_generator(convert_rtil_pggan(tmp_path / "c.pt", tmp_path / "o2.pt", codes_per_member=[10, 20]))
    assert default.rtil["codes_per_member"] == [10, 20]
    training_checkpoint(tmp_path / "van.pt", rtil_run=False)
    assert rtil.load_generator(convert_rtil_pggan(tmp_path / "van.pt", tmp_path / "o3.pt")).rtil is None


def test_rejects_other_files(tmp_path):
    cases = {
        "tensor.pt": torch.zeros(3),
        "rosinality.pt": {"g_ema": {"style.1.weight": torch.zeros(2, 2), "input.input": torch.zeros(1, 4, 4, 4)}},
        "empty.pt": {},
        "gap.pt": {k: v for k, v in authors_state_dict().items() if not k.startswith("progression_8.")},
        "no_rgb.pt": {k: v for k, v in authors_state_dict().items() if k != "to_rgb_32.conv.bias"},
        "shape.pt": {**authors_state_dict(), "progression_16.conv.0.conv.weight_orig": torch.zeros(4, 5, 3, 3)},
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(RtilError, match="expected"):
            load_rtil_pggan(tmp_path / name)
    torch.save(authors_state_dict(), tmp_path / "ok.pt")
    rtil.save_generator(tmp_path / "ours.pt", load_rtil_pggan(tmp_path / "ok.pt")[0])
    with pytest.raises(RtilError, match="already an rtil generator"):
        load_rtil_pggan(tmp_path / "ours.pt")
    with pytest.raises(RtilError, match="not found"):
        load_rtil_pggan(tmp_path / "missing.pt")

"""rosinality-format import: key layout, architecture detection, RTIL tables and clear errors.

The numerical check against rosinality's own model.py (same z and noise -> same image within
1e-4) is recorded in docs/benchmarks.md; these tests build rosinality-layout files by hand.
"""

import pytest
import torch

import rtil
from conftest import perturb_, tiny_stylegan2
from rtil.cli import main as cli_main
from rtil.errors import RtilError
from rtil.importers.rosinality import (
    convert_rosinality,
    generator_key_map,
    load_rosinality,
    rosinality_channels,
    rtil_authors_channels,
)
from rtil.models.stylegan2 import Generator
from rtil.nn import fir_filter


def rosinality_shape(key: str, tensor: torch.Tensor) -> tuple[int, ...]:
    """The shape rosinality stores for `key` (its convs carry a leading 1, biases of ToRGB are 4-D)."""
    if key.endswith(".conv.weight") or key == "input.input":
        return (1, *tensor.shape)
    if key.endswith(".noise.weight"):
        return (1,)
    if key.startswith("noises."):
        return (1, 1, *tensor.shape)
    if key.startswith("to_rgb") and key.endswith(".bias"):
        return (1, tensor.shape[0], 1, 1)
    return tuple(tensor.shape)


def as_rosinality_state(G: Generator, prefix: str = "") -> dict:
    ours = G.state_dict()
    state = {prefix + theirs: ours[k].reshape(rosinality_shape(theirs, ours[k])).clone()
             for k, theirs in generator_key_map(G).items()}
    for j in range(G.num_blocks - 1):
        state[f"{prefix}convs.{2 * j}.conv.blur.kernel"] = fir_filter() * 4
        state[f"{prefix}to_rgbs.{j}.upsample.kernel"] = fir_filter() * 4
    return state


def rosinality_generator(size=32, channel_multiplier=2, style_dim=16, n_mlp=2, table=rosinality_channels):
    G = Generator(z_dim=style_dim, w_dim=style_dim, resolution=size, mapping_layers=n_mlp,
                  channels=table(size, channel_multiplier))
    return perturb_(G).eval()


def test_channel_tables():
    assert rosinality_channels(256, 2) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}
    assert rosinality_channels(1024, 1)[1024] == 16
    assert rtil_authors_channels(256, 1) == {4: 256, 8: 256, 16: 256, 32: 256, 64: 256, 128: 128, 256: 64}


def test_converted_file_gives_the_same_images(tmp_path):
    G = rosinality_generator(size=32, channel_multiplier=2)
    latent_avg = torch.randn(16)
    torch.save({"g_ema": as_rosinality_state(G), "latent_avg": latent_avg}, tmp_path / "ros.pt")
    out = convert_rosinality(tmp_path / "ros.pt", tmp_path / "ours.pt", size=32, channel_multiplier=2)
    loaded = rtil.load_generator(out)
    z = torch.randn(4, 16)
    torch.testing.assert_close(loaded(z, noise_mode="const"), G(z, noise_mode="const"), rtol=0, atol=0)
    torch.testing.assert_close(loaded.mapping.w_avg, latent_avg)
    assert loaded.provenance["source"] == "rosinality" and loaded.rtil is None
    assert loaded.config["channel_base"] == 32768 and loaded.config["channels"] is None


def test_training_checkpoint_with_prefix_and_rtil_table(tmp_path):
    G = rosinality_generator(size=64, channel_multiplier=1, table=rtil_authors_channels)
    raw = rosinality_generator(size=64, channel_multiplier=1, table=rtil_authors_channels)
    raw.blocks[0].conv1.bias.data.add_(1.0)
    torch.save({"g": as_rosinality_state(raw, "module."), "g_ema": as_rosinality_state(G, "module."),
                "d": {}, "args": {"size": 64, "channel_multiplier": 1}}, tmp_path / "rtil.pt")
    out = convert_rosinality(tmp_path / "rtil.pt", tmp_path / "ours.pt", size=64, channel_multiplier=1,
                             rtil_cut_points=[1, 2, 3, 4])
    loaded = rtil.load_generator(out)
    z = torch.randn(2, 16)
    torch.testing.assert_close(loaded(z, noise_mode="const"), G(z, noise_mode="const"), rtol=0, atol=0)
    loaded_raw = rtil.load_generator(out, weights="g")
    torch.testing.assert_close(loaded_raw(z, noise_mode="const"), raw(z, noise_mode="const"), rtol=0, atol=0)
    assert loaded.rtil == {"kind": "gaussian", "cut_points": [1, 2, 3, 4], "sigma": 1.0}
    assert loaded.provenance["key_prefix_stripped"] == "module."
    assert "RTIL" in loaded.provenance["channel_table"]
    # No latent_avg in a training checkpoint: w_avg is estimated from the mapping network.
    assert "mean of W" in loaded.provenance["w_avg"] and loaded.mapping.w_avg.abs().sum() > 0


def test_architecture_mismatches_are_clear_errors(tmp_path):
    G = rosinality_generator(size=32, channel_multiplier=2)
    path = tmp_path / "ros.pt"
    torch.save({"g_ema": as_rosinality_state(G)}, path)
    with pytest.raises(RtilError, match="size 32"):
        load_rosinality(path, size=64)
    with pytest.raises(RtilError, match="mapping layers"):
        load_rosinality(path, size=32, mapping_layers=8)
    with pytest.raises(RtilError, match="does not match"):
        load_rosinality(path, size=32, channels={4: 8, 8: 8, 16: 8, 32: 8})
    G64 = rosinality_generator(size=64, channel_multiplier=2)
    torch.save({"g_ema": as_rosinality_state(G64)}, tmp_path / "ros64.pt")
    with pytest.raises(RtilError, match="--channels"):
        load_rosinality(tmp_path / "ros64.pt", size=64, channel_multiplier=1)
    state = as_rosinality_state(G)
    state["convs.0.conv.blur.kernel"] = torch.ones(4, 4) / 4
    torch.save({"g_ema": state}, tmp_path / "blur.pt")
    with pytest.raises(RtilError, match="1, 3, 3, 1"):
        load_rosinality(tmp_path / "blur.pt", size=32)
    del state["style.1.weight"]
    torch.save({"g_ema": state}, tmp_path / "missing.pt")
    with pytest.raises(RtilError, match="missing keys"):
        load_rosinality(tmp_path / "missing.pt", size=32)


def test_cli_convert_and_info(tmp_path, capsys):
    G = tiny_stylegan2(16)
    torch.save({"g_ema": as_rosinality_state(G)}, tmp_path / "ros.pt")
    # tiny_stylegan2 uses its own channel table, which needs --channels.
    assert cli_main(["convert", "rosinality", str(tmp_path / "ros.pt"), str(tmp_path / "o.pt"), "--size", "16"]) == 2
    assert "--channels" in capsys.readouterr().err
    table = ",".join(f"{r}:{c}" for r, c in G.channels.items())
    assert cli_main(["convert", "rosinality", str(tmp_path / "ros.pt"), str(tmp_path / "o.pt"), "--size", "16",
                     "--channels", table]) == 0
    assert cli_main(["info", str(tmp_path / "o.pt")]) == 0
    assert "stylegan2" in capsys.readouterr().out
    assert cli_main(["convert", "rosinality", str(tmp_path / "o.pt"), str(tmp_path / "x.pt"), "--size", "16"]) == 2
    assert "already an rtil generator file" in capsys.readouterr().err
    assert cli_main(["convert", "rosinality", str(tmp_path / "nope.pt"), str(tmp_path / "x.pt"), "--size", "16"]) == 2
    # --size is read from the weights when omitted, and checked against them when given
    assert cli_main(["convert", "rosinality", str(tmp_path / "ros.pt"), str(tmp_path / "x.pt"), "--channels",
                     table]) == 0
    assert rtil.load_generator(tmp_path / "x.pt").resolution == 16
    capsys.readouterr()
    assert cli_main(["convert", "rosinality", str(tmp_path / "ros.pt"), str(tmp_path / "y.pt"), "--size", "32",
                     "--channels", table]) == 2
    assert "does not match the checkpoint" in capsys.readouterr().err

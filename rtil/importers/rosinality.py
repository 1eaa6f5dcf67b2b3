"""Import rosinality-format StyleGAN2 checkpoints (rosinality/stylegan2-pytorch `model.py`).

This is also the format of the ILO and RTIL authors' StyleGAN2 files (RTIL's `ILO/train/model.py`
is the same network with a reduced channel table: 256 channels at 4-32 px).

Accepted files, read weights-only:
- converted pretrained files {"g_ema": state_dict, "latent_avg": (D,) or (1, D)};
- training checkpoints {"g", "d", "g_ema", "g_optim", "d_optim", "args", ...};
- a bare generator state_dict.
Keys may carry DataParallel's "module." prefix.

Key correspondence (source -> rtil), L = log2(size), blocks j = 1 .. L-2:
    style.{i+1}.weight/bias                 -> mapping.layers.{i}.weight/bias
    latent_avg                              -> mapping.w_avg
    input.input (1, C, 4, 4)                -> blocks.0.const (C, 4, 4)
    conv1.*                                 -> blocks.0.conv1.*
    convs.{2j-2}.*, convs.{2j-1}.*          -> blocks.{j}.conv0.*, blocks.{j}.conv1.*
    to_rgb1.*, to_rgbs.{j-1}.*              -> blocks.0.torgb.*, blocks.{j}.torgb.*
    <conv>.conv.weight (1, O, I, k, k)      -> <layer>.weight (O, I, k, k)
    <conv>.conv.modulation.weight/bias      -> <layer>.affine.weight/bias
    <conv>.noise.weight (1,)                -> <layer>.noise_strength ()
    <conv>.activate.bias                    -> <layer>.bias
    <rgb>.bias (1, C, 1, 1)                 -> <layer>.bias (C,)
    noises.noise_{l} (1, 1, R, R)           -> <layer l>.noise_const (R, R)
Discriminator (training checkpoints), blocks k = 1 .. L-2 from the highest resolution:
    convs.0.0.weight, convs.0.1.bias        -> fromrgb.weight, fromrgb.bias
    convs.{k}.conv1.0.weight, .conv1.1.bias -> blocks.{k-1}.conv0.weight, .bias
    convs.{k}.conv2.1.weight, .conv2.2.bias -> blocks.{k-1}.conv1.weight, .bias
    convs.{k}.skip.1.weight                 -> blocks.{k-1}.skip.weight
    final_conv.0.weight, final_conv.1.bias  -> conv.weight, conv.bias
    final_linear.0.*, final_linear.1.*      -> fc.*, out.*
"""

import os
import re
from pathlib import Path

import torch

from rtil.checkpoints import save_generator
from rtil.errors import RtilError
from rtil.importers.common import load_source, sha256, strip_prefix, training_args
from rtil.latents import GaussianLatents
from rtil.models.stylegan2 import Discriminator, Generator
from rtil.nn import fir_filter

SOURCE_CODE = "rosinality/stylegan2-pytorch model.py"
EXPECTED = ("a rosinality-format StyleGAN2 checkpoint: a dict with 'g_ema' (and optional 'latent_avg', "
            "'g', 'd'), or a bare generator state_dict with keys 'style.1.weight', 'input.input', "
            "'conv1.conv.weight', 'to_rgb1.conv.weight', 'convs.{i}.conv.weight', 'noises.noise_{i}'")
W_AVG_SAMPLES = 10_000


def rosinality_channels(size: int, channel_multiplier: int) -> dict[int, int]:
    """rosinality's channel table: 512 up to 32 px, then 256·cm at 64, 128·cm at 128, ... 16·cm at 1024."""
    table = {4: 512, 8: 512, 16: 512, 32: 512}
    table.update({64 * 2 ** i: (256 >> i) * channel_multiplier for i in range(5)})
    return {r: c for r, c in table.items() if r <= size}


def rtil_authors_channels(size: int, channel_multiplier: int) -> dict[int, int]:
    """The RTIL authors' reduced table: 256 up to 32 px, otherwise as rosinality."""
    return {r: (256 if r <= 32 else c) for r, c in rosinality_channels(size, channel_multiplier).items()}


def load_rosinality(path: str | os.PathLike, size: int | None = None, channel_multiplier: int = 2,
                    channels: dict[int, int] | str | None = None, mapping_layers: int | None = None,
                    mapping_lr_mul: float = 0.01, weights: str = "g_ema") -> tuple[Generator, dict]:
    """Read a rosinality-format file into an rtil StyleGAN2 `Generator` (eval mode) and provenance.

    The architecture is read from the weights; `size`, `channel_multiplier` and `channels` are
    checked against them, so a wrong value is a clear error instead of a silently different net
    (`channels="weights"` accepts any channel table the weights have).
    """
    path = Path(path)
    obj = load_source(path, "rosinality checkpoint")
    state, used = _pick_generator_state(obj, weights, path)
    state, prefix = strip_prefix(state)
    arch, table_name = _detect_generator_arch(state, path, size, channel_multiplier, channels, mapping_layers)
    arch["mapping_lr_mul"] = mapping_lr_mul
    G = Generator(**arch)
    G.load_state_dict(_generator_state(state, G, path))
    w_avg_source = _set_w_avg(G, obj, used)
    provenance = {
        "source": "rosinality",
        "source_code": SOURCE_CODE,
        "source_file": path.name,
        "source_sha256": sha256(path),
        "weights": used,
        "key_prefix_stripped": prefix,
        "channel_table": table_name,
        "w_avg": w_avg_source,
        "training_args": {k: v for k, v in training_args(obj).items() if isinstance(v, (int, float, str, bool))},
    }
    return G.eval().requires_grad_(False), provenance


def load_rosinality_discriminator(path: str | os.PathLike, mbstd_group_size: int = 4) -> Discriminator:
    """The discriminator 'd' of a rosinality training checkpoint as an rtil `Discriminator`."""
    path = Path(path)
    obj = load_source(path, "rosinality checkpoint")
    if not isinstance(obj, dict) or not isinstance(obj.get("d"), dict):
        raise RtilError(f"{path} has no discriminator weights 'd' (only training checkpoints have them)")
    state, _ = strip_prefix(obj["d"])
    if "convs.0.0.weight" not in state or "final_conv.0.weight" not in state:
        raise RtilError(f"{path}: 'd' is not a rosinality discriminator state_dict (no convs.0.0.weight)")
    for key, value in state.items():  # the Blur layers of the down-sampling convolutions
        if key.endswith(".kernel") and not torch.allclose(value.float(), fir_filter()):
            raise RtilError(f"{path}: d.{key} is not the [1, 3, 3, 1] filter that rtil implements")
    num_blocks = sum(1 for k in state if re.fullmatch(r"convs\.\d+\.conv1\.0\.weight", k))
    size = 4 * 2 ** num_blocks
    table = {size: state["convs.0.0.weight"].shape[0], 4: state["final_conv.0.weight"].shape[0]}
    for k in range(1, num_blocks + 1):
        table[size >> k] = state[f"convs.{k}.conv2.1.weight"].shape[0]
    D = Discriminator(resolution=size, img_channels=state["convs.0.0.weight"].shape[1], channels=table,
                      mbstd_group_size=mbstd_group_size)
    ours = {"fromrgb.weight": "convs.0.0.weight", "fromrgb.bias": "convs.0.1.bias",
            "conv.weight": "final_conv.0.weight", "conv.bias": "final_conv.1.bias",
            "fc.weight": "final_linear.0.weight", "fc.bias": "final_linear.0.bias",
            "out.weight": "final_linear.1.weight", "out.bias": "final_linear.1.bias"}
    for k in range(1, num_blocks + 1):
        ours.update({f"blocks.{k - 1}.conv0.weight": f"convs.{k}.conv1.0.weight",
                     f"blocks.{k - 1}.conv0.bias": f"convs.{k}.conv1.1.bias",
                     f"blocks.{k - 1}.conv1.weight": f"convs.{k}.conv2.1.weight",
                     f"blocks.{k - 1}.conv1.bias": f"convs.{k}.conv2.2.bias",
                     f"blocks.{k - 1}.skip.weight": f"convs.{k}.skip.1.weight"})
    D.load_state_dict(_copy_checked(state, ours, D, path))
    return D


def convert_rosinality(in_path: str | os.PathLike, out_path: str | os.PathLike, size: int | None = None,
                       channel_multiplier: int = 2, channels: dict[int, int] | None = None,
                       mapping_layers: int | None = None, rtil_cut_points: list[int] | None = None,
                       mapping_lr_mul: float = 0.01) -> Path:
    """Convert a rosinality-format file into an rtil generator file (EMA weights, and the raw 'g'
    when the file has it). `rtil_cut_points` records the RTIL Gaussian family the weights were
    trained with (the RTIL authors': 1 2 3 4); None writes a vanilla generator file. `size` is read from
    the weights when omitted (given, it must match them)."""
    G, provenance = load_rosinality(in_path, size, channel_multiplier, channels, mapping_layers, mapping_lr_mul)
    G_raw = None
    obj = load_source(in_path, "rosinality checkpoint")
    if isinstance(obj, dict) and isinstance(obj.get("g"), dict) and provenance["weights"] == "g_ema":
        G_raw, _ = load_rosinality(in_path, size, channel_multiplier, channels, mapping_layers, mapping_lr_mul,
                                   weights="g")
    rtil = None
    if rtil_cut_points:
        family = GaussianLatents(cut_points=list(rtil_cut_points), sigma=1.0)
        family.check(G)
        rtil = family.to_config()
    return save_generator(out_path, G, G=G_raw, rtil=rtil, provenance=provenance)


# ---- reading the source ---------------------------------------------------------------------
def _pick_generator_state(obj, weights: str, path: Path) -> tuple[dict, str]:
    if not isinstance(obj, dict):
        raise RtilError(f"{path} holds a {type(obj).__name__}, not a dict; expected {EXPECTED}")
    if obj.get("format") == "rtil-generator":
        raise RtilError(f"{path} is already an rtil generator file; load it with rtil.load_generator")
    if "g_ema" not in obj and "g" not in obj:
        return obj, "state_dict"
    if weights not in ("g_ema", "g"):
        raise RtilError(f"weights must be 'g_ema' or 'g', got {weights!r}")
    used = weights if isinstance(obj.get(weights), dict) else "g" if weights == "g_ema" else None
    if used is None or not isinstance(obj.get(used), dict):
        raise RtilError(f"{path} has no {weights!r} generator weights (it has: {', '.join(map(str, obj))})")
    return obj[used], used


def _detect_generator_arch(state: dict, path: Path, size, channel_multiplier, channels, mapping_layers):
    required = ["style.1.weight", "input.input", "conv1.conv.weight", "to_rgb1.conv.weight"]
    missing = [k for k in required if k not in state]
    if missing:
        raise RtilError(f"{path} is not {EXPECTED}; missing keys: {', '.join(missing)}")
    num_rgbs = sum(1 for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    detected_size = 4 * 2 ** num_rgbs
    if size is not None and size != detected_size:
        raise RtilError(f"--size {size} does not match the checkpoint, whose weights are for size {detected_size}")
    table = {4: state["conv1.conv.weight"].shape[1]}
    for j in range(1, num_rgbs + 1):
        table[4 * 2 ** j] = state[f"convs.{2 * j - 2}.conv.weight"].shape[1]
    style_dim = state["style.1.weight"].shape[1]
    n_mlp = sum(1 for k in state if re.fullmatch(r"style\.\d+\.weight", k))
    if mapping_layers is not None and mapping_layers != n_mlp:
        raise RtilError(f"--mapping-layers {mapping_layers} does not match the checkpoint's {n_mlp} mapping layers")

    if channels == "weights":  # whatever table the weights have (train.py --init_from checks it against its config)
        table_name = "read from the weights"
    elif channels is not None:
        channels = {int(r): int(c) for r, c in channels.items()}
        if channels != table:
            raise RtilError(f"--channels {channels} does not match the checkpoint's channel table {table}")
        table_name = "explicit"
    elif table == rosinality_channels(detected_size, channel_multiplier):
        table_name = f"rosinality, channel_multiplier {channel_multiplier}"
    elif table == rtil_authors_channels(detected_size, channel_multiplier):
        table_name = f"RTIL authors' reduced table, channel_multiplier {channel_multiplier}"
    else:
        raise RtilError(f"the checkpoint's channel table {table} is neither rosinality's nor the RTIL authors' for "
                        f"--channel-multiplier {channel_multiplier}; check the multiplier, or pass the table "
                        f"explicitly with --channels " + ",".join(f"{r}:{c}" for r, c in table.items()))
    arch = dict(z_dim=style_dim, w_dim=style_dim, resolution=detected_size,
                img_channels=state["to_rgb1.conv.weight"].shape[1], mapping_layers=n_mlp)
    base = 16384 * channel_multiplier
    if table == {r: min(base // r, 512) for r in table}:
        arch.update(channel_base=base, channel_max=512)
    else:
        arch.update(channels=table)
    return arch, table_name


def generator_key_map(G: Generator) -> dict[str, str]:
    """{rtil state_dict key: rosinality key} for generator G (see the module docstring)."""
    src: dict[str, str] = {"blocks.0.const": "input.input"}
    for i in range(G.config["mapping_layers"]):
        src[f"mapping.layers.{i}.weight"] = f"style.{i + 1}.weight"
        src[f"mapping.layers.{i}.bias"] = f"style.{i + 1}.bias"
    layers = [("blocks.0.conv1", "conv1")]
    rgbs = [("blocks.0.torgb", "to_rgb1")]
    for j in range(1, G.num_blocks):
        layers += [(f"blocks.{j}.conv0", f"convs.{2 * j - 2}"), (f"blocks.{j}.conv1", f"convs.{2 * j - 1}")]
        rgbs.append((f"blocks.{j}.torgb", f"to_rgbs.{j - 1}"))
    for ours, theirs in layers + rgbs:
        src[f"{ours}.weight"] = f"{theirs}.conv.weight"
        src[f"{ours}.affine.weight"] = f"{theirs}.conv.modulation.weight"
        src[f"{ours}.affine.bias"] = f"{theirs}.conv.modulation.bias"
    for index, (ours, theirs) in enumerate(layers):
        src[f"{ours}.bias"] = f"{theirs}.activate.bias"
        src[f"{ours}.noise_strength"] = f"{theirs}.noise.weight"
        src[f"{ours}.noise_const"] = f"noises.noise_{index}"
    for ours, theirs in rgbs:
        src[f"{ours}.bias"] = f"{theirs}.bias"
    return src


def _generator_state(state: dict, G: Generator, path: Path) -> dict:
    """rtil state_dict for G from a rosinality generator state_dict (w_avg is set separately)."""
    _check_blur_kernels(state, path)
    out = _copy_checked(state, generator_key_map(G), G, path)
    out["mapping.w_avg"] = torch.zeros(G.w_dim)
    return out


def _copy_checked(state: dict, src: dict[str, str], module: torch.nn.Module, path: Path) -> dict:
    """{our key: their tensor reshaped to our shape}, with clear errors for absent or mis-shaped keys."""
    target = module.state_dict()
    out = {}
    for ours, theirs in src.items():
        tensor = state.get(theirs)
        if not isinstance(tensor, torch.Tensor):
            raise RtilError(f"{path}: key {theirs!r} is missing; expected {EXPECTED}")
        if tensor.numel() != target[ours].numel():
            raise RtilError(f"{path}: {theirs} has shape {tuple(tensor.shape)}, which does not fit {ours} "
                            f"{tuple(target[ours].shape)} of the detected architecture")
        out[ours] = tensor.detach().float().reshape(target[ours].shape).clone()
    return out


def _check_blur_kernels(state: dict, path: Path) -> None:
    """rtil implements the [1, 3, 3, 1] FIR filter only; refuse checkpoints built with another."""
    expected = fir_filter() * 4
    for key, value in state.items():
        if key.endswith((".blur.kernel", ".upsample.kernel")) and not torch.allclose(value.float(), expected):
            raise RtilError(f"{path}: {key} is not the [1, 3, 3, 1] filter that rtil implements")


def _set_w_avg(G: Generator, obj: dict, used: str) -> str:
    """mapping.w_avg from the file's latent_avg, else the mean of W over 10,000 seeded samples."""
    latent_avg = obj.get("latent_avg") if isinstance(obj, dict) else None
    with torch.no_grad():
        if isinstance(latent_avg, torch.Tensor) and latent_avg.numel() == G.w_dim and used == "g_ema":
            G.mapping.w_avg.copy_(latent_avg.float().reshape(-1))
            return "latent_avg from the file"
        z = torch.randn(W_AVG_SAMPLES, G.z_dim, generator=torch.Generator().manual_seed(0))
        G.mapping.w_avg.copy_(G.mapping(z).mean(0))
    return f"mean of W over {W_AVG_SAMPLES} samples (seed 0): the file has no latent_avg for these weights"


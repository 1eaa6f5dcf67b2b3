"""Import the RTIL authors' PGGAN generator (g33sean/RTIL, mganprior/train/progan_modules.py).

Accepted files, read with weights-only loading (their `args` Namespace is allow-listed):
- their training checkpoint {"g", "d", "g_ema", "g_optimizer", "d_optimizer", "alpha", "step",
  "iteration", "args"}, or any dict holding "g_ema" and/or "g";
- a bare generator state_dict.
Keys may carry DataParallel's "module." prefix.

Source generator keys, for r = 4, 8, ..., R (a = 0, 3 with pixel norm, 0, 2 without):
    input_layer.0.conv.weight_orig   (z_dim, C_4, 4, 4)     input_layer.0.conv.bias   (C_4,)
    progression_{r}.conv.{a}.conv.weight_orig   (C_r, C_in, 3, 3)   ... .bias (C_r,)
    to_rgb_{r}.conv.weight_orig      (3, C_r, 1, 1)         to_rgb_{r}.conv.bias      (3,)
The weights are stored unscaled (their EqualLR multiplies by sqrt(2 / fan_in) at run time), which
is also how rtil's PGGAN stores them, so they are copied unchanged.
"""

import math
import os
import re
from pathlib import Path

import torch

from rtil.checkpoints import save_generator
from rtil.errors import RtilError
from rtil.importers.common import load_source, sha256, strip_prefix, training_args
from rtil.latents import DirichletFusion
from rtil.models.pggan import Generator, rtil_authors_arch

AUTHORS_CODES_PER_MEMBER = [10, 20]
AUTHORS_FUSION_RESOLUTION = 32  # they fuse the codes at the output of the 32x32 block
SOURCE_CODE = "g33sean/RTIL mganprior/train/progan_modules.py"

EXPECTED = ("the RTIL authors' PGGAN checkpoint: a dict with 'g_ema' and/or 'g' (plus optional 'step', "
            "'alpha', 'iteration', 'args'), or a bare generator state_dict with keys "
            "'input_layer.0.conv.weight_orig', 'progression_{r}.conv.{0,3}.conv.weight_orig', "
            "'to_rgb_{r}.conv.weight_orig' for r = 4, 8, ..., R (optionally prefixed 'module.')")
_PROGRESSION = re.compile(r"progression_(\d+)\.conv\.(\d+)\.conv\.weight_orig")


def rtil_lod(step: int, alpha: float, num_blocks: int) -> float:
    """The lod equivalent to the authors' (step, alpha): step s in 0..num_blocks-1 is the top level
    (steps above are clamped, as their forward does) and 0 <= alpha < 1 fades it in (s >= 1)."""
    if step < 0:
        raise RtilError(f"step must be >= 0, got {step}")
    step = min(int(step), num_blocks - 1)
    fading = step > 0 and 0.0 <= float(alpha) < 1.0
    return float(num_blocks - 1 - step) + ((1.0 - float(alpha)) if fading else 0.0)


def load_rtil_pggan(path: str | os.PathLike, weights: str = "g_ema", step: int | None = None,
                    alpha: float | None = None) -> tuple[Generator, dict]:
    """Load an RTIL-authors PGGAN file as an rtil PGGAN `Generator` and a provenance dict.

    weights: which generator of a training checkpoint to read; 'g_ema' falls back to 'g' when the
        file has no EMA copy.
    step, alpha: override the progressive-growing state stored in the file (else the file's, or
        full resolution when the file has none); they set the generator's `lod` (see `rtil_lod`).
    """
    path = Path(path)
    obj = load_source(path, "RTIL PGGAN checkpoint")
    state, used, meta = _pick_state(obj, weights, path)
    state, prefix = strip_prefix(state)
    arch, conv_indices = _detect_arch(state, path)
    G = Generator(**arch)
    G.load_state_dict(_convert_state(state, G, conv_indices, path))

    file_step, file_alpha = meta.get("step"), meta.get("alpha")
    step_used = int(step if step is not None else file_step if file_step is not None else G.num_blocks - 1)
    alpha_used = float(alpha if alpha is not None else file_alpha if file_alpha is not None else 1.0)
    G.set_lod(rtil_lod(step_used, alpha_used, G.num_blocks))
    provenance = {
        "source": "rtil-pggan",
        "source_code": SOURCE_CODE,
        "source_file": path.name,
        "source_sha256": sha256(path),
        "weights": used,
        "key_prefix_stripped": prefix,
        "step": step_used,
        "alpha": alpha_used,
        "growth_state_from": "arguments" if step is not None or alpha is not None
        else "file" if file_step is not None else "assumed full resolution",
        "iteration": meta.get("iteration"),
        "lod": float(G.lod),
        "trained_rtil": meta.get("rtil"),
        "trained_z_number": meta.get("z_number"),
    }
    return G.eval().requires_grad_(False), provenance


def convert_rtil_pggan(in_path: str | os.PathLike, out_path: str | os.PathLike, weights: str = "g_ema",
                       step: int | None = None, alpha: float | None = None,
                       codes_per_member: list[int] | None = None, cut_point: int | None = None,
                       vanilla: bool | None = None) -> Path:
    """Convert an RTIL-authors PGGAN file into an rtil generator file; returns `out_path`.

    The RTIL family written with it is DirichletFusion(codes_per_member, cut_point): by default the
    training run's `args.z_number` if the file has it, else the authors' [10, 20], fused at the
    output of the 32x32 block (the last block for smaller models). vanilla: write no RTIL family;
    by default taken from the file's `args.rtil` (a vanilla training run), else False.
    """
    G, provenance = load_rtil_pggan(in_path, weights=weights, step=step, alpha=alpha)
    if vanilla is None:
        vanilla = provenance["trained_rtil"] is False
    if codes_per_member is None:
        from_file = provenance["trained_z_number"]
        codes_per_member = list(from_file) if from_file else AUTHORS_CODES_PER_MEMBER
    if cut_point is None:
        cut_point = min(int(math.log2(AUTHORS_FUSION_RESOLUTION)) - 1, G.num_blocks)
    family = DirichletFusion(codes_per_member=codes_per_member, cut_point=cut_point)
    family.check(G)
    rtil = None if vanilla else family.to_config()
    return save_generator(out_path, G, rtil=rtil, provenance=provenance)


# ---- reading the source ---------------------------------------------------------------------
def _pick_state(obj, weights: str, path: Path) -> tuple[dict, str, dict]:
    """(generator state_dict, which weights, {step, alpha, iteration, rtil, z_number} when known)."""
    if not isinstance(obj, dict):
        raise RtilError(f"{path} holds a {type(obj).__name__}, not a dict; expected {EXPECTED}")
    if obj.get("format") == "rtil-generator":
        raise RtilError(f"{path} is already an rtil generator file; load it with rtil.load_generator")
    if "g_ema" not in obj and "g" not in obj:
        return obj, "state_dict", {}
    if weights not in ("g_ema", "g"):
        raise RtilError(f"weights must be 'g_ema' or 'g', got {weights!r}")
    used = weights if obj.get(weights) is not None else "g" if weights == "g_ema" else None
    if used is None or not isinstance(obj.get(used), dict):
        raise RtilError(f"{path} has no {weights!r} generator weights (it has: {', '.join(map(str, obj))})")
    args = training_args(obj)
    meta = {key: _plain(obj.get(key)) for key in ("step", "alpha", "iteration")}
    meta["rtil"] = args.get("rtil")
    z_number = args.get("z_number")
    meta["z_number"] = [int(n) for n in z_number] if isinstance(z_number, (list, tuple)) else None
    return obj[used], used, meta


def _plain(value):
    """Python int/float for a number (possibly a 0-d tensor), None otherwise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _detect_arch(state: dict, path: Path) -> tuple[dict, dict[int, list[int]]]:
    """Generator constructor arguments and, per resolution, the two conv indices in the source."""
    convs: dict[int, list[int]] = {}
    for key in state:
        m = _PROGRESSION.fullmatch(str(key))
        if m:
            convs.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    latent = state.get("input_layer.0.conv.weight_orig")
    if latent is None or not convs:
        sample = ", ".join(map(str, list(state)[:4]))
        raise RtilError(f"{path} is not an RTIL PGGAN generator (found keys like: {sample}); expected {EXPECTED}")
    resolutions = sorted(convs)
    resolution = resolutions[-1]
    if resolutions != [2 ** i for i in range(2, int(math.log2(resolution)) + 1)] or resolution < 8:
        raise RtilError(f"{path}: progression blocks are {resolutions}; expected 4, 8, ..., R with R >= 8")
    layouts = {tuple(sorted(idx)) for idx in convs.values()}
    if layouts not in ({(0, 3)}, {(0, 2)}):
        raise RtilError(f"{path}: progression conv indices {sorted(layouts)}; expected (0, 3) with pixel norm "
                        f"or (0, 2) without, in every block")
    first_conv = {r: state[f"progression_{r}.conv.0.conv.weight_orig"] for r in resolutions}
    rgb = state.get(f"to_rgb_{resolution}.conv.weight_orig")
    if latent.ndim != 4 or rgb is None or any(w.ndim != 4 for w in first_conv.values()):
        raise RtilError(f"{path}: unexpected input-layer / ToRGB weights; expected {EXPECTED}")
    arch = rtil_authors_arch(z_dim=int(latent.shape[0]), resolution=resolution,
                             channels={r: int(w.shape[0]) for r, w in first_conv.items()})
    arch["img_channels"] = int(rgb.shape[0])
    arch["pixel_norm"] = layouts == {(0, 3)}
    return arch, {r: sorted(idx) for r, idx in convs.items()}


def _convert_state(state: dict, G: Generator, conv_indices: dict[int, list[int]], path: Path) -> dict:
    """Source keys -> rtil keys (tensors unchanged), with a shape check against G."""
    names = {"blocks.0.latent.weight": "input_layer.0.conv.weight_orig",
             "blocks.0.latent.bias": "input_layer.0.conv.bias"}
    for j, r in enumerate(G.channels):
        for i, a in enumerate(conv_indices[r]):
            names[f"blocks.{j}.convs.{i}.weight"] = f"progression_{r}.conv.{a}.conv.weight_orig"
            names[f"blocks.{j}.convs.{i}.bias"] = f"progression_{r}.conv.{a}.conv.bias"
        names[f"blocks.{j}.torgb.weight"] = f"to_rgb_{r}.conv.weight_orig"
        names[f"blocks.{j}.torgb.bias"] = f"to_rgb_{r}.conv.bias"
    target = G.state_dict()
    missing = [src for src in names.values() if src not in state]
    unused = [k for k in state if k not in set(names.values())]
    if missing or unused:
        raise RtilError(f"{path}: keys do not match the RTIL PGGAN layout: missing {missing[:5]}, "
                        f"unexpected {unused[:5]}; expected {EXPECTED}")
    out = {"lod": target["lod"]}
    for ours, src in names.items():
        tensor = state[src]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(target[ours].shape):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise RtilError(f"{path}: {src} has shape {shape}, expected {tuple(target[ours].shape)} "
                            f"for the detected architecture")
        out[ours] = tensor.detach().float().clone()
    return out


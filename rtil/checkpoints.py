"""Exported generator files: one `torch.save`d dict of tensors and plain Python values that loads
with `torch.load(weights_only=True)`. Nothing in it needs code to unpickle.

Layout (version 1):
    format: "rtil-generator", version: 1
    family: "stylegan2" | "pggan"
    arch: the generator's constructor arguments
    rtil: the RTIL family config ({"kind": "gaussian" | "dirichlet", ...}) or None (vanilla)
    g_ema: state_dict of the EMA generator (the one to use), incl. const noise, w_avg, lod
    g: state_dict of the raw (non-EMA) generator, optional
    provenance: {created, source, ...} how, when and from what the weights were made

A file whose name ends in .safetensors holds the same record in the safetensors format: the tensors as
"g_ema.<name>" and "g.<name>", the other entries as JSON strings in the file's metadata.
"""

import datetime
import inspect
import json
import os
import pickle
import re
import warnings
from pathlib import Path

import torch

from rtil.atomic_files import atomic_torch_save, atomic_write
from rtil.cli_checks import Ranged
from rtil.errors import RtilError

FORMAT = "rtil-generator"
VERSION = 1


def safe_torch_load(path: str | os.PathLike, what: str = "checkpoint", mmap: bool = False):
    """torch.load with weights_only=True and clear errors for missing, foreign or unsafe files (mmap: map the
    tensors' storage instead of reading it, to look at a large file's structure cheaply)."""
    path = Path(path)
    if not path.is_file():
        raise RtilError(f"{what} file not found: {path}")
    try:
        with warnings.catch_warnings():
            # torch's note on a pickle protocol above 2 comes before the error that refuses such a file (or is moot)
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning,
                                    module="torch._weights_only_unpickler")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises many types for foreign bytes (UnpicklingError, RuntimeError, EOFError, ...)
        raise RtilError(_why_unreadable(path, what, e)) from None


# torch.save's format before PyTorch 1.6: a pickle that starts with this magic number (pickled as a long)
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def file_kind(path: str | os.PathLike) -> str:
    """What a file's first bytes say it is, read without unpickling anything: "torch.save" (a zip archive, or
    torch's legacy format), "nvlabs" (an NVlabs network pickle: it names their torch_utils.persistence module),
    "pickle" (another Python pickle), "safetensors" or "other"."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if head.startswith(b"PK\x03\x04") or head.startswith(_LEGACY_TORCH_MAGIC):
        return "torch.save"
    if head.startswith(b"\x80"):  # the PROTO opcode every pickle of protocol 2 or higher starts with
        return "nvlabs" if b"torch_utils.persistence" in head else "pickle"
    if head[8:10] == b'{"':  # an 8-byte header length, then the JSON header
        return "safetensors"
    return "other"


def error_detail(error: BaseException) -> str:
    """"Type: first sentence" of an exception, for one-line messages. torch's refusal of a file that needs code
    (UnpicklingError) is reduced to its reason: its text advises re-running with weights_only=False, which rtil never
    relays."""
    text = str(error).strip()
    if "weights_only" in text or "Weights only" in text:
        found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        reason = found[1].split(" was not an allowed global")[0].split(". ")[0].strip() if found else ""
        return f"{type(error).__name__}: {reason}" if reason else type(error).__name__
    first = text.splitlines()[0].split(". ")[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _why_unreadable(path: Path, what: str, error: Exception) -> str:
    """The message for a file torch.load(weights_only=True) refused: what the file is, never how to load it
    unsafely."""
    kind = file_kind(path)
    if kind == "nvlabs":
        return (f"{path} is an NVlabs network pickle, not a {what} file: convert it with `python -m rtil convert "
                f"nvlabs {path} OUT.pt`, which reads it without running its code (train.py --init_from reads it too)")
    if kind == "pickle":
        return (f"{path} is a Python pickle, not a weights-only torch.save file: rtil does not unpickle it (that can "
                f"run any code), so nothing in it was run")
    if kind in ("safetensors", "other"):
        return (f"{path} is not a readable PyTorch {what}: it is neither a torch.save file nor a pickle"
                + (" (a safetensors file? rtil reads those as .safetensors generator files)"
                   if kind == "safetensors" else ""))
    if isinstance(error, pickle.UnpicklingError):
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(error))
        return (f"{path} needs arbitrary code to unpickle{f' ({found[1]})' if found else ''}, so it was not loaded: "
                f"rtil reads only weights-only files (tensors and plain data)")
    return f"{path} is not a readable PyTorch {what} ({error_detail(error)})"


def _cpu_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def generator_record(G_ema: torch.nn.Module, G: torch.nn.Module | None = None, rtil: dict | None = None,
                     provenance: dict | None = None) -> dict:
    """The exported-file dict for a generator (and optionally its non-EMA twin)."""
    prov = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    prov.update(provenance or {})
    return {
        "format": FORMAT,
        "version": VERSION,
        "family": G_ema.family,
        "arch": dict(G_ema.config),
        "rtil": rtil,
        "g_ema": _cpu_state(G_ema),
        "g": _cpu_state(G) if G is not None else None,
        "provenance": prov,
    }


def save_generator(path: str | os.PathLike, G_ema: torch.nn.Module, G: torch.nn.Module | None = None,
                   rtil: dict | None = None, provenance: dict | None = None) -> Path:
    """Write an exported generator file atomically (safetensors if the name ends in .safetensors); returns the
    path."""
    return write_generator_record(generator_record(G_ema, G, rtil, provenance), path)


SAFETENSORS_SUFFIX = ".safetensors"
_METADATA_KEYS = ("format", "version", "family", "arch", "rtil", "provenance")


def write_generator_record(rec: dict, path: str | os.PathLike) -> Path:
    """Write a generator-file dict atomically: torch.save format, or safetensors for a .safetensors name."""
    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        atomic_torch_save(rec, path)
        return path
    from safetensors.torch import save

    tensors = {f"{part}.{name}": value.contiguous() for part in ("g_ema", "g")
               for name, value in (rec.get(part) or {}).items()}
    metadata = {key: json.dumps(rec.get(key)) for key in _METADATA_KEYS}
    data = save(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))
    return path


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open is no dict
        rec = {key: json.loads(metadata[key]) for key in _METADATA_KEYS if key in metadata}
    except (SafetensorError, OSError, ValueError) as e:  # json errors are ValueErrors
        raise RtilError(f"{path} is not a readable safetensors generator file ({type(e).__name__}: {e})") from None
    for part in ("g_ema", "g"):
        state = {name[len(part) + 1:]: t for name, t in tensors.items() if name.startswith(part + ".")}
        rec[part] = state or None
    return rec


def read_generator_file(path: str | os.PathLike) -> dict:
    """Load and validate an exported generator file (no model is built): a torch.save file (loaded weights-only)
    or a .safetensors file."""
    if Path(path).suffix == SAFETENSORS_SUFFIX:
        if not Path(path).is_file():
            raise RtilError(f"generator file not found: {path}")
        rec = _read_safetensors(Path(path))
    else:
        rec = safe_torch_load(path, "generator")
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        hint = ""
        if isinstance(rec, dict) and "g_ema" in rec and "format" not in rec:
            hint = (" It looks like a rosinality-format StyleGAN2 checkpoint: convert it with "
                    "`python -m rtil convert rosinality IN OUT --size S --channel-multiplier M`.")
        elif isinstance(rec, dict) and "state_dict" in rec and "pytorch-lightning_version" in rec:
            hint = " It is a Lightning training checkpoint: export it with `python -m rtil export CKPT OUT`."
        raise RtilError(f"{path} is not an rtil generator file (no '{FORMAT}' format tag).{hint}")
    if rec.get("version") != VERSION:
        raise RtilError(f"{path} has generator-file version {rec.get('version')}; this rtil reads version {VERSION}")
    missing = [k for k in ("family", "arch", "g_ema") if rec.get(k) is None]
    if missing:
        raise RtilError(f"{path} is missing required entries: {', '.join(missing)}")
    check_architecture(rec["family"], rec["arch"], str(path))
    return rec


# The valid range of each numeric entry of a generator's architecture record ('arch'). The upper bounds are far
# above any published generator's: they keep a damaged or edited record from asking for absurd amounts of memory.
_WIDTH = Ranged(int, 1, 4096)
MAX_RESOLUTION = 4096
ARCH_RANGES = {"z_dim": _WIDTH, "w_dim": _WIDTH, "mapping_layers": Ranged(int, 1, 64),
               "mapping_lr_mul": Ranged(float, 0, open_low=True), "channel_base": Ranged(int, 1),
               "channel_max": _WIDTH, "conv_clamp": Ranged(float, 0, open_low=True),
               "first_block_convs": Ranged(int, 1, 2), "latent_gain": Ranged(float, 0, open_low=True),
               "torgb_gain": Ranged(float, 0, open_low=True)}
_ARCH_FLAGS = ("normalize_latent", "pixel_norm", "pixel_norm_first")


def check_architecture(family, arch, source: str) -> None:
    """Raise RtilError, in one line naming the entry and its valid range, unless a generator's family and
    architecture record ('arch', its constructor arguments) describe a generator rtil can build. `source` names
    the file in the message."""
    from rtil.models import GENERATORS
    from rtil.nn.pggan_layers import UPSAMPLE_MODES

    if not isinstance(family, str) or family not in GENERATORS:
        raise RtilError(f"{source}: unknown generator family {family!r}; known: {', '.join(GENERATORS)}")
    if not isinstance(arch, dict):
        raise RtilError(f"{source}: its 'arch' entry is not a dictionary of constructor arguments")
    known = inspect.signature(GENERATORS[family]).parameters
    unknown = [str(name) for name in arch if name not in known]
    if unknown:
        raise RtilError(f"{source}: architecture entry {unknown[0]!r} is not a setting of the {family} generator "
                        f"(its settings: {', '.join(known)})")
    settings = {name: p.default for name, p in known.items()} | arch
    what = f"{source}: architecture entry"
    resolution = settings["resolution"]
    if type(resolution) is not int or not 8 <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1):
        raise RtilError(f"{what} resolution must be a power of two in [8, {MAX_RESOLUTION}], got {resolution!r}")
    if type(settings["img_channels"]) is not int or settings["img_channels"] not in (1, 3):
        raise RtilError(f"{what} img_channels must be 1 or 3, got {settings['img_channels']!r}")
    for name, ranged in ARCH_RANGES.items():
        if name in known and not (name == "conv_clamp" and settings[name] is None):  # conv_clamp None: no clamping
            ranged.check(f"{what} {name}", settings[name])
    for name in (n for n in _ARCH_FLAGS if n in known):
        if not isinstance(settings[name], bool):
            raise RtilError(f"{what} {name} must be true or false, got {settings[name]!r}")
    if "upsample_mode" in known and settings["upsample_mode"] not in UPSAMPLE_MODES:
        raise RtilError(f"{what} upsample_mode must be one of {', '.join(UPSAMPLE_MODES)}, "
                        f"got {settings['upsample_mode']!r}")
    table = settings["channels"]
    if table is None:
        if settings["channel_base"] < resolution:  # channels at resolution r: min(channel_base // r, channel_max)
            raise RtilError(f"{what} channel_base must be >= the resolution {resolution}, so that every resolution "
                            f"has a channel, got {settings['channel_base']}")
        return
    if not isinstance(table, dict) or not all(str(key).isdigit() for key in table):
        raise RtilError(f"{what} channels must be a table {{resolution: channels}} or null, got {table!r}")
    for res in (2 ** i for i in range(2, resolution.bit_length())):
        count = table.get(res, table.get(str(res)))
        if count is None:
            raise RtilError(f"{what} channels has no entry for resolution {res} (it needs one for 4 to {resolution})")
        _WIDTH.check(f"{what} channels[{res}]", count)


def build_generator(rec: dict, weights: str = "g_ema", source: str = "generator file") -> torch.nn.Module:
    """Instantiate the generator described by a generator-file dict and load its weights (`source`: where the dict
    came from, for messages)."""
    from rtil.models import GENERATORS

    family = rec["family"]
    check_architecture(family, rec["arch"], source)
    G = GENERATORS[family](**rec["arch"])
    state = rec.get(weights)
    if state is None:
        raise RtilError(f"generator file has no {weights!r} weights")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RtilError(f"generator file's {weights!r} entry is not a dictionary of tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise RtilError(f"generator file's {weights!r} weights hold NaN or infinite values ({', '.join(bad[:3])}"
                        f"{', ...' if len(bad) > 3 else ''}): the training it came from diverged")
    check_state_shapes(G.state_dict(), state, f"{source}: the {weights!r} weights do not fit its {family} architecture",
                       " (its 'arch' entry and its weights disagree: was the file edited or damaged?)")
    G.load_state_dict(state)
    return G


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def check_state_shapes(expected: dict, found: dict, what: str, hint: str = "") -> None:
    """Raise RtilError naming the first tensor of `found` (name -> tensor) that a module with state `expected`
    (name -> tensor or shape) cannot load: a missing or unexpected name, or another shape. The message is
    "{what}: tensor NAME: expected shape (..), found (..){hint}" (and how many more tensors differ)."""
    problems = []
    for name, want in expected.items():
        want = tuple(getattr(want, "shape", want))
        if name not in found:
            problems.append(f"tensor {name}: expected shape {_shape_text(want)}, missing")
        elif tuple(getattr(found[name], "shape", ())) != want:
            problems.append(f"tensor {name}: expected shape {_shape_text(want)}, "
                            f"found {_shape_text(getattr(found[name], 'shape', ()))}")
    problems += [f"unexpected tensor {name}" for name in found if name not in expected]
    if problems:
        more = f" ({len(problems) - 1} more tensors differ)" if len(problems) > 1 else ""
        raise RtilError(f"{what}: {problems[0]}{hint}{more}")


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", weights: str = "g_ema"):
    """Load an exported generator file: a ready generator in eval mode with gradients off.

    `G(z, noise_mode="const")` with z (B, z_dim) then returns images (B, C, H, W) in about [-1, 1].
    The file's RTIL family config and provenance are attached as `G.rtil` and `G.provenance`.
    """
    rec = read_generator_file(path)
    G = build_generator(rec, weights, source=str(path))
    G.rtil = rec.get("rtil")
    G.provenance = rec.get("provenance") or {}
    return G.eval().requires_grad_(False).to(device)


def export_lightning_checkpoint(ckpt_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write the generator file of an rtil Lightning training checkpoint (EMA and raw weights)."""
    ckpt = safe_torch_load(ckpt_path, "Lightning checkpoint")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise RtilError(f"{ckpt_path} is not a Lightning checkpoint (no 'state_dict')")
    info = ckpt.get("rtil_generator")
    if not isinstance(info, dict):
        raise RtilError(f"{ckpt_path} was not written by an rtil training module (no 'rtil_generator' entry)")
    state = ckpt["state_dict"]

    def sub(prefix):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    rec = {**info, "g_ema": sub("G_ema."), "g": sub("G.") or None}
    rec["provenance"] = {**(info.get("provenance") or {}), "exported_from": Path(ckpt_path).name,
                         "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    build_generator(rec, source=str(ckpt_path))  # validates architecture and weights before anything is written
    return write_generator_record(rec, out_path)

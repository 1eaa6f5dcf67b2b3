"""`train.py fit --init_from FILE`: a new training run that starts from the weights of a pretrained generator.

Read files (every one weights-only, or through the NVlabs restricted unpickler):
    .ckpt           our Lightning checkpoints: G, G_ema, D and the path-length means
    .pt / .safetensors  our generator files: g_ema and, when exported with it, g (no discriminator)
    .pkl            NVlabs StyleGAN2-ADA network pickles: G_ema, G and D
    .pt             rosinality-format StyleGAN2 files (g_ema, g, d) and the RTIL authors' PGGAN (g_ema, g)

The training config defines the networks; the file must fit them exactly (a clear error names the first tensor that
differs and the option to change). What carries over: the weights of G, its EMA copy (G from the file's EMA weights
when it has no raw ones), D where the file has one that rtil's discriminator computes exactly, w_avg, const noise
maps and PGGAN's lod, and, from our .ckpt only, StyleGAN2's path-length means. What starts fresh: the optimisers, the
kimg clock and every schedule (EMA ramp-up, lazy regularisation, progressive growing).
"""

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rtil.checkpoints import SAFETENSORS_SUFFIX, check_state_shapes, file_kind, read_generator_file
from rtil.errors import RtilError
from rtil.importers.common import load_source, sha256, strip_prefix

# Generator settings that decide tensor shapes: the option of train.py that sets each.
SHAPE_OPTIONS = {"resolution": "--data.resolution", "img_channels": "--data.channels",
                 "z_dim": "--model.init_args.z_dim", "w_dim": "--model.init_args.w_dim",
                 "mapping_layers": "--model.init_args.mapping_layers",
                 "first_block_convs": "--model.init_args.first_block_convs"}
# Generator settings that change what the same tensors compute (none of them shows in a shape).
VALUE_OPTIONS = ("mapping_lr_mul", "conv_clamp", "upsample_mode", "normalize_latent", "pixel_norm_first",
                 "latent_gain", "torgb_gain")
ACCEPTED = ("accepted: rtil .ckpt checkpoints, rtil generator files .pt/.safetensors, rosinality StyleGAN2 .pt, "
            "NVlabs StyleGAN2-ADA .pkl, the RTIL authors' PGGAN .pt")
RTIL_PGGAN_D = ("the RTIL authors' PGGAN discriminator has pixel norm in its convolutions, FromRGB without "
                "activation and a whole-batch stddev: rtil's PGGAN discriminator computes none of these")


@dataclass
class InitSource:
    """What a file offers a new run: generator states in rtil's layout and, where mappable, the discriminator's."""

    path: Path
    sha256: str
    format: str
    family: str
    arch: dict
    g_ema: dict
    g: dict | None = None
    d: dict | None = None
    d_note: str = ""  # why there is no usable discriminator
    pl_mean: torch.Tensor | None = None
    rtil: dict | None = None
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """The run's `init_from` hyper-parameter and the exported file's provenance entry."""
        return {"file": self.path.name, "sha256": self.sha256, "format": self.format,
                "g": "g" if self.g is not None else "g_ema (the file has no raw generator)",
                "discriminator": "imported" if self.d is not None else f"trained from scratch ({self.d_note})"}


# ---- reading --------------------------------------------------------------------------------
def read_init_source(path: str | Path, mbstd_group_size: int = 4, mapping_lr_mul: float = 0.01) -> InitSource:
    """Read FILE of any supported format (see the module docstring). `mbstd_group_size` and `mapping_lr_mul` are the
    run's settings, used where the file does not record them (rosinality's discriminator and mapping)."""
    path = Path(path)
    if not path.is_file():
        raise RtilError(f"--init_from {path}: no such file")
    kind = file_kind(path)
    if path.suffix == ".pkl" or kind == "nvlabs":
        return _nvlabs(path, mbstd_group_size)
    if path.suffix == SAFETENSORS_SUFFIX:
        return _generator_file(path)
    if kind in ("other", "safetensors"):
        what = "a safetensors file not named .safetensors" if kind == "safetensors" else \
            "neither a torch.save file nor a pickle"
        raise RtilError(f"--init_from {path}: not a generator or checkpoint file rtil reads: it is {what} "
                        f"({ACCEPTED})")
    obj = load_source(path, "--init_from file")  # weights-only: a pickle that needs code is refused here
    if isinstance(obj, dict) and "state_dict" in obj and "rtil_generator" in obj:
        return _lightning_checkpoint(path, obj)
    if isinstance(obj, dict) and obj.get("format") == "rtil-generator":
        return _generator_file(path)
    if isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj:
        raise RtilError(f"--init_from {path}: a Lightning checkpoint not written by rtil's training")
    state = obj.get("g_ema", obj.get("g", obj)) if isinstance(obj, dict) else None
    state = strip_prefix(state)[0] if isinstance(state, dict) else {}
    if "style.1.weight" in state:
        return _rosinality(path, obj, mbstd_group_size, mapping_lr_mul)
    if "input_layer.0.conv.weight_orig" in state:
        return _rtil_pggan(path, obj)
    raise RtilError(f"--init_from {path}: not a file rtil can start from ({ACCEPTED})")


def _lightning_checkpoint(path: Path, ckpt: dict) -> InitSource:
    info, state = ckpt["rtil_generator"], ckpt["state_dict"]

    def sub(prefix):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    if not isinstance(info, dict) or not sub("G_ema."):
        raise RtilError(f"--init_from {path}: an rtil checkpoint without generator weights")
    return InitSource(path, sha256(path), "rtil checkpoint", info.get("family"), dict(info.get("arch") or {}),
                      g_ema=sub("G_ema."), g=sub("G.") or None, d=sub("D.") or None,
                      d_note="" if sub("D.") else "the checkpoint holds no discriminator",
                      pl_mean=state.get("pl_mean"), rtil=info.get("rtil"))


def _generator_file(path: Path) -> InitSource:
    rec = read_generator_file(path)
    return InitSource(path, sha256(path), "rtil generator file", rec["family"], dict(rec["arch"]),
                      g_ema=rec["g_ema"], g=rec.get("g") or None, rtil=rec.get("rtil"),
                      d_note="an rtil generator file holds no discriminator")


def _rosinality(path: Path, obj: dict, mbstd_group_size: int, mapping_lr_mul: float) -> InitSource:
    from rtil.importers.rosinality import load_rosinality, load_rosinality_discriminator

    G_ema, provenance = load_rosinality(path, channels="weights", mapping_lr_mul=mapping_lr_mul)
    G = None
    if provenance["weights"] == "g_ema" and isinstance(obj.get("g"), dict):
        G = load_rosinality(path, channels="weights", mapping_lr_mul=mapping_lr_mul, weights="g")[0]
    src = InitSource(path, provenance["source_sha256"], "rosinality", "stylegan2", G_ema.config,
                     g_ema=G_ema.state_dict(), g=G.state_dict() if G is not None else None)
    src.notes.append(f"w_avg: {provenance['w_avg']}")
    if isinstance(obj.get("d"), dict):
        try:
            src.d = load_rosinality_discriminator(path, mbstd_group_size).state_dict()
        except RtilError as e:
            src.d_note = f"its 'd' cannot be read: {_without_path(e, path)}"
    else:
        src.d_note = "the file holds no discriminator 'd' (only rosinality training checkpoints do)"
    return src


def _nvlabs(path: Path, mbstd_group_size: int) -> InitSource:
    from rtil.importers.nvlabs import load_nvlabs, load_nvlabs_discriminator, read_network_pickle

    data = read_network_pickle(path)
    G_ema, provenance = load_nvlabs(path, data=data)
    G = load_nvlabs(path, weights="G", data=data)[0] if isinstance(data.get("G"), dict) else None
    src = InitSource(path, provenance["source_sha256"], "nvlabs", "stylegan2", G_ema.config,
                     g_ema=G_ema.state_dict(), g=G.state_dict() if G is not None else None)
    if "fp16" in provenance:
        src.notes.append(provenance["fp16"])
    try:
        D, notes = load_nvlabs_discriminator(path, data=data, mbstd_group_size=mbstd_group_size)
        src.d = D.state_dict()
        if notes["mbstd_group_size"] != mbstd_group_size:
            src.notes.append(f"discriminator: minibatch-stddev group {mbstd_group_size} (the run's "
                             f"mbstd_group_size), the file's D used {notes['mbstd_group_size']}")
    except RtilError as e:
        src.d_note = f"the file's D: {_without_path(e, path)}"
    if "augment_pipe" in data:
        src.notes.append("the pickle's augmentation state is not used (rtil trains without ADA)")
    return src


def _rtil_pggan(path: Path, obj) -> InitSource:
    from rtil.importers.rtil_pggan import load_rtil_pggan

    G_ema, provenance = load_rtil_pggan(path)
    G = None
    if provenance["weights"] == "g_ema" and isinstance(obj, dict) and isinstance(obj.get("g"), dict):
        G = load_rtil_pggan(path, weights="g")[0]
    has_d = isinstance(obj, dict) and obj.get("d") is not None
    return InitSource(path, provenance["source_sha256"], "rtil-pggan", "pggan", G_ema.config,
                      g_ema=G_ema.state_dict(), g=G.state_dict() if G is not None else None,
                      d_note=RTIL_PGGAN_D if has_d else "the file holds no discriminator")


def _without_path(error: Exception, path: Path) -> str:
    text = str(error)
    return text[len(str(path)) + 2:] if text.startswith(f"{path}: ") else text


# ---- checking and loading -------------------------------------------------------------------
def settings_hint(ours: dict, theirs: dict, channels_ours: dict, channels_theirs: dict) -> str:
    """The options that would make the config's generator the file's, e.g. "set --data.resolution 256"."""
    changes = [f"{option} {theirs[key]}" for key, option in SHAPE_OPTIONS.items()
               if key in theirs and theirs[key] != ours.get(key)]
    common = set(channels_ours) & set(channels_theirs)  # another resolution alone is not another table
    if any(channels_ours[r] != channels_theirs[r] for r in common):
        if theirs.get("channels") is None and "channel_base" in theirs:
            changes.append(f"--model.init_args.channel_base {theirs['channel_base']} "
                           f"--model.init_args.channel_max {theirs['channel_max']}")
        else:
            table = ", ".join(f"{r}: {c}" for r, c in channels_theirs.items())
            changes.append(f"--model.init_args.channel_table '{{{table}}}'")
    return "set " + " ".join(changes) + " to match the file" if changes else "the file's architecture differs"


def _value_differences(generator_class, ours: dict, theirs: dict) -> list[str]:
    """The VALUE_OPTIONS that differ; a setting a config does not record has the generator's default."""
    defaults = {k: v.default for k, v in inspect.signature(generator_class).parameters.items()}
    out = []
    for key in (k for k in VALUE_OPTIONS if k in defaults):
        a, b = ours.get(key, defaults[key]), theirs.get(key, defaults[key])
        same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-9))
        if not same:
            out.append(f"{key}: file {b!r}, config {a!r} (set --model.init_args.{key} {b})")
    return out


def check_generator_fits(module, src: InitSource) -> None:
    """Raise RtilError unless the file's generator is the config's: same family, tensor shapes and settings."""
    from rtil.models.common import channel_table

    family = module.G.family
    if src.family != family:
        raise RtilError(f"--init_from {src.path}: holds a {src.family} generator, but the config trains a {family} "
                        f"({type(module).__name__}); use a {src.family} training config")
    ours = module.G.config
    try:
        theirs_channels = channel_table(src.arch["resolution"], src.arch.get("channel_base", 0),
                                        src.arch.get("channel_max", 0), src.arch.get("channels"))
    except (KeyError, RtilError, ValueError):
        theirs_channels = {}
    hint = settings_hint(ours, src.arch, dict(module.G.channels), theirs_channels)
    for what, state in (("EMA generator", src.g_ema), ("generator", src.g)):
        if state is not None:
            check_state_shapes(module.G.state_dict(), state,
                               f"--init_from {src.path}: the file's {what} does not fit the config's", f"; {hint}")
    if family == "pggan" and not src.arch.get("pixel_norm", True):
        raise RtilError(f"--init_from {src.path}: the file's PGGAN has no pixel norm; rtil's PGGANModule always "
                        f"trains with it")
    differences = _value_differences(type(module.G), ours, src.arch)
    if differences:
        raise RtilError(f"--init_from {src.path}: the file's generator computes with other settings than the "
                        f"config's: {'; '.join(differences)}")


def apply_init_source(module, src: InitSource) -> list[str]:
    """Load the file's weights into a freshly built training module; returns the lines to show the user."""
    check_generator_fits(module, src)
    with torch.no_grad():
        module.G_ema.load_state_dict(src.g_ema)
        module.G.load_state_dict(src.g if src.g is not None else src.g_ema)
    lines = [f"init_from: {src.path.name} ({src.format}, sha256 {src.sha256[:12]}...): G_ema <- the file's EMA "
             f"generator, G <- {'its raw generator' if src.g is not None else 'the same EMA weights (no raw ones)'}"]
    if src.d is not None:
        try:
            check_state_shapes(module.D.state_dict(), src.d, "the file's discriminator does not fit the config's")
            with torch.no_grad():
                module.D.load_state_dict(src.d)
            lines.append("discriminator: imported from the file")
        except RtilError as e:
            src.d, src.d_note = None, str(e)
    if src.d is None:
        lines.append(f"discriminator: trained from scratch ({src.d_note})")
    lines += _carry_path_length_means(module, src)
    if getattr(module.hparams, "progressive", False):
        lines.append("note: progressive growing restarts at 4x4 (progressive: true); to fine-tune at full "
                     "resolution set --model.init_args.progressive false")
    lines += [f"note: {n}" for n in src.notes]
    module.set_init_source(src.record())
    return lines


def _carry_path_length_means(module, src: InitSource) -> list[str]:
    """StyleGAN2: the path-length means of our checkpoints carry over (all of them for the same RTIL family,
    else G0's for every member); other files have none, so they start at 0 as in a fresh run."""
    if not hasattr(module, "pl_mean"):
        return []
    target = module.pl_mean
    if src.pl_mean is None or src.pl_mean.numel() == 0:
        return ["path-length means: start at 0, as in a new run (the file has none)"]
    with torch.no_grad():
        if src.rtil == (module.family.to_config() if module.family is not None else None) \
                and src.pl_mean.shape == target.shape:
            target.copy_(src.pl_mean)
            return ["path-length means: carried over from the checkpoint (same RTIL family)"]
        target.fill_(float(src.pl_mean[0]))
    return ["path-length means: every member starts from the checkpoint's G0 mean (another RTIL family)"]

"""Import NVlabs StyleGAN2-ADA-format network pickles (`network-snapshot-*.pkl`, ffhq.pkl, ...) without running them.

Those pickles store every network as a "persistent object": a call of
`torch_utils.persistence._reconstruct_persistent_obj(meta)` whose `meta` dict carries the Python source of the
network's module (`module_src`), the class name and the object's `__dict__` (`state`: `_parameters`, `_buffers`,
`_modules` holding the sub-networks the same way, `_init_kwargs`). Loading them with `pickle` executes that
source. Here a restricted unpickler resolves only an allow-list of globals: the tensor and storage rebuilders
(storages are read by `torch.load(weights_only=True)`), `collections.OrderedDict`, numeric numpy scalars and
dtypes, `dnnlib.util.EasyDict` (read as a dict), and the persistent-object hook, which is replaced by a function
that returns `meta` unchanged. `module_src` is never imported, compiled or run; any other global is refused.

Key correspondence (NVlabs G_ema -> rtil), R = resolution, blocks j = 0 .. log2(R) - 2 at r = 4 * 2^j:
    mapping.fc{i}.weight/bias                    -> mapping.layers.{i}.weight/bias
    mapping.w_avg                                -> mapping.w_avg
    synthesis.b4.const                           -> blocks.0.const
    synthesis.b{r}.conv0/conv1.<p>               -> blocks.{j}.conv0/conv1.<p>
        (<p>: weight, bias, noise_strength, noise_const, affine.weight, affine.bias)
    synthesis.b{r}.torgb.<p>                     -> blocks.{j}.torgb.<p>  (weight, bias, affine.*)
Both codes store equalized-learning-rate weights the same way (weight / lr_multiplier, scaled at run time), so
the tensors are copied unchanged. rtil's generator is NVlabs' 'skip' architecture, unconditional, float32.

Discriminator (D, for `train.py fit --init_from`), R = resolution, blocks k = 0 .. log2(R) - 3 at r = R / 2^k:
    b{R}.fromrgb.weight/bias                     -> fromrgb.weight/bias
    b{r}.conv0/conv1.weight/bias, b{r}.skip.weight -> blocks.{k}.conv0/conv1.weight/bias, blocks.{k}.skip.weight
    b4.conv/fc/out.weight/bias                   -> conv/fc/out.weight/bias
rtil's discriminator is NVlabs' 'resnet' architecture, unconditional, float32, without conv_clamp.
"""

import collections
import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from rtil.checkpoints import error_detail, save_generator
from rtil.errors import RtilError
from rtil.importers.common import sha256
from rtil.models.stylegan2 import Discriminator, Generator
from rtil.nn import fir_filter

SOURCE_CODE = "NVlabs/stylegan2-ada-pytorch training/networks.py (persistent-object pickle)"
_LAYER_PARAMS = ("weight", "bias", "noise_strength", "noise_const", "affine.weight", "affine.bias")
_RGB_PARAMS = ("weight", "bias", "affine.weight", "affine.bias")
_SYNTHESIS_KWARGS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture",
                     "fp16_channels_last", "resample_filter", "kernel_size", "use_noise", "activation"}
_DISCRIMINATOR_KWARGS = {"c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max",
                         "num_fp16_res", "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs"}
_MAPPING_KWARGS = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta"}


# ---- the restricted unpickler ---------------------------------------------------------------
def _persistent_record(meta):
    """Stands in for NVlabs' persistent-object hook: the record itself, its source left unread."""
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise RtilError("a persistent-object record in the pickle is not a dict with a 'state' dict")
    return dict(meta)


def _load_storage(data):
    if not isinstance(data, bytes):
        raise RtilError("a tensor storage in the pickle is not stored as bytes")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise RtilError(f"a tensor storage in the pickle holds a {type(storage).__name__}, not a storage")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise RtilError(f"a tensor in the pickle is built from a {type(storage).__name__}, not a storage")
    return torch._utils._rebuild_tensor_v2(storage, int(storage_offset), tuple(size), tuple(stride), False,
                                           collections.OrderedDict())


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise RtilError(f"a parameter in the pickle wraps a {type(data).__name__}, not a tensor")
    return data


def _numpy_dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec)
    if dtype.kind not in "biufc":
        raise RtilError(f"the pickle needs numpy dtype {spec!r}; only numeric dtypes are read")
    return dtype


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        raise RtilError("the pickle holds a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): dict,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in `_ALLOWED` (to our own safe stand-ins); refuses every other one."""

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        raise _Refused(f"persistent id {str(pid)[:60]!r}")


class _Refused(Exception):
    pass


def read_network_pickle(path: str | os.PathLike) -> dict:
    """The pickle's top-level dict, with networks as persistent-object records (dicts) and tensors as tensors."""
    path = Path(path)
    if not path.is_file():
        raise RtilError(f"NVlabs network pickle not found: {path}")
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except _Refused as e:
        raise RtilError(f"{path} needs {e}, which rtil does not allow in an NVlabs pickle (only tensors, plain "
                        f"data and persistent-network records are read); refused, nothing in it was run") from None
    except RtilError as e:
        raise RtilError(f"{path}: {e}") from None
    except Exception as e:  # foreign or damaged bytes raise many types (torch's text reduced: see error_detail)
        raise RtilError(f"{path} is not a readable NVlabs network pickle ({error_detail(e)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), dict):
        what = f"a dict with keys {', '.join(map(str, data))}" if isinstance(data, dict) else type(data).__name__
        raise RtilError(f"{path} holds {what}; expected an NVlabs StyleGAN2-ADA pickle with 'G_ema' "
                        f"(a network snapshot: G, D, G_ema, training_set_kwargs, augment_pipe)")
    return data


# ---- records -> tensors ---------------------------------------------------------------------
def _flatten(record: dict, prefix: str = "") -> dict:
    """{dotted name: tensor} of a persistent record's parameters and buffers, recursively."""
    state = record["state"]
    out = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value
    for name, sub in (state.get("_modules") or {}).items():
        if sub is None:
            continue
        if not isinstance(sub, dict) or "state" not in sub:
            raise RtilError(f"sub-network {prefix + name} is not a persistent-object record")
        out.update(_flatten(sub, f"{prefix}{name}."))
    return out


def _plain(value):
    """JSON-like copy of plain data (for provenance); other values become their type name."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return f"<{type(value).__name__}>"


def _submodule(record: dict, name: str) -> dict:
    sub = (record["state"].get("_modules") or {}).get(name)
    if not isinstance(sub, dict) or "state" not in sub:
        raise RtilError(f"the generator has no '{name}' network")
    return sub


def _architecture(record: dict, path: Path) -> tuple[dict, dict]:
    """Generator constructor arguments for the record, refusing what rtil's generator cannot represent."""
    name = record.get("class_name")
    if name != "Generator":
        raise RtilError(f"{path}: G_ema is a {name!r}, not an NVlabs StyleGAN2 'Generator'")
    state = record["state"]
    kwargs = state.get("_init_kwargs") or {}
    synthesis = _submodule(record, "synthesis")
    sub_names = set(synthesis["state"].get("_modules") or {})
    if "input" in sub_names or any(n.startswith("L") for n in sub_names):
        raise RtilError(f"{path} is a StyleGAN3 network (synthesis input + L* layers); rtil converts StyleGAN2 "
                        f"(stylegan2-ada-pytorch) generators only")
    c_dim = kwargs.get("c_dim", state.get("c_dim", 0))
    if c_dim:
        raise RtilError(f"{path} is a conditional generator (c_dim {c_dim}); rtil's generator is unconditional")
    syn = dict(kwargs.get("synthesis_kwargs") or {})
    mapk = dict(kwargs.get("mapping_kwargs") or {})
    unknown = sorted(set(syn) - _SYNTHESIS_KWARGS) + sorted(f"mapping {k}" for k in set(mapk) - _MAPPING_KWARGS)
    if unknown:
        raise RtilError(f"{path}: generator options {', '.join(unknown)} are not known to rtil's converter")
    architecture = syn.get("architecture", "skip")
    if architecture != "skip":
        raise RtilError(f"{path}: synthesis architecture {architecture!r} is not representable; rtil's generator "
                        f"is the 'skip' architecture (config F)")
    for key, default in (("kernel_size", 3), ("activation", "lrelu"), ("use_noise", True)):
        if syn.get(key, default) != default:
            raise RtilError(f"{path}: synthesis {key}={syn[key]!r} is not representable (rtil: {default!r})")
    if list(syn.get("resample_filter", [1, 3, 3, 1])) != [1, 3, 3, 1]:
        raise RtilError(f"{path}: resample_filter {syn['resample_filter']} is not the [1, 3, 3, 1] filter of rtil")
    if mapk.get("activation", "lrelu") != "lrelu":
        raise RtilError(f"{path}: mapping activation {mapk['activation']!r} is not representable (rtil: 'lrelu')")
    w_dim = kwargs.get("w_dim", state.get("w_dim"))
    if mapk.get("layer_features") not in (None, w_dim):
        raise RtilError(f"{path}: mapping layer_features {mapk['layer_features']} differ from w_dim {w_dim}; "
                        f"not representable")
    arch = dict(z_dim=kwargs.get("z_dim", state.get("z_dim")), w_dim=w_dim,
                resolution=kwargs.get("img_resolution", state.get("img_resolution")),
                img_channels=kwargs.get("img_channels", state.get("img_channels")),
                mapping_layers=mapk.get("num_layers", 8), mapping_lr_mul=float(mapk.get("lr_multiplier", 0.01)),
                channel_base=syn.get("channel_base", 32768), channel_max=syn.get("channel_max", 512))
    if syn.get("conv_clamp") is not None:  # clamps every synthesis layer and ToRGB output, as NVlabs' code does
        arch["conv_clamp"] = float(syn["conv_clamp"])
    notes = {"num_fp16_res": syn.get("num_fp16_res", 0), "conv_clamp": syn.get("conv_clamp")}
    return arch, notes


def generator_key_map(G: Generator) -> dict[str, str]:
    """{rtil state_dict key: NVlabs key} for generator G (see the module docstring)."""
    src = {"blocks.0.const": "synthesis.b4.const", "mapping.w_avg": "mapping.w_avg"}
    for i in range(G.config["mapping_layers"]):
        src[f"mapping.layers.{i}.weight"] = f"mapping.fc{i}.weight"
        src[f"mapping.layers.{i}.bias"] = f"mapping.fc{i}.bias"
    for j, block in enumerate(G.blocks):
        theirs = f"synthesis.b{block.resolution}"
        for conv in ("conv1",) if block.is_first else ("conv0", "conv1"):
            src.update({f"blocks.{j}.{conv}.{p}": f"{theirs}.{conv}.{p}" for p in _LAYER_PARAMS})
        src.update({f"blocks.{j}.torgb.{p}": f"{theirs}.torgb.{p}" for p in _RGB_PARAMS})
    return src


def _build(record: dict, path: Path, label: str) -> tuple[Generator, dict]:
    arch, notes = _architecture(record, path)
    tensors = _flatten(record)
    for key, value in tensors.items():
        if key.endswith("resample_filter") and not torch.allclose(value.float(), fir_filter()):
            raise RtilError(f"{path}: {label}.{key} is not the [1, 3, 3, 1] filter that rtil implements")
    extra = sorted(k for k in tensors if not k.endswith("resample_filter") and k.startswith("mapping.embed"))
    if extra:
        raise RtilError(f"{path}: {label} has a label embedding ({extra[0]}); rtil's generator is unconditional")
    try:
        G = Generator(**arch)
    except (TypeError, RtilError) as e:
        raise RtilError(f"{path}: {label}'s settings {arch} do not make an rtil generator ({e})") from None
    target = G.state_dict()
    mapping = generator_key_map(G)
    out = {}
    for ours, theirs in mapping.items():
        tensor = tensors.get(theirs)
        if not isinstance(tensor, torch.Tensor):
            raise RtilError(f"{path}: {label} has no tensor {theirs!r} needed by the detected architecture")
        if tuple(tensor.shape) != tuple(target[ours].shape):
            raise RtilError(f"{path}: {label}.{theirs} has shape {tuple(tensor.shape)}, which does not fit "
                            f"{ours} {tuple(target[ours].shape)} (settings {arch})")
        out[ours] = tensor.detach().float().clone()
    unused = sorted(k for k in tensors if k not in set(mapping.values()) and not k.endswith("resample_filter"))
    if unused:
        raise RtilError(f"{path}: {label} has tensors rtil's generator has no place for: {', '.join(unused[:4])}")
    G.load_state_dict(out)
    return G.eval().requires_grad_(False), notes


def load_nvlabs(path: str | os.PathLike, weights: str = "G_ema", data: dict | None = None) -> tuple[Generator, dict]:
    """Read an NVlabs StyleGAN2-ADA pickle's generator (`G_ema` or `G`) into an rtil `Generator` and provenance.
    `data`: the pickle already read by read_network_pickle (so that a large file is read once)."""
    path = Path(path)
    data = read_network_pickle(path) if data is None else data
    if weights not in ("G_ema", "G") or not isinstance(data.get(weights), dict):
        raise RtilError(f"{path} has no {weights!r} network")
    G, notes = _build(data[weights], path, weights)
    provenance = {
        "source": "nvlabs",
        "source_code": SOURCE_CODE,
        "source_file": path.name,
        "source_sha256": sha256(path),
        "weights": weights,
        "embedded_source": "not read: the pickle's module_src was neither imported nor run",
        "init_kwargs": _plain(data[weights]["state"].get("_init_kwargs")),
        "training_set_kwargs": _plain(data.get("training_set_kwargs")),
    }
    if notes["num_fp16_res"]:
        provenance["fp16"] = (f"num_fp16_res {notes['num_fp16_res']}: rtil computes in float32, as NVlabs' "
                              f"force_fp32=True; their default float16 blocks round differently")
    return G, provenance


def convert_nvlabs(in_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Convert an NVlabs StyleGAN2-ADA pickle into an rtil generator file (G_ema, and the raw G when present)."""
    data = read_network_pickle(in_path)
    G_ema, provenance = load_nvlabs(in_path, data=data)
    G_raw = load_nvlabs(in_path, weights="G", data=data)[0] if isinstance(data.get("G"), dict) else None
    return save_generator(out_path, G_ema, G=G_raw, provenance=provenance)


def load_nvlabs_discriminator(path: str | os.PathLike, data: dict | None = None,
                              mbstd_group_size: int = 4) -> tuple[Discriminator, dict]:
    """The pickle's discriminator `D` as an rtil StyleGAN2 `Discriminator` and notes on it (its minibatch-stddev
    group, fp16 blocks). Raises RtilError when `D` is absent or computes something rtil's discriminator cannot
    (conditioning, an architecture other than 'resnet', conv_clamp, another filter or activation).
    `mbstd_group_size` is a setting of the training run, not of the weights: the caller's value is used."""
    path = Path(path)
    data = read_network_pickle(path) if data is None else data
    record = data.get("D")
    if not isinstance(record, dict) or "state" not in record:
        raise RtilError(f"{path} has no discriminator 'D'")
    if record.get("class_name") != "Discriminator":
        raise RtilError(f"{path}: D is a {record.get('class_name')!r}, not an NVlabs StyleGAN2 'Discriminator'")
    state = record["state"]
    kwargs = dict(state.get("_init_kwargs") or {})
    block = dict(kwargs.get("block_kwargs") or {})
    epilogue = dict(kwargs.get("epilogue_kwargs") or {})
    unknown = sorted(set(kwargs) - _DISCRIMINATOR_KWARGS)
    if unknown:
        raise RtilError(f"D options {', '.join(unknown)} are not known to rtil's converter")
    if kwargs.get("c_dim", state.get("c_dim", 0)):
        raise RtilError(f"D is conditional (c_dim {kwargs.get('c_dim')}); rtil's discriminator is unconditional")
    for name, value, ours in (("architecture", kwargs.get("architecture", "resnet"), "resnet"),
                              ("conv_clamp", kwargs.get("conv_clamp"), None),
                              ("activation", block.get("activation", "lrelu"), "lrelu"),
                              ("epilogue activation", epilogue.get("activation", "lrelu"), "lrelu"),
                              ("resample_filter", list(block.get("resample_filter", [1, 3, 3, 1])), [1, 3, 3, 1])):
        if value != ours:
            raise RtilError(f"D has {name} {value!r}, which rtil's discriminator does not compute (rtil: {ours!r})")
    tensors = _flatten(record)
    for key, value in tensors.items():
        if key.endswith("resample_filter") and not torch.allclose(value.float(), fir_filter()):
            raise RtilError(f"D.{key} is not the [1, 3, 3, 1] filter that rtil implements")
    resolution = kwargs.get("img_resolution", state.get("img_resolution"))
    try:
        D = Discriminator(resolution=resolution, img_channels=kwargs.get("img_channels", state.get("img_channels")),
                          channel_base=kwargs.get("channel_base", 32768), channel_max=kwargs.get("channel_max", 512),
                          mbstd_group_size=mbstd_group_size,
                          mbstd_num_features=epilogue.get("mbstd_num_channels", 1))
    except (TypeError, RtilError) as e:
        raise RtilError(f"D's settings do not make an rtil discriminator ({e})") from None
    src = {"fromrgb.weight": f"b{resolution}.fromrgb.weight", "fromrgb.bias": f"b{resolution}.fromrgb.bias"}
    for k in range(len(D.blocks)):
        theirs = f"b{resolution >> k}"
        src.update({f"blocks.{k}.{layer}.{p}": f"{theirs}.{layer}.{p}" for layer in ("conv0", "conv1")
                    for p in ("weight", "bias")})
        src[f"blocks.{k}.skip.weight"] = f"{theirs}.skip.weight"
    src.update({f"{layer}.{p}": f"b4.{layer}.{p}" for layer in ("conv", "fc", "out") for p in ("weight", "bias")})
    target = D.state_dict()
    out = {}
    for ours, theirs in src.items():
        tensor = tensors.get(theirs)
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(target[ours].shape):
            found = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else "missing"
            raise RtilError(f"D.{theirs} is {found}, which does not fit {ours} {tuple(target[ours].shape)}")
        out[ours] = tensor.detach().float().clone()
    unused = sorted(k for k in tensors if k not in set(src.values()) and not k.endswith("resample_filter"))
    if unused:
        raise RtilError(f"D has tensors rtil's discriminator has no place for: {', '.join(unused[:4])}")
    D.load_state_dict(out)
    notes = {"mbstd_group_size": epilogue.get("mbstd_group_size", 4), "num_fp16_res": kwargs.get("num_fp16_res", 0)}
    return D.eval().requires_grad_(False), notes

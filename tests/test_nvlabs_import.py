"""NVlabs StyleGAN2-ADA pickles: parity with images made by NVlabs' own code, and nothing in a pickle ever runs.

tests/data/nvlabs holds two tiny network snapshots pickled by stylegan2-ada-pytorch's persistence code (embedded
module source blanked) and the images their G_ema produced; see tests/data/nvlabs/README.md.
"""

import copy
import os
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import rtil
from rtil.cli import main as cli_main
from rtil.errors import RtilError
from rtil.importers.nvlabs import convert_nvlabs, load_nvlabs, read_network_pickle

DATA = Path(__file__).resolve().parent / "data" / "nvlabs"
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name, res", [("16px", 16), ("32px", 32), ("16px-clamp", 16)])
def test_converted_generator_reproduces_nvlabs_images(tmp_path, name, res, capsys):
    """16px-clamp: conv_clamp 0.5, which changes the images (by up to 4 without clamping)."""
    out = tmp_path / "ours.pt"
    assert cli_main(["convert", "nvlabs", str(DATA / f"tiny-{name}.pkl"), str(out)]) == 0
    G = rtil.load_generator(out)
    expected = torch.load(DATA / "expected_images.pt", weights_only=True)[name]
    with torch.no_grad():
        images = G(expected["z"], noise_mode="const", truncation_psi=1.0)
        truncated = G(expected["z"], noise_mode="const", truncation_psi=0.5)
    assert (images - expected["images"]).abs().max() <= 1e-4
    assert (truncated - expected["images_psi05"]).abs().max() <= 1e-4
    assert G.provenance["source"] == "nvlabs" and G.provenance["weights"] == "G_ema"
    assert G.config["resolution"] == res and G.config["channel_base"] == 256
    assert G.config.get("conv_clamp") == (0.5 if "clamp" in name else None)


def test_data_is_small_and_holds_no_nvlabs_source():
    assert sum(f.stat().st_size for f in DATA.iterdir()) < 2_000_000
    for f in DATA.glob("*.pkl"):
        data = f.read_bytes()
        assert b"persistent_class" not in data and b"def forward" not in data


# ---- re-pickling records the way NVlabs' persistence does, with a stand-in hook ---------------
class _Persistent:
    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,))


def _wrap(record, module_src):
    state = dict(record["state"])
    state["_modules"] = {k: _wrap(v, module_src) for k, v in (state.get("_modules") or {}).items()}
    return _Persistent(dict(record, state=state, module_src=module_src))


@pytest.fixture
def repickle(monkeypatch, tmp_path):
    """(edit, module_src) -> path of the 16 px snapshot re-pickled after edit(data), G_ema's records carrying
    module_src."""

    def hook(meta):
        raise AssertionError("never called: the test only pickles")

    hook.__module__, hook.__name__, hook.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj", \
        "_reconstruct_persistent_obj"
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = hook
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", persistence)

    def make(edit=None, module_src="pass", name="edited.pkl"):
        data = copy.deepcopy(read_network_pickle(DATA / "tiny-16px.pkl"))
        if edit is not None:
            edit(data)
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"G_ema": _wrap(data["G_ema"], module_src),
                                       "training_set_kwargs": data["training_set_kwargs"]}))
        return path

    return make


def test_embedded_source_never_runs(repickle, tmp_path):
    marker = tmp_path / "pwned"
    path = repickle(module_src=f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(3)\n")
    out = convert_nvlabs(path, tmp_path / "ours.pt")
    assert not marker.exists()
    expected = torch.load(DATA / "expected_images.pt", weights_only=True)["16px"]
    G = rtil.load_generator(out)
    with torch.no_grad():
        assert (G(expected["z"], noise_mode="const") - expected["images"]).abs().max() <= 1e-4


def _set(key, value, where="synthesis_kwargs"):
    def edit(data):
        kwargs = data["G_ema"]["state"]["_init_kwargs"]
        (kwargs if where is None else kwargs[where])[key] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set("c_dim", 4, where=None), "conditional generator (c_dim 4)"),
    (_set("architecture", "resnet"), "architecture 'resnet' is not representable"),
    (_set("architecture", "orig"), "architecture 'orig' is not representable"),
    (lambda d: d["G_ema"]["state"]["_modules"]["synthesis"]["state"]["_modules"].update(
        input=d["G_ema"]["state"]["_modules"]["mapping"]), "StyleGAN3 network"),
])
def test_unrepresentable_settings_are_refused(repickle, tmp_path, edit, message):
    with pytest.raises(RtilError, match=re.escape(message)) as info:
        convert_nvlabs(repickle(edit), tmp_path / "ours.pt")
    assert "\n" not in str(info.value)


def test_clamp_is_applied_and_fp16_recorded(repickle):
    def edit(data):
        _set("conv_clamp", 256)(data)
        _set("num_fp16_res", 2)(data)
    G, provenance = load_nvlabs(repickle(edit))
    assert G.config["conv_clamp"] == 256 and "force_fp32" in provenance["fp16"]


# ---- malicious pickles: refused at the first foreign global, through the CLI ------------------
class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("kind", ["exec", "system", "print"])
def test_malicious_pickle_is_refused_through_the_cli(tmp_path, kind):
    marker = tmp_path / "pwned"
    payload = {"exec": _Evil(exec, f"open({str(marker)!r}, 'w').write('ran')"),
               "system": _Evil(os.system, f"touch {marker}"),
               "print": _Evil(print, "PAYLOAD RAN")}[kind]
    evil = tmp_path / "network.pkl"
    evil.write_bytes(pickle.dumps({"G": None, "G_ema": payload, "training_set_kwargs": {}}))
    proc = subprocess.run([sys.executable, "-m", "rtil", "convert", "nvlabs", str(evil), str(tmp_path / "out.pt")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    name = {"exec": "builtins.exec", "system": f"{os.system.__module__}.system", "print": "builtins.print"}[kind]
    assert f"needs {name}," in proc.stderr and "nothing in it was run" in proc.stderr
    assert "PAYLOAD RAN" not in proc.stdout + proc.stderr
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_not_a_network_pickle(tmp_path, capsys):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    assert cli_main(["convert", "nvlabs", str(path), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert "expected an NVlabs StyleGAN2-ADA pickle with 'G_ema'" in err and err.count("\n") == 1

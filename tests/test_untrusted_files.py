"""Every file rtil reads from the user or from a cache, planted with a pickle whose unpickling runs
`touch MARKER`: the command refuses it (exit status 2, one line) or reports the weights unavailable, and the
marker is never created. docs/loading.md lists the loaders these tests cover."""

import hashlib
import os
import pickle

import pytest
import torch

from conftest import run_invert, tiny_stylegan2
from rtil.checkpoints import save_generator
from rtil.cli import main as rtil_main
from rtil.errors import RtilError


class Payload:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path, marker, how="torch"):
    """Write a payload file at `path`: a torch.save zip file or a plain pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "torch":
        torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"payload": Payload(marker)}))
    return path


@pytest.fixture
def marker(tmp_path, monkeypatch):
    """The marker path; TORCH_HOME is a fresh folder under tmp_path, so nothing from the user's cache is read."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "the planted pickle ran"


def one_line_error(capsys) -> str:
    """The error line a command printed last on stderr (warnings may come before it), never a traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("error: "), err
    return last


def test_the_marker_payload_does_run_when_unpickled_unsafely(tmp_path):
    """The payload used here is live: a plain pickle.load creates the marker (so the other tests can fail)."""
    path = plant(tmp_path / "p.pkl", tmp_path / "ran", how="pickle")
    with open(path, "rb") as f:
        pickle.load(f)  # noqa: S301 - the point of this test
    assert (tmp_path / "ran").exists()


def test_fid_refuses_a_planted_inception_file_before_anything_loads_it(tmp_path, marker, capsys):
    from rtil.evaluation.sample_quality import inception_weights_path

    save_generator(tmp_path / "g.pt", tiny_stylegan2(16, 1).eval())
    path = plant(inception_weights_path(), marker)
    assert rtil_main(["fid", str(tmp_path / "g.pt"), "--num-gen", "4", "--offline", "--quiet"]) == 2
    err = one_line_error(capsys)
    assert str(path) in err and "SHA-256" in err


def test_inception_file_with_the_right_name_prefix_but_another_hash_is_refused(tmp_path, marker, monkeypatch):
    """An attacker can find a payload whose SHA-256 starts with the 8 digits in the name: the full hash decides."""
    from rtil.evaluation import sample_quality

    path = plant(sample_quality.inception_weights_path(), marker)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(sample_quality, "INCEPTION_SHA256", digest[:8] + "0" * 56)
    with pytest.raises(RtilError, match="SHA-256"):
        sample_quality.load_inception(offline=True)


def test_lpips_refuses_a_planted_alexnet_file_even_when_its_hash_prefix_matches(tmp_path, marker, monkeypatch):
    from rtil.evaluation import metrics

    path = plant(metrics.alexnet_weights_path(), marker)
    with pytest.raises(RtilError, match="SHA-256"):
        metrics.load_lpips()
    monkeypatch.setattr(metrics, "ALEXNET_SHA256_PREFIX", hashlib.sha256(path.read_bytes()).hexdigest()[:8])
    with pytest.raises(RtilError, match="arbitrary code"):
        metrics.load_lpips()


@pytest.mark.parametrize("how", ["torch", "pickle"])
@pytest.mark.parametrize("command", [
    ["info", "{file}"],
    ["fid", "{file}", "--offline", "--num-gen", "4"],
    ["export", "{file}", "{out}/g.pt"],
    ["convert", "rosinality", "{file}", "{out}/g.pt", "--size", "16"],
    ["convert", "rtil-pggan", "{file}", "{out}/g.pt"],
    ["convert", "nvlabs", "{file}", "{out}/g.pt"],
])
def test_rtil_commands_refuse_planted_files(tmp_path, marker, capsys, command, how):
    file = plant(tmp_path / "evil.pt", marker, how)
    argv = [a.format(file=file, out=tmp_path / "out") for a in command]
    assert rtil_main(argv) == 2
    one_line_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [
    ["solve", "--generator", "{file}", "--method", "csgm", "--task", "cs", "--ratio", "0.5", "--images",
     "digits-test", "--num-images", "2", "--out", "{out}"],
    ["explore", "--generator", "{file}", "--task", "cs", "--ratio", "0.5", "--images", "digits-test",
     "--num-images", "2", "--out", "{out}"],
])
def test_invert_commands_refuse_a_planted_generator(tmp_path, marker, capsys, command):
    file = plant(tmp_path / "evil.pt", marker)
    assert run_invert([a.format(file=file, out=tmp_path / "out") for a in command]) == 2
    one_line_error(capsys)


def test_sweep_refuses_a_planted_generator(tmp_path, marker, capsys):
    import yaml

    file = plant(tmp_path / "evil.pt", marker)
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({
        "out": str(tmp_path / "sweep"), "images": "digits-test", "num_images": 2, "seed": 0,
        "models": {"evil": str(file)}, "methods": {"csgm": {"steps": 2}}, "tasks": {"cs": [0.5]}}))
    assert run_invert(["sweep", "--config", str(config), "--quiet"]) == 2
    one_line_error(capsys)


def test_sweep_merge_refuses_a_planted_cell_file(tmp_path, marker, capsys):
    import json

    from conftest import ROOT
    from rtil.atomic_files import json_safe
    from rtil.inverse.sweep import RECORD, read_sweep_config

    out = tmp_path / "sweep"
    cell = {"id": "c0", "model": "m", "method": "csgm", "task": "cs", "param": 0.5, "images": ["0"],
            "measurement_loss": [0.1], "metrics": {"psnr": [20.0], "ssim": [0.5]}, "metric_settings": {},
            "lpips": "unavailable"}
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "c0.json").write_text(json.dumps(cell))
    plant(out / "cells" / "c0.pt", marker)
    config = ROOT / "configs" / "eval" / "digits_demo.yaml"
    # the folder passes as this config's sweep folder (its record), so the merge reaches the planted file
    (out / RECORD).write_text(json.dumps(json_safe({**read_sweep_config(config), "cells": ["c0"]})))
    assert run_invert(["sweep", "--config", config, "--out", out, "--merge-only"]) == 2
    assert "c0.pt" in one_line_error(capsys)


def test_training_with_fid_refuses_a_planted_inception_file(tmp_path, marker, capsys):
    from test_train_cli import CONFIG, TINY

    from rtil.evaluation.sample_quality import inception_weights_path
    from rtil.training.cli import main

    plant(inception_weights_path(), marker)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", CONFIG, *TINY, "--model.init_args.total_kimg", "0.008", "--quality.every_kimg",
              "0.004", "--quality.num_samples", "20", "--quality.fid", "true", "--quality.offline", "true",
              "--trainer.default_root_dir", str(tmp_path / "train")])
    assert exit_.value.code == 2
    assert "SHA-256" in one_line_error(capsys)


def test_training_resume_refuses_a_planted_checkpoint(tmp_path, marker, capsys):
    from test_train_cli import CONFIG, TINY

    from rtil.training.cli import main

    file = plant(tmp_path / "evil.ckpt", marker)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path / "train"),
              "--ckpt_path", str(file)])
    assert exit_.value.code == 2
    one_line_error(capsys)

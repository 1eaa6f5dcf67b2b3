"""invert.py's results folders: never an input, never inside the images folder, never the user's folder; a sweep
resumes only into the folder of a sweep with the same config, refuses unknown config keys and leaves nothing behind
when its input is bad."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import run_invert, tiny_stylegan2
from rtil.checkpoints import save_generator
from rtil.errors import RtilError
from rtil.inverse.sweep import check_sweep_folder, read_sweep_config, run_sweep

CSGM = {"method": "csgm", "steps": 2, "restarts": 1}


def snapshot(root: Path) -> dict:
    """Every file under `root` (hidden ones too) and its bytes, and every folder (value None)."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def write_images(folder: Path, size: int = 16, count: int = 2) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (size, size), np.uint8)
        Image.fromarray(pixels, "L").save(folder / f"{i}.png")
    return folder


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("generator") / "g.pt"
    torch.manual_seed(0)
    save_generator(path, tiny_stylegan2(16, 1).eval())
    return path


@pytest.fixture
def inputs(tmp_path, generator_file, monkeypatch) -> dict:
    """The inputs of every writer in tmp_path/inputs: a generator, an images folder, a solver config and a sweep
    config reading them (its results folder: tmp_path/sweep), and an unrelated file of the user."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no LPIPS weights: reported unavailable
    root = tmp_path / "inputs"
    images = write_images(root / "images")
    generator = root / "g.pt"
    generator.write_bytes(generator_file.read_bytes())
    config = root / "csgm.yaml"
    config.write_text(yaml.safe_dump(CSGM))
    sweep = root / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"out": str(tmp_path / "sweep"), "images": str(images), "num_images": 2,
                                     "batch_size": 2, "seed": 0, "models": {"a": str(generator)},
                                     "methods": {"csgm": str(config)}, "tasks": {"cs": [0.5]}}))
    unrelated = root / "notes.txt"
    unrelated.write_text("the user's own file")
    return {"generator": generator, "images": images, "image": images / "0.png", "config": config, "sweep": sweep,
            "unrelated": unrelated}


def solve_argv(inputs, out, *extra):
    return ["solve", "--generator", inputs["generator"], "--method", "csgm", "--task", "cs", "--ratio", 0.5,
            "--images", inputs["images"], "--num-images", 2, "--config", inputs["config"], "--quiet", "--out", out,
            *extra]


def explore_argv(inputs, out, *extra):
    return ["explore", "--generator", inputs["generator"], "--task", "cs", "--ratio", 0.5, "--images",
            inputs["images"], "--num-images", 2, "--initial-config", inputs["config"], "--quiet", "--out", out,
            *extra]


def sweep_argv(inputs, out, *extra):
    return ["sweep", "--config", inputs["sweep"], "--quiet", "--out", out, *extra]


WRITERS = {
    "solve": lambda inputs, out: solve_argv(inputs, out),
    "solve --overwrite": lambda inputs, out: solve_argv(inputs, out, "--overwrite"),
    "explore": lambda inputs, out: explore_argv(inputs, out),
    "explore --overwrite": lambda inputs, out: explore_argv(inputs, out, "--overwrite"),
    "sweep": lambda inputs, out: sweep_argv(inputs, out),
    "sweep --merge-only": lambda inputs, out: sweep_argv(inputs, out, "--merge-only"),
}
# What each writer reads ("config": its solver settings; the sweep's own config too), and the user's unrelated file.
TARGETS = {
    "solve": ["generator", "images", "image", "config", "unrelated"],
    "explore": ["generator", "images", "image", "config", "unrelated"],
    "sweep": ["generator", "images", "image", "config", "sweep", "unrelated"],
}


@pytest.mark.parametrize("writer, target", [(w, t) for w in WRITERS for t in TARGETS[w.split()[0]]])
def test_every_writer_refuses_an_output_at_one_of_its_inputs_or_a_users_file(inputs, tmp_path, capsys, writer,
                                                                              target):
    before = snapshot(tmp_path)
    assert run_invert(WRITERS[writer](inputs, inputs[target])) == 2
    one_error_line(capsys)
    assert snapshot(tmp_path) == before  # byte-identical, and nothing written anywhere


# ---- solve: never inside the images folder, never over an input --------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("where", ["the images folder", "a new folder in it", "a new folder deeper in it"])
def test_solve_refuses_an_out_inside_the_images_folder(inputs, tmp_path, capsys, overwrite, where):
    out = {"the images folder": inputs["images"], "a new folder in it": inputs["images"] / "run",
           "a new folder deeper in it": inputs["images"] / "runs" / "a"}[where]
    before = snapshot(tmp_path)
    assert run_invert(solve_argv(inputs, out, *(["--overwrite"] if overwrite else []))) == 2
    err = one_error_line(capsys)
    assert "is an input" in err or "inside the images folder" in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("moved", ["images", "generator", "config"])
def test_solve_never_writes_over_an_input_kept_in_an_earlier_results_folder(inputs, tmp_path, capsys, moved):
    """With --overwrite, solve writes reconstructions/<index>.png and grid.png into --out: an input there (here the
    images as the earlier run's reconstructions/, or a file in a subfolder) is refused before anything is written."""
    out = tmp_path / "run"
    assert run_invert(solve_argv(inputs, out)) == 0
    capsys.readouterr()
    if moved == "images":
        inputs["images"] = out / "reconstructions"  # a run on the reconstructions would write them anew
    else:
        inputs[moved] = out / "kept" / inputs[moved].name
        inputs[moved].parent.mkdir(exist_ok=True)
        inputs[moved].write_bytes((tmp_path / "inputs" / inputs[moved].name).read_bytes())
    before = snapshot(tmp_path)
    assert run_invert(solve_argv(inputs, out, "--overwrite")) == 2
    assert "holds an input" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


# ---- sweep: the user's folder, another sweep's folder, resuming its own ------------------------------------------


@pytest.mark.parametrize("mode", [[], ["--merge-only"]])
@pytest.mark.parametrize("files", [{"summary.csv": "mine\n", "results.csv": "mine too\n"},
                                   {"sweep_config.json": "not a record"}, {"cells/x.json": "{}"}])
def test_sweep_refuses_a_folder_of_the_users_files(inputs, tmp_path, capsys, mode, files):
    out = tmp_path / "mine"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = snapshot(tmp_path)
    assert run_invert(sweep_argv(inputs, out, *mode)) == 2
    err = one_error_line(capsys)
    assert str(out) in err and ("not a sweep's results folder" in err or "not the record of a sweep" in err)
    assert snapshot(tmp_path) == before
    with pytest.raises(RtilError, match="results folder"):  # the Python API (the demo's) refuses it too
        run_sweep(inputs["sweep"], out=out, progress=False)
    assert snapshot(tmp_path) == before


@pytest.fixture
def finished_sweep(inputs, tmp_path, capsys) -> Path:
    assert run_invert(sweep_argv(inputs, tmp_path / "sweep")) == 0
    assert (tmp_path / "sweep" / "summary.csv").is_file()
    capsys.readouterr()
    return tmp_path / "sweep"


def change_sweep(inputs, tmp_path, change: str) -> str:
    """Change one thing of the sweep's config (or of the solver settings file it reads); returns the config key
    that then differs."""
    cfg = yaml.safe_load(inputs["sweep"].read_text())
    if change == "settings file":
        inputs["config"].write_text(yaml.safe_dump({**CSGM, "steps": 3}))
        return "methods"
    if change == "models":
        other = tmp_path / "inputs" / "h.pt"
        torch.manual_seed(1)
        save_generator(other, tiny_stylegan2(16, 1).eval())
        cfg["models"] = {"a": str(other)}
    elif change == "images":
        cfg["images"] = "digits-test"
    else:
        cfg[change] = {"seed": 1, "num_images": 1, "tasks": {"cs": [0.25]},
                       "methods": {"csgm": {**CSGM, "steps": 3}}}[change]
    inputs["sweep"].write_text(yaml.safe_dump(cfg))
    return change


@pytest.mark.parametrize("change", ["seed", "num_images", "tasks", "methods", "settings file", "models", "images"])
def test_sweep_refuses_the_folder_of_a_sweep_with_another_config(inputs, tmp_path, capsys, finished_sweep, change):
    key = change_sweep(inputs, tmp_path, change)
    before = snapshot(tmp_path)
    assert run_invert(sweep_argv(inputs, finished_sweep)) == 2
    err = one_error_line(capsys)
    assert str(finished_sweep) in err and f"differs in {key}" in err and "new --out" in err
    assert snapshot(tmp_path) == before
    assert run_invert(sweep_argv(inputs, finished_sweep, "--merge-only")) == 2
    assert f"differs in {key}" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_sweep_resumes_its_own_folder_with_another_batch_size_without_recomputing(inputs, tmp_path, capsys,
                                                                                 finished_sweep):
    cells = {p.name: p.read_bytes() for p in (finished_sweep / "cells").iterdir()}
    cfg = yaml.safe_load(inputs["sweep"].read_text())
    cfg["batch_size"] = 1  # images solved at once: the same results
    inputs["sweep"].write_text(yaml.safe_dump(cfg))
    assert run_invert(sweep_argv(inputs, finished_sweep)) == 0
    assert {p.name: p.read_bytes() for p in (finished_sweep / "cells").iterdir()} == cells  # nothing recomputed
    assert json.loads((finished_sweep / "sweep_config.json").read_text())["batch_size"] == 1


def test_a_folder_holding_only_another_ranks_record_being_written_counts_as_empty(inputs, tmp_path):
    cfg = read_sweep_config(inputs["sweep"])
    out = tmp_path / "new"
    out.mkdir()
    (out / ".sweep_config.json.abc123.tmp").write_text("{")
    assert check_sweep_folder(out, cfg) is False
    (out / ".other.tmp").write_text("")
    with pytest.raises(RtilError, match="not a sweep's results folder"):
        check_sweep_folder(out, cfg)


# ---- sweep configs: unknown keys at every level -------------------------------------------------------------------


@pytest.mark.parametrize("change, unknown, accepted", [
    ({"seedz": 1}, "'seedz'", "num_images"),
    ({"methods": {"csgm": {**CSGM, "stepz": 3}}}, "stepz", "restarts"),
    ({"methods": {"csgm": {**CSGM, "tasks": {"cs": {"stepz": 3}}}}}, "stepz", "restarts"),
    ({"methods": {"csgm": {**CSGM, "tasks": {"colorize": {"steps": 3}}}}}, "colorize", "inpaint"),
    ({"tasks": {"deblur": [1]}}, "deblur", "denoise"),
    ("settings file", "stepz", "restarts"),
])
def test_sweep_refuses_unknown_config_keys_naming_them_and_the_accepted_ones(inputs, tmp_path, capsys, change,
                                                                            unknown, accepted):
    if change == "settings file":
        inputs["config"].write_text(yaml.safe_dump({**CSGM, "stepz": 3}))
    else:
        inputs["sweep"].write_text(yaml.safe_dump({**yaml.safe_load(inputs["sweep"].read_text()), **change}))
    before = snapshot(tmp_path)
    assert run_invert(sweep_argv(inputs, tmp_path / "sweep")) == 2
    err = one_error_line(capsys)
    assert unknown in err and accepted in err
    assert snapshot(tmp_path) == before


# ---- sweep: bad input found before the results folder is made ----------------------------------------------------


def bad_sweep(inputs, tmp_path, case: str) -> str:
    """Make the sweep's input bad in a way seen only once a generator or the images are read; returns a part of
    the expected message."""
    cfg = yaml.safe_load(inputs["sweep"].read_text())
    root = tmp_path / "inputs"
    if case == "missing generator":
        cfg["models"] = {"a": str(root / "missing.pt")}
        message = "not found"
    elif case == "not a generator":
        (root / "text.pt").write_text("not a generator")
        cfg["models"] = {"a": str(root / "text.pt")}
        message = "text.pt"
    elif case == "images of another size":
        cfg["images"] = str(write_images(root / "small", size=8))
        message = "8x8"
    elif case == "missing images":
        cfg["images"] = str(root / "nowhere")
        message = "does not exist"
    elif case == "a factor too large for the images":
        cfg["tasks"] = {"sr": [16]}
        message = "bicubic"
    elif case == "a cut point the generator lacks":
        cfg["methods"] = {"mganprior": {"num_codes": 2, "cut_point": 9, "steps": 2}}
        message = "cut point 9"
    else:  # models of two image sizes
        torch.manual_seed(0)
        save_generator(root / "g32.pt", tiny_stylegan2(32, 1).eval())
        cfg["models"] = {"a": str(inputs["generator"]), "b": str(root / "g32.pt")}
        cfg["images"] = "digits-test"
        message = "different shapes"
    inputs["sweep"].write_text(yaml.safe_dump(cfg))
    return message


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("case", ["missing generator", "not a generator", "images of another size", "missing images",
                                  "a factor too large for the images", "a cut point the generator lacks",
                                  "models of two image sizes"])
def test_a_sweep_with_bad_input_leaves_no_results_folder_behind(inputs, tmp_path, capsys, case, existing):
    message = bad_sweep(inputs, tmp_path, case)
    out = tmp_path / "sweep"
    if existing:
        out.mkdir()  # the user's empty folder stays, empty
    before = snapshot(tmp_path)
    assert run_invert(sweep_argv(inputs, out)) == 2
    assert message in one_error_line(capsys)
    assert snapshot(tmp_path) == before
    assert out.is_dir() == existing

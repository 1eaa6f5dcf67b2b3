"""Sweeps: cells, resume without recomputation, sharding across ranks, merged tables and figures."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_invert, tiny_stylegan2
from rtil.checkpoints import save_generator
from rtil.errors import RtilError
from rtil.evaluation.sweep_tables import merge_sweep
from rtil.inverse.run import make_solver
from rtil.inverse.sweep import cell_list, read_sweep_config, run_sweep


def read_rows(path):
    """The rows of a CSV table as dicts (the file closed again)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def sweep_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no LPIPS weights: reported unavailable
    for name, seed in (("vanilla", 1), ("rtil", 2)):
        torch.manual_seed(seed)
        save_generator(tmp_path / f"{name}.pt", tiny_stylegan2(16, 1).eval())
    cfg = {"out": str(tmp_path / "sweep"), "images": "digits-test", "num_images": 3, "batch_size": 3, "seed": 0,
           "models": {"vanilla": str(tmp_path / "vanilla.pt"), "rtil": str(tmp_path / "rtil.pt")},
           "methods": {"csgm": {"steps": 5, "restarts": 1}},
           "tasks": {"cs": [0.25, 0.5]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sweep_writes_tables_curves_and_grids(sweep_config, tmp_path):
    out = run_sweep(sweep_config, progress=False)
    rows = read_rows(out / "results.csv")
    assert len(rows) == 2 * 2 * 3  # models x ratios x images
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["summary"]) == 4
    assert {p["metric"] for p in summary["paired"]} == {"psnr", "ssim"}  # LPIPS weights are not available here
    assert all(p["n"] == 3 for p in summary["paired"])
    assert summary["metric_settings"]["lpips"]["status"] == "unavailable"
    assert (out / "curves" / "cs_psnr.png").is_file() and (out / "curves" / "cs_ssim.png").is_file()
    assert (out / "grids" / "csgm_cs_0.25.png").is_file()


def test_sweep_resumes_without_recomputing_finished_cells(sweep_config):
    out = run_sweep(sweep_config, progress=False)
    cells = sorted((out / "cells").glob("*.json"))
    stamps = {p.name: p.stat().st_mtime_ns for p in cells}
    cells[0].unlink()
    run_sweep(sweep_config, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert set(after) == set(stamps)
    changed = [name for name in after if after[name] != stamps[name]]
    assert changed == [cells[0].name]


def test_sharded_sweep_merges_without_duplicates(sweep_config, tmp_path):
    cfg = read_sweep_config(sweep_config)
    ids = [c["id"] for c in cell_list(cfg)]
    run_sweep(sweep_config, rank=1, world_size=2, progress=False)
    done_by_rank1 = sorted(p.stem for p in (tmp_path / "sweep" / "cells").glob("*.json"))
    assert done_by_rank1 == sorted(ids[1::2])
    run_sweep(sweep_config, rank=0, world_size=2, progress=False)  # rank 0 merges everything
    rows = read_rows(tmp_path / "sweep" / "results.csv")
    keys = [(r["model"], r["method"], r["task"], r["param"], r["image"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(ids) * 3


def test_bad_sweep_configs_are_clear_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"models": {"a": "a.pt"}, "methods": {"csgm": {}}, "tasks": {"deblur": [1]}}))
    with pytest.raises(RtilError, match="unknown task"):
        read_sweep_config(path)
    path.write_text(yaml.safe_dump({"models": {"a": str(tmp_path / "missing.pt")}, "methods": {"csgm": {}},
                                    "tasks": {"cs": [0.5]}, "out": str(tmp_path / "o")}))
    with pytest.raises(RtilError, match="not found"):
        run_sweep(path, progress=False)
    with pytest.raises(RtilError, match="no finished cells"):
        merge_sweep(tmp_path / "o")


def test_torchrun_sweep_shards_cells_and_merges_after_the_barrier(sweep_config, tmp_path):
    """Two ranks launched by torchrun (gloo on CPU): each solves its half, rank 0 merges after the barrier."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_HOME": str(tmp_path / "torch_home")}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(root / "invert.py"), "sweep", "--config", str(sweep_config), "--quiet"],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ids = [c["id"] for c in cell_list(read_sweep_config(sweep_config))]
    assert sorted(p.stem for p in (tmp_path / "sweep" / "cells").glob("*.json")) == sorted(ids)
    rows = read_rows(tmp_path / "sweep" / "results.csv")
    keys = [(r["model"], r["method"], r["task"], r["param"], r["image"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(ids) * 3


@pytest.mark.parametrize("name", ["digits_demo.yaml", "digits_study.yaml"])
def test_shipped_sweep_configs_are_valid(name):
    cfg = read_sweep_config(Path(__file__).resolve().parent.parent / "configs" / "eval" / name)
    for method, settings in cfg["methods"].items():
        make_solver(method, settings)  # raises on unknown or bad settings
    assert cfg["tasks"] and cfg["models"]  # cell_list also needs the generator files


def test_a_rerun_with_other_settings_into_the_same_folder_is_refused_and_a_new_folder_computes_new_cells(
        sweep_config, tmp_path):
    """A sweep resumes only with its own config (issue 29): other settings into the same folder are refused with
    the first sweep's results untouched; into a new folder they compute new cells, not the stale ones."""
    run_sweep(sweep_config, progress=False)
    summary = (tmp_path / "sweep" / "summary.csv").read_bytes()
    first = {r["image"] + r["param"] + r["model"]: r["psnr"] for r in read_rows(tmp_path / "sweep" / "results.csv")}
    cfg = yaml.safe_load(sweep_config.read_text())
    cfg["seed"] = 1  # other operators and starts
    sweep_config.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RtilError, match="differs in seed"):
        run_sweep(sweep_config, progress=False)
    assert (tmp_path / "sweep" / "summary.csv").read_bytes() == summary
    run_sweep(sweep_config, out=tmp_path / "sweep_seed1", progress=False)
    rows = read_rows(tmp_path / "sweep_seed1" / "results.csv")
    assert len(rows) == 12 and all(first[r["image"] + r["param"] + r["model"]] != r["psnr"] for r in rows)


@pytest.mark.parametrize("change, message", [
    ({"tasks": {"cs": [0.25, 0]}}, "must be in (0, 1]"),
    ({"tasks": {"denoise": [float("nan")]}}, "noise_std"),
    ({"tasks": {"cs": ["abc"]}}, "not a number"),
    ({"num_images": "abc"}, "not a number"),
    ({"methods": {"csgm": {"steps": "abc"}}}, "bad csgm settings"),
])
def test_every_cell_is_checked_before_the_first_one_runs(sweep_config, tmp_path, capsys, change, message):
    """Through the CLI: one line on stderr, exit status 2, no traceback, and no cell solved."""
    cfg = {**yaml.safe_load(sweep_config.read_text()), **change}
    sweep_config.write_text(yaml.safe_dump(cfg))
    assert run_invert(["sweep", "--config", sweep_config, "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1 and message in captured.err
    assert "Traceback" not in captured.out + captured.err
    assert not (tmp_path / "sweep" / "cells").exists()


def test_merge_refuses_an_unsafe_cell_file_without_running_it(sweep_config, tmp_path, capsys):
    import pickle

    out = run_sweep(sweep_config, progress=False)

    class Payload:
        def __reduce__(self):
            return (print, ("payload ran",))

    victim = sorted((out / "cells").glob("*.pt"))[0]
    victim.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(RtilError, match="nothing in it was run"):
        merge_sweep(out)
    assert "payload ran" not in capsys.readouterr().out
    assert run_invert(["sweep", "--config", sweep_config, "--merge-only"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "nothing in it was run" in captured.err
    assert "payload ran" not in captured.out and "Traceback" not in captured.err


def test_merge_names_a_cell_file_that_lacks_what_it_reads(sweep_config, capsys):
    out = run_sweep(sweep_config, progress=False)
    victim = sorted((out / "cells").glob("*.json"))[0]
    cell = json.loads(victim.read_text())
    del cell["metrics"]
    victim.write_text(json.dumps(cell))
    assert run_invert(["sweep", "--config", sweep_config, "--merge-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and victim.name in err and "lacks metrics" in err and "Traceback" not in err

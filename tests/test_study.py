"""The vanilla-vs-RTIL study (rtil/study/): the quick study end to end, resuming, and config errors."""

import csv
import re
from pathlib import Path

import pytest
import yaml

from rtil.cli import main as rtil_main
from rtil.evaluation.stats import paired_difference
from rtil.study.runner import run_study

STUDY = Path(__file__).resolve().parent.parent / "configs" / "study" / "digits.yaml"


def study_config(tmp_path: Path, **changes) -> Path:
    """configs/study/digits.yaml with its quick outputs in tmp_path, absolute file paths and `changes` applied."""
    cfg = yaml.safe_load(STUDY.read_text())
    base = STUDY.parent
    for g in cfg["generators"].values():
        g["config"] = str(base / g["config"])
    for m in cfg["methods"].values():
        if "file" in m:
            m["file"] = str((base / m["file"]).resolve())
    cfg["quick"].update(out=str(tmp_path / "study"), report=str(tmp_path / "report" / "results.md"))
    cfg.update(out=str(tmp_path / "full"), report=str(tmp_path / "full_report" / "results.md"))
    for key, value in changes.items():
        cfg[key] = value
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def report_differences(report: str) -> dict:
    """Pooled Δ PSNR per (section heading, cell name) from the report's tables."""
    out, heading = {}, None
    for line in report.splitlines():
        if line.startswith("## "):
            section = line[3:]
        if line.startswith("### "):
            heading = (section, line[4:].split(":")[0])
        cells = [c.strip() for c in line.strip("|").split("|")]
        if heading and len(cells) == 10 and cells[0] not in ("cell", "---"):
            out[heading + (cells[0],)] = float(re.match(r"[+-]?\d+\.\d+", cells[3]).group())
    return out


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("study")
    config = study_config(tmp_path)
    first = run_study(config, quick=True)
    return tmp_path, config, first


def test_quick_study_writes_report_csv_and_figures(quick_study):
    tmp_path, _, first = quick_study
    assert all(first["ran"][stage] > 0 for stage in ("train", "export", "tune", "evaluate", "report"))
    report = (tmp_path / "report" / "results.md").read_text()
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").glob("*.png"))
    assert "results_fdd.png" in figures
    assert any(name.startswith("results_stylegan2_ilo_tuned_cs") for name in figures)
    assert any(name.startswith("results_samples_pggan_rtil") for name in figures)
    assert "results_stylegan2_ilo_early_stop_tuning.png" in figures  # a method run under its own protocol
    assert "Method `ilo_early_stop` (ilo solver)" in report
    for name in re.findall(r"\]\((figures/[^)]+)\)", report):
        assert (tmp_path / "report" / name).is_file(), name

    # every pooled difference in the report equals the one recomputed from the per-image CSV
    with open(tmp_path / "report" / "results_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    cfg = yaml.safe_load(STUDY.read_text())
    titles = {c["title"]: (name, c) for name, c in cfg["comparisons"].items()}
    names = {"cs": lambda p: f"CS {float(p):.0%}", "inpaint": lambda p: f"inpaint {float(p):.0%} observed",
             "sr": lambda p: f"SR x{int(float(p))}"}
    differences = report_differences(report)
    assert len(differences) >= 10
    for (section, heading, cell), value in differences.items():
        cname, comparison = titles[section]
        method, kind = heading.split(", ")[0], heading.split(", ")[1].split(" ")[0]

        def per_image(generator, cname=cname, method=method, kind=kind, cell=cell):
            sel = [r for r in rows if r["comparison"] == cname and r["generator"] == generator
                   and r["method"] == method and r["settings"] == kind and names[r["task"]](r["param"]) == cell]
            return [float(r["psnr"]) for r in sel]

        pairs = list(zip(comparison["baseline"], comparison["treatment"], strict=True))
        baseline = [sum(v) / len(pairs) for v in zip(*(per_image(b) for b, _ in pairs), strict=True)]
        treatment = [sum(v) / len(pairs) for v in zip(*(per_image(t) for _, t in pairs), strict=True)]
        assert len(baseline) == 4
        assert value == pytest.approx(paired_difference(treatment, baseline).mean_difference, abs=0.006)


def test_rerun_does_no_work_and_a_deleted_cell_is_recomputed_alone(quick_study):
    tmp_path, config, _ = quick_study
    again = run_study(config, quick=True, stages=["train", "export", "tune", "evaluate"])
    assert again["ran"] == {"train": 0, "export": 0, "tune": 0, "evaluate": 0}
    cell = sorted((tmp_path / "study" / "cells").glob("*.json"))[5]
    cell.unlink()
    again = run_study(config, quick=True, stages=["train", "export", "tune", "evaluate"])
    assert again["ran"] == {"train": 0, "export": 0, "tune": 0, "evaluate": 1}
    assert cell.is_file()
    generator = sorted((tmp_path / "study" / "generators").glob("*.pt"))[0]  # a clone has no generator files
    generator.unlink()
    again = run_study(config, quick=True, stages=["train", "export", "tune", "evaluate"])
    assert again["ran"] == {"train": 0, "export": 1, "tune": 0, "evaluate": 0}
    assert generator.is_file()


def test_report_stage_removes_only_its_own_stale_figures(quick_study):
    """A figure the previous report showed and the new one does not is deleted; the figures of another report are
    kept, also when its name starts like this one's (results_20kimg.md beside results.md)."""
    tmp_path, config, _ = quick_study
    figures = tmp_path / "report" / "figures"
    stale = figures / "results_removed_method_cs.png"
    others = [figures / "explore_box.png", figures / "results_20kimg_fdd.png", figures / "results_20kimg_fdd.pdf"]
    for path in (stale, stale.with_suffix(".pdf"), *others):
        path.write_bytes(b"old")
    report = tmp_path / "report" / "results.md"
    report.write_text(report.read_text() + "\n![removed](figures/results_removed_method_cs.png)\n")
    (tmp_path / "report" / "results_20kimg.md").write_text("![fdd](figures/results_20kimg_fdd.png)\n")
    run_study(config, quick=True, stages=["report"])
    assert not stale.exists() and not stale.with_suffix(".pdf").exists()
    assert all(path.exists() for path in others) and (figures / "results_fdd.png").exists()


@pytest.mark.parametrize("change, message", [
    ({"comparisons": {"x": {"baseline": ["nope"], "treatment": ["stylegan2_rtil_seed0"], "methods": ["ilo"]}}},
     "does not define"),
    ({"evaluate": {"tasks": {"deblur": [1]}}}, "unknown task"),
    ({"evaluate": {"tasks": {"cs": [1.5]}}}, "must be in (0, 1]"),
    ({"methods": {"magic": {}}}, "unknown solver 'magic'"),
    ({"methods": {"ilo_variant": {"solver": "nope"}}}, "unknown solver 'nope'"),
    ({"tune": {"images": {"split": "test", "first": 2, "count": 10}, "task": "cs", "param": 0.25}},
     "overlap the test images"),
])
def test_bad_study_configs_exit_2_before_any_work(tmp_path, capsys, change, message):
    cfg = yaml.safe_load(study_config(tmp_path).read_text())
    for key, value in change.items():
        cfg[key] = {**cfg[key], **value} if key != "comparisons" else value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert rtil_main(["study", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "full").exists()


def test_paper_scale_config_reads_and_folder_overlap_is_refused(tmp_path):
    """configs/study/ffhq256.yaml is valid once its image folders exist; tuning on test images is refused."""
    from PIL import Image

    from rtil.errors import RtilError
    from rtil.study.config_reading import read_study_config

    folders = {}
    for split in ("validation", "test"):
        folders[split] = tmp_path / split
        folders[split].mkdir()
        for i in range(100 if split == "test" else 32):
            Image.new("RGB", (8, 8), (i, i, i)).save(folders[split] / f"{i:03d}.png")
    path = Path(__file__).resolve().parent.parent / "configs" / "study" / "ffhq256.yaml"
    cfg = yaml.safe_load(path.read_text())
    for g in cfg["generators"].values():
        g["config"] = str((path.parent / g["config"]).resolve())
    for m in cfg["methods"].values():
        m["file"] = str((path.parent / m["file"]).resolve())
    cfg["tune"]["images"]["folder"] = str(folders["validation"])
    cfg["evaluate"]["images"]["folder"] = str(folders["test"])
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(cfg))
    study = read_study_config(good)
    assert study.evaluate.images.count == 100 and study.methods["mganprior"].settings["num_codes"] == 20
    cfg["tune"]["images"] = {"folder": str(folders["test"]), "first": 90, "count": 32}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RtilError, match="fewer than"):
        read_study_config(bad)
    cfg["tune"]["images"] = {"folder": str(folders["test"]), "first": 60, "count": 32}
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RtilError, match="overlap the test images"):
        read_study_config(bad)


def test_generator_fingerprint_follows_the_settings_not_the_wording(tmp_path):
    """Comments, key order and the flat rtil_* keys of earlier configs do not change a generator's fingerprint
    (so rewording a config does not invalidate trained generators); a changed setting does."""
    from rtil.study.config_reading import read_study_config

    base = STUDY.parent / "stylegan2_digits16.yaml"
    nested = yaml.safe_load(base.read_text())
    flat = yaml.safe_load(base.read_text())
    rtil = flat["model"]["init_args"].pop("rtil")
    flat["model"]["init_args"].update(rtil_cut_points=rtil["cut_points"], rtil_sigma=rtil["sigma"])
    other_lr = yaml.safe_load(base.read_text())
    other_lr["model"]["init_args"]["lr"] = 0.001
    fingerprints = {}
    for name, train_cfg, vanilla in [("nested", nested, {"model.init_args.rtil": None}),
                                     ("flat", flat, {"model.init_args.rtil_cut_points": []}),
                                     ("other_lr", other_lr, {"model.init_args.rtil": None})]:
        (tmp_path / name).mkdir()
        train_path = tmp_path / f"{name}.yaml"
        train_path.write_text(f"# the {name} wording\n" + yaml.safe_dump(train_cfg, sort_keys=name == "flat"))
        path = study_config(tmp_path / name, generators={
            "v": {"config": str(train_path), "seed": 0, "set": vanilla},
            "r": {"config": str(train_path), "seed": 0}},
            comparisons={"c": {"baseline": ["v"], "treatment": ["r"], "methods": ["csgm"]}})
        cfg = read_study_config(path)
        fingerprints[name] = {g: cfg.generators[g].fingerprint for g in ("v", "r")}
    assert fingerprints["nested"] == fingerprints["flat"]
    assert fingerprints["nested"]["v"] != fingerprints["nested"]["r"]
    assert fingerprints["other_lr"]["v"] != fingerprints["nested"]["v"]


def write_study(tmp_path: Path, text: str | None = None, **changes) -> Path:
    """study_config(tmp_path) with `changes` applied, or `text` as the config file."""
    path = tmp_path / "variant.yaml"
    if text is not None:
        path.write_text(text)
        return path
    cfg = yaml.safe_load(study_config(tmp_path).read_text())
    cfg.update(changes)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def with_set(tmp_path: Path, generator: str, changes: dict) -> dict:
    generators = yaml.safe_load(study_config(tmp_path).read_text())["generators"]
    generators[generator]["set"] = {**(generators[generator].get("set") or {}), **changes}
    return generators


@pytest.mark.parametrize("case, message", [
    ("top-level key", "unknown key 'jobz' in the top level"),
    ("quick key", "unknown key 'jobz' in 'quick'"),
    ("generator key", "unknown key 'seeds' in generator 'stylegan2_rtil_seed0'"),
    ("set key", "set: 'model.init_args.lrr' is not a setting of the training config"),
    ("set section", "set: 'trainr.devices' is not a setting of the training config"),
    ("comparison key", "unknown key 'method' in comparison 'stylegan2'"),
    ("out is a file", "is a file; give a folder"),
    ("invalid YAML", "variant.yaml, line 4, column 1: not valid YAML"),
])
def test_unknown_keys_a_file_as_out_and_invalid_yaml_exit_2_before_any_work(tmp_path, capsys, case, message):
    cfg = yaml.safe_load(study_config(tmp_path).read_text())
    if case == "top-level key":
        path = write_study(tmp_path, jobz=2)
    elif case == "quick key":
        path = write_study(tmp_path, quick={**cfg["quick"], "jobz": 1})
    elif case == "generator key":
        cfg["generators"]["stylegan2_rtil_seed0"]["seeds"] = 1
        path = write_study(tmp_path, generators=cfg["generators"])
    elif case == "set key":
        path = write_study(tmp_path, generators=with_set(tmp_path, "stylegan2_rtil_seed0", {"model.init_args.lrr": 1}))
    elif case == "set section":
        path = write_study(tmp_path, generators=with_set(tmp_path, "pggan_rtil_seed0", {"trainr.devices": 2}))
    elif case == "comparison key":
        cfg["comparisons"]["stylegan2"]["method"] = ["ilo"]
        path = write_study(tmp_path, comparisons=cfg["comparisons"])
    elif case == "out is a file":
        (tmp_path / "full").write_text("not a folder")
        path = write_study(tmp_path)
    else:
        path = write_study(tmp_path, text="out: x\ngenerators:\n  a: [b\n")
    assert rtil_main(["study", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "full").is_dir()


def test_set_keys_may_name_arguments_the_training_config_leaves_at_their_defaults(tmp_path):
    from rtil.study.config_reading import read_study_config

    changes = {"model.init_args.r1_interval": 8, "trainer.max_time": "00:01:00:00", "checkpoint.save_top_k": 2,
               "wandb": "offline"}
    cfg = read_study_config(write_study(tmp_path, generators=with_set(tmp_path, "stylegan2_rtil_seed0", changes)))
    assert cfg.generators["stylegan2_rtil_seed0"].set["model.init_args.r1_interval"] == 8


TRAINING = """
seed_everything: 0
model:
  class_path: rtil.training.StyleGAN2Module
  init_args: {z_dim: 16, w_dim: 16, mapping_layers: 1, channel_base: 256, channel_max: 16,
              rtil: {kind: gaussian, cut_points: [1], sigma: 1.0}, total_kimg: 1}
data: {dataset: digits, resolution: 8, channels: 1, batch_size: 4, holdout: 100}
"""


def test_finished_work_keeps_its_file_names(tmp_path):
    """The names under which a study finds its trained generators, tuning runs and cells (what makes it resume
    without redoing anything): as rtil/study.py named them before the study became a package, except that tuning
    runs and cells carry rtil.inverse.run.RESULTS_VERSION since version 2 (float64 draws). If this fails on
    purpose (e.g. a solver gained a setting), every finished study recomputes its tuning runs and cells."""
    from rtil.study.cells import evaluate_cells, tune_items
    from rtil.study.config_reading import read_study_config

    study = read_study_config(tiny_study(tmp_path))
    assert {g: v.fingerprint for g, v in study.generators.items()} == {"vanilla": "a1f81f2e51", "rtil": "68cb2c6e1a"}
    assert [Path(i["path"]).name for i in tune_items(study)] == [
        "vanilla__csgm__f3b17f81a4.json", "vanilla__csgm__c50d97739e.json", "rtil__csgm__211030faa7.json",
        "rtil__csgm__8a9650b897.json"]
    assert [c["id"] for c in evaluate_cells(study)] == [
        "vanilla__csgm__cs__0.25__b988658f85", "vanilla__csgm__cs__0.5__8aeca94be4",
        "rtil__csgm__cs__0.25__3c05edc1f1", "rtil__csgm__cs__0.5__6dd00f87a6"]


def test_an_interrupted_training_segment_records_its_time_and_kimg(tmp_path, monkeypatch):
    """timing.json gains a segment when training is interrupted too, and s / kimg counts only timed kimg."""
    import json

    import rtil.training.cli
    from rtil.study.config_reading import read_study_config
    from rtil.study.stages import timed_kimg, train_one

    study = read_study_config(tiny_study(tmp_path))

    def interrupted(arguments):
        raise KeyboardInterrupt

    monkeypatch.setattr(rtil.training.cli, "main", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_one(study, "vanilla")
    segments = json.loads((tmp_path / "out" / "train" / "vanilla" / "timing.json").read_text())
    assert len(segments) == 1 and segments[0]["kimg_from"] == segments[0]["kimg"] == 0.0
    assert not (tmp_path / "out" / "train" / "vanilla" / "done.json").exists()
    # a segment killed before it recorded itself (10 -> 50) is missing; an old segment has no kimg_from
    record = {"kimg": 80.0, "segments": [{"seconds": 9.0, "kimg": 10.0},
                                         {"seconds": 9.0, "kimg_from": 50.0, "kimg": 80.0}]}
    assert timed_kimg(record) == 40.0


def tiny_study(tmp_path: Path) -> Path:
    """A study config of two generators (vanilla, rtil) and four csgm cells, its outputs in tmp_path/out."""
    (tmp_path / "train.yaml").write_text(TRAINING)
    cfg = {"out": str(tmp_path / "out"), "holdout": 100, "train_kimg": 0.5,
           "generators": {"vanilla": {"config": str(tmp_path / "train.yaml"), "seed": 3,
                                      "set": {"model.init_args.rtil": None}},
                          "rtil": {"config": str(tmp_path / "train.yaml"), "seed": 3}},
           "comparisons": {"c": {"baseline": ["vanilla"], "treatment": ["rtil"], "methods": ["csgm"],
                                 "settings": ["common"]}},
           "methods": {"csgm": {"steps": 8, "restarts": 1}},
           "tune": {"images": {"split": "validation", "first": 0, "count": 3}, "task": "cs", "param": 0.25,
                    "grids": {"csgm": [{}, {"lr": 0.05}]}},
           "evaluate": {"images": {"split": "test", "first": 0, "count": 4}, "seed": 1, "tasks": {"cs": [0.25, 0.5]}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_a_second_study_process_on_the_same_out_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from rtil.errors import RtilError
    from rtil.study.runner import study_lock

    lock = tmp_path / "study.lock"
    with study_lock(tmp_path):
        assert lock.read_text().split()[-1] == str(os.getpid())
        with pytest.raises(RtilError, match="another study process .* is working on"):
            with study_lock(tmp_path):
                pass
    assert not lock.exists()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{socket.gethostname()} {finished.stdout.strip()}")  # its process has ended
    with study_lock(tmp_path):
        assert lock.read_text() != f"{socket.gethostname()} {finished.stdout.strip()}"
    lock.write_text("another-host 1")  # a process on another host is assumed to run
    with pytest.raises(RtilError, match="another-host 1"):
        with study_lock(tmp_path):
            pass

"""The study's arms (rtil/study/config_arms.py, snapshots.py, report_arms.py): snapshots at several training budgets
tuned at the longest one, a longer budget continued from the longest snapshot (`continues`), a same-start pair
continued from a trained generator's checkpoint, quality-matched pairs; end to end on a tiny budget, and their config
errors; and configs/study/digits_long.yaml itself, end to end with --quick."""

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from test_study import TRAINING

from rtil.errors import RtilError
from rtil.study.config_reading import read_study_config
from rtil.study.runner import run_study

WORK = ("train", "export", "tune", "evaluate")


def arms_config(tmp_path: Path, **changes) -> Path:
    """A tiny study at 16x16 (4-image batches, 0.04 kimg, checkpoints every 0.02 kimg): snapshots at 0.02 and 0.04
    kimg tuned at 0.04, quality-matched, continued to 0.06 kimg (each arm from its own 0.04-kimg checkpoint), and a
    same-start pair continuing the vanilla generator for 0.02 kimg."""
    train = tmp_path / "train.yaml"
    train.write_text(TRAINING.replace("resolution: 8", "resolution: 16"))
    vanilla = {"model.init_args.rtil": None}
    start = {"generator": "vanilla", "kimg": 0.04}
    cfg = {"out": str(tmp_path / "out"), "report": str(tmp_path / "report" / "results.md"), "holdout": 100,
           "train_kimg": 0.04, "fdd_samples": 32,
           "generators": {"vanilla": {"config": str(train), "seed": 3, "set": vanilla},
                          "rtil": {"config": str(train), "seed": 3},
                          "more_vanilla": {"config": str(train), "seed": 3, "init_from": start,
                                           "set": {**vanilla, "model.init_args.total_kimg": 0.02}},
                          "more_rtil": {"config": str(train), "seed": 3, "init_from": start,
                                        "set": {"model.init_args.total_kimg": 0.02}},
                          "vanilla_longer": {"config": str(train), "seed": 3, "init_from": start,
                                             "set": {**vanilla, "model.init_args.total_kimg": 0.02}},
                          "rtil_longer": {"config": str(train), "seed": 3, "init_from": {**start, "generator": "rtil"},
                                          "set": {"model.init_args.total_kimg": 0.02}}},
           "comparisons": {"length": {"labels": ["vanilla", "RTIL"], "baseline": ["vanilla"], "treatment": ["rtil"],
                                      "methods": ["csgm"], "snapshots": [0.04, 0.02], "tune_at": "longest",
                                      "quality_matched": True},
                           "length_longer": {"continues": "length", "labels": ["vanilla", "RTIL"],
                                             "baseline": ["vanilla_longer"], "treatment": ["rtil_longer"],
                                             "methods": ["csgm"]},
                           "same_start": {"labels": ["vanilla", "RTIL"], "baseline": ["more_vanilla"],
                                          "treatment": ["more_rtil"], "methods": ["csgm"]}},
           "methods": {"csgm": {"steps": 8, "restarts": 1}},
           "tune": {"images": {"split": "validation", "first": 0, "count": 3}, "task": "cs", "param": 0.25,
                    "grids": {"csgm": [{}, {"lr": 0.05}]}},
           "evaluate": {"images": {"split": "test", "first": 0, "count": 4}, "seed": 1, "settings": ["tuned"],
                        "tasks": {"cs": [0.25], "sr": [4]}}}
    for key, value in changes.items():
        cfg[key] = value
    path = tmp_path / "arms.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_arms_end_to_end_and_a_rerun_does_nothing(tmp_path):
    config = arms_config(tmp_path)
    cfg = read_study_config(config)
    assert list(cfg.comparisons) == ["length_0.02kimg", "length_0.04kimg", "length_longer", "same_start"]
    assert cfg.trained_generators() == ["vanilla", "rtil", "more_vanilla", "more_rtil", "vanilla_longer",
                                        "rtil_longer"]
    assert cfg.generators["rtil_0.02kimg"].tune_from == "rtil_0.04kimg"
    longer = cfg.comparisons["length_longer"]
    assert (longer.group, longer.kimg, longer.continued_from, longer.tune_at) == ("length", 0.06, 0.04, "longest")
    assert longer.title == "length, at 0.06 kimg" and cfg.generators["rtil_longer"].tune_from == "rtil_0.04kimg"
    first = run_study(config)
    assert first["ran"]["train"] == 6 and first["ran"]["evaluate"] == 16
    done = yaml.safe_load((tmp_path / "out" / "train" / "rtil_longer" / "done.json").read_text())
    assert done["init_from"].endswith("/rtil/checkpoints/kimg00000.04.ckpt")
    # the continued pair started from the vanilla generator's checkpoint at 0.04 kimg
    for name in ("more_vanilla", "more_rtil"):
        done = yaml.safe_load((tmp_path / "out" / "train" / name / "done.json").read_text())
        assert done["init_from"].endswith("vanilla/checkpoints/kimg00000.04.ckpt")
        assert done["init_from"] == done["arguments"][done["arguments"].index("--init_from") + 1]
    report = (tmp_path / "report" / "results.md").read_text()
    for heading in ("## Training length: length", "## length, quality-matched pairs (closest G0 FDD)",
                    "### Training length: does the sign or size", "### Same start: both arms continued",
                    "### Equal sample quality: quality-matched pairs", "## Wall time per stage"):
        assert heading in report, heading
    assert "tuned once at the longest snapshot (0.04 kimg) and applied to every budget" in report
    assert "From 0.02 to 0.06 kimg the difference moves by" in report
    assert ("the 0.06-kimg point continues each arm's own checkpoint at 0.04 kimg for 0.02 kimg" in report
            and "(snapshots at 0.02, 0.04, 0.06 (continued from 0.04) kimg;" in report)
    assert "**length, at 0.06 kimg** (both arms continue" not in report  # not a same-start pair
    assert (tmp_path / "report" / "figures" / "results_length_csgm_tuned_length.png").is_file()
    with open(tmp_path / "report" / "results_per_image.csv") as f:
        comparisons = {r["comparison"] for r in csv.DictReader(f)}
    assert comparisons == {"length_0.02kimg", "length_0.04kimg", "length_longer", "same_start",
                           "length_quality_matched"}
    again = run_study(config, stages=list(WORK))
    assert again["ran"] == dict.fromkeys(WORK, 0)
    for tensors in (tmp_path / "out" / "cells").glob("*.pt"):  # a clone has the cells' metrics, not their tensors
        tensors.unlink()
    grid = tmp_path / "report" / "figures" / "results_same_start_csgm_grid.png"
    drawn = grid.read_bytes()
    run_study(config, stages=["report"])  # the grid drawn from the tensors stays, with its caption
    assert grid.read_bytes() == drawn and report == (tmp_path / "report" / "results.md").read_text()
    grid.unlink()
    run_study(config, stages=["report"])
    assert "(No image grid for csgm: the cell tensors" in (tmp_path / "report" / "results.md").read_text()
    # a shared copy of a study keeps the kimg checkpoints but not last.ckpt: the export uses the one at the end
    import torch

    from rtil.checkpoints import read_generator_file
    exported = cfg.generator_file("rtil")
    before = read_generator_file(exported)["g_ema"]
    (tmp_path / "out" / "train" / "rtil" / "checkpoints" / "last.ckpt").unlink()
    exported.unlink()
    fdd = tmp_path / "out" / "fdd" / "rtil.json"
    curve = json.loads(fdd.read_text())["curve"]
    assert [point["kimg"] for point in curve] == [0.02, 0.04]
    (tmp_path / "out" / "train" / "rtil" / "checkpoints" / "kimg00000.02.ckpt").unlink()
    assert run_study(config, stages=["export"])["ran"]["export"] == 1
    assert json.loads(fdd.read_text())["curve"] == curve  # the 0.02-kimg point, measured earlier, is kept
    after = read_generator_file(exported)["g_ema"]
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    (tmp_path / "out" / "train" / "rtil" / "checkpoints" / "kimg00000.04.ckpt").unlink()
    exported.unlink()
    with pytest.raises(RtilError, match="has neither last.ckpt nor a checkpoint at 0.04 kimg"):
        run_study(config, stages=["export"])


@pytest.mark.parametrize("change, message", [
    ({"snapshots": [0.08]}, "beyond generator 'vanilla'"),
    ({"snapshots": [0]}, "must be a number of kimg > 0"),
    ({"tune_at": "first"}, "tune_at takes each or longest"),
    ({"snapshots": None, "quality_matched": True}, "need 'snapshots'"),
])
def test_bad_snapshot_settings_are_one_line_errors(tmp_path, change, message):
    cfg = yaml.safe_load(arms_config(tmp_path).read_text())
    cfg["comparisons"]["length"].update(change)
    cfg["comparisons"]["length"] = {k: v for k, v in cfg["comparisons"]["length"].items() if v is not None}
    with pytest.raises(RtilError, match=message):
        read_study_config(arms_config(tmp_path, comparisons=cfg["comparisons"]))


def test_same_start_pairs_must_share_their_start_and_the_source_must_come_first(tmp_path):
    cfg = yaml.safe_load(arms_config(tmp_path).read_text())
    generators = cfg["generators"]
    generators["more_rtil"]["init_from"] = {"generator": "rtil", "kimg": 0.04}
    with pytest.raises(RtilError, match="same-start pair must continue the same generator"):
        read_study_config(arms_config(tmp_path, generators=generators))
    generators["more_rtil"]["init_from"] = {"generator": "later", "kimg": 0.04}
    with pytest.raises(RtilError, match="not a generator defined above it"):
        read_study_config(arms_config(tmp_path, generators=generators))
    generators["more_rtil"]["init_from"] = {"generator": "vanilla", "kimg": 1}
    with pytest.raises(RtilError, match="trains only 0.04 kimg"):
        read_study_config(arms_config(tmp_path, generators=generators))


@pytest.mark.parametrize("change, message", [
    ({"comparisons.length_longer.continues": "same_start"}, "continues 'same_start', which is not a comparison "
                                                            "with 'snapshots'"),
    ({"comparisons.length_longer.snapshots": [0.06]}, "snapshots comes from 'length'"),
    ({"generators.rtil_longer.init_from": {"generator": "vanilla", "kimg": 0.04}},
     "treatment generator 'rtil_longer' must continue 'rtil'"),
    ({"generators.rtil_longer.seed": 4}, "must continue 'rtil'"),
    ({"generators.rtil_longer.init_from": {"generator": "rtil", "kimg": 0.02}}, "from the same kimg"),
    ({"generators.vanilla_longer.init_from": {"generator": "vanilla", "kimg": 0.02},
      "generators.rtil_longer.init_from": {"generator": "rtil", "kimg": 0.02}},
     "not beyond the longest snapshot of 'length'"),
    ({"comparisons.length_longer.treatment": ["rtil_longer", "rtil_longer"],
      "comparisons.length_longer.baseline": ["vanilla_longer", "vanilla_longer"]}, "one baseline generator per pair"),
])
def test_bad_continuations_are_one_line_errors(tmp_path, change, message):
    cfg = yaml.safe_load(arms_config(tmp_path).read_text())
    for dotted, value in change.items():
        section, name, key = dotted.split(".")
        cfg[section][name][key] = value
    with pytest.raises(RtilError, match=re.escape(message)):
        read_study_config(arms_config(tmp_path, generators=cfg["generators"], comparisons=cfg["comparisons"]))


def test_a_continued_generator_needs_its_source_trained(tmp_path):
    from rtil.study.stages import stage_items, train_arguments

    cfg = read_study_config(arms_config(tmp_path))
    assert stage_items(cfg, "train") == ["rtil", "vanilla"]  # the continued ones wait for their sources
    with pytest.raises(RtilError, match="'vanilla' trained to 0.04 kimg, but it is not trained yet"):
        train_arguments(cfg, "more_rtil")


def test_the_long_study_config_keeps_its_trained_generators_and_has_every_arm_in_quick():
    """configs/study/digits_long.yaml: its 10 generators keep the fingerprints they are trained under (their
    records are in outputs/study/digits_long/train; a change would make the study refuse them); --quick has
    snapshots, a same-start pair and PGGAN."""
    path = Path(__file__).resolve().parent.parent / "configs" / "study" / "digits_long.yaml"
    cfg = read_study_config(path)
    assert {g: cfg.generators[g].fingerprint for g in cfg.trained_generators()} == {
        "stylegan2_vanilla_seed0": "4c52cb5688", "stylegan2_rtil_seed0": "04b886d46f",
        "stylegan2_vanilla_seed1": "0d6620d273", "stylegan2_rtil_seed1": "c494cdbfa9",
        "pggan_vanilla_seed0": "da2fe822c6", "pggan_rtil_seed0": "bdbf87c3d8",
        "stylegan2_vanilla_seed0_more_vanilla": "3f89b8cf16", "stylegan2_vanilla_seed0_more_rtil": "fa0cc3d9e3",
        "stylegan2_vanilla_seed1_more_vanilla": "5a99b00af4", "stylegan2_vanilla_seed1_more_rtil": "850580c5d0",
        "stylegan2_vanilla_seed0_160": "a1e6ffdbe8", "stylegan2_rtil_seed0_160": "8cff87802a",
        "stylegan2_vanilla_seed1_160": "59e0277df2", "stylegan2_rtil_seed1_160": "f97029a60d"}
    assert cfg.comparisons["stylegan2_length_160kimg"].kimg == 160
    quick = read_study_config(path, quick=True)
    assert list(quick.comparisons) == ["stylegan2_length_0.032kimg", "stylegan2_length_0.064kimg",
                                       "pggan_length_0.032kimg", "pggan_length_0.064kimg", "stylegan2_length_160kimg",
                                       "stylegan2_same_start", "stylegan2_80kimg_mganprior"]
    assert quick.generators["stylegan2_vanilla_seed1_more_rtil"].init_from == {
        "generator": "stylegan2_vanilla_seed1", "kimg": 0.064}
    assert quick.comparisons["stylegan2_length_160kimg"].kimg == pytest.approx(0.096)


def run_quick_copy(tmp_path: Path, config: str) -> dict:
    """`python -m rtil study --config configs/study/<config> --quick` on a copy of configs/ whose quick budget writes
    into tmp_path (out/, report/results.md), one worker; returns the items each stage ran."""
    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "configs", tmp_path / "configs")
    path = tmp_path / "configs" / "study" / config
    cfg = yaml.safe_load(path.read_text())
    cfg["quick"].update(jobs=1, out=str(tmp_path / "out"), report=str(tmp_path / "report" / "results.md"))
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run_study(path, quick=True)["ran"]


def test_the_long_study_runs_end_to_end_with_quick(tmp_path):
    """`python -m rtil study --config configs/study/digits_long.yaml --quick` (a copy of configs/ whose quick
    budget writes into tmp_path, one worker): every arm trains, is evaluated and reported."""
    ran = run_quick_copy(tmp_path, "digits_long.yaml")
    assert ran["train"] == 14 and ran["evaluate"] > 0
    report = (tmp_path / "report" / "results.md").read_text()
    for heading in ("## Training length: StyleGAN2, vanilla vs RTIL", "## Training length: PGGAN, vanilla vs RTIL",
                    "### Same start: both arms continued", "### Equal sample quality: quality-matched pairs",
                    "## The solver's budget", "### The solver's budget: a higher ceiling, or the same ceiling sooner?",
                    "Tuning search of ilo", "Tuning search of csgm", "Tuning search of mganprior"):
        assert heading in report, heading
    assert "generators lose" in report and "with their pair partner's chosen settings" in report
    assert "the 0.096-kimg point continues each arm's own checkpoint at 0.064 kimg" in report
    with open(tmp_path / "report" / "results_per_image.csv") as f:
        comparisons = {r["comparison"] for r in csv.DictReader(f)}
    assert {"stylegan2_length_160kimg", "stylegan2_same_start", "stylegan2_length_quality_matched",
            "pggan_length_quality_matched"} <= comparisons


def test_the_pggan_study_runs_end_to_end_with_quick(tmp_path):
    """`python -m rtil study --config configs/study/pggan_long.yaml --quick` (issue 31): the PGGAN same-start arm and
    the factor pilots train, are tuned by the mGANprior search, evaluated and reported."""
    ran = run_quick_copy(tmp_path, "pggan_long.yaml")
    assert ran["train"] == 10 and ran["tune"] > 0 and ran["evaluate"] > 0
    report = (tmp_path / "report" / "results.md").read_text()
    for heading in ("### Same start: both arms continued", "PGGAN pilot, vanilla vs RTIL with the paper's member "
                    "weighting", "PGGAN pilot with the channel table x2", "Tuning search of mganprior",
                    "### PGGAN continued from vanilla at 80 kimg, as vanilla vs as RTIL, at 0.064 kimg: paper "
                    "protocol"):
        assert heading in report, heading
    with open(tmp_path / "report" / "results_per_image.csv") as f:
        comparisons = {r["comparison"] for r in csv.DictReader(f)}
    assert {"pggan_same_start_0.064kimg", "pggan_factor_cut1_0.064kimg"} <= comparisons
    with open(tmp_path / "report" / "results_per_image.csv") as f:
        paper = {r["generator"] for r in csv.DictReader(f) if r["settings"] == "protocol paper"}
    assert paper == {f"pggan_vanilla_seed{s}_more_{arm}_{k}kimg" for s in (0, 1) for arm in ("vanilla", "rtil")
                     for k in ("0.032", "0.064")}

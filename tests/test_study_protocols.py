"""A comparison's named solver protocols (rtil/study/protocols.py, cells.py, report_protocols.py): the config entry
and its one-line errors, the cells each arm gets, and a tiny study end to end with the protocol in the per-image CSV
and the report."""

import csv
import re
from pathlib import Path

import pytest
import yaml
from test_study import TRAINING

from rtil.errors import RtilError
from rtil.study.config import load_run_config, save_run_config
from rtil.study.config_reading import read_study_config

PROTOCOL = {"method": "csgm", "baseline": {"lr": 0.05}, "treatment": {"steps": 4}, "tasks": {"cs": [0.25]},
            "source": "a test: a lower rate for the baseline, fewer steps for the treatment"}


def protocol_study(tmp_path: Path, protocols=None, settings=("tuned",)) -> Path:
    """A tiny study (two 16x16 generators trained 0.04 kimg, csgm with 8 steps, 4 test images, CS 25%) whose
    comparison has `protocols` (by default one, 'short')."""
    (tmp_path / "train.yaml").write_text(TRAINING.replace("resolution: 8", "resolution: 16"))
    cfg = {"out": str(tmp_path / "out"), "report": str(tmp_path / "report" / "results.md"), "holdout": 100,
           "train_kimg": 0.04, "fdd_samples": 32,
           "generators": {"vanilla": {"config": str(tmp_path / "train.yaml"), "seed": 3,
                                      "set": {"model.init_args.rtil": None}},
                          "rtil": {"config": str(tmp_path / "train.yaml"), "seed": 3}},
           "comparisons": {"c": {"title": "Tiny", "labels": ["vanilla", "RTIL"], "baseline": ["vanilla"],
                                 "treatment": ["rtil"], "methods": ["csgm"], "settings": list(settings),
                                 "protocols": {"short": PROTOCOL} if protocols is None else protocols}},
           "methods": {"csgm": {"steps": 8, "restarts": 1}},
           "tune": {"images": {"split": "validation", "first": 0, "count": 3}, "task": "cs", "param": 0.25,
                    "grids": {"csgm": [{}, {"lr": 0.05}]}},
           "evaluate": {"images": {"split": "test", "first": 0, "count": 4}, "seed": 1,
                        "tasks": {"cs": [0.25], "sr": [4]}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_a_protocol_is_read_and_kept_in_the_run_config(tmp_path):
    cfg = read_study_config(protocol_study(tmp_path))
    assert cfg.comparisons["c"].protocols == {"short": PROTOCOL}
    assert load_run_config(save_run_config(cfg)).comparisons == cfg.comparisons
    unsourced = {"method": "csgm", "baseline": {}, "treatment": {}, "tasks": {"sr": [4]}}  # source is optional
    read = read_study_config(protocol_study(tmp_path, {"short": PROTOCOL, "unsourced": unsourced}))
    assert read.comparisons["c"].protocols["unsourced"] == {**unsourced, "source": ""}


@pytest.mark.parametrize("protocols, message", [
    ({"short": {**PROTOCOL, "method": "ilo"}},
     "comparisons.c.protocols.short.method: 'ilo' is not one of the comparison's methods ['csgm']"),
    ({"short": {**PROTOCOL, "treatment": {"stepz": 4}}},
     "comparisons.c.protocols.short.treatment, setting 'stepz': unknown csgm setting(s) ['stepz']"),
    ({"short": {**PROTOCOL, "baseline": {"lr": -1}}}, "comparisons.c.protocols.short.baseline, setting 'lr'"),
    ({"short": {**PROTOCOL, "tasks": {"denoise": [0.1]}}},
     "comparisons.c.protocols.short.tasks: task 'denoise' is not among evaluate.tasks (cs, sr)"),
    ({"short": {**PROTOCOL, "tasks": {"cs": [2]}}}, "comparisons.c.protocols.short.tasks.cs:"),
    ({"short": {**PROTOCOL, "baseline": "sgd"}},
     "comparisons.c.protocols.short.baseline must be a mapping of changes to csgm's common settings"),
    ({"short": ["csgm"]}, "comparisons.c.protocols.short takes {method, baseline, treatment, tasks, source}"),
    ({"short": {**PROTOCOL, "lr": 1}}, "comparisons.c.protocols.short takes {method, baseline, treatment, tasks"),
    ({"short": {k: v for k, v in PROTOCOL.items() if k != "tasks"}}, "comparisons.c.protocols.short takes"),
    (["short"], "comparisons.c.protocols must map protocol names to {method, baseline, treatment, tasks, source}"),
    ({"short": {**PROTOCOL, "source": "two\nlines"}}, "comparisons.c.protocols.short.source must be one line"),
])
def test_a_bad_protocol_is_a_one_line_error_naming_its_key(tmp_path, protocols, message):
    with pytest.raises(RtilError) as error:
        read_study_config(protocol_study(tmp_path, protocols))
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_each_arm_gets_protocol_cells_with_its_own_settings(tmp_path):
    """Every generator gets the protocol's cells with its arm's changes; a protocol whose settings are the common
    ones shares the common cells' files, and other settings give other cells."""
    from rtil.study.cells import evaluate_cells

    protocols = {"short": PROTOCOL, "same": {**PROTOCOL, "baseline": {}, "treatment": {}}}
    cfg = read_study_config(protocol_study(tmp_path, protocols, settings=["common"]))
    cells = evaluate_cells(cfg)
    common = {(c["generator"], c["task"], c["param"]): c["id"] for c in cells if c["kind"] == "common"}
    short = {c["generator"]: c for c in cells if c["kind"] == "protocol short"}
    assert set(short) == {"vanilla", "rtil"}
    assert short["vanilla"]["settings"] == {"steps": 8, "restarts": 1, "lr": 0.05}
    assert short["rtil"]["settings"] == {"steps": 4, "restarts": 1}
    assert all((c["task"], c["param"], c["method"]) == ("cs", 0.25, "csgm") for c in short.values())
    assert short["vanilla"]["id"] != common[("vanilla", "cs", 0.25)]
    assert short["rtil"]["id"] != common[("rtil", "cs", 0.25)]
    same = {c["generator"]: c["id"] for c in cells if c["kind"] == "protocol same"}
    assert same == {g: common[(g, "cs", 0.25)] for g in ("vanilla", "rtil")}


def test_the_verdicts_cells_of_every_comparison_run_before_the_protocol_cells(tmp_path):
    """An interrupted study has its verdicts' cells first: with snapshots, both snapshot comparisons' common cells
    come before either's protocol cells."""
    from rtil.study.stages import stage_items

    path = protocol_study(tmp_path, settings=["common"])
    config = yaml.safe_load(path.read_text())
    config["comparisons"]["c"]["snapshots"] = [0.04, 0.02]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    kinds = [(c["comparison"], c["kind"]) for c in stage_items(read_study_config(path), "evaluate")]
    assert kinds == [("c_0.02kimg", "common")] * 4 + [("c_0.04kimg", "common")] * 4 + [
        ("c_0.02kimg", "protocol short")] * 2 + [("c_0.04kimg", "protocol short")] * 2


def test_a_protocol_end_to_end_is_in_the_csv_and_the_report(tmp_path):
    from rtil.study.runner import run_study

    config = protocol_study(tmp_path)
    ran = run_study(config)["ran"]
    assert ran["evaluate"] == 6  # tuned: 2 generators x (CS, SR); the protocol: 2 generators x CS
    with open(tmp_path / "report" / "results_per_image.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["settings"] == "protocol short"]
    assert {(r["generator"], r["task"], r["param"]) for r in rows} == {("vanilla", "cs", "0.25"),
                                                                       ("rtil", "cs", "0.25")}
    assert len(rows) == 8  # 4 images per generator
    report = (tmp_path / "report" / "results.md").read_text()
    assert "## Other solver protocols" in report and "### Tiny: short protocol" in report
    assert ("csgm with its common settings changed for vanilla by `{lr: 0.05}` and for RTIL by `{steps: 4}`. "
            "Source: a test: a lower rate for the baseline, fewer steps for the treatment.") in report
    section = report.split("### Tiny: short protocol", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| CS 25% |"))
    number = r"[+-]\d+\.\d+ \[[+-]\d+\.\d+, [+-]\d+\.\d+\]"
    assert re.fullmatch(rf"\| CS 25% \| \d+\.\d+ \| \d+\.\d+ \| {number} \| \w+ \| {number} \|", row), row
    assert run_study(config, stages=["train", "export", "tune", "evaluate"])["ran"]["evaluate"] == 0

"""The study config's inputs (rtil/study/config_reading.py, config_checks.py, config_arms.py): outputs that would
replace a file the study did not write, values of the wrong type (a test generated from every key the reader
takes), checks that used to come only after work had started, and the report's FDD sample count. No training."""

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from test_study import TRAINING, study_config

from rtil.cli import main as rtil_main
from rtil.errors import RtilError
from rtil.study import config_reading
from rtil.study.config_checks import CSV_HEADER, IMAGE_KEYS, OUT_MARKS, report_config
from rtil.study.config_reading import read_study_config

ROOT = Path(__file__).resolve().parent.parent

# A study that uses every key the reader takes. Its files are relative to the folder the tests run it in (tmp_path).
FULL = {
    "out": "out", "report": "report/results.md", "jobs": 1, "holdout": 100, "train_kimg": 0.04, "fdd_samples": 32,
    "fid_samples": 8,
    "claims": "none", "device": "cpu",
    "generators": {
        "vanilla": {"config": "study_train.yaml", "seed": 3, "set": {"model.init_args.rtil": None}},
        "rtil": {"config": "study_train.yaml", "seed": 3},
        "vanilla_longer": {"config": "study_train.yaml", "seed": 3, "init_from": {"generator": "vanilla", "kimg": 0.04},
                           "set": {"model.init_args.rtil": None, "model.init_args.total_kimg": 0.02}},
        "rtil_longer": {"config": "study_train.yaml", "seed": 3, "init_from": {"generator": "rtil", "kimg": 0.04},
                        "set": {"model.init_args.total_kimg": 0.02}}},
    "comparisons": {
        "length": {"title": "Length", "labels": ["vanilla", "RTIL"], "baseline": ["vanilla"], "treatment": ["rtil"],
                   "methods": ["csgm"], "tasks": ["cs"], "settings": ["tuned"], "snapshots": [0.02, 0.04],
                   "tune_at": "longest", "quality_matched": True,
                   "budgets": {"method": "csgm", "factors": [2], "tasks": {"cs": [0.25]}},
                   "protocols": {"paper": {"method": "csgm", "baseline": {"lr": 0.05}, "treatment": {"lr": 0.1},
                                           "tasks": {"cs": [0.25]}, "source": "a test"}}},
        "longer": {"continues": "length", "baseline": ["vanilla_longer"], "treatment": ["rtil_longer"],
                   "methods": ["csgm"]}},
    "methods": {"csgm": {"file": "study_csgm.yaml", "solver": "csgm", "description": "CSGM", "restarts": 1},
                "csgm_searched": {"file": "study_csgm.yaml", "solver": "csgm"}},
    "tune": {"images": {"folder": "study_images", "first": 0, "count": 3}, "task": "cs", "param": 0.25,
             "batch_size": 3, "grids": {"csgm": [{}, {"lr": 0.05}]},
             "search": {"csgm_searched": [
                 {"name": "lr", "key": "lr", "scale": [0.5, 1, 2], "extend": 2, "limit": [0.25, 4], "why": "test"},
                 {"name": "noise maps", "key": "optimize_noises", "values": [False, True]}]}},
    "evaluate": {"images": {"split": "test", "first": 0, "count": 4}, "batch_size": 4, "seed": 1,
                 "settings": ["tuned", "common"], "common_tasks": ["cs"], "tasks": {"cs": [0.25], "sr": [4]}},
    "quick": {"jobs": 1, "train_kimg": 0.04, "evaluate": {"images": {"count": 2}}},
}


def write_study(tmp_path: Path, monkeypatch, changes: dict | None = None) -> Path:
    """FULL with `changes` ({path tuple or dotted path: value}) as tmp_path/study.yaml, with its input files; the
    tests run in tmp_path."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "study_train.yaml").write_text(TRAINING)
    (tmp_path / "study_csgm.yaml").write_text("steps: 8\n")
    (tmp_path / "study_images").mkdir(exist_ok=True)
    for i in range(3):
        Image.new("L", (8, 8), 40 * i).save(tmp_path / "study_images" / f"{i}.png")
    cfg = copy.deepcopy(FULL)
    for path, value in (changes or {}).items():
        *parents, leaf = path.split(".") if isinstance(path, str) else path
        node = cfg
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def refused_by_the_cli(path: Path, capsys) -> str:
    """The one-line error of `python -m rtil study --config path` (exit status 2, no traceback, nothing written)."""
    assert rtil_main(["study", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not (path.parent / "out").exists()
    return err


def test_the_full_config_reads_with_and_without_quick(tmp_path, monkeypatch):
    path = write_study(tmp_path, monkeypatch)
    cfg = read_study_config(path)
    assert set(cfg.comparisons) == {"length_0.02kimg", "length_0.04kimg", "longer"}
    assert read_study_config(path, quick=True).evaluate.images.count == 2


# ------------------------------------------------------------------------------------------------------------------
# outputs that would replace a file the study did not write


@pytest.mark.parametrize("report, message", [
    ("study.yaml", "is also an input of the study"),  # the study config itself
    ("study_train.yaml", "is also an input of the study"),  # a generator's training config
    ("study_csgm.yaml", "is also an input of the study"),  # a method's settings file
    ("notes.md", "exists and is not a study's report"),  # a user's file
    ("results.md", "is the report of another study config (other.yaml)"),
    ("out/report.json", "is a file the study writes itself"),
])
def test_a_report_that_is_an_input_or_not_this_studys_is_refused(tmp_path, monkeypatch, capsys, report, message):
    (tmp_path / "notes.md").write_text("my notes\n")
    (tmp_path / "results.md").write_text("# x\n\nGenerated by `python -m rtil study --config other.yaml` (...)\n")
    path = write_study(tmp_path, monkeypatch, {"report": report})
    before = {p: p.read_bytes() for p in tmp_path.glob("*.*") if p.is_file()}
    assert message in refused_by_the_cli(path, capsys)
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize("named", ["study.yaml", "{tmp}/study.yaml", "study.yaml --quick", "./study.yaml"])
def test_a_report_this_study_wrote_may_be_rewritten(tmp_path, monkeypatch, named):
    path = write_study(tmp_path, monkeypatch)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "results.md").write_text(
        f"# Does RTIL help?\n\nGenerated by `python -m rtil study --config {named.format(tmp=tmp_path)}` (the report "
        f"stage; do not edit by hand).\n")
    assert read_study_config(path).report == Path("report/results.md")


def test_the_per_image_csv_beside_the_report_must_be_one_a_study_wrote(tmp_path, monkeypatch, capsys):
    from rtil.study.cells import write_per_image_csv

    path = write_study(tmp_path, monkeypatch)
    csv_path = tmp_path / "report" / "results_per_image.csv"
    csv_path.parent.mkdir()
    csv_path.write_text("name,score\nann,3\n")
    assert "(the report's per-image CSV) exists and is not one a study wrote" in refused_by_the_cli(path, capsys)
    assert csv_path.read_text() == "name,score\nann,3\n"
    cell = {"comparison": "c", "generator": "g", "method": "csgm", "kind": "tuned", "task": "cs", "param": 0.25,
            "result": {"images": ["test/0"], "measurement_loss": [0.1], "metrics": {"psnr": [20.0]}}}
    write_per_image_csv([cell], csv_path)  # what the report stage writes is recognised
    assert csv_path.read_text().startswith(CSV_HEADER)
    read_study_config(path)


def test_figures_beside_the_report_named_like_its_own_must_be_shown_by_it(tmp_path, monkeypatch, capsys):
    path = write_study(tmp_path, monkeypatch)
    figures = tmp_path / "report" / "figures"
    figures.mkdir(parents=True)
    for name in ("explore_box.png", "results_20kimg_fdd.png", "results_other_csgm_grid.png"):  # not this report's
        (figures / name).write_bytes(b"user")
    read_study_config(path)
    for name in ("results_fdd.png", "results_length_csgm_tuned_length.pdf", "results_samples_vanilla.png"):
        (figures / name).write_bytes(b"user")
        assert f"report/figures/{name} is named like a figure of the report" in refused_by_the_cli(path, capsys)
        assert (figures / name).read_bytes() == b"user"
        (figures / name).unlink()
    # the report this study wrote shows them: they are its own (a PDF beside a PNG it shows too)
    (figures / "results_fdd.png").write_bytes(b"figure")
    (figures / "results_length_csgm_tuned_length.pdf").write_bytes(b"figure")
    (tmp_path / "report" / "results.md").write_text(
        "# Report\n\nGenerated by `python -m rtil study --config study.yaml` (the report stage).\n\n"
        "![fdd](figures/results_fdd.png)\n![length](figures/results_length_csgm_tuned_length.png)\n")
    read_study_config(path)
    for name in list(figures.iterdir()):
        name.unlink()
    figures.rmdir()
    figures.write_text("a file")
    assert "(where the report's figures go) is a file" in refused_by_the_cli(path, capsys)


def test_out_must_be_new_empty_or_a_study_output_folder(tmp_path, monkeypatch, capsys):
    path = write_study(tmp_path, monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    read_study_config(path)  # empty
    (out / "holiday.jpg").write_bytes(b"photo")
    assert rtil_main(["study", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "out out is a folder that is neither empty nor a study's output folder" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]
    for mark in OUT_MARKS:
        (out / mark).write_text("{}")
        read_study_config(path)
        (out / mark).unlink()


@pytest.mark.parametrize("out, message", [
    (".", "holds the study's input"),  # the config and every other input
    ("study_images", "holds the study's input"),  # an image folder itself
    ("study_images/out", "is inside the image folder"),  # its images would join the tuning images
])
def test_out_may_not_be_or_contain_an_input(tmp_path, monkeypatch, out, message):
    path = write_study(tmp_path, monkeypatch, {"out": out})
    (tmp_path / "run_config.json").write_text("{}")  # so that only the input rule refuses "."
    with pytest.raises(RtilError, match=message):
        read_study_config(path)


def test_the_committed_studies_and_their_reports_are_recognised_as_their_own(tmp_path, monkeypatch):
    """`python -m rtil study --config configs/study/digits_long.yaml --stage report` in a clone: its out folder
    (outputs/study/digits_long, which keeps stage_seconds.json but no run_config.json) and report docs/results.md
    are the study's own; another study may not write docs/results.md."""
    monkeypatch.chdir(ROOT)
    assert (ROOT / "outputs" / "study" / "digits_long" / "stage_seconds.json").is_file()
    assert report_config(ROOT / "docs" / "results.md") == "configs/study/digits_long.yaml"
    cfg = read_study_config("configs/study/digits_long.yaml")
    assert cfg.report == Path("docs/results.md") and cfg.out == Path("outputs/study/digits_long")
    assert read_study_config(ROOT / "configs" / "study" / "digits.yaml").report == Path("docs/results_20kimg.md")
    other = study_config(tmp_path, report=str(ROOT / "docs" / "results.md"))
    with pytest.raises(RtilError, match="is the report of another study config"):
        read_study_config(other)


# ------------------------------------------------------------------------------------------------------------------
# values of the wrong type: a case per value the reader reads, generated from FULL


def value_paths(node, path=()):
    """(path, value) of every value in a config: mapping entries and list items at every depth; a generator's
    `set` is a whole (its entries are train.py options, which train.py checks)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        yield path + (key,), value
        if key != "set":
            yield from value_paths(value, path + (key,))


def wrong_values(value) -> list:
    """Values of other types than `value`: a string for a number, a mapping or a list; a number for a string; and
    YAML's true for a number, 1 for a bool (true/false are not numbers, numbers are not true/false)."""
    if isinstance(value, bool):
        return ["wrong", 1]
    if isinstance(value, int | float):
        return ["wrong", True]
    if isinstance(value, str):
        return [12345]
    return ["wrong"]


WRONG = [(path, wrong) for path, value in value_paths(FULL) for wrong in wrong_values(value)]


def test_the_generated_cases_cover_every_key_the_reader_takes():
    keys = {key for path, _ in WRONG for key in path if isinstance(key, str)}
    readers = (config_reading.TOP_LEVEL, config_reading.GENERATOR_KEYS, config_reading.METHOD_KEYS,
               config_reading.COMPARISON_KEYS, config_reading.TUNE_KEYS, config_reading.EVALUATE_KEYS, IMAGE_KEYS,
               ("generator", "kimg"))
    assert {key for reader in readers for key in reader} <= keys
    assert len(WRONG) > 100


@pytest.mark.parametrize("path, wrong", WRONG, ids=[f"{'.'.join(map(str, p))}={w!r}" for p, w in WRONG])
def test_a_value_of_the_wrong_type_is_a_one_line_error_naming_its_key(tmp_path, monkeypatch, path, wrong):
    config = write_study(tmp_path, monkeypatch, {path: wrong})
    try:
        read_study_config(config, quick=path[0] == "quick")
    except RtilError as e:
        message = str(e)
    else:
        raise AssertionError(f"{path} = {wrong!r} was accepted")
    named = [key for key in path if isinstance(key, str)][-1]
    assert named in message and "\n" not in message, message


@pytest.mark.parametrize("path, value, message", [
    ("evaluate.seed", "abc", "evaluate.seed must be an integer in [0, 4294967295], got 'abc'"),
    ("jobs", "two", "jobs must be an integer >= 1, got 'two'"),
    ("evaluate.batch_size", "big", "evaluate.batch_size must be an integer >= 1, got 'big'"),
    ("holdout", "lots", "holdout must be an integer in [0, 1499], got 'lots'"),
    ("generators.vanilla.seed", "zero", "generators.vanilla.seed must be an integer in [0, 4294967295], got 'zero'"),
    ("tune.param", "quarter", "tune.param: the parameter of task 'cs' must be a number, got 'quarter'"),
    ("jobs", True, "jobs must be an integer >= 1, got True"),
    ("generators.rtil.seed", 2.5, "generators.rtil.seed must be an integer"),
])
def test_the_reported_type_errors_exit_2_without_a_traceback(tmp_path, monkeypatch, capsys, path, value, message):
    assert message in refused_by_the_cli(write_study(tmp_path, monkeypatch, {path: value}), capsys)


# ------------------------------------------------------------------------------------------------------------------
# checks that came only after work had started


@pytest.mark.parametrize("path, value, message", [
    ("train_kimg", -1, "train_kimg must be a number > 0, got -1"),
    ("evaluate.batch_size", 0, "evaluate.batch_size must be an integer >= 1, got 0"),
    ("tune.batch_size", 0, "tune.batch_size must be an integer >= 1, got 0"),
    ("evaluate.images.count", 100000, "evaluate.images: first + count = 100000, but the digits' test split has 297"),
    ("evaluate.images.first", 295, "evaluate.images: first + count = 299, but the digits' test split has 297"),
    ("holdout", 5000, "holdout must be an integer in [0, 1499], got 5000"),
    ("fdd_samples", 1, "fdd_samples must be 0 (no FDD) or at least 2"),
    ("generators.vanilla_longer.init_from.kimg", 0.01,
     "generators.vanilla_longer.init_from.kimg: 'vanilla': 0.01 kimg is before the generator's first checkpoint: it "
     "writes one every 0.02 kimg (checkpoint.every_kimg) and at its end (0.04 kimg)"),
    ("comparisons.length.snapshots", [0.01, 0.04],
     "comparisons.length.snapshots: 'vanilla': 0.01 kimg is before the generator's first checkpoint"),
    (("generators", "rtil", "set"), {"checkpoint.every_kimg": 0}, "set: checkpoint.every_kimg must be > 0, got 0"),
    (("generators", "rtil", "set"), {"samples.every_kimg": -1}, "set: samples.every_kimg must be > 0, got -1"),
    ("device", "gpu7", "device 'gpu7' is not 'auto' nor a torch device"),
])
def test_late_checks_come_when_the_config_is_read_naming_the_users_key(tmp_path, monkeypatch, capsys, path, value,
                                                                     message):
    err = refused_by_the_cli(write_study(tmp_path, monkeypatch, {path: value}), capsys)
    assert message in err
    if path == "train_kimg":
        assert "samples.every_kimg" not in err  # the train.py option the study derives from it


def test_a_checkpoint_exists_at_every_kimg_from_the_first_interval_and_at_the_end():
    from rtil.study.config import Generator
    from rtil.study.config_arms import check_checkpoint

    short = Generator(config="t.yaml", seed=0, set={}, fingerprint="f", members_per_step=1, total_kimg=0.01,
                      checkpoint_kimg=0.02)
    check_checkpoint(short, 0.01, "x")  # its end, before a whole interval
    check_checkpoint(replace(short, total_kimg=None), 0.02, "x")
    check_checkpoint(replace(short, total_kimg=1.0), 0.5, "x")
    with pytest.raises(RtilError, match="0.005 kimg is before the generator's first checkpoint"):
        check_checkpoint(short, 0.005, "x")


# ------------------------------------------------------------------------------------------------------------------
# the report


@pytest.mark.parametrize("fdd_samples, text", [(64, "distance of 64 samples per member"),
                                               (1000, "distance of 1,000 samples per member"),
                                               (0, "FDD: not computed, fdd_samples is 0")])
def test_the_generators_section_names_the_configured_fdd_samples(tmp_path, monkeypatch, fdd_samples, text):
    from rtil.study.report_generators import training

    cfg = replace(read_study_config(write_study(tmp_path, monkeypatch)), comparisons={}, fdd_samples=fdd_samples)
    lines = training(cfg, tmp_path / "figures", "results", tmp_path)  # no generators: the section's text only
    assert text in lines[2]
    assert "1,000" not in lines[2] or fdd_samples == 1000

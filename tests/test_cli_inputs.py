"""Bad input to every CLI is one line on stderr and exit status 2: option ranges (generated from the parsers, so
a new option cannot be forgotten), configs, devices, data, and the overwrite rule of every writer."""

import pytest

from rtil.config import read_yaml_file
from rtil.errors import RtilError


@pytest.fixture(autouse=True)
def _own_torch_home(tmp_path, monkeypatch):
    """No weights from the user's torch hub cache: every test here sees an empty one."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.mark.parametrize("text, where", [
    ("a: 1\nb: [1, 2\nc: 3\n", "line 3, column 2"),
    ("a: 1\n  b: 2\n", "line 2, column 4"),
    ('a: "x\n', "line 2, column 1"),
    ("a: 1\nb: {c: 1, c: 2}\n", "line 2, column 11"),  # a key given twice: PyYAML would keep the last silently
])
def test_invalid_yaml_is_one_line_with_file_line_and_column(tmp_path, text, where):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(RtilError) as error:
        read_yaml_file(path)
    assert str(error.value).startswith(f"{path}, {where}: not valid YAML (") and "\n" not in str(error.value)


def test_yaml_files_that_are_no_mapping_or_no_text_or_missing(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(RtilError, match="mapping at the top level"):
        read_yaml_file(tmp_path / "list.yaml")
    with pytest.raises(RtilError, match="not a text file"):
        read_yaml_file(tmp_path / "binary.yaml")
    with pytest.raises(RtilError, match="not found"):
        read_yaml_file(tmp_path / "missing.yaml")
    assert read_yaml_file(tmp_path / "empty.yaml", empty_ok=True) == {}


# ---- every ranged option of every CLI, generated from the parsers ----------------------------------------------

def _clis():
    """(name, parser, main) of every argparse command line."""
    from conftest import run_invert
    from rtil.cli import build_parser as rtil_parser
    from rtil.cli import main as rtil_main
    from rtil.cli_checks import ArgumentParser
    from rtil.data.shards import add_shards_arguments, shards_main
    from rtil.inverse.cli import build_parser as invert_parser

    shards = ArgumentParser(prog="python -m rtil shards")
    add_shards_arguments(shards)
    return [("python -m rtil", rtil_parser(), rtil_main), ("invert.py", invert_parser(), run_invert),
            ("shards_main", shards, shards_main)]


def _options():
    """(cli, subcommand words, action, main) of every option and positional of every (sub)command."""
    import argparse

    found = []

    def walk(parser, words, cli, main):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*words, name], cli, main)
            elif not isinstance(action, argparse._HelpAction):
                found.append((cli, words, action, main))

    for cli, parser, main in _clis():
        walk(parser, [], cli, main)
    return found


def _outside(ranged) -> list[str]:
    """Values just outside the range of a Ranged type, and values of the wrong kind."""
    values = []
    if ranged.low is not None:
        values.append(str(ranged.low) if ranged.open_low else str(ranged.low - 1 if ranged.kind is int else
                                                                  ranged.low - 0.5))
    if ranged.high is not None:
        values.append(str(ranged.high) if ranged.open_high else str(ranged.high + 1))
    values += ["1.5", "many"] if ranged.kind is int else ["nan", "inf", "-inf", "many"]
    return values


def test_every_numeric_option_declares_its_range():
    from rtil.cli_checks import Ranged

    plain = [f"{cli} {' '.join(words)} {action.dest}" for cli, words, action, _ in _options()
             if action.type in (int, float) and not action.choices]
    assert plain == [], "give these options a Ranged type (rtil/cli_checks.py) or choices"
    assert sum(isinstance(action.type, Ranged) for *_, action, _ in _options()) >= 25


RANGED = [(cli, words, action, main) for cli, words, action, main in _options()
          if type(action.type).__name__ == "Ranged"]


@pytest.mark.parametrize("cli, words, action, main", RANGED,
                         ids=[f"{c}:{' '.join(w)}:{a.dest}" for c, w, a, _ in RANGED])
def test_every_ranged_option_refuses_values_outside_its_range(cli, words, action, main, capsys):
    option = action.option_strings[0] if action.option_strings else None
    for value in _outside(action.type):
        argv = [*words, option, value] if option else [*words, value]
        try:
            status = main(argv)
        except SystemExit as e:
            status = e.code
        err = capsys.readouterr().err.strip()
        assert status == 2, (argv, err)
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and (option or action.dest) in err, err


# ---- one test per case of issue 21 --------------------------------------------------------------------------------

def status_and_error(main, argv, capsys) -> tuple[int, str]:
    """Run a CLI's main in this process: its exit status and its stderr (asserted to be one 'error:' line if the
    status is 2; warnings before it are allowed)."""
    capsys.readouterr()
    try:
        status = main([str(a) for a in argv])
    except SystemExit as e:
        status = e.code
    err = capsys.readouterr().err.strip()
    if status == 2:
        assert "Traceback" not in err, err
        assert err.splitlines()[-1].startswith("error: "), err
        return status, err.splitlines()[-1]
    return status, err


@pytest.fixture
def generator_file(tmp_path):
    from conftest import tiny_stylegan2
    from rtil.checkpoints import save_generator

    return save_generator(tmp_path / "g.pt", tiny_stylegan2(16, 1).eval())


@pytest.fixture
def planted_inception(tmp_path, monkeypatch):
    """A file that is not the Inception weights where fid looks for them (TORCH_HOME under tmp_path)."""
    from rtil.evaluation.sample_quality import inception_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = inception_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the weights")
    return path


def test_fid_checks_its_inputs_before_looking_at_the_weights(tmp_path, generator_file, planted_inception, capsys):
    from rtil.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.png").write_bytes(b"\x89PNG broken")
    fid = ["fid", generator_file, "--num-gen", 4, "--quiet"]
    for extra, message in (([ "--data", tmp_path / "nowhere"], "--data must be"),
                           (["--data", empty], "no images"),
                           (["--data", corrupt], "readable"),
                           (["--data", tmp_path / "none-{000..002}.tar"], "do not exist"),
                           (["--device", "cuda:3"], "no such GPU"),
                           (["--device", "bogus"], "not a torch device"),
                           (["--member", 5], "--member")):
        status, err = status_and_error(main, [*fid, *extra], capsys)
        assert status == 2 and message in err, (extra, err)
    status, err = status_and_error(main, fid, capsys)  # good inputs: now the planted file is refused
    assert status == 2 and str(planted_inception) in err and "SHA-256" in err


def test_solve_and_fid_name_the_tensor_of_a_generator_file_with_wrong_shapes(tmp_path, generator_file, capsys):
    import torch

    from conftest import run_invert
    from rtil.checkpoints import write_generator_record
    from rtil.cli import main

    rec = torch.load(generator_file, weights_only=True)
    name = next(k for k, v in rec["g_ema"].items() if v.ndim == 2)
    rec["g_ema"][name] = torch.zeros(3, 5)
    for suffix in (".pt", ".safetensors"):
        bad = write_generator_record(rec, tmp_path / f"bad{suffix}")
        status, err = status_and_error(main, ["fid", bad, "--num-gen", 4, "--offline"], capsys)
        assert status == 2 and f"tensor {name}: expected shape" in err and "found (3, 5)" in err
        status, err = status_and_error(run_invert, ["solve", "--generator", bad, "--method", "csgm", "--task", "cs",
                                                    "--ratio", 0.5, "--images", "digits-test", "--out",
                                                    tmp_path / "o"], capsys)
        assert status == 2 and f"tensor {name}: expected shape" in err
    assert not (tmp_path / "o").exists()


def test_explore_range_checks_its_settings_before_any_work(tmp_path, capsys):
    from conftest import run_invert

    explore = ["explore", "--generator", tmp_path / "missing.pt", "--task", "cs", "--ratio", 0.5, "--images",
               "digits-test", "--out", tmp_path / "o"]
    for setting, message in (("tau=.inf", "finite"), ("tau=.nan", "finite"), ("tau=2", "at most"),
                             ("etas=1000000000", "at most"), ("etas=1e9", "integer"), ("k=2.5", "integer"),
                             ("max_step=-1", "max_step"), ("bisection_steps=1000", "at most")):
        status, err = status_and_error(run_invert, [*explore, "--set", setting], capsys)
        assert status == 2 and message in err, (setting, err)  # before the missing generator is noticed
    assert not (tmp_path / "o").exists()


def test_sweep_process_numbers_and_out(tmp_path, capsys, monkeypatch):
    from conftest import ROOT, run_invert

    config = ROOT / "configs" / "eval" / "digits_demo.yaml"
    sweep = ["sweep", "--config", config, "--out", tmp_path / "sweep"]
    for extra, message in ((["--rank", 5, "--world-size", 2], "--rank must be in 0..world size - 1"),
                           (["--world-size", 0], "--world-size")):
        status, err = status_and_error(run_invert, [*sweep, *extra], capsys)
        assert status == 2 and message in err, (extra, err)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert status_and_error(run_invert, sweep, capsys)[0] == 2
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert "WORLD_SIZE='two'" in status_and_error(run_invert, sweep, capsys)[1]
    assert not (tmp_path / "sweep").exists()
    taken = tmp_path / "taken"
    taken.write_text("keep")
    for extra in ([], ["--merge-only"]):
        status, err = status_and_error(run_invert, ["sweep", "--config", config, "--out", taken, *extra], capsys)
        assert status == 2 and "existing file" in err and taken.read_text() == "keep"


def test_invalid_yaml_configs_of_solve_and_sweep_are_one_line_with_line_and_column(tmp_path, generator_file, capsys):
    from conftest import run_invert

    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\nlr: 0.1\n")
    solve = ["solve", "--generator", generator_file, "--method", "csgm", "--task", "cs", "--ratio", 0.5, "--images",
             "digits-test", "--config", bad, "--out", tmp_path / "o"]
    for argv in (solve, ["sweep", "--config", bad]):
        status, err = status_and_error(run_invert, argv, capsys)
        assert status == 2 and f"{bad}, line 2, column 3: not valid YAML" in err, err


def test_demo_refuses_an_existing_file_and_an_earlier_demo(tmp_path, capsys):
    from rtil.cli import main

    taken = tmp_path / "taken"
    taken.write_text("keep")
    status, err = status_and_error(main, ["demo", "--out", taken], capsys)
    assert status == 2 and "existing file" in err and taken.read_text() == "keep"
    earlier = tmp_path / "demo"
    earlier.mkdir()
    (earlier / "WHAT_THIS_SHOWS.txt").write_text("earlier")
    status, err = status_and_error(main, ["demo", "--out", earlier], capsys)
    assert status == 2 and "--overwrite" in err
    status, err = status_and_error(main, ["demo", "--train-kimg", "-1"], capsys)
    assert status == 2 and "--train-kimg" in err


# ---- the overwrite rule ------------------------------------------------------------------------------------------

def test_export_and_convert_never_write_over_their_input_and_replace_an_output_only_when_asked(tmp_path, capsys):
    from test_demo import fake_training_checkpoint

    from rtil.cli import main

    ckpt = fake_training_checkpoint(tmp_path / "run.ckpt")
    before = ckpt.read_bytes()
    for argv in (["export", ckpt, ckpt], ["export", ckpt, ckpt, "--overwrite"],
                 ["export", ckpt, tmp_path / "." / "run.ckpt", "--overwrite"],
                 ["convert", "nvlabs", ckpt, ckpt, "--overwrite"], ["convert", "rtil-pggan", ckpt, ckpt]):
        status, err = status_and_error(main, argv, capsys)
        assert status == 2 and "also an input" in err, (argv, err)
    assert ckpt.read_bytes() == before
    assert status_and_error(main, ["export", ckpt, tmp_path / "g.pt"], capsys)[0] == 0
    first = (tmp_path / "g.pt").read_bytes()
    for argv in (["export", ckpt, tmp_path / "g.pt"], ["convert", "nvlabs", tmp_path / "x.pkl", tmp_path / "g.pt"]):
        status, err = status_and_error(main, argv, capsys)
        assert status == 2 and "exists; pass --overwrite" in err, (argv, err)
    assert (tmp_path / "g.pt").read_bytes() == first
    assert status_and_error(main, ["export", ckpt, tmp_path / "g.pt", "--overwrite"], capsys)[0] == 0


def test_fid_out_and_shards_follow_the_overwrite_rule(tmp_path, generator_file, capsys):
    from rtil.cli import main

    out = tmp_path / "fid.json"
    out.write_text("keep")
    fid = ["fid", generator_file, "--num-gen", 4, "--offline", "--quiet", "--out"]
    assert "exists; pass --overwrite" in status_and_error(main, [*fid, out], capsys)[1]
    assert "also an input" in status_and_error(main, [*fid, generator_file, "--overwrite"], capsys)[1]
    assert out.read_text() == "keep"
    assert status_and_error(main, [*fid, out, "--overwrite"], capsys)[0] == 0 and out.read_text() != "keep"

    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (8, 8)).save(images / "a.png")
    shards = ["shards", images, tmp_path / "s-%03d.tar"]
    assert status_and_error(main, shards, capsys)[0] == 0
    assert "exists; pass --overwrite" in status_and_error(main, shards, capsys)[1]
    assert status_and_error(main, [*shards, "--overwrite"], capsys)[0] == 0


def test_solve_and_explore_refuse_a_folder_with_earlier_results_unless_overwrite(tmp_path, generator_file, capsys):
    from conftest import run_invert

    out = tmp_path / "results"
    out.mkdir()
    (out / "metrics.json").write_text("earlier")
    (tmp_path / "csgm.yaml").write_text("method: csgm\nsteps: 2\nrestarts: 1\n")
    solve = ["solve", "--generator", generator_file, "--method", "csgm", "--task", "cs", "--ratio", 0.5,
             "--images", "digits-test", "--num-images", 1, "--config", tmp_path / "csgm.yaml", "--quiet", "--out"]
    explore = ["explore", "--generator", generator_file, "--task", "cs", "--ratio", 0.5, "--images", "digits-test",
               "--quiet", "--out"]
    for argv in (solve, explore):
        status, err = status_and_error(run_invert, [*argv, out], capsys)
        assert status == 2 and "already holds files" in err and "--overwrite" in err
    assert (out / "metrics.json").read_text() == "earlier"
    status, err = status_and_error(run_invert, [*solve, tmp_path, "--overwrite"], capsys)  # holds the generator
    assert status == 2 and "holds an input" in err
    assert status_and_error(run_invert, [*solve, out, "--overwrite"], capsys)[0] == 0
    assert (out / "metrics.json").read_text() != "earlier"


def test_solver_settings_are_finite_numbers_before_any_work(tmp_path, capsys):
    from conftest import run_invert

    solve = ["solve", "--generator", tmp_path / "missing.pt", "--method", "ilo", "--task", "cs", "--ratio", 0.5,
             "--images", "digits-test", "--out", tmp_path / "o"]
    for setting, message in (("steps=[.inf, 1, 1]", "steps"), ("lr=[0.1, .nan, 0.1]", "lr must be finite"),
                             ("perceptual=.inf", "perceptual must be finite"), ("geocross=yes", "must be a number")):
        status, err = status_and_error(run_invert, [*solve, "--set", setting], capsys)
        assert status == 2 and message in err, (setting, err)  # before the missing generator is noticed

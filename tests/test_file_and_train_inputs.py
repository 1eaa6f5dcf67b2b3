"""Issue 29, files and training: each user mistake below is exit status 2 and one error line, with nothing before
it (no traceback, warning, or Lightning start-up line) and no advice to load a file unsafely. The commands run in
this process. Lightning logs to its own loggers, which these tests collect too (`output`)."""

import contextlib
import logging
import math
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from test_train_cli import CONFIG, TINY

from conftest import run_invert
from rtil.checkpoints import safe_torch_load, write_generator_record
from rtil.cli import main as rtil_main
from rtil.errors import RtilError
from rtil.training.cli import main as train_main

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "stylegan2_digits_5kimg.pt"
NVLABS = ROOT / "tests" / "data" / "nvlabs" / "tiny-16px.pkl"
# torch's advice on a file it refuses to unpickle (re-run with weights_only=False): never shown to a user
UNSAFE_ADVICE = ("weights_only", "Weights only", "trusted source", "Re-running", "add_safe_globals")


@contextlib.contextmanager
def output(capsys):
    """Everything a command shows: the lines it prints, what Lightning logs (to its loggers, whatever their
    handlers) and the warnings it issues. Yields a list, filled when the block ends."""
    lines, records = [], []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric", "lightning")]
    for logger in loggers:
        logger.addHandler(handler)
    capsys.readouterr()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield lines
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        captured = capsys.readouterr()
        lines += [r.getMessage() for r in records] + [f"{w.category.__name__}: {w.message}" for w in caught]
        lines += [line for line in (captured.out + captured.err).splitlines() if line.strip()]


def exit_status(main, argv) -> int:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as e:
        status = e.code
    return status


def the_error(main, argv, capsys) -> str:
    """Run a command that must refuse its input: status 2 and exactly one line of output, 'error: ...'."""
    with output(capsys) as lines:
        status = exit_status(main, argv)
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not any(advice in lines[0] for advice in UNSAFE_ADVICE), lines[0]
    return lines[0]


def fit(root, *extra) -> list[str]:
    """`train.py fit` with the tiny settings of tests/test_train_cli.py into `root`, plus `extra`."""
    return [str(a) for a in ["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", root, *extra]]


# ---- 1: a new run into a folder that holds another run's checkpoints --------------------------------------------

def test_a_new_run_is_refused_where_an_earlier_run_left_checkpoints_but_its_resume_is_not(tmp_path, capsys):
    with output(capsys) as lines:
        train_main(fit(tmp_path, "--model.init_args.total_kimg", "0.004"))
    assert any(line.startswith("GPU available") for line in lines)  # `output` sees Lightning's lines
    folder = tmp_path / "stylegan2_digits" / "checkpoints"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert (folder / "last.ckpt").is_file()

    line = the_error(train_main, fit(tmp_path, "--model.init_args.total_kimg", "0.004", "--seed_everything", 5),
                     capsys)
    assert line.startswith(f"error: {folder} already holds an earlier run's checkpoints (kimg")
    assert line.endswith("choose a new --run_name or another --trainer.default_root_dir, or resume that run with "
                         "--ckpt_path last")
    other = tmp_path / "other.ckpt"  # a checkpoint from elsewhere does not resume this folder's run either
    other.write_bytes((folder / "last.ckpt").read_bytes())
    line = the_error(train_main, fit(tmp_path, "--ckpt_path", other), capsys)
    assert line.startswith(f"error: --ckpt_path {other} is not in this run's folder: {folder} already holds")
    line = the_error(train_main, fit(tmp_path, "--checkpoint.dirpath", folder), capsys)
    assert "choose another --checkpoint.dirpath" in line
    other.unlink()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # refused before anything ran

    # The study's resume: --ckpt_path the run's own last.ckpt, as an absolute path.
    resumed = train_main(fit(tmp_path, "--model.init_args.total_kimg", "0.008", "--ckpt_path", folder / "last.ckpt"))
    assert int(resumed.model.iteration) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["kimg00000.00.ckpt", "kimg00000.01.ckpt", "last.ckpt"]


# ---- 2: a seed outside Lightning's range ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [-1, 2 ** 32])
def test_a_seed_outside_its_range_is_one_line(tmp_path, capsys, seed):
    line = the_error(train_main, fit(tmp_path, "--seed_everything", seed), capsys)
    assert line == f"error: seed_everything must be in [0, 4294967295] (or true or false), got {seed}"
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


# ---- 3: a generator file whose architecture record is absurd -------------------------------------------------------

ABSURD = [  # (change to the fixture's record, the message's end)
    ({"z_dim": -4}, "z_dim must be in [1, 4096], got -4"),
    ({"resolution": 2 ** 20}, "resolution must be a power of two in [8, 4096], got 1048576"),
    ({"resolution": 48}, "resolution must be a power of two in [8, 4096], got 48"),
    ({"img_channels": 2}, "img_channels must be 1 or 3, got 2"),
    ({"channel_max": 0}, "channel_max must be in [1, 4096], got 0"),
    ({"channel_base": 16}, "channel_base must be >= the resolution 32, so that every resolution has a channel, got 16"),
    ({"channels": {"4": 64, "8": -1, "16": 64, "32": 64}}, "channels[8] must be in [1, 4096], got -1"),
    ({"channels": {"4": 64}}, "channels has no entry for resolution 8 (it needs one for 4 to 32)"),
    ({"mapping_layers": 0}, "mapping_layers must be in [1, 64], got 0"),
    ({"w_dim": 10 ** 6}, "w_dim must be in [1, 4096], got 1000000"),
    ({"mapping_lr_mul": math.nan}, "mapping_lr_mul must be > 0, got nan"),
    ({"z_dim": "64"}, "z_dim must be an integer in [1, 4096], got '64'"),
    ({"depth": 3}, "'depth' is not a setting of the stylegan2 generator (its settings: z_dim, w_dim, "),
]


@pytest.fixture(scope="module")
def fixture_record():
    return torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("change, message", ABSURD, ids=[next(iter(c)) + str(i) for i, (c, _) in enumerate(ABSURD)])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_an_absurd_architecture_record_is_one_line_naming_the_entry_and_its_range(tmp_path, capsys, fixture_record,
                                                                                  change, message, suffix):
    bad = write_generator_record({**fixture_record, "arch": {**fixture_record["arch"], **change}},
                                 tmp_path / f"bad{suffix}")
    expected = f"error: {bad}: architecture entry {message}"
    assert the_error(rtil_main, ["fid", bad, "--num-gen", 4, "--offline"], capsys).startswith(expected)
    assert the_error(rtil_main, ["info", bad], capsys).startswith(expected)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_invert_solve_refuses_an_absurd_record_in_one_line(tmp_path, capsys, fixture_record, suffix):
    for change, message in ABSURD[:2]:
        bad = write_generator_record({**fixture_record, "arch": {**fixture_record["arch"], **change}},
                                     tmp_path / f"bad{suffix}")
        line = the_error(run_invert, ["solve", "--generator", bad, "--method", "csgm", "--task", "cs", "--ratio", 0.5,
                                      "--images", "digits-test", "--num-images", 1, "--out", tmp_path / "o"], capsys)
        assert line == f"error: {bad}: architecture entry {message}"
    assert not (tmp_path / "o").exists()


def test_the_fixture_itself_passes_the_check(fixture_record, tmp_path, capsys):
    for suffix in (".pt", ".safetensors"):
        path = write_generator_record(fixture_record, tmp_path / f"good{suffix}")
        assert exit_status(rtil_main, ["info", path]) == 0
    assert "family:     stylegan2" in capsys.readouterr().out


# ---- 4 and 5: --init_from a file rtil does not read, or one that does not fit: the error alone ---------------------

def test_init_from_a_text_file_says_what_it_is_not_and_nothing_else(tmp_path, capsys):
    readme = ROOT / "README.md"
    line = the_error(train_main, fit(tmp_path, "--init_from", readme), capsys)
    assert line == (f"error: --init_from {readme}: not a generator or checkpoint file rtil reads: it is neither a "
                    f"torch.save file nor a pickle (accepted: rtil .ckpt checkpoints, rtil generator files "
                    f".pt/.safetensors, rosinality StyleGAN2 .pt, NVlabs StyleGAN2-ADA .pkl, the RTIL authors' "
                    f"PGGAN .pt)")
    assert "arbitrary code" not in line
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_init_from_a_generator_that_does_not_fit_is_the_only_line(tmp_path, capsys):
    line = the_error(train_main, fit(tmp_path, "--init_from", FIXTURE), capsys)
    assert line.startswith(f"error: --init_from {FIXTURE}: the file's EMA generator does not fit the config's: ")
    line = the_error(train_main, fit(tmp_path, "--trainer.accumulate_grad_batches", 2), capsys)
    assert "Lightning cannot accumulate its gradients" in line  # checked before the Trainer prints anything too


class _Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def test_no_message_about_an_unreadable_file_relays_torchs_advice_to_load_it_unsafely(tmp_path):
    from rtil.checkpoints import error_detail

    torch.save({"w": torch.zeros(1), "payload": _Payload()}, tmp_path / "code.pt")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"payload": _Payload()}))
    (tmp_path / "text.pt").write_text("# not a checkpoint\n")
    for name, start in (("code.pt", "needs arbitrary code to unpickle (print), so it was not loaded"),
                        ("plain.pkl", "is a Python pickle, not a weights-only torch.save file"),
                        ("text.pt", "is not a readable PyTorch checkpoint: it is neither a torch.save file nor a")):
        with pytest.raises(RtilError) as error:
            safe_torch_load(tmp_path / name)
        assert str(error.value).startswith(f"{tmp_path / name} {start}"), error.value
        assert not any(advice in str(error.value) for advice in UNSAFE_ADVICE), error.value
    try:  # torch's own text says what error_detail must leave out
        torch.load(tmp_path / "code.pt", weights_only=True)
    except pickle.UnpicklingError as e:
        assert "weights_only" in str(e)
        assert error_detail(e) == "UnpicklingError: Unsupported global: GLOBAL print"


# ---- 6: no readable image for fid ----------------------------------------------------------------------------------

def test_fid_on_a_folder_of_unreadable_images_prints_only_the_error(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"\x89PNG broken")
    line = the_error(rtil_main, ["fid", FIXTURE, "--data", folder, "--num-gen", 4, "--offline"], capsys)
    assert line == f"error: none of the 2 image files in {folder} is readable"


def test_fid_reports_skipped_images_in_one_line_when_others_are_readable(tmp_path, capsys):
    from PIL import Image

    from rtil.evaluation.sample_quality import real_image_batches

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG broken")
    Image.new("L", (8, 8), 128).save(folder / "b.png")
    reports = []
    with output(capsys) as lines:
        batches = list(real_image_batches(str(folder), 8, 1, batch_size=4, report=reports.append))
    assert lines == [] and sum(b.shape[0] for b in batches) == 2
    assert reports == [f"{folder}: skipped 1 unreadable file(s); the first: unreadable image {folder / 'a.png'} "
                       f"(UnidentifiedImageError: cannot identify image file '{folder / 'a.png'}')"]


# ---- 7: an invalid training config -------------------------------------------------------------------------------

def test_an_invalid_yaml_training_config_names_its_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    z_dim: [1, 2\n    w_dim: 3\n")
    for given in (["--config", bad], [f"--config={bad}"]):
        line = the_error(train_main, ["fit", *given], capsys)
        assert line.startswith(f"error: {bad}, line 4, column 10: not valid YAML ("), line
        assert "<unicode string>" not in line


# ---- 8: an NVlabs pickle where rtil reads a generator file --------------------------------------------------------

def test_info_and_fid_on_an_nvlabs_pickle_point_to_its_conversion(capsys):
    for command in (["info", NVLABS], ["fid", NVLABS, "--num-gen", 4, "--offline"]):
        line = the_error(rtil_main, command, capsys)
        assert line == (f"error: {NVLABS} is an NVlabs network pickle, not a generator file: convert it with "
                        f"`python -m rtil convert nvlabs {NVLABS} OUT.pt`, which reads it without running its code "
                        f"(train.py --init_from reads it too)")

"""The README demo's first step (build, sample, export, reload) and the CLI's error handling."""

import pickle

import pytest
import torch

from conftest import tiny_stylegan2
from rtil.checkpoints import generator_record
from rtil.cli import main as cli_main
from rtil.demo import build_export_reload, what_the_demo_shows


def test_demo_models_step_round_trips(tmp_path):
    diffs = build_export_reload(tmp_path)
    assert diffs == {"stylegan2_digits": 0.0, "pggan_digits": 0.0}
    for stem in diffs:
        assert (tmp_path / f"untrained_{stem}_members.png").is_file()
        assert (tmp_path / f"untrained_{stem}.pt").is_file()


def test_cli_user_errors_exit_2(tmp_path, capsys):
    assert cli_main(["info", str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "missing.ckpt"), str(tmp_path / "g.pt")]) == 2
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["frobnicate"])
    assert exit_info.value.code == 2


def fake_training_checkpoint(path):
    """What export reads from a Lightning checkpoint: the generator's weights under `G_ema.` and its
    description under `rtil_generator`."""
    rec = generator_record(tiny_stylegan2(8, 1))
    info = {k: v for k, v in rec.items() if k not in ("g_ema", "g")}
    torch.save({"state_dict": {f"G_ema.{k}": v for k, v in rec["g_ema"].items()}, "rtil_generator": info}, path)
    return path


class Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def test_export_errors_are_one_line_with_status_2(tmp_path, capsys):
    ckpt = fake_training_checkpoint(tmp_path / "run.ckpt")
    assert cli_main(["export", str(ckpt), str(tmp_path / "g.pt")]) == 0
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    malicious = tmp_path / "evil.ckpt"
    malicious.write_bytes(pickle.dumps(Payload()))
    cases = {
        "to a folder": ([ckpt, tmp_path], "is a folder"),
        "unwritable place": ([ckpt, a_file / "g.pt"], "cannot write"),
        "a generator file, not a checkpoint": ([tmp_path / "g.pt", tmp_path / "h.pt"], "not a Lightning checkpoint"),
        "a malicious pickle": ([malicious, tmp_path / "h.pt"], "nothing in it was run"),
        "a missing checkpoint": ([tmp_path / "none.ckpt", tmp_path / "h.pt"], "not found"),
    }
    for name, (args, message) in cases.items():
        capsys.readouterr()
        assert cli_main(["export", *map(str, args)]) == 2, name
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, (name, captured.err)
        assert message in captured.err, (name, captured.err)
        assert "payload ran" not in captured.out and "Traceback" not in captured.err, name
        assert not (tmp_path / "h.pt").exists(), name


def test_demo_text_says_what_its_figures_do_not_show_and_gives_the_measured_differences():
    paired = [{"comparison": "rtil - vanilla", "method": "ilo", "task": "cs", "param": 0.25, "metric": "psnr",
               "n": 8, "mean_difference": -0.4321, "low": -1.2, "high": 0.31},
              {"comparison": "rtil - vanilla", "method": "ilo", "task": "cs", "param": 0.25, "metric": "ssim",
               "n": 8, "mean_difference": 0.01, "low": 0.0, "high": 0.02}]
    text = what_the_demo_shows(paired, 6.0, 8)
    assert "do not show: whether RTIL helps" in text and "6 kimg" in text and "8 test digits" in text
    assert "-0.43 [-1.20, +0.31]" in text and "0.01" not in text  # PSNR rows only


def test_the_demo_model_configs_are_the_networks_the_training_recipes_train():
    """configs/models/*.yaml (the demo's untrained build/export/reload check, generator-file form) describe the
    same networks and RTIL families as the training recipes configs/*_digits.yaml."""
    from rtil.config import build_generator, read_yaml
    from rtil.demo import CONFIG_DIR, MODEL_CONFIGS
    from rtil.training import PGGANModule, StyleGAN2Module

    modules = {"rtil.training.StyleGAN2Module": StyleGAN2Module, "rtil.training.PGGANModule": PGGANModule}
    for name in MODEL_CONFIGS:
        model_cfg, recipe = read_yaml(CONFIG_DIR / "models" / name), read_yaml(CONFIG_DIR / name)
        module = modules[recipe["model"]["class_path"]](**recipe["model"]["init_args"],
                                                        resolution=recipe["data"]["resolution"],
                                                        img_channels=recipe["data"]["channels"])
        G = build_generator(model_cfg["generator"])
        assert generator_record(G)["arch"] == generator_record(module.G)["arch"], name
        assert model_cfg["rtil"] == module.hparams["rtil"], name


def test_export_to_safetensors(tmp_path, capsys):
    from rtil.checkpoints import load_generator

    ckpt = fake_training_checkpoint(tmp_path / "run.ckpt")
    assert cli_main(["export", str(ckpt), str(tmp_path / "g.safetensors"), "--format", "safetensors"]) == 0
    assert cli_main(["export", str(ckpt), str(tmp_path / "g.pt")]) == 0
    z = torch.randn(2, 16)
    a, b = load_generator(tmp_path / "g.safetensors"), load_generator(tmp_path / "g.pt")
    assert torch.equal(a(z, noise_mode="const"), b(z, noise_mode="const"))
    capsys.readouterr()
    assert cli_main(["export", str(ckpt), str(tmp_path / "h.pt"), "--format", "safetensors"]) == 2
    assert "h.safetensors" in capsys.readouterr().err and not (tmp_path / "h.pt").exists()


TINY_DEMO = """
import sys
from rtil.cli import main
from rtil.demo import run_demo

assert main(["demo", "--out", sys.argv[1] + "/models", "--train-kimg", "0"]) == 0  # step 1 through the command
# every step: two batches (the second passes train_kimg, as the last batch of any training), two digits, few steps
run_demo(sys.argv[1] + "/all", train_kimg=0.02, sweep_settings={
    "num_images": 2, "batch_size": 2, "tasks": {"cs": [0.25]},
    "methods": {"ilo": {"steps": [2, 1, 1], "range_steps": 1}, "mganprior": {"restarts": 1, "steps": 2}}})
"""
# Every line the demo may print besides its own (the lines of rtil/demo.py, the sweep's and the training's):
# Lightning's start-up facts and our progress bars. Anything else (a warning, a source line, wandb's banner or
# summary, a tip) fails the test.
EXPECTED_OTHER_LINES = (r"Seed set to \d+", r"GPU available: (True|False), used: (True|False)",
                        r"TPU available: (True|False), using: \d+ TPU cores", r"(training|sweep cells): .*")


def test_the_demo_prints_progress_and_results_and_no_warnings(tmp_path):
    """The demo's entry points (`python -m rtil demo` step 1; run_demo's training, sweep and closing text) on a tiny
    budget, as a user runs them (a fresh process, Python's default warning filters, sys.argv of another command):
    offline, without the LPIPS weights, it says so once in one line and prints nothing it does not mean to."""
    import os
    import re
    import subprocess
    import sys

    script = tmp_path / "tiny_demo.py"
    script.write_text(TINY_DEMO)
    (tmp_path / "torch_home").mkdir()
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home"), "RTIL_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "WANDB_DIR": str(tmp_path / "wandb_dir"), "PYTHONWARNINGS": ""}
    env.pop("WANDB_SILENT", None)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.strip() for line in (done.stdout + done.stderr).replace("\r", "\n").splitlines() if line.strip()]
    lpips = [line for line in lines if "LPIPS" in line and "unavailable" in line]
    assert lpips == ["LPIPS: unavailable, see README (no $TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth: "
                     "downloads are off (RTIL_OFFLINE=1 or --offline))"], lpips
    ours = [r"\[\d/3\] .*", r"(stylegan2|pggan)_digits: \d+ members, untrained -> .*", r"exported generator: .*",
            r"trained generator: .*", r"sweep: \d+ cells .*", r"curves: .*", r"What (the demo's figures show|they "
            r"do not show): .*", r"Measured here, RTIL - vanilla PSNR .*", r"(ilo|mganprior) cs 0.25 .*\(n 2\)",
            r"--train-kimg 0: only step 1 ran .*", re.escape(lpips[0])]
    allowed = re.compile("|".join(f"(?:{p})" for p in ours + list(EXPECTED_OTHER_LINES)))
    unexpected = [line for line in lines if not allowed.fullmatch(line)]
    assert unexpected == [], "\n".join(unexpected)
    assert not re.search(r"\bwarn|deprecat|\btip\b|wandb:", done.stdout + done.stderr, re.IGNORECASE)
    assert (tmp_path / "all" / "WHAT_THIS_SHOWS.txt").is_file()


def test_the_demo_trains_again_into_its_own_output_folder(tmp_path):
    """`make demo` twice (python -m rtil demo --overwrite): the second run retrains into the demo's own run folder,
    which train.py alone would refuse (it holds the first run's checkpoints)."""
    from rtil.demo import train_stylegan2

    first = train_stylegan2(tmp_path, "stylegan2_digits_vanilla", 0.016, vanilla=True).read_bytes()
    second = train_stylegan2(tmp_path, "stylegan2_digits_vanilla", 0.016, vanilla=True)
    assert second.is_file() and len(list((tmp_path / "train" / "stylegan2_digits_vanilla").glob("version_*"))) == 1
    assert len(first) > 0

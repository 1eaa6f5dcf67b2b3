"""invert.py: an end-to-end run on the built-in test digits with a tiny exported generator, and one-line
errors with exit status 2 for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rtil
from conftest import run_invert as run
from conftest import tiny_stylegan2
from rtil.models.pggan import Generator as PGGAN

ROOT = Path(__file__).resolve().parent.parent
FAST = {  # a few steps: the run's plumbing is tested here, solver quality in test_solvers.py
    "csgm": "steps: 4\nrestarts: 2\n",
    "ilo": "cut_points: [0, 1]\nsteps: [3, 3]\nlr: [0.1, 0.05]\nnoise_layers: [1, 3]\nl1_radius: [0.05]\n"
           "proxy_samples: 500\n",
    "mganprior": "num_codes: 2\ncut_point: 2\nsteps: 4\n",
    "pulse": "restarts: 2\nsteps: 4\nproxy_samples: 500\n",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 16-px grayscale StyleGAN2 and PGGAN generator file and fast solver configs."""
    root = tmp_path_factory.mktemp("invert")
    torch.manual_seed(0)
    rtil.save_generator(root / "g.pt", tiny_stylegan2(resolution=16, img_channels=1),
                        provenance={"source": "tiny random test generator"})
    rtil.save_generator(root / "pg.pt", PGGAN(z_dim=8, resolution=16, img_channels=1, channel_base=128,
                                              channel_max=16))
    for method, text in FAST.items():
        (root / f"{method}.yaml").write_text(f"method: {method}\n{text}")
    return root


def solve_args(files, out, method="ilo", task="cs", extra=("--ratio", 0.25), generator="g.pt", images="digits-test"):
    return ["solve", "--generator", files / generator, "--method", method, "--task", task, *extra,
            "--images", images, "--num-images", 3, "--batch-size", 2, "--config", files / f"{method}.yaml",
            "--out", out, "--quiet"]


def test_end_to_end_on_test_digits(files, tmp_path):
    out = tmp_path / "run"
    assert run(solve_args(files, out)) == 0
    assert sorted(p.name for p in (out / "reconstructions").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    with Image.open(out / "grid.png") as grid:
        assert grid.size[0] > grid.size[1] / 3  # three columns: truth | measurement | reconstruction

    saved = torch.load(out / "measurements.pt", weights_only=True)
    assert saved["measurements"].shape == (3, round(0.25 * 16 * 16))
    assert saved["task"] == "cs" and len(saved["operators"]) == 2

    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["name"] for e in metrics["per_image"]] == ["digits-test/0", "digits-test/1", "digits-test/2"]
    for entry in metrics["per_image"]:
        assert np.isfinite(entry["psnr"]) and -1 <= entry["ssim"] <= 1 and entry["lpips"] == "unavailable"
        assert entry["measurement_loss"] >= 0
        assert len(entry["round_measurement_losses"]) == 2  # one per ILO round: what each round achieved
    summary = metrics["summary"]
    assert {"mean", "low", "high", "n", "confidence"} <= set(summary["psnr"]) and summary["psnr"]["n"] == 3
    assert summary["psnr"]["low"] <= summary["psnr"]["mean"] <= summary["psnr"]["high"]
    assert summary["lpips"] == "unavailable"
    assert metrics["metric_settings"]["lpips"]["status"] == "unavailable"
    assert metrics["metric_settings"]["psnr"]["data_range"] == 1.0
    assert metrics["operators"][0]["operator"] == "CompressedSensing" and metrics["operators"][1]["item_offset"] == 2
    assert metrics["solver"]["method"] == "ilo" and metrics["solver"]["steps"] == [3, 3]
    assert metrics["solver_info"]["mapping_proxy"]["fitted_from"] == "this generator's mapping network"
    assert metrics["solver_info"]["perceptual"] == "not applicable"  # compressed-sensing measurements are no images
    assert metrics["generator"]["provenance"]["source"] == "tiny random test generator"
    assert "never by the ground truth" in metrics["selection"]


@pytest.mark.parametrize("method, task, extra, generator", [
    ("csgm", "inpaint", ("--ratio", 0.5), "g.pt"),
    ("pulse", "sr", ("--factor", 2), "g.pt"),
    ("mganprior", "denoise", ("--sigma", 0.1), "pg.pt"),
])
def test_other_methods_and_tasks(files, tmp_path, method, task, extra, generator):
    out = tmp_path / "run"
    assert run(solve_args(files, out, method, task, extra, generator)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["solver"]["method"] == method
    if method == "pulse":
        assert all(isinstance(e["feasible"], bool) for e in metrics["per_image"])


def write_images(folder: Path, size: int, mode: str, count: int = 2) -> Path:
    folder.mkdir()
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (size, size, 3 if mode == "RGB" else 1), np.uint8)
        Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(folder / f"{i}.png")
    return folder


def test_image_folder_of_matching_images(files, tmp_path):
    folder = write_images(tmp_path / "images", 16, "L")
    out = tmp_path / "run"
    assert run(solve_args(files, out, "csgm", images=folder)) == 0
    names = [e["name"] for e in json.loads((out / "metrics.json").read_text())["per_image"]]
    assert names == ["0.png", "1.png"]


def bad_inputs(files, tmp_path):
    return {
        "missing generator": solve_args(files, tmp_path / "o", generator="nope.pt"),
        "ratio 0": solve_args(files, tmp_path / "o", extra=("--ratio", 0)),
        "ratio > 1": solve_args(files, tmp_path / "o", extra=("--ratio", 1.5)),
        "no ratio": solve_args(files, tmp_path / "o", extra=()),
        "wrong image size": solve_args(files, tmp_path / "o", images=write_images(tmp_path / "small", 8, "L")),
        "wrong channels": solve_args(files, tmp_path / "o", images=write_images(tmp_path / "rgb", 16, "RGB")),
        "missing images": solve_args(files, tmp_path / "o", images=tmp_path / "nowhere"),
        "unknown method": solve_args(files, tmp_path / "o", method="magic") + ["--config", files / "csgm.yaml"],
        "unknown task": solve_args(files, tmp_path / "o", task="colorize"),
        "bad setting": solve_args(files, tmp_path / "o", method="csgm") + ["--config", files / "ilo.yaml"],
        "missing config": solve_args(files, tmp_path / "o") + ["--config", tmp_path / "none.yaml"],
        "not a number": solve_args(files, tmp_path / "o", extra=("--ratio", "lots")),
        "sigma nan": solve_args(files, tmp_path / "o", task="denoise", extra=("--sigma", "nan")),
        "sigma inf": solve_args(files, tmp_path / "o", task="denoise", extra=("--sigma", "inf")),
        "ratio nan": solve_args(files, tmp_path / "o", extra=("--ratio", "nan")),
        "no such gpu": solve_args(files, tmp_path / "o") + ["--device", "cuda:7"],
        "bogus device": solve_args(files, tmp_path / "o") + ["--device", "bogus"],
        "nan weights": solve_args(files, tmp_path / "o", generator=broken_generator(files, "nan")),
        "g_ema not a dict": solve_args(files, tmp_path / "o", generator=broken_generator(files, "list")),
    }


def broken_generator(files, how: str) -> str:
    """A copy of g.pt whose g_ema holds a NaN ("nan") or is a list of tensors ("list")."""
    rec = torch.load(files / "g.pt", weights_only=True)
    if how == "nan":
        key = next(k for k, v in rec["g_ema"].items() if v.is_floating_point())
        rec["g_ema"][key] = torch.full_like(rec["g_ema"][key], float("nan"))
    else:
        rec["g_ema"] = list(rec["g_ema"].values())
    path = files / f"broken_{how}.pt"
    torch.save(rec, path)
    return path.name


def test_out_that_is_an_existing_file_is_refused_before_solving(files, tmp_path, capsys):
    existing = tmp_path / "taken.txt"
    existing.write_text("keep me")
    assert run(solve_args(files, existing)) == 2
    assert "existing file" in capsys.readouterr().err and existing.read_text() == "keep me"


def test_bad_input_is_one_error_line_and_status_2(files, tmp_path, capsys):
    for name, argv in bad_inputs(files, tmp_path).items():
        capsys.readouterr()
        assert run(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (name, err)
        assert not (tmp_path / "o").exists(), name


def test_script_exit_status(files, tmp_path):
    argv = [sys.executable, ROOT / "invert.py", *solve_args(files, tmp_path / "o", extra=("--ratio", 0))]
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: ")


def test_solve_without_config_uses_the_shipped_settings_with_their_per_task_entries(files, tmp_path):
    args = solve_args(files, tmp_path / "o", task="denoise", extra=("--sigma", 0.1))
    i = args.index("--config")
    args = args[:i] + args[i + 2:]
    args[args.index("--num-images") + 1] = 1
    assert run(args) == 0
    solver = json.loads((tmp_path / "o" / "metrics.json").read_text())["solver"]
    assert solver["l1_radius"] == [0.3, 0.05] and solver["steps"] == [200, 100, 100]  # configs/invert/ilo.yaml


def test_set_changes_single_solver_settings(files, tmp_path, capsys):
    args = solve_args(files, tmp_path / "o", method="csgm") + ["--set", "steps=3", "--set", "lr=0.05"]
    assert run(args) == 0
    solver = json.loads((tmp_path / "o" / "metrics.json").read_text())["solver"]
    assert solver["steps"] == 3 and solver["lr"] == 0.05 and solver["restarts"] == 2  # the rest from --config
    assert run(solve_args(files, tmp_path / "p", method="csgm") + ["--set", "steps"]) == 2
    assert run(solve_args(files, tmp_path / "p", method="csgm") + ["--set", "steps=abc"]) == 2
    assert "bad csgm settings" in capsys.readouterr().err


@pytest.mark.parametrize("method, generator", [("csgm", "g.pt"), ("pulse", "g.pt"), ("ilo", "g.pt"), ("ilo", "pg.pt"),
                                               ("csgm", "pg.pt")])
def test_solutions_are_saved_weights_only_and_re_render_the_reconstructions(files, tmp_path, method, generator):
    from rtil.inverse.solutions import render_solution

    out = tmp_path / "o"
    extra = ["--set", "cut_points=[0, 1]", "--set", "steps=[3, 3]", "--set", "lr=[0.1, 0.05]",
             "--set", "noise_layers=[1, 3]", "--set", "l1_radius=[0.05]"] if method == "ilo" else []
    assert run(solve_args(files, out, method, generator=generator) + extra) == 0
    saved = torch.load(out / "solutions.pt", weights_only=True)
    G = rtil.load_generator(files / generator)
    images = render_solution(G, saved["solution"], saved["cut"])
    written = torch.stack([torch.from_numpy(np.array(Image.open(out / "reconstructions" / f"{i:05d}.png").convert("L")))
                           for i in range(3)]).float() / 255
    assert images.shape[0] == 3 and saved["cut"] == (1 if method == "ilo" else 0)
    torch.testing.assert_close(((images + 1) / 2).clamp(0, 1)[:, 0], written, atol=1 / 255 + 1e-6, rtol=0)

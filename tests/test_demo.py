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
        "a malicious pickle": ([malicious, tmp_path / "h.pt"], "not loaded"),
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


@pytest.mark.filterwarnings("ignore")
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

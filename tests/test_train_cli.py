"""train.py's command line: a run from a config, `--ckpt_path last` resume, and clear config errors."""

from pathlib import Path

import pytest
import torch

import rtil
from rtil.training.cli import main

pytestmark = pytest.mark.filterwarnings("ignore")

TINY = ["--data.resolution", "8", "--data.batch_size", "4", "--model.init_args.z_dim", "8",
        "--model.init_args.w_dim", "8", "--model.init_args.channel_base", "64", "--model.init_args.channel_max", "8",
        "--model.init_args.mbstd_group_size", "2", "--model.init_args.rtil_cut_points", "[1, 2]",
        "--wandb", "disabled", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--checkpoint.every_kimg", "1000", "--samples.every_kimg", "1000"]
CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "stylegan2_digits.yaml")


def test_fit_then_resume_from_last(tmp_path):
    common = ["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path)]
    first = main([*common, "--model.init_args.total_kimg", "0.008"])  # 2 iterations
    assert int(first.model.iteration) == 2
    last = tmp_path / "rtil" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    second = main([*common, "--model.init_args.total_kimg", "0.016", "--ckpt_path", "last"])
    assert int(second.model.iteration) == 4  # continued from iteration 2, not restarted
    G = rtil.load_generator(Path(second.trainer.log_dir) / "generator.pt")
    assert G.rtil["cut_points"] == [1, 2] and G.provenance["kimg"] == pytest.approx(0.016)
    assert G(torch.randn(2, 8), noise_mode="const").shape == (2, 1, 8, 8)
    assert any((Path(second.trainer.log_dir) / "samples").glob("*.png"))


def test_bad_configuration_exits_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path),
              "--data.dataset", "folder", "--data.path", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err

"""FID / KID through torchmetrics with a small stand-in feature network (the Inception weights cannot be
downloaded here), the offline path, and `python -m rtil fid`."""

import json

import pytest
import torch
from torch import nn

from conftest import tiny_stylegan2
from rtil.checkpoints import save_generator
from rtil.cli import main as cli_main
from rtil.evaluation.sample_quality import fid_kid, load_inception, real_image_batches


class StandInFeatures(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> 16 pooled features of a fixed random conv layer."""

    num_features = 16

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        torch.nn.init.normal_(self.conv.weight, generator=torch.Generator().manual_seed(0))
        torch.nn.init.zeros_(self.conv.bias)
        self.requires_grad_(False)

    def forward(self, x):
        return torch.tanh(self.conv(x.float())).mean((2, 3))


def test_fid_and_kid_rank_a_generators_own_samples_far_below_noise():
    torch.manual_seed(0)
    G = tiny_stylegan2(16, 1).eval().requires_grad_(False)
    own = [G(torch.randn(100, G.z_dim, generator=torch.Generator().manual_seed(7)), noise_mode="random")]
    noise = [torch.rand(100, 1, 16, 16) * 2 - 1]
    same = fid_kid(G, None, own, 100, StandInFeatures(), kid_subset_size=50)
    other = fid_kid(G, None, noise, 100, StandInFeatures(), kid_subset_size=50)
    assert same["num_real"] == 100 and same["num_generated"] == 100
    assert same["fid"] < 0.2 * other["fid"] and same["kid_mean"] < other["kid_mean"]
    again = fid_kid(G, None, own, 100, StandInFeatures(), kid_subset_size=50)
    assert again["fid"] == same["fid"]  # seeded samples


def test_offline_without_cached_weights_is_unavailable_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    extractor, why_not = load_inception(offline=True)
    assert extractor is None and "downloads are off" in why_not
    assert "$TORCH_HOME/hub/checkpoints/" in why_not and str(tmp_path) not in why_not  # no machine's path
    monkeypatch.setenv("RTIL_OFFLINE", "1")
    assert load_inception()[0] is None


def test_real_batches_cover_the_data_once(tmp_path):
    batches = list(real_image_batches("digits", 16, 1, batch_size=400))
    assert sum(b.shape[0] for b in batches) == 1500 and batches[0].shape[1:] == (1, 16, 16)
    assert sum(b.shape[0] for b in real_image_batches("digits", 16, 1, 64, num_images=100)) == 100


def test_fid_command_offline_reports_unavailable_and_the_digits_distance(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    torch.manual_seed(0)
    save_generator(tmp_path / "g.pt", tiny_stylegan2(16, 1).eval())
    out = tmp_path / "fid.json"
    assert cli_main(["fid", str(tmp_path / "g.pt"), "--num-gen", "50", "--offline", "--out", str(out), "--quiet"]) == 0
    record = json.loads(out.read_text())
    assert record["fid"].startswith("unavailable") and record["digits_fd"] > 0
    assert cli_main(["fid", str(tmp_path / "g.pt"), "--member", "3", "--offline"]) == 2
    assert "--member must be in 0..0" in capsys.readouterr().err


def test_training_logs_the_digits_distance_of_every_member(tmp_path, monkeypatch):
    """FID asked for without the Inception weights: a warning, the run goes on, the digits distance is logged."""
    from test_train_cli import CONFIG, TINY

    from rtil.training.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.warns(UserWarning, match=r"FID/KID during training: unavailable \(the FID Inception weights are not "):
        cli = main(["fit", "--config", CONFIG, *TINY, "--model.init_args.total_kimg", "0.016",
                    "--quality.every_kimg", "0.008", "--quality.num_samples", "50", "--quality.fid", "true",
                    "--quality.offline", "true", "--trainer.default_root_dir", str(tmp_path)])
    metrics = (tmp_path / "stylegan2_digits" / "version_0" / "metrics.csv").read_text()
    for member in range(cli.model.num_members):
        assert f"quality/fdd_g{member}" in metrics
    assert "quality/fid_g0" not in metrics

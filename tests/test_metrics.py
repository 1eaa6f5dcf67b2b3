import hashlib
import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rtil.errors import RtilError
from rtil.evaluation import metrics
from rtil.evaluation.metrics import (
    image_metrics,
    load_lpips,
    lpips_random_backbone_for_tests,
    metric_settings,
    psnr,
    ssim,
    to_unit_range,
)
from rtil.evaluation.stats import mean_ci, paired_difference


def image_pair(channels, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(2, channels, size, size, generator=gen)
    pred = (target + 0.1 * torch.randn(target.shape, generator=gen)).clamp(0, 1)
    return pred, target


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_ssim_match_skimage(channels):
    pred, target = image_pair(channels)
    ours_psnr, ours_ssim = psnr(pred, target), ssim(pred, target)
    assert ours_psnr.shape == ours_ssim.shape == (2,)
    for i in range(2):
        p, t = pred[i].permute(1, 2, 0).double().numpy(), target[i].permute(1, 2, 0).double().numpy()
        ref_psnr = peak_signal_noise_ratio(t, p, data_range=1)
        ref_ssim = structural_similarity(t, p, data_range=1, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False)
        assert abs(float(ours_psnr[i]) - ref_psnr) < 1e-4
        assert abs(float(ours_ssim[i]) - ref_ssim) < 1e-4


def test_identical_images_and_unit_range():
    x = torch.rand(1, 3, 16, 16)
    assert math.isinf(float(psnr(x, x)[0]))
    assert torch.allclose(ssim(x, x), torch.ones(1, dtype=torch.float64))
    assert torch.equal(to_unit_range(torch.tensor([-2.0, -1.0, 0.0, 1.0])), torch.tensor([0.0, 0.0, 0.5, 1.0]))


def lpips_notes(caplog) -> list[str]:
    """The one-line notes load_lpips logged since the last call (and clears them)."""
    notes = [r.getMessage() for r in caplog.records if r.name == "rtil.evaluation.metrics"]
    caplog.clear()
    return notes


def test_load_lpips_without_cached_weights(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(metrics, "_said", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a note, not a warning with a source line
        assert load_lpips() is None and load_lpips() is None
    note = "LPIPS: unavailable, see README (no $TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth: downloads are off"
    assert len(lpips_notes(caplog)) == 1  # said once per process and reason
    assert load_lpips() is None and lpips_notes(caplog) == []
    monkeypatch.setattr(metrics, "_said", set())
    assert load_lpips() is None and [n[:len(note)] for n in lpips_notes(caplog)] == [note]
    settings = metric_settings(None)
    assert settings["lpips"]["status"] == "unavailable"
    assert metrics.ALEXNET_URL in settings["lpips"]["reason"]
    assert "$TORCH_HOME/hub/checkpoints/" in settings["lpips"]["reason"] and str(tmp_path) not in json.dumps(settings)
    assert not any(tmp_path.rglob("*.pth"))  # nothing was downloaded
    json.dumps(settings)


def test_random_backbone_lpips_and_cached_loading(tmp_path, monkeypatch):
    random_lpips = lpips_random_backbone_for_tests()
    pred, target = image_pair(3)
    assert torch.equal(random_lpips(target, target), torch.zeros(2))
    assert (random_lpips(pred, target) > 0).all()
    gray_pred, gray_target = image_pair(1)
    assert random_lpips(gray_pred, gray_target).shape == (2,)
    assert "RANDOM" in metric_settings(random_lpips)["lpips"]["backbone"]

    # A fake cached AlexNet file (only the `features` layers lpips uses): its weights end up in the backbone.
    features = {f"features.{name.split('.', 1)[1]}": torch.randn_like(t)
                for name, t in random_lpips.network.net.state_dict().items()}
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(features, checkpoints / metrics.ALEXNET_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RtilError, match="SHA-256"):
        load_lpips()
    digest = hashlib.sha256((checkpoints / metrics.ALEXNET_FILE).read_bytes()).hexdigest()
    monkeypatch.setattr(metrics, "ALEXNET_SHA256_PREFIX", digest[:8])
    loaded = load_lpips()
    assert torch.equal(getattr(loaded.network.net.slice2, "3").weight, features["features.3.weight"])
    assert torch.equal(getattr(loaded.network.net.slice5, "10").bias, features["features.10.bias"])
    values = image_metrics(pred, target, loaded)
    assert set(values) == {"psnr", "ssim", "lpips"} and values["lpips"].shape == (2,)


def test_mean_ci_matches_scipy():
    values = [28.1, 30.4, 29.9, 31.2, 27.5]
    ci = mean_ci(values)
    low, high = stats.t.interval(0.95, df=4, loc=np.mean(values), scale=stats.sem(values))
    assert ci.n == 5 and math.isclose(ci.mean, np.mean(values))
    assert math.isclose(ci.low, low) and math.isclose(ci.high, high)
    assert math.isclose(mean_ci(torch.tensor(values, dtype=torch.float64)).high, high)


def test_mean_ci_single_value_and_errors():
    ci = mean_ci([3.0])
    assert ci.mean == 3.0 and math.isnan(ci.low) and math.isnan(ci.half_width) and math.isnan(ci.std)
    with pytest.raises(RtilError, match="empty"):
        mean_ci([])
    with pytest.raises(RtilError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)


def test_coverage_of_95_percent_interval():
    rng = np.random.default_rng(0)
    samples = rng.normal(2.0, 3.0, size=(2000, 5))
    covered = [(c.low <= 2.0 <= c.high) for c in map(mean_ci, samples)]
    assert 0.93 < np.mean(covered) < 0.97


def test_paired_difference():
    a = np.array([30.1, 28.4, 33.0, 29.7, 31.5, 27.9])
    b = np.array([29.0, 28.0, 31.8, 29.9, 30.2, 27.1])
    result = paired_difference(a, b)
    reference = stats.ttest_rel(a, b)
    assert math.isclose(result.mean_difference, np.mean(a - b))
    assert math.isclose(result.p_value, reference.pvalue) and math.isclose(result.t_statistic, reference.statistic)
    low, high = stats.t.interval(0.95, df=5, loc=np.mean(a - b), scale=stats.sem(a - b))
    assert math.isclose(result.low, low) and math.isclose(result.high, high)
    json.dumps(result.as_dict())
    single = paired_difference([1.0], [0.5])
    assert single.mean_difference == 0.5 and math.isnan(single.p_value) and math.isnan(single.low)
    with pytest.raises(RtilError, match="one value per image"):
        paired_difference([1.0, 2.0], [1.0])


def test_lpips_weights_are_fetched_on_first_use_unless_downloads_are_off(tmp_path, monkeypatch, caplog):
    import io

    features = {f"features.{name.split('.', 1)[1]}": torch.randn_like(t)
                for name, t in lpips_random_backbone_for_tests().network.net.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(features, buffer)
    data = buffer.getvalue()
    monkeypatch.setattr(metrics, "ALEXNET_SHA256_PREFIX", hashlib.sha256(data).hexdigest()[:8])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append(url)
        with open(dst, "wb") as f:
            f.write(data)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.setattr(metrics, "_said", set())
    assert load_lpips() is None  # the test session runs with RTIL_OFFLINE=1
    assert calls == [] and "downloads are off" in lpips_notes(caplog)[0]
    monkeypatch.delenv("RTIL_OFFLINE")
    monkeypatch.setattr(metrics, "_said", set())
    assert load_lpips(offline=True) is None and "downloads are off" in lpips_notes(caplog)[0]
    loaded = load_lpips()
    assert calls == [metrics.ALEXNET_URL] and loaded is not None
    assert load_lpips() is not None and len(calls) == 1  # cached now

    def failing_download(url, dst, hash_prefix=None, progress=True):
        raise OSError("Name or service not known")

    (tmp_path / "hub" / "checkpoints" / metrics.ALEXNET_FILE).unlink()
    monkeypatch.setattr(torch.hub, "download_url_to_file", failing_download)
    assert load_lpips() is None and "download of https://download.pytorch.org" in lpips_notes(caplog)[0]

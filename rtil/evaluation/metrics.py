"""Per-image reconstruction metrics: PSNR, SSIM, LPIPS. Images (B, C, H, W) in [0, 1]; every metric returns (B,).

LPIPS is the `lpips` package's AlexNet v0.1 model. Its ImageNet backbone is read from the torch hub cache
(the file torchvision itself would download, fetched on first use unless downloads are off). Without that file
LPIPS is unavailable and `load_lpips` returns None: no number is better than a number from the wrong network.
"""

import logging
import warnings
from importlib.metadata import version
from pathlib import Path

import torch
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

from rtil.errors import RtilError

DATA_RANGE = 1.0
SSIM_SETTINGS = {"gaussian_kernel": True, "kernel_size": 11, "sigma": 1.5, "k1": 0.01, "k2": 0.03}
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision AlexNet_Weights.IMAGENET1K_V1
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
ALEXNET_SHA256_PREFIX = "7be5be79"
log = logging.getLogger(__name__)
_said: set[str] = set()  # the one-line LPIPS notes already logged by this process


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Model images in [-1, 1] -> metric images in [0, 1] (clamped)."""
    return ((images + 1) / 2).clamp(0, 1)


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, (B,) float64; inf for identical images."""
    _check_pair(pred, target)
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """Structural similarity per image, (B,) float64: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, mean
    over channels and the window positions inside the image (as scikit-image with gaussian_weights=True,
    use_sample_covariance=False). Images must be larger than 10 pixels."""
    _check_pair(pred, target)
    border = SSIM_SETTINGS["kernel_size"] // 2
    if min(pred.shape[-2:]) <= 2 * border:
        raise ValueError(f"SSIM needs images larger than {2 * border} pixels, got {tuple(pred.shape[-2:])}")
    _, ssim_map = structural_similarity_index_measure(pred.double(), target.double(), data_range=data_range,
                                                      reduction="none", return_full_image=True, **SSIM_SETTINGS)
    # torchmetrics averages over the whole (reflect-padded) image; like scikit-image and Wang et al. we keep
    # only the positions whose window lies inside the image.
    return ssim_map[..., border:-border, border:-border].flatten(1).mean(1)


class LpipsMetric(nn.Module):
    """LPIPS distance per image, (B,). Inputs in [0, 1], 1 or 3 channels (grayscale is replicated to RGB);
    the network sees them in [-1, 1]. `backbone` says which backbone weights the network holds."""

    def __init__(self, network: nn.Module, backbone: str):
        super().__init__()
        self.network = network.eval()
        self.backbone = backbone

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target)
        if pred.shape[1] == 1:
            pred, target = pred.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
        return self.network(pred * 2 - 1, target * 2 - 1).flatten()


def _lpips_alexnet_random_backbone(seed: int = 0) -> nn.Module:
    """lpips AlexNet v0.1 with its calibrated linear layers and a randomly initialised backbone (no download)."""
    import lpips

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        warnings.filterwarnings("ignore", message=".*(pretrained|weights).*", category=UserWarning)
        return lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)


def alexnet_weights_path() -> Path:
    """Where torchvision keeps (and where we read) the ImageNet AlexNet weights: <torch hub dir>/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_unavailable_message(why: str | None = None) -> str:
    """Why LPIPS is unavailable and how to make it available (stored in result files: the weights' place is
    written $TORCH_HOME/hub/..., not this machine's home directory)."""
    from rtil.weights import shown_cache_path

    path = shown_cache_path(alexnet_weights_path())
    return (f"LPIPS is unavailable: the AlexNet backbone weights {path} are missing"
            f"{f' ({why})' if why else ''}. On a machine with internet access download {ALEXNET_URL} and copy "
            f"it to {path} (or set TORCH_HOME to a directory holding hub/checkpoints/{ALEXNET_FILE}). LPIPS will "
            f"be reported as 'unavailable' until then.")


def load_lpips(device: torch.device | str = "cpu", check_hash: bool = True, offline: bool = False
               ) -> LpipsMetric | None:
    """The LPIPS (AlexNet, v0.1) metric with torchvision's ImageNet backbone, fetched on first use into the
    torch hub cache unless downloads are off (`offline` or RTIL_OFFLINE=1, rtil/weights.py), or None. Unavailable,
    it logs one line (logger rtil.evaluation.metrics, level WARNING, once per process and reason: a command's
    output says it once, not per cell), "LPIPS: unavailable, see README (why)"; lpips_unavailable_message says
    how to provide the weights, and metric_settings(None) stores that in result files. check_hash compares the
    file's SHA-256 with the prefix in its name, as torchvision does."""
    from rtil.checkpoints import safe_torch_load
    from rtil.weights import check_sha256, fetch

    path = alexnet_weights_path()
    why = fetch(ALEXNET_URL, path, ALEXNET_SHA256_PREFIX if check_hash else None, offline)
    if why is not None:
        from rtil.weights import shown_cache_path

        note = f"LPIPS: unavailable, see README (no {shown_cache_path(path)}: {why})"
        if note not in _said:
            _said.add(note)
            log.warning(note)
        return None
    if check_hash:
        check_sha256(path, ALEXNET_SHA256_PREFIX, "torchvision's AlexNet file", ALEXNET_URL)
    state = safe_torch_load(path, "AlexNet weights")
    network = _lpips_alexnet_random_backbone()
    # lpips splits torchvision's `features.<i>` layers into slices `slice<k>.<i>`, keeping the index i.
    names = [name for name in network.net.state_dict()]
    try:
        backbone = {name: state["features." + name.split(".", 1)[1]] for name in names}
        network.net.load_state_dict(backbone, strict=True)
    except (KeyError, RuntimeError) as e:
        raise RtilError(f"{path} does not hold torchvision AlexNet features: {e}") from e
    return LpipsMetric(network, backbone=f"torchvision alexnet ImageNet ({ALEXNET_FILE})").to(device)


def lpips_random_backbone_for_tests(device: torch.device | str = "cpu", seed: int = 0) -> LpipsMetric:
    """LPIPS with a *random* AlexNet backbone. For tests of the plumbing only: its values mean nothing and must
    never appear in results (metric_settings marks it)."""
    network = _lpips_alexnet_random_backbone(seed)
    return LpipsMetric(network, backbone=f"RANDOM (seed {seed}) - tests only, not a valid metric").to(device)


def image_metrics(pred: torch.Tensor, target: torch.Tensor, lpips_metric: LpipsMetric | None = None) -> dict:
    """{"psnr", "ssim"[, "lpips"]} -> per-image values (B,) for images in [0, 1]."""
    out = {"psnr": psnr(pred, target), "ssim": ssim(pred, target)}
    if lpips_metric is not None:
        with torch.no_grad():
            out["lpips"] = lpips_metric(pred, target).double()
    return out


def metric_settings(lpips_metric: LpipsMetric | None = None) -> dict:
    """Every metric setting and library version, to store in result files. lpips_metric: the metric actually
    used, or None if LPIPS was unavailable."""
    if lpips_metric is None:
        lpips_settings = {"status": "unavailable", "reason": lpips_unavailable_message()}
    else:
        lpips_settings = {"status": "available", "net": "alex", "version": "0.1", "backbone": lpips_metric.backbone,
                          "input_range": "[-1, 1] (from [0, 1])", "grayscale": "replicated to RGB",
                          "spatial_average": True, "lpips_package": version("lpips"),
                          "torchvision": version("torchvision")}
    return {
        "input_range": [0.0, 1.0],
        "per_image": True,
        "psnr": {"data_range": DATA_RANGE, "formula": "10 log10(data_range^2 / MSE over C, H, W)"},
        "ssim": {"data_range": DATA_RANGE, **SSIM_SETTINGS, "window": "gaussian", "covariance": "population",
                 "average": "over channels and window positions inside the image (5 px border excluded)",
                 "implementation": "torchmetrics.functional.structural_similarity_index_measure",
                 "torchmetrics": version("torchmetrics")},
        "lpips": lpips_settings,
        "torch": torch.__version__,
    }


def reconstruction_metrics(reconstructions: torch.Tensor, truths: torch.Tensor, lpips_metric=None) -> dict:
    """Per-image PSNR, SSIM (and LPIPS if a metric is given) of reconstructions vs truths, both (N, C, H, W)
    in [-1, 1]: {"psnr": [...], "ssim": [...], "lpips": [...]}, values as Python floats."""
    pred, target = to_unit_range(reconstructions.cpu()), to_unit_range(truths.cpu())
    if lpips_metric is not None:
        device = next(lpips_metric.parameters()).device
        values = image_metrics(pred.to(device), target.to(device), lpips_metric)
    else:
        values = image_metrics(pred, target)
    return {name: v.cpu().tolist() for name, v in values.items()}

"""Evaluation: per-image metrics and the statistics to compare models."""

from rtil.evaluation.metrics import (
    LpipsMetric,
    image_metrics,
    load_lpips,
    lpips_random_backbone_for_tests,
    metric_settings,
    psnr,
    ssim,
    to_unit_range,
)
from rtil.evaluation.stats import MeanCI, PairedDifference, mean_ci, paired_difference

__all__ = [
    "LpipsMetric",
    "MeanCI",
    "PairedDifference",
    "image_metrics",
    "load_lpips",
    "lpips_random_backbone_for_tests",
    "mean_ci",
    "metric_settings",
    "paired_difference",
    "psnr",
    "ssim",
    "to_unit_range",
]

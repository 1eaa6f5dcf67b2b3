"""Means with Student-t confidence intervals, and paired comparisons of two models on the same images.

With a single value (n = 1) the spread is unknown: std, the interval bounds, t and p are NaN (undefined).
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

from rtil.errors import RtilError


@dataclass(frozen=True)
class MeanCI:
    """Sample mean with a two-sided Student-t confidence interval (n - 1 degrees of freedom)."""

    mean: float
    low: float
    high: float
    half_width: float
    std: float  # sample standard deviation (ddof 1)
    n: int
    confidence: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of the per-image differences a - b, its confidence interval and a paired t-test (two-sided)."""

    mean_difference: float
    low: float
    high: float
    half_width: float
    std: float  # sample standard deviation of the differences (ddof 1)
    n: int
    confidence: float
    t_statistic: float
    p_value: float

    def as_dict(self) -> dict:
        return asdict(self)


def _values(values, name: str = "values") -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise RtilError(f"cannot summarise an empty list of {name}")
    return v


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise RtilError(f"confidence must be in (0, 1), got {confidence}")


def _t_interval(v: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(mean, half width, std) of the t interval; half width and std are NaN for n = 1."""
    n, mean = v.size, float(v.mean())
    if n == 1:
        return mean, math.nan, math.nan
    std = float(v.std(ddof=1))
    half_width = float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * std / math.sqrt(n)
    return mean, half_width, std


def mean_ci(values, confidence: float = 0.95) -> MeanCI:
    """Mean of `values` (sequence, array or tensor, flattened) with its t confidence interval."""
    _check_confidence(confidence)
    v = _values(values)
    mean, half_width, std = _t_interval(v, confidence)
    return MeanCI(mean, mean - half_width, mean + half_width, half_width, std, int(v.size), confidence)


def paired_difference(a, b, confidence: float = 0.95) -> PairedDifference:
    """Compare two models evaluated on the same images in the same order: statistics of a[i] - b[i]."""
    _check_confidence(confidence)
    va, vb = _values(a, "a"), _values(b, "b")
    if va.size != vb.size:
        raise RtilError(f"paired comparison needs one value per image for both models, got {va.size} and {vb.size}")
    d = va - vb
    mean, half_width, std = _t_interval(d, confidence)
    if d.size == 1:
        t_statistic, p_value = math.nan, math.nan
    else:
        result = stats.ttest_rel(va, vb)
        t_statistic, p_value = float(result.statistic), float(result.pvalue)
    return PairedDifference(mean, mean - half_width, mean + half_width, half_width, std, int(d.size), confidence,
                            t_statistic, p_value)

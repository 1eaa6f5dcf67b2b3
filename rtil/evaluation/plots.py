"""Figures for papers: metric-versus-ratio curves with confidence bands, and image grids."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402


def plot_curves(summary: list[dict], metric: str, task: str, path: str | Path, title: str | None = None) -> Path:
    """One line per (model, method): mean `metric` versus ratio with its 95% CI as a band.

    summary rows need keys model, method, task, ratio, and f"{metric}_mean", f"{metric}_low",
    f"{metric}_high" (as written by rtil.evaluation.sweep).
    """
    rows = [r for r in summary if r["task"] == task and r.get(f"{metric}_mean") is not None]
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=150)
    for model, method in sorted({(r["model"], r["method"]) for r in rows}):
        line = sorted((r for r in rows if r["model"] == model and r["method"] == method), key=lambda r: r["ratio"])
        x = [r["ratio"] for r in line]
        mean = [r[f"{metric}_mean"] for r in line]
        # A single image has no interval (NaN bounds): draw the band at the mean.
        low = [_or(r[f"{metric}_low"], r[f"{metric}_mean"]) for r in line]
        high = [_or(r[f"{metric}_high"], r[f"{metric}_mean"]) for r in line]
        (handle,) = ax.plot(x, mean, marker="o", label=f"{model} / {method}")
        ax.fill_between(x, low, high, color=handle.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("measurement ratio" if task in ("cs", "cs_gaussian", "inpaint", "inpaint_box") else "ratio")
    ax.set_ylabel(metric.upper())
    ax.set_title(title or f"{task}: {metric.upper()} (mean, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _or(value, fallback):
    return fallback if value is None or value != value else value


def save_comparison_grid(columns: list[torch.Tensor], path: str | Path) -> Path:
    """A grid with one row per image and one column per tensor in `columns` (each (N, C, H, W) in
    [-1, 1], e.g. truth | measurement | reconstructions)."""
    n = columns[0].shape[0]
    channels = max(c.shape[1] for c in columns)
    tiles = []
    for i in range(n):
        for col in columns:
            tile = col[i].detach().float().cpu().clamp(-1, 1)
            tiles.append(tile.expand(channels, -1, -1) if tile.shape[0] != channels else tile)
    grid = make_grid(torch.stack(tiles), nrow=len(columns), padding=1, normalize=True, value_range=(-1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return path

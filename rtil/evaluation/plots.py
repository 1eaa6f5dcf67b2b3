"""Figures for papers: metric-versus-parameter curves with confidence bands, paired-difference plots, labelled
image grids and RTIL member sample grids. Every figure is written as PNG and, beside it, PDF (vector, for LaTeX);
the member grids are PNG only."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from rtil.atomic_files import save_figure_atomically, save_image_atomically  # noqa: E402

UNITS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS (lower is better)"}
PARAMETER = {"cs": "measurement ratio", "cs_gaussian": "measurement ratio", "inpaint": "fraction of pixels observed",
             "inpaint_box": "fraction of pixels observed", "sr": "down-sampling factor", "denoise": "noise std"}
LINE_STYLES = ("-", "--", ":", "-.")


def plot_curves(summary: list[dict], metric: str, task: str, path: str | Path, title: str | None = None) -> Path:
    """Mean `metric` versus the task parameter with its 95% CI as a band: one colour per model, one line style
    per method, n (images per point) in the legend.

    summary rows need keys model, method, task, ratio (the parameter), f"{metric}_mean", f"{metric}_low",
    f"{metric}_high", and optionally n (as written by rtil.evaluation.sweep_tables).
    """
    rows = [r for r in summary if r["task"] == task and r.get(f"{metric}_mean") is not None]
    models = sorted({r["model"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    colours = {m: f"C{i}" for i, m in enumerate(models)}
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=150)
    for model in models:
        for method in methods:
            line = sorted((r for r in rows if r["model"] == model and r["method"] == method), key=lambda r: r["ratio"])
            if not line:
                continue
            x = [r["ratio"] for r in line]
            mean = [r[f"{metric}_mean"] for r in line]
            # A single image has no interval (NaN bounds): draw the band at the mean.
            low = [_or(r[f"{metric}_low"], r[f"{metric}_mean"]) for r in line]
            high = [_or(r[f"{metric}_high"], r[f"{metric}_mean"]) for r in line]
            n = sorted({r["n"] for r in line if r.get("n")})
            label = f"{model} / {method}" + (f" (n={'/'.join(map(str, n))})" if n else "")
            style = LINE_STYLES[methods.index(method) % len(LINE_STYLES)]
            ax.plot(x, mean, marker="o", color=colours[model], linestyle=style, label=label)
            ax.fill_between(x, low, high, color=colours[model], alpha=0.15, linewidth=0)
    ax.set_xlabel(PARAMETER.get(task, "parameter"))
    ax.set_ylabel(UNITS.get(metric, metric.upper()))
    ax.set_title(title or f"{task}: {metric.upper()} (mean, 95% CI)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_paired_differences(rows: list[dict], path: str | Path, title: str, metric: str = "psnr") -> Path:
    """Paired differences (e.g. RTIL - vanilla) per cell with their 95% CI as error bars, and the zero line.

    rows: dicts with label (the cell's name), mean_difference, low, high and n."""
    fig, ax = plt.subplots(figsize=(5.0, 0.45 * len(rows) + 1.2), dpi=150)
    y = list(range(len(rows)))[::-1]
    means = [r["mean_difference"] for r in rows]
    errors = [[m - _or(r["low"], m) for m, r in zip(means, rows, strict=True)],
              [_or(r["high"], m) - m for m, r in zip(means, rows, strict=True)]]
    colours = ["C2" if _or(r["low"], 0) > 0 else "C3" if _or(r["high"], 0) < 0 else "C7" for r in rows]
    for i, colour in enumerate(colours):  # green: CI above 0, red: below 0, grey: contains 0
        ax.errorbar([means[i]], [y[i]], xerr=[[errors[0][i]], [errors[1][i]]], fmt="o", color=colour, capsize=3)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{r['label']} (n={r['n']})" for r in rows], fontsize=7)
    ax.set_xlabel(f"difference in {UNITS.get(metric, metric)}, 95% CI")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def plot_tuning(candidates: list[str], lines: list[dict], path: str | Path, title: str) -> Path:
    """Validation PSNR of every tuning candidate, one line per generator: how sensitive each generator is to the
    solver's settings.

    candidates: the x-axis labels, in order; lines: dicts with label, style ('baseline' or 'treatment'; drawn blue
    dashed / red solid) and ci (one mean_ci result, with mean and half_width in dB, per candidate)."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(candidates) + 2.0), 3.2), dpi=150)
    x = list(range(len(candidates)))
    for line in lines:
        colour, style = ("C0", "--") if line["style"] == "baseline" else ("C3", "-")
        ax.errorbar(x, [c.mean for c in line["ci"]], yerr=[c.half_width for c in line["ci"]], color=colour,
                    linestyle=style, marker="o", capsize=3, label=line["label"])
    ax.set_xticks(x, candidates, fontsize=7, rotation=15)
    return _finish(fig, ax, f"validation {UNITS['psnr']}, mean and 95% CI", title, path)


def plot_tuning_search(generators: list[dict], path: str | Path, title: str) -> Path:
    """Every tuning candidate's validation PSNR per generator (dots), its chosen one (star) and the common settings
    (ring): where each generator's optimum lies and how much the settings matter to it.

    generators: dicts with label, style ('baseline' blue or 'treatment' red), scores (mean PSNR of every candidate),
    chosen and common (PSNR of the chosen candidate and of the common settings)."""
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(generators) + 2.0), 3.4), dpi=150)
    for x, g in enumerate(generators):
        colour = "C0" if g["style"] == "baseline" else "C3"
        ax.scatter([x] * len(g["scores"]), g["scores"], color=colour, alpha=0.45, s=14)
        ax.scatter([x], [g["common"]], facecolors="none", edgecolors="black", s=60, label="common" if x == 0 else None)
        ax.scatter([x], [g["chosen"]], marker="*", color=colour, edgecolors="black", s=120,
                   label="chosen" if x == 0 else None)
    ax.set_xticks(range(len(generators)), [g["label"] for g in generators], fontsize=6, rotation=25, ha="right")
    return _finish(fig, ax, f"validation {UNITS['psnr']}", title, path)


def plot_budget_axis(lines: list[dict], path: str | Path, title: str) -> Path:
    """Treatment - baseline PSNR (pooled mean with 95% CI) against the solver's total step count, one line per
    comparison and task: lines are dicts with label, steps (list) and differences (PairedDifference-like dicts with
    mean_difference, low, high)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=150)
    for i, line in enumerate(lines):
        means = [d["mean_difference"] for d in line["differences"]]
        low = [m - d["low"] for m, d in zip(means, line["differences"], strict=True)]
        high = [d["high"] - m for m, d in zip(means, line["differences"], strict=True)]
        ax.errorbar(line["steps"], means, yerr=[low, high], marker="o", capsize=3, color=f"C{i}",
                    label=line["label"])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("total solver steps")
    return _finish(fig, ax, f"treatment - baseline, {UNITS['psnr']}", title, path)


def save_comparison_grid(columns: list[torch.Tensor], path: str | Path, labels: list[str] | None = None,
                         scores: list[list[float] | None] | None = None) -> Path:
    """A grid with one row per image and one column per tensor in `columns` (each (N, C, H, W) in [-1, 1], e.g.
    truth | measurement | reconstructions), tiles enlarged without smoothing; `labels` head the columns and
    `scores[j][i]` (e.g. PSNR in dB) is printed under tile i of column j."""
    n, k = columns[0].shape[0], len(columns)
    fig, axes = plt.subplots(n, k, figsize=(1.3 * k, 1.3 * n + 0.3), dpi=150, squeeze=False)
    for j, column in enumerate(columns):
        for i in range(n):
            tile = ((column[i].detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
            ax = axes[i][j]
            ax.imshow(tile.squeeze(-1) if tile.shape[-1] == 1 else tile, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if labels and i == 0:
                ax.set_title(labels[j], fontsize=7)
            if scores and scores[j] is not None:
                ax.set_xlabel(f"{scores[j][i]:.1f} dB", fontsize=6, labelpad=1)
    fig.tight_layout(pad=0.3)
    return _save(fig, path)


def save_member_grid(G, path: str | Path, num_samples: int = 8, seed: int = 0) -> Path:
    """A PNG of rtil.members.member_grid for G's own RTIL family (G.rtil; one row for a vanilla G), `num_samples`
    per row (the study's and the demo's sample grids)."""
    from rtil.config import build_family
    from rtil.members import member_grid

    grid = member_grid(G, build_family(G.rtil), num_samples, seed)
    save_image_atomically(grid, path, nrow=num_samples, normalize=True, value_range=(-1, 1))
    return Path(path)


def _finish(fig, ax, ylabel: str, title: str, path: str | Path) -> Path:
    """The y label, title, grid and legend every line figure shares; saves the figure."""
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    save_figure_atomically(fig, path)
    save_figure_atomically(fig, path.with_suffix(".pdf"), metadata={"CreationDate": None})  # same figure, same bytes
    plt.close(fig)
    return path


def _or(value, fallback):
    return fallback if value is None or value != value else value

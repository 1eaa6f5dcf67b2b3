"""Parts of the report about the study's arms: training length (a comparison at several snapshot budgets: a table
and a figure of treatment - baseline against kimg beside both G0s' FDD), same start (pairs continued from one
checkpoint) and quality-matched pairs (each treatment snapshot with the baseline snapshot of the same seed whose G0
FDD is closest); and the plain-words answers of "What the data show" per arm, computed from the per-image rows."""

import statistics
from dataclasses import replace
from pathlib import Path

from rtil.atomic_files import save_figure_atomically
from rtil.evaluation.stats import paired_difference
from rtil.study.config import Comparison, StudyConfig
from rtil.study.report_generators import g0_fdd, trained_run
from rtil.study.report_stats import cell_name, fmt_diff, shown_kinds, verdict
from rtil.study.stages import export_record


def length_groups(comparisons: dict) -> dict[str, list[str]]:
    """config comparison name -> its snapshot comparisons, by budget."""
    out = {}
    for name, c in comparisons.items():
        if c.group and c.kimg is not None:
            out.setdefault(c.group, []).append(name)
    return {g: sorted(names, key=lambda n: comparisons[n].kimg) for g, names in out.items()}


def mean_g0_fdd(cfg: StudyConfig, generator: str) -> float:
    return statistics.mean(g0_fdd(cfg, generator))


def quality_matched(cfg: StudyConfig) -> dict[str, Comparison]:
    """Per snapshot group with quality_matched: treatment snapshot -> the baseline snapshot of the same pair (seed)
    whose G0 FDD is closest, as one comparison `<group>_quality_matched` (no cells of its own: the snapshots')."""
    out = {}
    for group, names in length_groups(cfg.comparisons).items():
        first = cfg.comparisons[names[0]]
        if not first.quality_matched or cfg.fdd_samples <= 0:
            continue
        baseline, treatment = [], []
        for i in range(len(first.baseline)):
            candidates = [cfg.comparisons[n].baseline[i] for n in names]
            for n in names:
                t = cfg.comparisons[n].treatment[i]
                baseline.append(min(candidates, key=lambda b, t=t: abs(mean_g0_fdd(cfg, b) - mean_g0_fdd(cfg, t))))
                treatment.append(t)
        out[f"{group}_quality_matched"] = replace(
            first, title=f"{first.group_title}, quality-matched pairs (closest G0 FDD)", baseline=baseline,
            treatment=treatment, kimg=None)
    return out


def quality_matched_rows(cfg: StudyConfig, rows: list[dict], matched: dict[str, Comparison]) -> list[dict]:
    """The per-image rows of each quality-matched comparison: its generators' snapshot rows under its name (of the
    methods and settings kinds it shows: a method or budget axis that only one budget adds has no counterpart in the
    others)."""
    out = []
    for name, c in matched.items():
        group = set(length_groups(cfg.comparisons)[c.group])
        seen = set()
        for r in rows:
            key = (r["generator"], r["method"], r["settings"], r["task"], r["param"], r["image"])
            if (r["comparison"] in group and r["generator"] in c.generators and r["settings"] in c.settings
                    and r["method"] in c.methods and key not in seen):
                seen.add(key)
                out.append({**r, "comparison": name})
    return out


def image_differences(rows: list[dict], c: Comparison, cname: str, method: str, kind: str, task: str,
                      param: str) -> dict[str, float]:
    """image -> treatment - baseline PSNR averaged over the comparison's pairs (the pooled paired difference)."""
    value = {(r["generator"], r["image"]): float(r["psnr"]) for r in rows if r["comparison"] == cname
             and r["method"] == method and r["settings"] == kind and r["task"] == task and r["param"] == param}
    images = sorted({image for _, image in value}, key=str)
    return {i: statistics.mean(value[(t, i)] - value[(b, i)] for b, t in zip(c.baseline, c.treatment, strict=True))
            for i in images}


def _kinds(cfg: StudyConfig, c: Comparison, method: str) -> list[tuple[str, str]]:
    """(settings kind, how the report names it) of each kind shown for the method."""
    tuned = cfg.tune.tunes(method)
    return [(kind, f"{kind} settings" if tuned else "common settings, no tuning grid")
            for kind in shown_kinds(cfg.tune, c, method)]


def length_section(cfg: StudyConfig, everything: dict, rows: list[dict], figures: Path, stem: str,
                   base: Path) -> tuple[list[str], list[str]]:
    """The training-length section (a table and figure per group and method) and its plain-words answers."""
    lines, answers = [], []
    for group, names in length_groups(cfg.comparisons).items():
        comps = [cfg.comparisons[n] for n in names]
        first = comps[0]
        label_b, label_t = first.labels
        kimgs = [c.kimg for c in comps]
        if not any(cfg.tune.tunes(m) for m in first.methods):
            tuning = "each method's common settings at every snapshot (no tuning grid)"
        elif first.tune_at == "longest":
            at = max(c.kimg for c in comps if c.continued_from is None)
            tuning = f"tuned once at the longest snapshot ({at:g} kimg) and applied to every budget (methods with a " \
                     f"tuning grid)"
        else:
            tuning = "tuned on the validation images for each snapshot (methods with a tuning grid)"
        lines += [f"## Training length: {first.group_title}", "",
                  f"The same pairs at {', '.join(f'{k:g}' for k in kimgs)} kimg (each snapshot is the checkpoint at "
                  f"or just below its budget){continued_text(cfg, comps)}. Solver settings: {tuning}. Δ is "
                  f"{label_t} - {label_b} PSNR in dB, pooled over {len(first.baseline)} pair(s) (each image's "
                  f"difference averaged over the pairs, then a 95% t interval over the images, as in the tables "
                  f"above).", ""]
        fdd = {arm: [statistics.mean(mean_g0_fdd(cfg, g) for g in getattr(c, arm)) for c in comps]
               for arm in ("baseline", "treatment")} if cfg.fdd_samples > 0 else None
        budgets = ", ".join(f"{c.kimg:g}" + (f" (continued from {c.continued_from:g})" if c.continued_from else "")
                            for c in comps)
        answers.append(f"**{first.group_title}** (snapshots at {budgets} kimg; {tuning}):")
        for method in first.methods:
            for kind, named in _kinds(cfg, first, method):
                stats = {n: {(s["task"], s["param"]): s for s in everything[n]
                             if s["method"] == method and s["settings"] == kind} for n in names}
                cells = list(stats[names[0]])
                if not cells:
                    continue
                lines += [f"### {method}, {named}", "",
                          "| kimg | " + " | ".join(cell_name(*k) for k in cells)
                          + (f" | G0 FDD {label_b} | G0 FDD {label_t} |" if fdd else " |"),
                          "|---|" + "---|" * (len(cells) + (2 if fdd else 0))]
                for j, n in enumerate(names):
                    quality = f" | {fdd['baseline'][j]:.2f} | {fdd['treatment'][j]:.2f} |" if fdd else " |"
                    lines.append(f"| {kimgs[j]:g} | " + " | ".join(
                        f"{fmt_diff(stats[n][k]['pooled']['psnr']['difference'])} ({stats[n][k]['verdict']})"
                        for k in cells) + quality)
                name = f"{stem}_{group}_{method}_{kind}_length.png"
                _plot_length(cfg, comps, kimgs, stats, names, cells, fdd, figures / name,
                             f"{first.group_title}, {method} ({named}): {label_t} - {label_b}")
                lines += ["", f"![{method} against kimg]({(figures / name).relative_to(base)})", ""]
                for task, param in cells:
                    answers.append(f"- {method} ({named}), {cell_name(task, param)}: "
                                   + _length_answer(rows, comps, names, stats, method, kind, task, param, label_t))
        answers.append("")
    return lines, answers


def continued_text(cfg: StudyConfig, comps: list[Comparison]) -> str:
    """How the group's continued budgets were trained (empty when it has none)."""
    parts = [f"the {c.kimg:g}-kimg point continues each arm's own checkpoint at {c.continued_from:g} kimg for "
             f"{c.kimg - c.continued_from:g} kimg (train.py --init_from: G, G_ema and D; fresh optimisers and kimg "
             f"clock in both arms alike; {', '.join(c.generators)})" for c in comps if c.continued_from is not None]
    return "; " + "; ".join(parts) if parts else ""


def _length_answer(rows, comps, names, stats, method, kind, task, param, label_t) -> str:
    """Does the sign or size of the difference change from the shortest to the longest budget?"""
    diffs = [stats[n][(task, param)]["pooled"]["psnr"]["difference"] for n in names]
    verdicts = [verdict(d["low"], d["high"]) for d in diffs]
    each = "; ".join(f"{c.kimg:g} kimg {fmt_diff(d)} ({v})" for c, d, v in zip(comps, diffs, verdicts, strict=True))
    if len(names) < 2:
        return f"{each}."
    first = image_differences(rows, comps[0], names[0], method, kind, task, param)
    last = image_differences(rows, comps[-1], names[-1], method, kind, task, param)
    change = paired_difference([last[i] for i in first], list(first.values())).as_dict()
    sign = "the verdict stays " + verdicts[0] if len(set(verdicts)) == 1 else "the verdict changes (" + " -> ".join(
        verdicts) + ")"
    if change["n"] > 1 and change["low"] > 0:
        size = f"{label_t} gains on the baseline with training"
    elif change["n"] > 1 and change["high"] < 0:
        size = f"{label_t} loses ground with training"
    else:
        size = "no clear change in size (the CI of the change contains 0)"
    return (f"{each}. From {comps[0].kimg:g} to {comps[-1].kimg:g} kimg the difference moves by {fmt_diff(change)} "
            f"dB (per-image paired): {size}; {sign}.")


def _plot_length(cfg, comps, kimgs, stats, names, cells, fdd, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if fdd else 1, figsize=(9.0 if fdd else 5.0, 3.6), dpi=150, squeeze=False)
    ax = axes[0][0]
    for k in cells:
        d = [stats[n][k]["pooled"]["psnr"]["difference"] for n in names]
        low = [x["mean_difference"] - x["low"] if x["n"] > 1 else 0.0 for x in d]
        high = [x["high"] - x["mean_difference"] if x["n"] > 1 else 0.0 for x in d]
        ax.errorbar(kimgs, [x["mean_difference"] for x in d], yerr=[low, high], marker="o", capsize=3,
                    label=cell_name(*k))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("kimg")
    ax.set_ylabel("Δ PSNR (dB), 95% CI")
    ax.set_title(title, fontsize=7)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    if fdd:
        ax = axes[0][1]
        for arm, label, style in (("baseline", comps[0].labels[0], "-"), ("treatment", comps[0].labels[1], "--")):
            for g, start in sorted({trained_run(cfg, x) for c in comps for x in getattr(c, arm)}):
                curve = export_record(cfg, g)["curve"]
                if curve:
                    ax.plot([start + p["kimg"] for p in curve], [p["fdd"][0] for p in curve], style, linewidth=0.8,
                            label=f"{g} G0")
            ax.plot(kimgs, fdd[arm], style, marker="o", color="black" if arm == "baseline" else "gray",
                    label=f"{label} G0 at the snapshots (mean of pairs)")
        ax.set_xlabel("kimg")
        ax.set_ylabel("G0 FDD (lower is better)")
        ax.set_yscale("log")
        ax.legend(fontsize=5)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomically(fig, path)
    plt.close(fig)


def cell_answers(cfg: StudyConfig, stats: list[dict], c: Comparison, method: str) -> list[str]:
    """One line per settings kind: each cell's pooled difference with its CI and verdict, and the counts."""
    out = []
    for kind, named in _kinds(cfg, c, method):
        sel = [s for s in stats if s["method"] == method and s["settings"] == kind]
        if sel:
            counts = {v: sum(s["verdict"] == v for s in sel) for v in ("helps", "neutral", "hurts")}
            out.append(f"- {method} ({named}): {c.labels[1]} helps in {counts['helps']}, is neutral in "
                       f"{counts['neutral']}, hurts in {counts['hurts']} of {len(sel)} cells: " + "; ".join(
                           f"{cell_name(s['task'], s['param'])} {fmt_diff(s['pooled']['psnr']['difference'])}"
                           for s in sel) + ".")
    return out


def same_start_answers(cfg: StudyConfig, everything: dict) -> list[str]:
    """Per comparison of continued pairs: where they start and what the difference is in each cell."""
    out = []
    for name, c in cfg.comparisons.items():
        trained = [cfg.generators[g].source or g for g in c.generators]  # a snapshot: the generator it is taken from
        starts = [cfg.generators[g].init_from for g in trained]
        if not all(starts) or c.continued_from is not None:
            continue
        where = ", ".join(sorted({f"{Path(s['file']).name} (SHA-256 {s['sha256'][:12]}...)" if "file" in s
                                  else f"{s['generator']} at {s['kimg']:g} kimg" for s in starts}))
        more = ", ".join(sorted({f"{cfg.generators[g].total_kimg:g}" for g in c.generators}))
        out += [f"**{c.title}** (both arms continue {where} for {more} more kimg, same seed, fresh optimisers):"]
        for method in c.methods:
            out += cell_answers(cfg, everything[name], c, method)
        out.append("")
    return out


def quality_matched_answers(cfg: StudyConfig, matched: dict, everything: dict) -> list[str]:
    out = []
    for name, c in matched.items():
        pairs = "; ".join(f"{t} (G0 FDD {mean_g0_fdd(cfg, t):.2f}) with {b} ({mean_g0_fdd(cfg, b):.2f})"
                          for b, t in zip(c.baseline, c.treatment, strict=True))
        out += [f"**{c.title}**: {pairs}."]
        for method in c.methods:
            out += cell_answers(cfg, everything[name], c, method)
        out.append("")
    return out

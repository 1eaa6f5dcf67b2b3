"""The report's budget axis: for each comparison with `budgets`, treatment - baseline against the solver's total step
count (the tuned cells are 1x), a table with each arm's PSNR and seconds per image, a figure, and a plain answer per
cell: does the treatment raise the ceiling, or does the baseline catch up with more steps?"""

from pathlib import Path

from rtil.study.budgets import budget_kind, scaled_steps
from rtil.study.cells import tuned_settings
from rtil.study.config import StudyConfig
from rtil.study.report_stats import cell_name, fmt_diff


def total_steps(settings: dict) -> int:
    steps = settings["steps"]
    return sum(steps) if isinstance(steps, list) else int(steps)


def budget_section(cfg: StudyConfig, everything: dict, cells: list[dict], figures: Path, stem: str,
                   base: Path) -> tuple[list[str], list[str]]:
    """The section's markdown lines and its answers (for 'What the data show')."""
    from rtil.evaluation.plots import plot_budget_axis

    lines, answers, plotted = [], [], []
    for cname, c in cfg.comparisons.items():
        if c.budgets is None:
            continue
        method, label_b, label_t = c.budgets["method"], *c.labels
        factors = [1.0] + c.budgets["factors"]
        kinds = ["tuned"] + [budget_kind(f) for f in c.budgets["factors"]]
        steps = [total_steps(scaled_steps(tuned_settings(cfg, c.baseline[0], method)[0], f)) for f in factors]
        lines += [f"### {c.title}: {method} against its step budget", "",
                  "Each generator at its own tuned settings, all step counts multiplied by the factor (1x: the tuned "
                  "cells). Seconds per image: the cells' solve time over their images, mean over each arm's "
                  "generators.", "",
                  f"| cell | steps | {label_b} PSNR | {label_t} PSNR | Δ PSNR [95% CI] | verdict | "
                  f"s / image {label_b} | s / image {label_t} |", "|---|---|---|---|---|---|---|---|"]
        for task, params in c.budgets["tasks"].items():
            for param in params:
                entries = []
                for factor, kind, n in zip(factors, kinds, steps, strict=True):
                    entry = next(s for s in everything[cname] if s["method"] == method and s["settings"] == kind
                                 and s["task"] == task and float(s["param"]) == float(param))
                    p = entry["pooled"]["psnr"]
                    secs = [_seconds_per_image(cells, cname, arm, method, kind, task, param)
                            for arm in (c.baseline, c.treatment)]
                    lines.append(f"| {cell_name(task, param)} | {n} ({factor:g}x) | {p['baseline']['mean']:.2f} | "
                                 f"{p['treatment']['mean']:.2f} | {fmt_diff(p['difference'])} | {entry['verdict']} | "
                                 f"{secs[0]:.2f} | {secs[1]:.2f} |")
                    entries.append(entry)
                plotted.append({"label": f"{c.title.split(',')[0]}: {cell_name(task, param)}", "steps": steps,
                                "differences": [e["pooled"]["psnr"]["difference"] for e in entries]})
                answers.append(_answer(c.title, cell_name(task, param), label_b, label_t, steps, entries))
        lines.append("")
    if plotted:
        name = f"{stem}_budget_axis.png"
        plot_budget_axis(plotted, figures / name, "treatment - baseline against the solver's step budget")
        lines += [f"![budget axis]({(figures / name).relative_to(base)})", ""]
        lines = ["## The solver's budget", ""] + lines
    return lines, answers + ([""] if answers else [])


def _seconds_per_image(cells, cname, generators, method, kind, task, param) -> float:
    times = [c["result"]["seconds"] / len(c["result"]["images"]) for c in cells
             if c["comparison"] == cname and c["generator"] in generators and c["method"] == method
             and c["kind"] == kind and c["task"] == task and float(c["param"]) == float(param)]
    return sum(times) / len(times) if times else float("nan")


def _answer(title: str, cell: str, label_b: str, label_t: str, steps: list[int], entries: list[dict]) -> str:
    """One line: the difference at the smallest and largest budget, and whether the baseline catches up."""
    first, last = entries[0]["pooled"]["psnr"], entries[-1]["pooled"]["psnr"]
    treatment_first = first["treatment"]["mean"]
    catch = next((n for n, e in zip(steps, entries, strict=True)
                  if e["pooled"]["psnr"]["baseline"]["mean"] >= treatment_first), None)
    if entries[-1]["verdict"] == "helps":
        shape = f"{label_t} still helps at {steps[-1]} steps: within the budgets tried it raises the ceiling"
    elif entries[0]["verdict"] == "helps":
        shape = (f"the difference is gone by {steps[-1]} steps ({entries[-1]['verdict']}): {label_t} gets there "
                 f"in fewer steps, it does not raise the ceiling")
    else:
        shape = f"{entries[0]['verdict']} at {steps[0]} steps, {entries[-1]['verdict']} at {steps[-1]}"
    reach = (f"{label_b} reaches {label_t}'s {steps[0]}-step PSNR ({treatment_first:.2f} dB) at {catch} steps"
             if catch is not None else
             f"{label_b} does not reach {label_t}'s {steps[0]}-step PSNR ({treatment_first:.2f} dB) within "
             f"{steps[-1]} steps")
    return (f"- {title}, {cell}: Δ PSNR {fmt_diff(first['difference'])} dB at {steps[0]} steps, "
            f"{fmt_diff(last['difference'])} at {steps[-1]}; {shape}; {reach}.")

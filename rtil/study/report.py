"""The study's report stage: the markdown report, its figures and the per-image CSV, from the finished cells.

Every number in the report is computed from the per-image CSV written beside it (<report>_per_image.csv):
per cell, each arm's mean with its 95% t interval, and the paired difference treatment - baseline on the same
images, operators, noise and starts, with its 95% interval and paired t-test p-value. "Pooled" averages each
image's metric over the seeds (pairs) of an arm before pairing, so an image counts once. The verdict of a cell
is read from the pooled PSNR difference: helps (interval above 0), hurts (below 0), neutral (contains 0).
"""

import re
from pathlib import Path

from rtil.atomic_files import write_json_atomically, write_text_atomically
from rtil.evaluation.plots import plot_paired_differences
from rtil.study.cells import read_cells, write_per_image_csv
from rtil.study.config import StudyConfig
from rtil.study.config_checks import REPORT_LINE
from rtil.study.report_arms import (
    length_section,
    quality_matched,
    quality_matched_answers,
    quality_matched_rows,
    same_start_answers,
)
from rtil.study.report_budgets import budget_section
from rtil.study.report_generators import g0_quality, stage_times, training
from rtil.study.report_protocols import protocol_sections
from rtil.study.report_sections import curves, grid, protocol, tuning
from rtil.study.report_stats import cell_name, cell_statistics, fmt_ci, fmt_diff, fmt_p, shown_kinds


def write_report(cfg: StudyConfig) -> Path:
    """Write the report (cfg.report), its figures (figures/ beside it), <report>_per_image.csv and out/report.json
    (every statistic), from the finished cells. A report that fails part way removes the figures it had added, so
    that the next run does not find figures its report does not show (rtil.study.config_checks refuses those)."""
    figures = Path(cfg.report).parent / "figures"
    before = set(figures.iterdir()) if figures.is_dir() else set()
    try:
        return _write_report(cfg)
    except BaseException:
        for path in (set(figures.iterdir()) if figures.is_dir() else set()) - before:
            path.unlink(missing_ok=True)
        raise


def _write_report(cfg: StudyConfig) -> Path:
    report = Path(cfg.report)
    figures = report.parent / "figures"
    stem = report.stem
    cells = read_cells(cfg)
    csv_path = report.with_name(f"{stem}_per_image.csv")
    matched = quality_matched(cfg)  # pairs of snapshots of equal sample quality: rows of their own in the CSV
    rows = write_per_image_csv(cells, csv_path, lambda rows: quality_matched_rows(cfg, rows, matched))
    rows = [{**r, "param": str(r["param"])} for r in rows]
    run = "quick run" if cfg.quick else "study"
    lines = [f"# Does RTIL help? Vanilla vs RTIL generators as priors for inverse problems ({run})",
             "",
             f"{REPORT_LINE}{cfg.path}{' --quick' if cfg.quick else ''}` "
             f"(the report stage; do not edit by hand). Every number below is recomputed from "
             f"[`{csv_path.name}`]({csv_path.name}) (one row per image and cell).", ""]
    lines += protocol(cfg)
    lpips = cells[0]["result"].get("lpips")
    if lpips != "computed":
        lines += [f"LPIPS: not reported ({lpips})", ""]
    everything = {}
    summary_lines = []
    for cname, comparison in {**cfg.comparisons, **matched}.items():
        crows = [r for r in rows if r["comparison"] == cname]
        stats = cell_statistics(crows, comparison)
        everything[cname] = stats
        label_b, label_t = comparison.labels
        lines += [f"## {comparison.title}", "",
                  f"Baseline **{label_b}**: {', '.join(comparison.baseline)}; treatment **{label_t}**: "
                  f"{', '.join(comparison.treatment)} (pairs in this order). Differences are {label_t} - {label_b} "
                  f"on the same images, operators, noise and starts.", ""]
        for method in comparison.methods:
            tuned = cfg.tune.tunes(method)
            for kind in shown_kinds(cfg.tune, comparison, method):
                sel = [s for s in stats if s["method"] == method and s["settings"] == kind]
                if not sel:
                    continue
                heading = f"{kind} settings" if tuned else "common settings (no tuning grid)"
                lines += [f"### {method}, {heading}: pooled over {len(comparison.baseline)} pair(s)", "",
                          f"| cell | {label_b} PSNR | {label_t} PSNR | Δ PSNR [95% CI] | p | {label_b} SSIM | "
                          f"{label_t} SSIM | Δ SSIM [95% CI] | p | verdict |",
                          "|---|---|---|---|---|---|---|---|---|---|"]
                for s in sel:
                    p, q = s["pooled"]["psnr"], s["pooled"]["ssim"]
                    lines.append(f"| {cell_name(s['task'], s['param'])} | {fmt_ci(p['baseline'])} | "
                                 f"{fmt_ci(p['treatment'])} | {fmt_diff(p['difference'])} | "
                                 f"{fmt_p(p['difference']['p_value'])} | {q['baseline']['mean']:.3f} | "
                                 f"{q['treatment']['mean']:.3f} | {fmt_diff(q['difference'], 3)} | "
                                 f"{fmt_p(q['difference']['p_value'])} | **{s['verdict']}** |")
                if "lpips" in sel[0]["pooled"]:
                    lines += ["", "LPIPS (lower is better): " + "; ".join(
                        f"{cell_name(s['task'], s['param'])} {fmt_diff(s['pooled']['lpips']['difference'], 3)}"
                        for s in sel)]
                lines += ["", "Per pair (seed): Δ PSNR [95% CI] (p)", "",
                          "| cell | " + " | ".join(f"{b} → {t}" for b, t in zip(comparison.baseline,
                                                                              comparison.treatment, strict=True))
                          + " |", "|---|" + "---|" * len(comparison.baseline)]
                for s in sel:
                    lines.append(f"| {cell_name(s['task'], s['param'])} | " + " | ".join(
                        f"{fmt_diff(pair['psnr']['difference'])} ({fmt_p(pair['psnr']['difference']['p_value'])})"
                        for pair in s["pairs"]) + " |")
                counts = {v: sum(s["verdict"] == v for s in sel) for v in ("helps", "neutral", "hurts")}
                deltas = ", ".join(f"{cell_name(s['task'], s['param'])} "
                                   f"{s['pooled']['psnr']['difference']['mean_difference']:+.2f}" for s in sel)
                summary_lines.append(f"- {comparison.title}, {method} ({heading}): {label_t} helps in "
                                     f"{counts['helps']}, is neutral in {counts['neutral']} and hurts in "
                                     f"{counts['hurts']} of {len(sel)} cells (pooled Δ PSNR in dB: {deltas}).")
                lines.append("")
                lines += curves(sel, comparison, cname, method, kind, figures, stem, report.parent)
                diff_rows = [{**s["pooled"]["psnr"]["difference"], "label": cell_name(s["task"], s["param"])}
                             for s in sel]
                name = f"{stem}_{cname}_{method}_{kind}_paired.png"
                plot_paired_differences(diff_rows, figures / name,
                                        f"{comparison.title}, {method} ({kind}): {label_t} - {label_b}")
                lines += [f"![paired differences]({(figures / name).relative_to(report.parent)})", ""]
            lines += grid(cfg, cells, comparison, cname, method, figures, stem, report.parent)
        if cname not in matched:
            tuning_lines, tuning_summary = tuning(cfg, comparison, cname, figures, stem, report.parent)
            lines += tuning_lines
            summary_lines += tuning_summary
    length_lines, length_answers = length_section(cfg, everything, rows, figures, stem, report.parent)
    budget_lines, budget_answers = budget_section(cfg, everything, cells, figures, stem, report.parent)
    lines += length_lines + budget_lines + protocol_sections(cfg, everything)
    lines += ["## What the data show", ""] + summary_lines + g0_quality(cfg) + [""]
    arms = {"Training length: does the sign or size of the difference change with training?": length_answers,
            "The solver's budget: a higher ceiling, or the same ceiling sooner?": budget_answers,
            "Same start: both arms continued from one checkpoint": same_start_answers(cfg, everything),
            "Equal sample quality: quality-matched pairs": quality_matched_answers(cfg, matched, everything)}
    for heading, answers in arms.items():
        if answers:
            lines += [f"### {heading}", "", *answers]
    if cfg.claims:
        lines += ["## Against the papers' claims", "", cfg.claims.strip(), ""]
    lines += training(cfg, figures, stem, report.parent)
    lines += stage_times(cfg)
    previous = report.read_text() if report.is_file() else ""
    write_text_atomically(report, "\n".join(lines) + "\n")
    _remove_stale_figures(report.parent, previous, "\n".join(lines))
    write_json_atomically(cfg.out / "report.json", everything)
    print(f"report: {report}; per-image CSV: {csv_path}; figures: {figures}")
    return report


def _remove_stale_figures(folder: Path, previous: str, report_text: str) -> None:
    """Delete the figures (and their PDFs) that the previous version of this report showed and the new one does
    not, e.g. of a comparison or method removed from the config; another report's figures are never touched, even
    when its name starts like this one's (results.md, results_20kimg.md)."""
    shown = set(re.findall(r"\]\((figures/[^)]+)\)", report_text))
    for name in set(re.findall(r"\]\((figures/[^)]+)\)", previous)) - shown:
        for path in (folder / name, (folder / name).with_suffix(".pdf")):
            if path.is_file():
                path.unlink()

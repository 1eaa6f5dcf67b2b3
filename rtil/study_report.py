"""The study's report stage: the markdown report, its figures and the per-image CSV (see rtil/study.py).

Every number in the report is computed from the per-image CSV written beside it (<report>_per_image.csv):
per cell, each arm's mean with its 95% t interval, and the paired difference treatment - baseline on the same
images, operators, noise and starts, with its 95% interval and paired t-test p-value. "Pooled" averages each
image's metric over the seeds (pairs) of an arm before pairing, so an image counts once. The verdict of a cell
is read from the pooled PSNR difference: helps (interval above 0), hurts (below 0), neutral (contains 0).
"""

import json
import re
from pathlib import Path

import torch

from rtil.atomic_files import write_json_atomically, write_text_atomically
from rtil.evaluation.plots import plot_curves, plot_paired_differences, plot_tuning, save_comparison_grid
from rtil.evaluation.stats import mean_ci, paired_difference
from rtil.study import METRICS, copy_file, read_cells, tuned_settings, write_per_image_csv

GRID_IMAGES = 3  # largest gains and largest losses shown per grid


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "helps"
    if high < 0:
        return "hurts"
    return "neutral"


def cell_statistics(rows: list[dict], comparison: dict) -> list[dict]:
    """Per (method, settings, task, param) of one comparison: per-pair and pooled statistics from the per-image
    rows (as written to the CSV)."""
    pairs = list(zip(comparison["baseline"], comparison["treatment"], strict=True))
    keys = sorted({(r["method"], r["settings"], r["task"], r["param"]) for r in rows},
                  key=lambda k: (k[0], k[1], k[2], float(k[3])))
    out = []
    for method, kind, task, param in keys:
        def values(generator, metric, method=method, kind=kind, task=task, param=param):
            sel = [r for r in rows if r["generator"] == generator and r["method"] == method and r["settings"] == kind
                   and r["task"] == task and r["param"] == param]
            return [r["image"] for r in sel], [float(r[metric]) for r in sel]

        entry = {"method": method, "settings": kind, "task": task, "param": param, "pairs": [], "pooled": {}}
        metrics = [m for m in METRICS if all(r.get(m) not in (None, "") for r in rows[:1])]
        pooled = {m: {"baseline": None, "treatment": None} for m in metrics}
        for b, t in pairs:
            pair = {"baseline": b, "treatment": t}
            for m in metrics:
                images_b, vb = values(b, m)
                images_t, vt = values(t, m)
                if images_b != images_t or not vb:
                    raise ValueError(f"{b} and {t} were not evaluated on the same images ({method} {task} {param})")
                pair[m] = {"baseline": mean_ci(vb).as_dict(), "treatment": mean_ci(vt).as_dict(),
                           "difference": paired_difference(vt, vb).as_dict()}
                for arm, v in (("baseline", vb), ("treatment", vt)):
                    acc = pooled[m][arm]
                    pooled[m][arm] = v if acc is None else [a + x for a, x in zip(acc, v, strict=True)]
            entry["pairs"].append(pair)
        for m in metrics:
            vb = [v / len(pairs) for v in pooled[m]["baseline"]]
            vt = [v / len(pairs) for v in pooled[m]["treatment"]]
            entry["pooled"][m] = {"baseline": mean_ci(vb).as_dict(), "treatment": mean_ci(vt).as_dict(),
                                  "difference": paired_difference(vt, vb).as_dict()}
        d = entry["pooled"]["psnr"]["difference"]
        entry["verdict"] = verdict(d["low"], d["high"])
        out.append(entry)
    return out


def _fmt_ci(stats: dict) -> str:
    return f"{stats['mean']:.2f} ± {stats['half_width']:.2f}" if stats["n"] > 1 else f"{stats['mean']:.2f}"


def _fmt_diff(d: dict, digits: int = 2) -> str:
    if d["n"] < 2:
        return f"{d['mean_difference']:+.{digits}f}"
    return f"{d['mean_difference']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def _fmt_p(p) -> str:
    return "n/a" if p is None or p != p else (f"{p:.3f}" if p >= 0.001 else f"{p:.0e}")


def _cell_name(task: str, param) -> str:
    return {"cs": f"CS {float(param):.0%}", "inpaint": f"inpaint {float(param):.0%} observed",
            "sr": f"SR x{int(float(param))}", "denoise": f"denoise sigma {param}"}[task]


def write_report(cfg: dict) -> Path:
    """Write the report (cfg['report']), its figures (figures/ beside it) and <report>_per_image.csv."""
    report = Path(cfg["report"])
    figures = report.parent / "figures"
    stem = report.stem
    cells = read_cells(cfg)
    csv_path = report.with_name(f"{stem}_per_image.csv")
    rows = write_per_image_csv(cells, csv_path)
    rows = [{**r, "param": str(r["param"])} for r in rows]
    out = cfg["out"]
    run = "quick run" if cfg["quick"] else "study"
    lines = [f"# Does RTIL help? Vanilla vs RTIL generators as priors for inverse problems ({run})",
             "",
             f"Generated by `python -m rtil study --config {cfg['path']}{' --quick' if cfg['quick'] else ''}` "
             f"(the report stage; do not edit by hand). Every number below is recomputed from "
             f"[`{csv_path.name}`]({csv_path.name}) (one row per image and cell).", ""]
    lines += _protocol(cfg)
    lpips = cells[0]["result"].get("lpips")
    if lpips != "computed":
        lines += [f"LPIPS: not reported ({lpips})", ""]
    everything = {}
    summary_lines = []
    for cname, comparison in cfg["comparisons"].items():
        crows = [r for r in rows if r["comparison"] == cname]
        stats = cell_statistics(crows, comparison)
        everything[cname] = stats
        label_b, label_t = comparison["labels"]
        lines += [f"## {comparison['title']}", "",
                  f"Baseline **{label_b}**: {', '.join(comparison['baseline'])}; treatment **{label_t}**: "
                  f"{', '.join(comparison['treatment'])} (pairs in this order). Differences are {label_t} - {label_b} "
                  f"on the same images, operators, noise and starts.", ""]
        for method in comparison["methods"]:
            tuned = bool(cfg["tune"]["grids"].get(method))
            for kind in comparison["settings"] if tuned else ["common"]:
                sel = [s for s in stats if s["method"] == method and s["settings"] == kind]
                if not sel:
                    continue
                heading = f"{kind} settings" if tuned else "common settings (no tuning grid)"
                lines += [f"### {method}, {heading}: pooled over {len(comparison['baseline'])} pair(s)", "",
                          f"| cell | {label_b} PSNR | {label_t} PSNR | Δ PSNR [95% CI] | p | {label_b} SSIM | "
                          f"{label_t} SSIM | Δ SSIM [95% CI] | p | verdict |",
                          "|---|---|---|---|---|---|---|---|---|---|"]
                for s in sel:
                    p, q = s["pooled"]["psnr"], s["pooled"]["ssim"]
                    lines.append(f"| {_cell_name(s['task'], s['param'])} | {_fmt_ci(p['baseline'])} | "
                                 f"{_fmt_ci(p['treatment'])} | {_fmt_diff(p['difference'])} | "
                                 f"{_fmt_p(p['difference']['p_value'])} | {q['baseline']['mean']:.3f} | "
                                 f"{q['treatment']['mean']:.3f} | {_fmt_diff(q['difference'], 3)} | "
                                 f"{_fmt_p(q['difference']['p_value'])} | **{s['verdict']}** |")
                if "lpips" in sel[0]["pooled"]:
                    lines += ["", "LPIPS (lower is better): " + "; ".join(
                        f"{_cell_name(s['task'], s['param'])} {_fmt_diff(s['pooled']['lpips']['difference'], 3)}"
                        for s in sel)]
                lines += ["", "Per pair (seed): Δ PSNR [95% CI] (p)", "",
                          "| cell | " + " | ".join(f"{b} → {t}" for b, t in zip(comparison["baseline"],
                                                                              comparison["treatment"], strict=True))
                          + " |", "|---|" + "---|" * len(comparison["baseline"])]
                for s in sel:
                    lines.append(f"| {_cell_name(s['task'], s['param'])} | " + " | ".join(
                        f"{_fmt_diff(pair['psnr']['difference'])} ({_fmt_p(pair['psnr']['difference']['p_value'])})"
                        for pair in s["pairs"]) + " |")
                counts = {v: sum(s["verdict"] == v for s in sel) for v in ("helps", "neutral", "hurts")}
                deltas = ", ".join(f"{_cell_name(s['task'], s['param'])} "
                                   f"{s['pooled']['psnr']['difference']['mean_difference']:+.2f}" for s in sel)
                summary_lines.append(f"- {comparison['title']}, {method} ({heading}): {label_t} helps in "
                                     f"{counts['helps']}, is neutral in {counts['neutral']} and hurts in "
                                     f"{counts['hurts']} of {len(sel)} cells (pooled Δ PSNR in dB: {deltas}).")
                lines.append("")
                lines += _curves(sel, comparison, cname, method, kind, figures, stem, report.parent)
                diff_rows = [{**s["pooled"]["psnr"]["difference"], "label": _cell_name(s["task"], s["param"])}
                             for s in sel]
                name = f"{stem}_{cname}_{method}_{kind}_paired.png"
                plot_paired_differences(diff_rows, figures / name,
                                        f"{comparison['title']}, {method} ({kind}): {label_t} - {label_b}")
                lines += [f"![paired differences]({(figures / name).relative_to(report.parent)})", ""]
            lines += _grid(cfg, cells, comparison, cname, method, figures, stem, report.parent)
        tuning_lines, tuning_summary = _tuning(cfg, comparison, cname, figures, stem, report.parent)
        lines += tuning_lines
        summary_lines += tuning_summary
    lines += ["## What the data show", ""] + summary_lines + _g0_quality(cfg) + [""]
    if cfg["claims"]:
        lines += ["## Against the papers' claims", "", cfg["claims"].strip(), ""]
    lines += _training(cfg, figures, stem, report.parent)
    lines += _stage_times(cfg)
    write_text_atomically(report, "\n".join(lines) + "\n")
    _remove_stale_figures(figures, stem, "\n".join(lines))
    write_json_atomically(out / "report.json", everything)
    print(f"report: {report}; per-image CSV: {csv_path}; figures: {figures}")
    return report


def _remove_stale_figures(figures: Path, stem: str, report_text: str) -> None:
    """Delete this report's figures (<stem>_*.png and their PDFs) that the new report no longer shows, e.g. of a
    comparison or method removed from the config."""
    shown = {Path(name).stem for name in re.findall(r"\]\(figures/([^)]+)\)", report_text)}
    for path in list(figures.glob(f"{stem}_*.png")) + list(figures.glob(f"{stem}_*.pdf")):
        if path.stem not in shown:
            path.unlink()


def _describe_images(spec: dict, holdout: int) -> str:
    last = spec["first"] + spec["count"] - 1
    if "folder" in spec:
        return f"images {spec['first']}..{last} (sorted by name) of {spec['folder']}"
    if spec["split"] == "validation":
        return (f"validation digits {spec['first']}..{last} (the last {holdout} training digits, left out of every "
                f"generator's training)")
    return f"test digits {spec['first']}..{last}"


def _protocol(cfg: dict) -> list[str]:
    ev, tune = cfg["evaluate"], cfg["tune"]
    tasks = "; ".join(f"{t} {v}" for t, v in ev["tasks"].items())
    return ["## Protocol", "",
            f"- Test images: {_describe_images(ev['images'], cfg['holdout'])} ({ev['images']['count']} per cell); "
            f"tasks: {tasks}; seed {ev['seed']} for every operator, noise draw and solver start (shared by all "
            f"generators).",
            f"- Tuning: {_describe_images(tune['images'], cfg['holdout'])}, {tune['task']} {tune['param']}; each "
            "generator gets the candidate with its best mean validation PSNR ('tuned'); 'common' is the method's "
            "settings in the study config for every generator.",
            *[f"- Method `{name}` ({cfg['solvers'][name]} solver): {text}"
              for name, text in cfg["method_descriptions"].items() if text],
            "- Inside every solve, iterates are selected by the measurement loss only (never the ground truth).",
            "- Verdict per cell from the pooled PSNR difference: helps / hurts when its 95% CI excludes 0, "
            "else neutral.", ""]


def _curves(sel, comparison, cname, method, kind, figures: Path, stem: str, base: Path) -> list[str]:
    lines = []
    label_b, label_t = comparison["labels"]
    for task in sorted({s["task"] for s in sel}):
        task_cells = [s for s in sel if s["task"] == task]
        if len(task_cells) < 2:
            continue
        summary = []
        for s in task_cells:
            for arm, label in (("baseline", label_b), ("treatment", label_t)):
                ci = s["pooled"]["psnr"][arm]
                summary.append({"model": label, "method": method, "task": task, "ratio": float(s["param"]),
                                "psnr_mean": ci["mean"], "psnr_low": ci["low"], "psnr_high": ci["high"], "n": ci["n"]})
        name = f"{stem}_{cname}_{method}_{kind}_{task}.png"
        plot_curves(summary, "psnr", task, figures / name, title=f"{comparison['title']}: {method} ({kind}), {task}")
        lines += [f"![{task} PSNR]({(figures / name).relative_to(base)})", ""]
    return lines


def _grid(cfg, cells, comparison, cname, method, figures: Path, stem: str, base: Path) -> list[str]:
    """Truth | measurement | baseline | treatment for the images with the largest gains and losses, in the first
    cell of the first pair (tuned settings when evaluated)."""
    kind = comparison["settings"][0] if cfg["tune"]["grids"].get(method) else "common"
    mine = [c for c in cells if c["comparison"] == cname and c["method"] == method and c["kind"] == kind]
    if not mine:
        return []
    first = mine[0]
    b_name, t_name = comparison["baseline"][0], comparison["treatment"][0]
    by_gen = {c["generator"]: c for c in mine if c["task"] == first["task"] and c["param"] == first["param"]}
    cb, ct = by_gen[b_name], by_gen[t_name]
    tb = torch.load(cfg["out"] / "cells" / f"{cb['id']}.pt", weights_only=True)
    tt = torch.load(cfg["out"] / "cells" / f"{ct['id']}.pt", weights_only=True)
    gain = torch.tensor(ct["result"]["metrics"]["psnr"]) - torch.tensor(cb["result"]["metrics"]["psnr"])
    order = torch.argsort(gain, descending=True)
    k = min(GRID_IMAGES, len(order) // 2 or 1)
    picks = torch.cat([order[:k], order[-k:]])
    columns = [tb["truths"][picks], tb["measurement_views"][picks], tb["reconstructions"][picks],
               tt["reconstructions"][picks]]
    name = f"{stem}_{cname}_{method}_grid.png"
    psnr_b, psnr_t = cb["result"]["metrics"]["psnr"], ct["result"]["metrics"]["psnr"]
    save_comparison_grid([c.float() for c in columns], figures / name,
                         labels=["truth", "measurement", b_name, t_name],
                         scores=[None, None, [psnr_b[i] for i in picks.tolist()], [psnr_t[i] for i in picks.tolist()]])
    gains = ", ".join(f"{gain[i]:+.1f}" for i in picks.tolist())
    return [f"Largest gains (top {k} rows) and losses (bottom {k} rows) of {t_name} over {b_name}, "
            f"{method} ({kind}), {_cell_name(first['task'], first['param'])}; columns: truth | measurement | "
            f"{b_name} | {t_name}; Δ PSNR per row: {gains} dB.", "",
            f"![grid]({(figures / name).relative_to(base)})", ""]


def _tuning(cfg: dict, comparison: dict, cname: str, figures: Path, stem: str, base: Path) -> tuple[list, list]:
    """The tuning table of each of the comparison's tuned methods and a plot of it (validation PSNR against the
    candidate, one line per generator); and one summary line per method: how much each arm's validation PSNR
    moves across the candidates (its sensitivity to the solver's settings)."""
    lines, summary = [], []
    for method in comparison["methods"]:
        grid = cfg["tune"]["grids"].get(method)
        if not grid:
            continue
        generators = comparison["baseline"] + comparison["treatment"]
        lines += [f"Tuning of {method} ({cfg['tune']['task']} {cfg['tune']['param']}, validation PSNR in dB; "
                  "**bold**: chosen):", "",
                  "| change to the common settings | " + " | ".join(generators) + " |",
                  "|---|" + "---|" * len(generators)]
        from rtil.study import tune_items

        items = tune_items(cfg)
        cis = {g: [] for g in generators}
        for change in grid:
            cells = []
            for g in generators:
                item = next(i for i in items if i["generator"] == g and i["method"] == method and i["change"] == change)
                psnr = json.loads(Path(item["path"]).read_text())["psnr"]
                cis[g].append(mean_ci(psnr))
                value = f"{sum(psnr) / len(psnr):.2f}"
                cells.append(f"**{value}**" if tuned_settings(cfg, g, method)[1] == change else value)
            lines.append(f"| {json.dumps(change) if change else '(common)'} | " + " | ".join(cells) + " |")
        name = f"{stem}_{cname}_{method}_tuning.png"
        plot_tuning([_short(change) for change in grid],
                    [{"label": g, "style": "baseline" if g in comparison["baseline"] else "treatment", "ci": cis[g]}
                     for g in generators], figures / name,
                    f"{comparison['title']}: {method} tuning ({cfg['tune']['task']} {cfg['tune']['param']})")
        lines += ["", f"![tuning]({(figures / name).relative_to(base)})", ""]
        spreads = []
        for arm, label in zip(("baseline", "treatment"), comparison["labels"], strict=True):
            ranges = [max(c.mean for c in cis[g]) - min(c.mean for c in cis[g]) for g in comparison[arm]]
            spreads.append(f"{label} {', '.join(f'{r:.2f}' for r in ranges)}")
        summary.append(f"- {comparison['title']}, {method}: validation PSNR range (best - worst) over the "
                       f"{len(grid)} tuning candidates, in dB, per generator: {'; '.join(spreads)}.")
    return lines, summary


def _short(change: dict) -> str:
    """A tuning candidate as a short axis label."""
    return ", ".join(f"{k}={v}" for k, v in change.items()) if change else "(common)"


FDD_SEEDS = (123, 124, 125)


def g0_fdd(cfg: dict, name: str) -> list[float]:
    """FDD of the final G0 for three independent sample draws (cached in fdd/<name>_g0_draws.json): how much the
    FDD moves with the samples alone."""
    from rtil.checkpoints import load_generator
    from rtil.evaluation.digits_fd import member_fdds

    path = cfg["out"] / "fdd" / f"{name}_g0_draws.json"
    if path.is_file():
        return json.loads(path.read_text())
    G = load_generator(cfg["out"] / "generators" / f"{name}.pt")
    G.rtil = None  # G0 only
    values = [member_fdds(G, cfg["fdd_samples"], seed)[0] for seed in FDD_SEEDS]
    write_json_atomically(path, values)
    return values


def _g0_quality(cfg: dict) -> list[str]:
    """A plain statement per comparison: are the baseline's and treatment's G0 equally good samplers?"""
    if cfg["fdd_samples"] <= 0:
        return []
    import statistics

    lines = []
    for comparison in cfg["comparisons"].values():
        label_b, label_t = comparison["labels"]
        draws = {g: g0_fdd(cfg, g) for g in comparison["baseline"] + comparison["treatment"]}
        base = [statistics.mean(draws[g]) for g in comparison["baseline"]]
        treat = [statistics.mean(draws[g]) for g in comparison["treatment"]]
        noise = 2 * max(statistics.stdev(v) for v in draws.values())
        if max(treat) < min(base) - noise:
            word = f"better (lower FDD) than the {label_b} G0"
        elif min(treat) > max(base) + noise:
            word = (f"worse (higher FDD) than the {label_b} G0, so the inversion results also compare generators of "
                    f"different sample quality")
        else:
            word = f"within noise of the {label_b} G0"
        lines.append(f"- {comparison['title']}: G0 sample quality (FDD, mean of {len(FDD_SEEDS)} draws of "
                     f"{cfg['fdd_samples']} samples) {label_b} " + ", ".join(f"{v:.2f}" for v in base)
                     + f"; {label_t} " + ", ".join(f"{v:.2f}" for v in treat)
                     + f" (two standard deviations over draws: {noise:.2f}): the {label_t} G0 is {word}.")
    return lines


def _stage_times(cfg: dict) -> list[str]:
    log = cfg["out"] / "stage_seconds.json"
    if not log.is_file():
        return []
    entries = json.loads(log.read_text())
    work = _item_seconds(cfg, entries)
    lines = ["## Wall time per stage", "",
             f"On the machine that ran the study, with {cfg['jobs']} worker process(es). 'Wall time' sums every run "
             "of the stage (a resumed or extended study runs a stage more than once, and items of earlier configs "
             "count too); 'items of this config' sums the time each of the current config's items took, divided "
             "by the number of workers (export: its last run over every generator): what a fresh run of this "
             "config would take.", "",
             "| stage | items run | wall time | items of this config | their time / workers |", "|---|---|---|---|---|"]
    for stage in ("train", "export", "tune", "evaluate"):
        mine = [e for e in entries if e["stage"] == stage]
        if mine:
            count, seconds = work[stage]
            fresh = f"{seconds / (1 if stage == 'export' else cfg['jobs']) / 60:.1f} min"
            lines.append(f"| {stage} | {sum(e['items'] for e in mine)} | {sum(e['seconds'] for e in mine) / 60:.1f} min"
                         f" | {count} | {fresh} |")
    total = sum(seconds / (1 if stage == "export" else cfg["jobs"]) for stage, (_, seconds) in work.items())
    return lines + [f"| all (without the report) | | | | **{total / 60:.1f} min** |", ""]


def _item_seconds(cfg: dict, entries: list[dict]) -> dict[str, tuple[int, float]]:
    """{stage: (items, seconds)} of the current config: the summed time of its train, tune and evaluate items as
    each item recorded it (training segments, tuning runs, cells), and the last export run over every generator
    in `entries` (stage_seconds.json)."""
    from rtil.study import evaluate_cells, tune_items, used_generators

    out = cfg["out"]
    train = [json.loads((out / "train" / g / "done.json").read_text())["seconds"] for g in used_generators(cfg)]
    tune = [json.loads(Path(i["path"]).read_text())["seconds"] for i in tune_items(cfg)]
    generators = len(used_generators(cfg))
    exports = [e["seconds"] for e in entries if e["stage"] == "export" and e["items"] == generators]
    cells = {c["id"] for c in evaluate_cells(cfg)}
    evaluate = [json.loads((out / "cells" / f"{c}.json").read_text())["seconds"] for c in cells]
    return {"train": (len(train), sum(train)), "export": (generators, exports[-1] if exports else float("nan")),
            "tune": (len(tune), sum(tune)), "evaluate": (len(cells), sum(evaluate))}


def _training(cfg: dict, figures: Path, stem: str, base: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtil.study import used_generators

    out = cfg["out"]
    lines = ["## Generators", "", "Training cost and sample quality (FDD: Fréchet digits distance of 1,000 samples "
             "per member against the test digits; lower is better; train vs test digits score about 1.1).", "",
             "| generator | seed | kimg | wall time | s / kimg | FDD per member (G0, G1, ...) at the end |",
             "|---|---|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=150)
    for name in used_generators(cfg):
        done = json.loads((out / "train" / name / "done.json").read_text())
        fdd = json.loads((out / "fdd" / f"{name}.json").read_text())
        lines.append(f"| {name} | {cfg['generators'][name]['seed']} | {done['kimg']:.1f} | {done['seconds'] / 60:.1f} "
                     f"min | {done['seconds'] / max(done['kimg'], 1e-9):.0f} | "
                     + (", ".join(f"{v:.2f}" for v in fdd["final"]) if fdd["final"] else "not computed") + " |")
        curve = fdd["curve"]
        if curve:
            for member in range(len(curve[0]["fdd"])):
                ax.plot([c["kimg"] for c in curve], [c["fdd"][member] for c in curve], marker=".",
                        linestyle="-" if member == 0 else "--", label=f"{name} G{member}")
        copy_file(out / "samples" / f"{name}.png", figures / f"{stem}_samples_{name}.png")
    ax.set_xlabel("kimg")
    ax.set_ylabel("FDD")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / f"{stem}_fdd.png")
    plt.close(fig)
    lines += ["", "Wall time is of the whole training process on the study machine (the workers share its CPU).", "",
              f"![FDD against kimg]({(figures / f'{stem}_fdd.png').relative_to(base)})", "",
              "Samples (one row per member, the same latents in every row):", ""]
    for name in used_generators(cfg):
        lines += [f"- {name}: ![{name}]({(figures / f'{stem}_samples_{name}.png').relative_to(base)})"]
    return lines + [""]

"""Parts of the report about the inversions: the protocol, the PSNR-against-parameter curves, the image grids of
the largest gains and losses, and the tuning tables (each a list of markdown lines; figures under `figures`)."""

import json
from pathlib import Path

import torch

from rtil.evaluation.plots import plot_curves, plot_tuning, save_comparison_grid
from rtil.evaluation.stats import mean_ci
from rtil.study.cells import cell_file, cell_images, tune_items, tune_result, tuned_settings
from rtil.study.config import Comparison, Images, StudyConfig
from rtil.study.report_stats import cell_name, shown_kinds
from rtil.study.tuning import MAX_SWEEPS

GRID_IMAGES = 3  # largest gains and largest losses shown per grid


def describe_images(spec: Images, holdout: int) -> str:
    last = spec.first + spec.count - 1
    if spec.folder is not None:
        return f"images {spec.first}..{last} (sorted by name) of {spec.folder}"
    if spec.split == "validation":
        return (f"validation digits {spec.first}..{last} (the last {holdout} training digits, left out of every "
                f"generator's training)")
    return f"test digits {spec.first}..{last}"


def protocol(cfg: StudyConfig) -> list[str]:
    """The protocol section: images, tasks, seeds, tuning, the methods' descriptions, how verdicts are read."""
    ev, tune = cfg.evaluate, cfg.tune
    tasks = "; ".join(f"{t} {v}" for t, v in ev.tasks.items())
    return ["## Protocol", "",
            f"- Test images: {describe_images(ev.images, cfg.holdout)} ({ev.images.count} per cell); "
            f"tasks: {tasks}; seed {ev.seed} for every operator, noise draw and solver start (shared by all "
            f"generators).",
            f"- Tuning: {describe_images(tune.images, cfg.holdout)}, {tune.task} {tune.param}; each "
            "generator gets the candidate with its best mean validation PSNR ('tuned'); 'common' is the method's "
            "settings in the study config for every generator.",
            *[f"- Tuning search of `{m}` (per generator, from the common settings): one axis at a time around the "
              f"current best, sweeping again while the best moves (at most {MAX_SWEEPS} sweeps); a line whose best "
              f"is its first or last point grows past that edge by the axis's factor. Axes: "
              + "; ".join(f"{a.name} ({_axis_points(a)})" for a in axes) + ". The tuned settings are used for every "
              "task." for m, axes in tune.search.items()],
            *[f"- Method `{name}` ({method.solver} solver): {method.description}"
              for name, method in cfg.methods.items() if method.description],
            "- Inside every solve, iterates are selected by the measurement loss only (never the ground truth).",
            "- Verdict per cell from the pooled PSNR difference: helps / hurts when its 95% CI excludes 0, "
            "else neutral.", ""]


def _axis_points(axis) -> str:
    points = ", ".join(json.dumps(p) if isinstance(p, dict) else f"{p:g}" if isinstance(p, float) else str(p)
                       for p in axis.points)
    what = f"x {points} on {axis.key}" + (f"[{', '.join(map(str, axis.index))}]" if axis.index else "") \
        if axis.scale else points
    return what + (f", grows x{axis.extend:g}" if axis.extend else "")


def curves(sel, comparison: Comparison, cname, method, kind, figures: Path, stem: str, base: Path) -> list[str]:
    """Pooled PSNR of both arms against the task parameter, one figure per task with two or more cells."""
    lines = []
    label_b, label_t = comparison.labels
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
        plot_curves(summary, "psnr", task, figures / name, title=f"{comparison.title}: {method} ({kind}), {task}")
        lines += [f"![{task} PSNR]({(figures / name).relative_to(base)})", ""]
    return lines


def grid(cfg: StudyConfig, cells, comparison: Comparison, cname, method, figures: Path, stem: str,
         base: Path) -> list[str]:
    """Truth | measurement | baseline | treatment for the images with the largest gains and losses, in the first
    cell of the first pair (tuned settings when evaluated). Without the cells' tensors (a clone), a grid drawn from
    them earlier is kept (its rows follow from the cells' metrics), else the report says why there is none."""
    kind = shown_kinds(cfg.tune, comparison, method)[0]
    mine = [c for c in cells if c["comparison"] == cname and c["method"] == method and c["kind"] == kind]
    if not mine:
        return []
    first = mine[0]
    b_name, t_name = comparison.baseline[0], comparison.treatment[0]
    by_gen = {c["generator"]: c for c in mine if c["task"] == first["task"] and c["param"] == first["param"]}
    cb, ct = by_gen[b_name], by_gen[t_name]
    name = f"{stem}_{cname}_{method}_grid.png"
    missing = [f for f in (cell_file(cfg, cb).with_suffix(".pt"), cell_file(cfg, ct).with_suffix(".pt"))
               if not f.is_file()]
    if missing and not (figures / name).is_file():  # a clone holds the cells' metrics, not their tensors
        return [f"(No image grid for {method}: the cell tensors {', '.join(str(f) for f in missing)} are not here; "
                f"the evaluate stage writes them.)", ""]
    gain = torch.tensor(ct["result"]["metrics"]["psnr"]) - torch.tensor(cb["result"]["metrics"]["psnr"])
    order = torch.argsort(gain, descending=True)
    k = min(GRID_IMAGES, len(order) // 2 or 1)
    picks = torch.cat([order[:k], order[-k:]])
    if not missing:  # else the grid drawn from these cells' tensors when they were here is kept
        tb, tt = cell_images(cfg, cb), cell_images(cfg, ct)
        columns = [tb["truths"][picks], tb["measurement_views"][picks], tb["reconstructions"][picks],
                   tt["reconstructions"][picks]]
        psnr_b, psnr_t = cb["result"]["metrics"]["psnr"], ct["result"]["metrics"]["psnr"]
        save_comparison_grid([c.float() for c in columns], figures / name,
                             labels=["truth", "measurement", b_name, t_name],
                             scores=[None, None, [psnr_b[i] for i in picks.tolist()],
                                     [psnr_t[i] for i in picks.tolist()]])
    gains = ", ".join(f"{gain[i]:+.1f}" for i in picks.tolist())
    return [f"Largest gains (top {k} rows) and losses (bottom {k} rows) of {t_name} over {b_name}, "
            f"{method} ({kind}), {cell_name(first['task'], first['param'])}; columns: truth | measurement | "
            f"{b_name} | {t_name}; Δ PSNR per row: {gains} dB.", "",
            f"![grid]({(figures / name).relative_to(base)})", ""]


def tuning(cfg: StudyConfig, comparison: Comparison, cname: str, figures: Path, stem: str,
           base: Path) -> tuple[list, list]:
    """The tuning table of each of the comparison's tuned methods and a plot of it (validation PSNR against the
    candidate, one line per generator); and one summary line per method: how much each arm's validation PSNR
    moves across the candidates (its sensitivity to the solver's settings)."""
    lines, summary = [], []
    for method in comparison.methods:
        if method in cfg.tune.search:
            searched = tuning_search(cfg, comparison, cname, method, figures, stem, base)
            lines += searched[0]
            summary += searched[1]
            continue
        candidates = cfg.tune.grids.get(method)
        if not candidates:
            continue
        generators = [g for g in comparison.generators if cfg.generators[g].tune_from is None]
        if not generators:  # every generator takes another's tuned settings (tuned at the longest snapshot)
            lines += [f"{method}: each generator uses the settings tuned at the longest snapshot ("
                      f"{', '.join(sorted({cfg.generators[g].tune_from for g in comparison.generators}))}).", ""]
            continue
        lines += [f"Tuning of {method} ({cfg.tune.task} {cfg.tune.param}, validation PSNR in dB; "
                  "**bold**: chosen):", "",
                  "| change to the common settings | " + " | ".join(generators) + " |",
                  "|---|" + "---|" * len(generators)]
        items = tune_items(cfg)
        cis = {g: [] for g in generators}
        for change in candidates:
            row = []
            for g in generators:
                item = next(i for i in items if i["generator"] == g and i["method"] == method and i["change"] == change)
                psnr = tune_result(item)["psnr"]
                cis[g].append(mean_ci(psnr))
                value = f"{sum(psnr) / len(psnr):.2f}"
                row.append(f"**{value}**" if tuned_settings(cfg, g, method)[1] == change else value)
            lines.append(f"| {json.dumps(change) if change else '(common)'} | " + " | ".join(row) + " |")
        name = f"{stem}_{cname}_{method}_tuning.png"
        plot_tuning([_short(change) for change in candidates],
                    [{"label": g, "style": "baseline" if g in comparison.baseline else "treatment", "ci": cis[g]}
                     for g in generators], figures / name,
                    f"{comparison.title}: {method} tuning ({cfg.tune.task} {cfg.tune.param})")
        lines += ["", f"![tuning]({(figures / name).relative_to(base)})", ""]
        spreads = []
        for arm, label in zip((comparison.baseline, comparison.treatment), comparison.labels, strict=True):
            ranges = [max(c.mean for c in cis[g]) - min(c.mean for c in cis[g]) for g in arm if g in cis]
            spreads.append(f"{label} {', '.join(f'{r:.2f}' for r in ranges)}")
        summary.append(f"- {comparison.title}, {method}: validation PSNR range (best - worst) over the "
                       f"{len(candidates)} tuning candidates, in dB, per generator: {'; '.join(spreads)}.")
    return lines, summary


def _short(change: dict) -> str:
    """A tuning candidate as a short axis label."""
    return ", ".join(f"{k}={v}" for k, v in change.items()) if change else "(common)"


def tuning_search(cfg: StudyConfig, comparison: Comparison, cname: str, method: str, figures: Path, stem: str,
                  base: Path) -> tuple[list, list]:
    """A searched method's tuning: per generator, how many candidates the search scored, the chosen one, the common
    settings' and the pair partner's choice's validation PSNR, the spread (best - worst) and any edge the choice sits
    on; a figure with every candidate; and one robustness line per arm (what each family loses with the other
    family's choice and with the common settings)."""
    from rtil.evaluation.plots import plot_tuning_search
    from rtil.study.cells import search_state, searched_base, tune_item, tune_mean_psnr

    generators = [g for g in comparison.generators if cfg.generators[g].tune_from is None]
    if not generators:
        return [f"{method}: each generator uses the settings tuned at the longest snapshot.", ""], []
    common = searched_base(cfg, method)
    partner = dict(zip(comparison.baseline, comparison.treatment, strict=True))
    partner.update({t: b for b, t in partner.items()})
    label = {g: comparison.labels[0] if g in comparison.baseline else comparison.labels[1] for g in generators}
    n_images = cfg.tune.images.count
    lines = [f"Tuning search of {method} ({cfg.tune.task} {cfg.tune.param}, the mean validation PSNR in dB of "
             f"{n_images} validation images; axes: {', '.join(a.name for a in cfg.tune.search[method])}):", "",
             "| generator | candidates | chosen: change to the common settings | chosen | common | pair partner's "
             "choice | worst | spread | edge |", "|---|---|---|---|---|---|---|---|---|"]
    losses = {comparison.labels[0]: {"other": [], "common": []}, comparison.labels[1]: {"other": [], "common": []}}
    points = []
    for g in generators:
        state = search_state(cfg, g, method)
        scores = [score for _, score in state.scored]
        chosen = next(v for s, v in state.scored if s == state.chosen)
        at_common = next(v for s, v in state.scored if s == common)
        other = search_state(cfg, partner[g], method).chosen
        other_score = tune_mean_psnr(tune_item(cfg, g, method, other))
        losses[label[g]]["other"].append(chosen - other_score)
        losses[label[g]]["common"].append(chosen - at_common)
        change = {k: v for k, v in state.chosen.items() if common.get(k) != v}
        lines.append(f"| {g} | {len(scores)} | {json.dumps(change) if change else '(common)'} | {chosen:.2f} | "
                     f"{at_common:.2f} | {other_score:.2f} | {min(scores):.2f} | {max(scores) - min(scores):.2f} | "
                     f"{'; '.join(state.notes) or 'inside'} |")
        points.append({"label": g, "style": "baseline" if g in comparison.baseline else "treatment",
                       "scores": scores, "chosen": chosen, "common": at_common})
    name = f"{stem}_{cname}_{method}_tuning.png"
    plot_tuning_search(points, figures / name, f"{comparison.title}: {method} tuning search "
                                               f"({cfg.tune.task} {cfg.tune.param})")
    lines += ["", f"![tuning]({(figures / name).relative_to(base)})", ""]
    summary = []
    for arm, lost in losses.items():
        if lost["other"]:
            summary.append(f"- {comparison.title}, {method}: the {arm} generators lose "
                           f"{_range(lost['other'])} dB of validation PSNR with their pair partner's chosen settings "
                           f"and {_range(lost['common'])} dB with the common settings (chosen minus each, per "
                           f"generator).")
    return lines, summary


def _range(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)

"""The evaluation half of a sweep (rtil.inverse.sweep solves the cells): the tables, curves and grids merged from
a sweep's cell files (cells/<id>.json and .pt)."""

import json
from itertools import combinations
from pathlib import Path

from rtil.atomic_files import json_safe, write_csv_atomically, write_json_atomically, write_text_atomically
from rtil.checkpoints import safe_torch_load
from rtil.errors import RtilError
from rtil.evaluation.plots import plot_curves, plot_paired_differences, save_comparison_grid
from rtil.evaluation.stats import mean_ci, paired_difference

METRICS = ("psnr", "ssim", "lpips")
GRID_IMAGES = 6


CELL_KEYS = ("model", "method", "task", "param", "images", "measurement_loss", "metrics")  # what merging reads


def merge_sweep(out: str | Path) -> dict:
    """Merge the cell files of `out` into tables, curves and grids. Returns the summary rows."""
    out = Path(out)
    config_path = out / "sweep_config.json"
    wanted = json.loads(config_path.read_text()).get("cells") if config_path.is_file() else None
    files = sorted((out / "cells").glob("*.json"))
    if wanted is not None:  # only the cells of the config that ran last, not stale ones from other settings
        files = [p for p in files if p.stem in set(wanted)]
    cells = []
    for p in files:
        try:
            cell = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RtilError(f"cell file {p} is not valid JSON ({e}); delete it to recompute that cell") from None
        missing = [k for k in CELL_KEYS if not isinstance(cell, dict) or k not in cell]
        if missing:
            raise RtilError(f"cell file {p} lacks {', '.join(missing)}; delete it to recompute that cell")
        cells.append(cell)
    if not cells:
        raise RtilError(f"no finished cells in {out / 'cells'}")
    rows, summary = [], []
    for c in cells:
        present = [m for m in METRICS if m in c["metrics"]]
        for i, name in enumerate(c["images"]):
            rows.append({"model": c["model"], "method": c["method"], "task": c["task"], "param": c["param"],
                         "image": name, "measurement_loss": c["measurement_loss"][i],
                         **{m: c["metrics"][m][i] for m in present}})
        entry = {"model": c["model"], "method": c["method"], "task": c["task"], "ratio": c["param"],
                 "param": c["param"], "n": len(c["images"])}
        for m in METRICS:
            if m in present:
                ci = mean_ci(c["metrics"][m])
                entry.update({f"{m}_mean": ci.mean, f"{m}_low": ci.low, f"{m}_high": ci.high})
            else:
                entry.update({f"{m}_mean": None, f"{m}_low": None, f"{m}_high": None})
        summary.append(entry)
    write_csv_atomically(out / "results.csv", rows)
    write_csv_atomically(out / "summary.csv", summary)
    order = list(json.loads(config_path.read_text())["models"]) if config_path.is_file() else None
    paired = paired_rows(cells, order)
    if paired:
        write_csv_atomically(out / "paired.csv", paired)
        for comparison in sorted({p["comparison"] for p in paired}):
            rows = [{**p, "label": f"{p['method']} {p['task']} {p['param']}"} for p in paired
                    if p["comparison"] == comparison and p["metric"] == "psnr"]
            name = comparison.replace(" ", "")
            plot_paired_differences(rows, out / "curves" / f"paired_{name}_psnr.png", f"{comparison}: PSNR")
    write_json_atomically(out / "summary.json", json_safe({"summary": summary, "paired": paired,
                                                         "metric_settings": cells[0]["metric_settings"],
                                                         "lpips": cells[0]["lpips"]}))
    for task in sorted({c["task"] for c in cells}):
        for m in METRICS:
            if any(s[f"{m}_mean"] is not None for s in summary if s["task"] == task):
                plot_curves(summary, m, task, out / "curves" / f"{task}_{m}.png")
    write_grids(out, cells)
    return {"summary": summary, "paired": paired}


def paired_rows(cells: list[dict], model_order: list[str] | None = None) -> list[dict]:
    """For every two models (in `model_order`, the config's order), the per-image paired difference
    (second - first, e.g. rtil - vanilla) of each metric on the same method, task, parameter and images
    (hence the same operators and starts), with its 95% CI and paired t-test p-value."""
    by_key = {(c["model"], c["method"], c["task"], c["param"]): c for c in cells}
    present = {c["model"] for c in cells}
    models = [m for m in (model_order or sorted(present)) if m in present]
    out = []
    for a, b in combinations(models, 2):
        for (model, method, task, param), ca in sorted(by_key.items()):
            cb = by_key.get((b, method, task, param))
            if model != a or cb is None or ca["images"] != cb["images"]:
                continue
            for m in METRICS:
                if m in ca["metrics"] and m in cb["metrics"]:
                    d = paired_difference(cb["metrics"][m], ca["metrics"][m])
                    out.append({"comparison": f"{b} - {a}", "method": method, "task": task, "param": param,
                                "metric": m, "n": d.n, "mean_difference": d.mean_difference, "low": d.low,
                                "high": d.high, "p_value": d.p_value})
    return out


def write_grids(out: Path, cells: list[dict]) -> None:
    """grids/<method>_<task>_<param>.png: truth | measurement | one column per model."""
    groups = {}
    for c in cells:
        groups.setdefault((c["method"], c["task"], c["param"]), []).append(c)
    for (method, task, param), members in groups.items():
        members = sorted(members, key=lambda c: c["model"])
        tensors = [safe_torch_load(out / "cells" / f"{c['id']}.pt", "sweep cell") for c in members]
        n = min(GRID_IMAGES, tensors[0]["truths"].shape[0])
        columns = [tensors[0]["truths"][:n], tensors[0]["measurement_views"][:n]]
        columns += [t["reconstructions"][:n] for t in tensors]
        scores = [None, None] + [c["metrics"]["psnr"][:n] for c in members]
        save_comparison_grid([col.float() for col in columns], out / "grids" / f"{method}_{task}_{param}.png",
                             labels=["truth", "measurement"] + [c["model"] for c in members], scores=scores)
        columns_text = "columns: truth | measurement | " + " | ".join(c["model"] for c in members) + "\n"
        write_text_atomically(out / "grids" / f"{method}_{task}_{param}.txt", columns_text)

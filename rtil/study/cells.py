"""The study's work-item files, the only module that names or reads them: tuning runs (out/tune/<id>.json) and
evaluation cells (out/cells/<id>.json with the per-image results, .pt with the images; written by
rtil.inverse.sweep.solve_cell in the sweeps' cell format), and the per-image CSV the report is computed from.
A file's name ends with a hash of everything that determines its result, so finished work is found again."""

import json
from pathlib import Path

from rtil.atomic_files import write_csv_atomically, write_json_atomically
from rtil.errors import RtilError
from rtil.inverse.run import RESULTS_VERSION
from rtil.study.config import StudyConfig, short_hash

METRICS = ("psnr", "ssim", "lpips")


def effective_settings(cfg: StudyConfig, method: str, settings: dict, task: str) -> dict:
    """The settings the method's solver really uses for `task` (its per-task entries applied, every field
    present): what keys a tuning run or a cell, so that an entry for another task does not invalidate it."""
    from rtil.inverse.run import make_solver

    out = make_solver(cfg.methods[method].solver, settings, task).settings()
    out.pop("method")
    return out


def tune_item(cfg: StudyConfig, generator: str, method: str, settings: dict) -> dict:
    """One tuning run: {generator, method, change (to the common settings), settings, path (its JSON file, named
    by a hash of everything that determines its result)}."""
    from rtil.study.tuning import change_from

    task = cfg.tune.task
    key = short_hash([cfg.generators[generator].fingerprint, method, effective_settings(cfg, method, settings, task),
                      task, cfg.tune.param, cfg.tune.images.as_dict(), cfg.evaluate.seed, RESULTS_VERSION])
    base = searched_base(cfg, method) if method in cfg.tune.search else cfg.methods[method].settings
    return {"generator": generator, "method": method, "change": change_from(base, settings),
            "settings": settings, "path": str(cfg.out / "tune" / f"{generator}__{method}__{key}.json")}


def tune_items(cfg: StudyConfig) -> list[dict]:
    """Every tuning run known so far: a grid's candidates, and each search's candidates scored or pending (a search
    asks for more as its runs finish), then, once both generators of a pair have finished their search, each one's
    choice run on the other (how much a family loses with the other family's settings). None for a generator that
    takes another's tuned settings (tune_from)."""
    items = []
    for g, methods in cfg.generator_methods().items():
        if cfg.generators[g].tune_from is not None:
            continue
        for m in methods:
            for change in cfg.tune.grids.get(m, []):
                items.append(tune_item(cfg, g, m, {**cfg.methods[m].settings, **change}))
            if m in cfg.tune.search:
                state = search_state(cfg, g, m)
                items += [tune_item(cfg, g, m, s) for s, _ in state.scored]
                items += [tune_item(cfg, g, m, s) for s in state.pending]
    return _unique(items + cross_items(cfg))


def cross_items(cfg: StudyConfig) -> list[dict]:
    """Each searched generator run with its pair partner's chosen settings (when both searches are finished)."""
    items = []
    for c in cfg.comparisons.values():
        for b, t in zip(c.baseline, c.treatment, strict=True):
            if cfg.generators[b].tune_from is not None or cfg.generators[t].tune_from is not None:
                continue
            for m in c.methods:
                if m not in cfg.tune.search:
                    continue
                states = search_state(cfg, b, m), search_state(cfg, t, m)
                if all(s.finished for s in states):
                    items += [tune_item(cfg, b, m, states[1].chosen), tune_item(cfg, t, m, states[0].chosen)]
    return items


def _unique(items: list[dict]) -> list[dict]:
    return list({item["path"]: item for item in items}.values())


_FINISHED_SEARCHES = {}


def searched_base(cfg: StudyConfig, method: str) -> dict:
    """The settings a method's search starts from (its common settings, every other setting at its default)."""
    from rtil.study.tuning import search_base

    return search_base(cfg.methods[method].solver, cfg.methods[method].settings)


def search_state(cfg: StudyConfig, generator: str, method: str):
    """Where the tuning search of `method` on `generator` stands (rtil.study.tuning.SearchState), from the finished
    tuning runs; a finished search is remembered for the process (its runs do not change)."""
    from rtil.study.tuning import search

    memo = (str(cfg.out), cfg.generators[generator].fingerprint, generator, method, repr(cfg.tune))
    if memo in _FINISHED_SEARCHES:
        return _FINISHED_SEARCHES[memo]

    def score(settings):
        item = tune_item(cfg, generator, method, settings)
        return tune_mean_psnr(item) if tune_done(item) else None

    state = search(cfg.tune.search[method], searched_base(cfg, method), score)
    if state.finished:
        _FINISHED_SEARCHES[memo] = state
    return state


def tune_done(item: dict) -> bool:
    return Path(item["path"]).is_file()


def write_tune_result(item: dict, psnr: list[float], ssim: list[float], seconds: float) -> None:
    """The tuning run's file: the item with its per-image validation PSNR and SSIM and the seconds it took."""
    write_json_atomically(Path(item["path"]), {**item, "psnr": psnr, "ssim": ssim, "seconds": seconds})


def tune_mean_psnr(item: dict) -> float:
    """A finished tuning run's mean validation PSNR: what candidates are compared by."""
    psnr = tune_result(item)["psnr"]
    return sum(psnr) / len(psnr)


def tune_result(item: dict) -> dict:
    """A finished tuning run's file (psnr, ssim: per validation image; seconds)."""
    path = Path(item["path"])
    if not path.is_file():
        raise RtilError(f"tuning result missing: {path} (run the tune stage)")
    return json.loads(path.read_text())


def tuned_settings(cfg: StudyConfig, generator: str, method: str) -> tuple[dict, dict | None]:
    """The chosen tuning candidate of `method` on `generator` and its change to the common settings: a search's end
    point, or a grid's best candidate (highest mean validation PSNR); (common settings, None) when the method is not
    tuned. A generator with `tune_from` gets that generator's choice (e.g. a snapshot tuned at the longest budget)."""
    from rtil.study.tuning import change_from

    generator = cfg.generators[generator].tune_from or generator
    common = cfg.methods[method].settings
    if method in cfg.tune.search:
        state = search_state(cfg, generator, method)
        if not state.finished:
            raise RtilError(f"the tuning search of {method} on {generator!r} is not finished (run the tune stage)")
        return state.chosen, change_from(searched_base(cfg, method), state.chosen)
    items = [tune_item(cfg, generator, method, {**common, **change}) for change in cfg.tune.grids.get(method, [])]
    if not items:
        return common, None
    best = max(items, key=tune_mean_psnr)
    return best["settings"], best["change"]


def evaluate_cells(cfg: StudyConfig) -> list[dict]:
    """Every evaluation cell: generator x method x settings kind x task x parameter, then the comparisons' budget and
    protocol cells. Cells whose settings coincide (tuned = common) share one file; a cell's file name holds a hash of
    everything that determines it."""
    cells = []
    ev = cfg.evaluate
    for cname, c in cfg.comparisons.items():
        for g in c.generators:
            for m in c.methods:
                for kind in c.settings:
                    settings = tuned_settings(cfg, g, m)[0] if kind == "tuned" else cfg.methods[m].settings
                    for task in c.tasks:
                        if kind == "common" and cfg.tune.tunes(m) and task not in ev.common_tasks:
                            continue
                        cells += [_cell(cfg, cname, g, m, kind, settings, task, param) for param in ev.tasks[task]]
        cells += _budget_cells(cfg, cname, c)
        cells += _protocol_cells(cfg, cname, c)
    return cells


def _cell(cfg: StudyConfig, cname: str, g: str, m: str, kind: str, settings: dict, task: str, param) -> dict:
    """One evaluation cell; its id ends in a hash of everything that determines its results."""
    ev = cfg.evaluate
    key = short_hash([cfg.generators[g].fingerprint, m, effective_settings(cfg, m, settings, task), task, param,
                      ev.images.as_dict(), ev.seed, RESULTS_VERSION])
    return {"comparison": cname, "generator": g, "method": m, "kind": kind, "task": task, "param": param,
            "settings": settings, "id": f"{g}__{m}__{task}__{param}__{key}"}


def _budget_cells(cfg: StudyConfig, cname: str, c) -> list[dict]:
    """The cells of a comparison's budget axis: its method at each generator's tuned settings with the steps scaled."""
    from rtil.study.budgets import budget_kind, scaled_steps

    if c.budgets is None:
        return []
    m, cells = c.budgets["method"], []
    for g in c.generators:
        tuned = tuned_settings(cfg, g, m)[0]
        for factor in c.budgets["factors"]:
            settings = scaled_steps(tuned, factor)
            for task, params in c.budgets["tasks"].items():
                cells += [_cell(cfg, cname, g, m, budget_kind(factor), settings, task, param) for param in params]
    return cells


def _protocol_cells(cfg: StudyConfig, cname: str, c) -> list[dict]:
    """The cells of a comparison's protocols: each arm's generators run the protocol's method with the common
    settings and that arm's changes."""
    from rtil.study.protocols import protocol_kind, protocol_settings

    if c.protocols is None:
        return []
    cells = []
    for name, protocol in c.protocols.items():
        m = protocol["method"]
        for arm, generators in (("baseline", c.baseline), ("treatment", c.treatment)):
            settings = protocol_settings(cfg.methods[m].settings, protocol, arm)
            for g in generators:
                for task, params in protocol["tasks"].items():
                    cells += [_cell(cfg, cname, g, m, protocol_kind(name), settings, task, param) for param in params]
    return cells


def cell_file(cfg: StudyConfig, cell: dict) -> Path:
    """out/cells/<id>.json, where rtil.inverse.sweep.solve_cell(..., out=cfg.out) writes the cell."""
    return cfg.out / "cells" / f"{cell['id']}.json"


def cell_done(cfg: StudyConfig, cell: dict) -> bool:
    return cell_file(cfg, cell).is_file()


def read_cells(cfg: StudyConfig) -> list[dict]:
    """The evaluation cells with their results under 'result' (every cell must be finished)."""
    out = []
    for cell in evaluate_cells(cfg):
        path = cell_file(cfg, cell)
        if not path.is_file():
            raise RtilError(f"evaluation cell missing: {path} (run the evaluate stage)")
        out.append({**cell, "result": json.loads(path.read_text())})
    return out


def cell_images(cfg: StudyConfig, cell: dict) -> dict:
    """A cell's tensors: truths, measurement_views and reconstructions, (N, C, H, W) each."""
    from rtil.checkpoints import safe_torch_load

    return safe_torch_load(cell_file(cfg, cell).with_suffix(".pt"), "study cell")


def write_per_image_csv(cells: list[dict], path: Path, extra=None) -> list[dict]:
    """One row per (cell, image): what every table of the report is computed from; `extra(rows)` gives further rows
    (e.g. the quality-matched pairs' rows, which the report pairs after export)."""
    rows = per_image_rows(cells)
    rows += extra(rows) if extra is not None else []
    write_csv_atomically(path, rows)
    return rows


def per_image_rows(cells: list[dict]) -> list[dict]:
    """One row per (cell, image) of finished cells (each with its 'result'), as the per-image CSV holds them."""
    rows = []
    for c in cells:
        comparison = c["comparison"]
        r = c["result"]
        for i, image in enumerate(r["images"]):
            rows.append({"comparison": comparison, "generator": c["generator"], "method": c["method"],
                         "settings": c["kind"], "task": c["task"], "param": c["param"], "image": image,
                         "measurement_loss": r["measurement_loss"][i],
                         **{m: r["metrics"][m][i] for m in METRICS if m in r["metrics"]}})
    return rows

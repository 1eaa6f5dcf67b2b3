"""Sweeps: models x methods x tasks x task parameters x images, from a YAML file.

    out: outputs/sweeps/digits         # results folder
    images: digits-test                # or a folder of images of the generators' size
    num_images: 16
    batch_size: 16
    seed: 0                            # operators, masks and initialisations: shared by all models (paired)
    models:   {vanilla: vanilla.pt, rtil: rtil.pt}
    methods:  {ilo: configs/invert/ilo.yaml, mganprior: {steps: 200}}   # settings file or inline settings
    tasks:    {cs: [0.1, 0.25, 0.5], inpaint: [0.25], sr: [4], denoise: [0.2]}   # ratios / factors / sigmas

Each (model, method, task, parameter) cell is solved once and written to cells/<id>.json (+ .pt with
the reconstructions); a rerun skips finished cells, so an interrupted sweep resumes. Cells can be
split across processes (rank r of W takes every W-th cell; under torchrun RANK/WORLD_SIZE are read
from the environment); every cell has its own file, so the results merge without duplicates.
Merging (rtil.evaluation.sweep_tables.merge_sweep, the evaluation half) writes results.csv (one row per image),
summary.csv/json (mean and 95% CI per cell), paired.csv (model differences on the same images and operators),
metric-vs-parameter curves and truth | measurement | reconstruction grids.
"""

import hashlib
import json
import os
import time
from functools import lru_cache
from pathlib import Path

import torch
from tqdm import tqdm

from rtil.atomic_files import atomic_torch_save, json_safe, write_json_atomically
from rtil.checkpoints import load_generator
from rtil.config import read_yaml
from rtil.data.images import load_images
from rtil.errors import RtilError
from rtil.evaluation.metrics import load_lpips, lpips_unavailable_message, metric_settings, reconstruction_metrics
from rtil.evaluation.sweep_tables import merge_sweep
from rtil.inverse.run import TASK_PARAMETER, check_task_parameter, load_settings, make_solver, solve_images


def read_sweep_config(path: str | Path) -> dict:
    """The sweep config with defaults filled in and every entry checked."""
    cfg = read_yaml(path)
    base = Path(path).resolve().parent
    for key in ("models", "methods", "tasks"):
        if not isinstance(cfg.get(key), dict) or not cfg[key]:
            raise RtilError(f"{path}: '{key}' must be a non-empty mapping")
    for task, values in cfg["tasks"].items():
        if task not in TASK_PARAMETER:
            raise RtilError(f"{path}: unknown task {task!r}; choose from {', '.join(TASK_PARAMETER)}")
        if not isinstance(values, list) or not values:
            raise RtilError(f"{path}: tasks.{task} must be a non-empty list of {TASK_PARAMETER[task]} values")
    try:
        tasks = {task: [float(v) if TASK_PARAMETER[task] != "factor" else int(v) for v in values]
                 for task, values in cfg["tasks"].items()}
        numbers = {key: int(cfg.get(key, default)) for key, default in
                   (("num_images", 16), ("batch_size", 16), ("seed", 0))}
    except (TypeError, ValueError) as e:
        raise RtilError(f"{path}: a number is not a number ({e})") from None
    for task, values in tasks.items():  # every cell is checked before the first one runs
        for value in values:
            check_task_parameter(task, value)
    methods = {}
    for name, settings in cfg["methods"].items():
        if isinstance(settings, str):
            settings = load_settings(resolve_config_path(settings, base))
        methods[name] = {**(settings or {}), "method": (settings or {}).get("method", name)}
        for task in tasks:
            make_solver(methods[name]["method"], {k: v for k, v in methods[name].items() if k != "method"}, task)
    return {
        "out": cfg.get("out", "outputs/sweep"),
        "images": cfg.get("images", "digits-test"),
        **numbers,
        "models": {name: str(resolve_config_path(p, base)) for name, p in cfg["models"].items()},
        "methods": methods,
        "tasks": tasks,
    }


def resolve_config_path(path: str, base: Path) -> Path:
    """Relative paths are taken from the current folder when they exist there, else from the config's."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else base / p


def cell_list(cfg: dict) -> list[dict]:
    """All cells, in a fixed order. A cell's id ends with a hash of everything that determines its result (the
    generator file's content, the solver's effective settings, the task and parameter, the images and the seed),
    so a rerun with other settings in the same folder computes new cells instead of reporting stale ones."""
    digests = {name: file_digest(path) for name, path in cfg["models"].items()}
    cells = []
    for model in cfg["models"]:
        for method, settings in cfg["methods"].items():
            for task, params in cfg["tasks"].items():
                solver = make_solver(settings["method"], {k: v for k, v in settings.items() if k != "method"}, task)
                for param in params:
                    key = hashlib.sha256(json.dumps([digests[model], solver.settings(), task, param, cfg["images"],
                                                     cfg["num_images"], cfg["seed"]], sort_keys=True).encode())
                    cells.append({"model": model, "method": method, "task": task, "param": param,
                                  "id": f"{model}__{method}__{task}__{param}__{key.hexdigest()[:10]}"})
    return cells


@lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """sha256 of a file's content (cached while the file's size and time stamp stay the same)."""
    p = Path(path)
    if not p.is_file():
        raise RtilError(f"generator file not found: {path}")
    stat = p.stat()
    return _digest(str(p.resolve()), stat.st_size, stat.st_mtime_ns)


def run_sweep(config_path: str | Path, out: str | Path | None = None, rank: int | None = None,
              world_size: int | None = None, device: str | None = None, progress: bool = True) -> Path:
    """Solve this process's unfinished cells, then (rank 0) merge everything. Returns the out folder."""
    cfg = read_sweep_config(config_path)
    out = Path(out or cfg["out"])
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    device = device or (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    (out / "cells").mkdir(parents=True, exist_ok=True)
    cells = cell_list(cfg)  # raises for a missing generator file
    if rank == 0:  # the other ranks never read it; rank 0 merges only the cells it lists
        write_json_atomically(out / "sweep_config.json", {**cfg, "cells": [c["id"] for c in cells]})

    mine = [c for i, c in enumerate(cells) if i % world_size == rank]
    todo = [c for c in mine if not (out / "cells" / f"{c['id']}.json").is_file()]
    if progress:
        current = {c["id"] for c in cells}
        stale = [p for p in (out / "cells").glob("*.json") if p.stem not in current]
        print(f"sweep: {len(mine)} cells for rank {rank}/{world_size}, {len(mine) - len(todo)} already done"
              + (f"; {len(stale)} cell file(s) from other settings are ignored" if stale else ""))
    lpips_metric = load_lpips(device)
    generators, images = {}, None
    for cell in tqdm(todo, desc="sweep cells", unit="cell", disable=not progress):
        if cell["model"] not in generators:
            generators = {cell["model"]: load_generator(cfg["models"][cell["model"]], device=device)}
        G = generators[cell["model"]]
        if images is None:
            images, names = load_images(cfg["images"], G.resolution, G.img_channels, cfg["num_images"])
        solve_cell(cell, G, images, names, cfg, lpips_metric, out)

    if world_size > 1 and "MASTER_ADDR" in os.environ:  # launched by torchrun: wait for every rank
        _barrier()
    if rank == 0:
        merge_sweep(out)
    return out


def solve_cell(cell: dict, G, images: torch.Tensor, names: list[str], cfg: dict, lpips_metric, out: Path) -> None:
    """Solve one cell and write cells/<id>.json and cells/<id>.pt atomically (tmp file + rename)."""
    t0 = time.perf_counter()
    settings = dict(cfg["methods"][cell["method"]])
    method = settings.pop("method")
    param = {TASK_PARAMETER[cell["task"]]: cell["param"]}
    results = solve_images(G, images, method, cell["task"], settings, cfg["seed"], batch_size=cfg["batch_size"],
                           **param)
    metrics = reconstruction_metrics(results.reconstructions, images, lpips_metric)
    record = {**cell, "method_name": method, "parameter": TASK_PARAMETER[cell["task"]], "images": names,
              "metrics": metrics, "measurement_loss": results.measurement_loss.tolist(),
              "solver": results.solver, "operators": results.operators,
              "metric_settings": metric_settings(lpips_metric),
              "lpips": "computed" if lpips_metric is not None else lpips_unavailable_message(),
              "generator": cfg["models"][cell["model"]], "seconds": time.perf_counter() - t0}
    base = out / "cells" / cell["id"]
    atomic_torch_save({"reconstructions": results.reconstructions, "measurement_views": results.measurement_views,
                       "truths": images.cpu(), "solution": results.solution, "cut": results.info.get("cut", 0),
                       "latent_space": results.info.get("latent_space")}, f"{base}.pt")
    write_json_atomically(Path(f"{base}.json"), json_safe(record))


def _barrier() -> None:
    """Wait for every rank (torchrun sets the rendezvous environment) before merging."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()

"""Sweeps: models x methods x tasks x task parameters x images, from a YAML file.

    out: outputs/sweeps/digits         # results folder
    images: digits-test                # or a folder of images of the generators' size
    num_images: 16
    batch_size: 16
    seed: 0                            # operators, masks and initialisations: shared by all models (paired)
    models:   {vanilla: vanilla.pt, rtil: rtil.pt}
    methods:  {ilo: configs/invert/ilo.yaml, mganprior: {steps: 200}}   # settings file or inline settings
    tasks:    {cs: [0.1, 0.25, 0.5], inpaint: [0.25], sr: [4], denoise: [0.2]}   # ratios / factors / sigmas

Keys other than these are refused, as are unknown tasks and solver settings. Everything (generator files, images,
each cell's solver and operator) is checked before the results folder is made.

Each (model, method, task, parameter) cell is solved once and written to cells/<id>.json (+ .pt with
the reconstructions); a rerun with the same config skips finished cells, so an interrupted sweep resumes. The
results folder is recognised by its record sweep_config.json: a rerun refuses a folder without it that holds files
(the user's) and the folder of a sweep with another config (check_sweep_folder). Cells can be
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
from rtil.inverse.operators import build_operator
from rtil.inverse.output_folders import check_apart_from_inputs
from rtil.inverse.run import TASK_PARAMETER, check_task_parameter, load_settings, make_solver, solve_images

CONFIG_KEYS = ("out", "images", "num_images", "batch_size", "seed", "models", "methods", "tasks")
RESUMABLE_KEYS = ("out", "batch_size")  # may differ between runs into one results folder (see check_sweep_folder)
RECORD = "sweep_config.json"  # the record that makes a folder a sweep's results folder


def read_sweep_config(path: str | Path) -> dict:
    """The sweep config with defaults filled in and every entry checked (unknown keys refused at every level).
    Methods given as settings files are read; 'method_files' records which file each came from."""
    cfg = read_yaml(path)
    base = Path(path).resolve().parent
    unknown = sorted(set(cfg) - set(CONFIG_KEYS), key=str)
    if unknown:
        raise RtilError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; a sweep config takes "
                        f"{', '.join(CONFIG_KEYS)}")
    for key in ("models", "methods", "tasks"):
        if not isinstance(cfg.get(key), dict) or not cfg[key]:
            raise RtilError(f"{path}: '{key}' must be a non-empty mapping")
    for key in ("out", "images"):
        if key in cfg and not isinstance(cfg[key], str):
            raise RtilError(f"{path}: '{key}' must be a path, got {cfg[key]!r}")
    for name, file in cfg["models"].items():
        if not isinstance(file, str):
            raise RtilError(f"{path}: models.{name} must be the path of a generator file, got {file!r}")
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
    for key, low in (("num_images", 1), ("batch_size", 1), ("seed", 0)):
        if numbers[key] < low:
            raise RtilError(f"{path}: '{key}' must be an integer >= {low}, got {numbers[key]}")
    for task, values in tasks.items():  # every cell is checked before the first one runs
        for value in values:
            check_task_parameter(task, value)
    methods, method_files = {}, {}
    for name, settings in cfg["methods"].items():
        if isinstance(settings, str):
            method_files[name] = str(resolve_config_path(settings, base))
            settings = load_settings(method_files[name])
        if not isinstance(settings, dict | None):
            raise RtilError(f"{path}: methods.{name} must be a settings file or a mapping of settings, got "
                            f"{settings!r}")
        methods[name] = {**(settings or {}), "method": (settings or {}).get("method", name)}
        for task in tasks:
            try:
                make_solver(methods[name]["method"], {k: v for k, v in methods[name].items() if k != "method"}, task)
            except RtilError as e:
                raise RtilError(f"{path}: methods.{name}: {e}") from None
    return {
        "out": cfg.get("out", "outputs/sweep"),
        "images": cfg.get("images", "digits-test"),
        **numbers,
        "models": {name: str(resolve_config_path(p, base)) for name, p in cfg["models"].items()},
        "methods": methods,
        "method_files": method_files,
        "tasks": tasks,
    }


def resolve_config_path(path: str, base: Path) -> Path:
    """Relative paths are taken from the current folder when they exist there, else from the config's."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else base / p


def cell_list(cfg: dict) -> list[dict]:
    """All cells, in a fixed order. A cell's id ends with a hash of everything that determines its result (the
    generator file's content, the solver's effective settings, the task and parameter, the images and the seed),
    so a rerun after a generator file changed computes new cells instead of reporting stale ones."""
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


def sweep_inputs(config_path: str | Path, cfg: dict) -> list[str | Path]:
    """The files a sweep reads (its config, generators and settings files); the images folder is cfg['images']."""
    return [config_path, *cfg["models"].values(), *cfg["method_files"].values()]


def check_sweep_folder(out: str | Path, cfg: dict) -> bool:
    """Raise RtilError unless the sweep of `cfg` may write into `out`; return whether `out` holds its results.

    A folder is a sweep's results folder when it holds the record sweep_config.json, which the sweep writes before
    anything else. The sweep writes into a folder that does not exist yet, an empty one (or one holding only the
    temporary file of another rank writing that record), or a results folder whose recorded config is the same: it
    then resumes. Any other folder is refused and left untouched: one holding files but no record is the user's,
    and the results folder of another config keeps its results (a new --out keeps both). Only RESUMABLE_KEYS may
    differ: 'out' (where the folder
    is) and 'batch_size' (images solved at once; every image gets the same operator and start whatever the batch
    size, see rtil/inverse/run.py). Any other change (images, seed, models, methods and their settings, tasks)
    changes results, so it is no resume. The generator files are inputs, not config: after one changes, the
    rerun solves its cells anew (a cell's id hashes the file's content) and the tables show only those."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RtilError(f"the sweep's results folder {out} is an existing file; give a folder (--out or 'out')")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []  # one listing: another rank may write
    if RECORD not in names:
        others = [name for name in names if not _record_being_written(name)]
        if others:
            raise RtilError(f"{out} already holds files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}) "
                            f"and is not a sweep's results folder (no {RECORD}); give a new or empty folder (--out)")
        return False
    try:
        recorded = json.loads((out / RECORD).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        recorded = None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("cells"), list):
        raise RtilError(f"{out / RECORD} is not the record of a sweep, so {out} is no sweep's results folder; give a "
                        f"new or empty folder (--out)")
    changed = [k for k in CONFIG_KEYS if k not in RESUMABLE_KEYS
               and json.dumps(recorded.get(k)) != json.dumps(json_safe(cfg[k]))]
    if changed:
        raise RtilError(f"{out} holds the results of another sweep: its config differs in {', '.join(changed)}; "
                        f"give a new --out (a sweep resumes only with the same config)")
    return True


def _record_being_written(name: str) -> bool:
    """Whether `name` is that of the temporary file of an atomic write of the record (rtil/atomic_files.py)."""
    return name.startswith(f".{RECORD}.") and name.endswith(".tmp")


def check_models(cfg: dict, device: str) -> tuple[torch.Tensor, list[str]]:
    """Load every generator once and check that the images fit it and every cell's solver and operator fit it, so
    that bad input fails before the results folder is made. Returns the images and their names."""
    shapes = {}
    for model, path in cfg["models"].items():
        G = load_generator(path, device=device)
        shapes[model] = (G.img_channels, G.resolution, G.resolution)
        images, names = load_images(cfg["images"], G.resolution, G.img_channels, cfg["num_images"])
        for method, settings in cfg["methods"].items():
            for task, params in cfg["tasks"].items():
                solver = make_solver(settings["method"], {k: v for k, v in settings.items() if k != "method"}, task)
                try:
                    solver.check_fits(G)
                    for param in params:
                        build_operator(task, shapes[model], 1, seed=0, **{TASK_PARAMETER[task]: param})
                except RtilError as e:
                    raise RtilError(f"model {model} ({path}), method {method}, task {task}: {e}") from None
        del G
    if len(set(shapes.values())) > 1:
        raise RtilError(f"the models make images of different shapes ({shapes}); a sweep solves the same images with "
                        f"every model")
    return images, names


def run_sweep(config_path: str | Path, out: str | Path | None = None, rank: int | None = None,
              world_size: int | None = None, device: str | None = None, progress: bool = True) -> Path:
    """Solve this process's unfinished cells, then (rank 0) merge everything. Returns the out folder.
    Everything is checked before the results folder is made or touched (see check_sweep_folder)."""
    cfg = read_sweep_config(config_path)
    out = Path(out or cfg["out"])
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    device = device or (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    check_apart_from_inputs(out, sweep_inputs(config_path, cfg), cfg["images"], what="the sweep's results folder")
    resuming = check_sweep_folder(out, cfg)
    cells = cell_list(cfg)  # raises for a missing generator file
    images, names = check_models(cfg, device)
    lpips_metric = load_lpips(device)
    # The record first, so that another rank starting now recognises the folder; every rank writes the same one.
    write_json_atomically(out / RECORD, json_safe({**cfg, "cells": [c["id"] for c in cells]}))
    (out / "cells").mkdir(exist_ok=True)

    mine = [c for i, c in enumerate(cells) if i % world_size == rank]
    todo = [c for c in mine if not (out / "cells" / f"{c['id']}.json").is_file()]
    if progress:
        current = {c["id"] for c in cells}
        stale = [p for p in (out / "cells").glob("*.json") if p.stem not in current]
        print(f"sweep: {len(mine)} cells for rank {rank}/{world_size}, {len(mine) - len(todo)} already done"
              + (f" (resumed in {out})" if resuming else "")
              + (f"; {len(stale)} cell file(s) of other generator files are ignored" if stale else ""))
    generators = {}
    for cell in tqdm(todo, desc="sweep cells", unit="cell", disable=not progress):
        if cell["model"] not in generators:
            generators = {cell["model"]: load_generator(cfg["models"][cell["model"]], device=device)}
        solve_cell(cell, generators[cell["model"]], images, names, cfg, lpips_metric, out)

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

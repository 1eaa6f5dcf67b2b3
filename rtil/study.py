"""The vanilla-vs-RTIL study: `python -m rtil study --config configs/study/digits.yaml [--quick]`.

Five stages; each writes its outputs under the config's `out` folder and skips work already done, so an
interrupted study resumes where it stopped and a finished one reruns nothing:

1. train    every generator named by a comparison, with train.py (resumed from its last checkpoint);
2. export   its generator file, sample grids per RTIL member, and the Fréchet digits distance (FDD) of every
            member at every checkpoint (sample quality against kimg);
3. tune     each method's candidate settings (`tune.grids`) on the validation images, per generator: every
            generator gets its own best settings ("tuned"); the method's shipped settings are "common";
4. evaluate every comparison's generators x methods x settings (tuned, common) x task cells on the test images:
            the same images, operators, noise and starts for every generator (paired);
5. report   the markdown report (tables with CIs, paired treatment - baseline differences, verdicts, figures) and
            the per-image CSV it is computed from.

A comparison pairs `baseline[i]` with `treatment[i]` (e.g. vanilla and RTIL trained with the same seed); the
report gives each pair ("per seed") and the pooled difference (per image, averaged over the pairs).
Work items of the train, tune and evaluate stages run in `jobs` worker processes (one thread each), which
claim items one at a time.
The config format is documented in configs/study/digits.yaml.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from rtil.atomic_files import write_csv_atomically, write_json_atomically
from rtil.config import read_yaml
from rtil.errors import RtilError
from rtil.inverse.run import TASK_PARAMETER, check_task_parameter
from rtil.inverse.sweep import resolve_config_path

STAGES = ("train", "export", "tune", "evaluate", "report")
SPLITS = ("validation", "test")
METRICS = ("psnr", "ssim", "lpips")


# ----------------------------------------------------------------------------------------------------------------
# The config


def deep_merge(base: dict, changes: dict) -> dict:
    """base with changes applied: mappings merge key by key, any other value replaces."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_study_config(path: str | Path, quick: bool = False) -> dict:
    """The study config (with its `quick` changes applied if quick), every entry checked before any work."""
    from rtil.inverse.run import SOLVERS, TASKS, load_settings, make_solver

    path = Path(path)
    raw = read_yaml(path)
    if quick:
        if not isinstance(raw.get("quick"), dict):
            raise RtilError(f"{path}: --quick needs a 'quick' mapping of changes in the config")
        raw = deep_merge(raw, raw["quick"])
    raw.pop("quick", None)
    base = path.resolve().parent
    for key in ("out", "generators", "comparisons", "methods", "tune", "evaluate"):
        if key not in raw:
            raise RtilError(f"{path}: missing '{key}'")
    cfg = {"path": str(path), "quick": quick, "out": Path(raw["out"]), "jobs": int(raw.get("jobs", 1)),
           "holdout": int(raw.get("holdout", 0)), "train_kimg": raw.get("train_kimg"),
           "report": Path(raw.get("report") or Path(raw["out"]) / "report.md"),
           "fdd_samples": int(raw.get("fdd_samples", 1000)), "claims": raw.get("claims", ""),
           "device": str(raw.get("device", "auto"))}
    if cfg["jobs"] < 1:
        raise RtilError(f"{path}: jobs must be >= 1")

    generators = {}
    for name, g in raw["generators"].items():
        if not isinstance(g, dict) or "config" not in g:
            raise RtilError(f"{path}: generator {name!r} needs a 'config' (a training config file)")
        config = resolve_config_path(g["config"], base)
        train_cfg = read_yaml(config)
        changes = g.get("set") or {}
        holdout = changes.get("data.holdout", (train_cfg.get("data") or {}).get("holdout", 0))
        if holdout != cfg["holdout"]:
            raise RtilError(f"{path}: generator {name!r} trains with data.holdout {holdout}, but the study's "
                            f"validation split needs holdout {cfg['holdout']} (the validation digits must be left out "
                            f"of training)")
        seed = int(g.get("seed", 0))
        settings = training_settings(train_cfg, changes)
        generators[name] = {"config": str(config), "seed": seed, "set": changes,
                            "fingerprint": _key([settings, seed, cfg["train_kimg"]]),
                            "members_per_step": members_per_step(settings)}
    cfg["generators"] = generators

    methods, solvers, descriptions = {}, {}, {}
    for name, m in raw["methods"].items():
        m = dict(m or {})
        settings = load_settings(resolve_config_path(m.pop("file"), base)) if "file" in m else {}
        solver = m.pop("solver", name)
        descriptions[name] = m.pop("description", "")
        settings = {**settings, **m}
        settings.pop("method", None)
        if solver not in SOLVERS:
            raise RtilError(f"{path}: method {name!r}: unknown solver {solver!r}; choose from {', '.join(SOLVERS)} "
                            f"(a method is named after its solver, or names it with `solver:`)")
        make_solver(solver, settings)
        methods[name], solvers[name] = settings, solver
    cfg["methods"], cfg["solvers"], cfg["method_descriptions"] = methods, solvers, descriptions

    evaluate, tune = dict(raw["evaluate"]), dict(raw["tune"])
    tasks = evaluate.get("tasks") or {}
    if not isinstance(tasks, dict) or not tasks:
        raise RtilError(f"{path}: evaluate.tasks must map tasks to lists of parameters")
    for task, params in list(tasks.items()) + [(tune.get("task"), [tune.get("param")])]:
        if task not in TASKS:
            raise RtilError(f"{path}: unknown task {task!r}; choose from {', '.join(TASKS)}")
        if not isinstance(params, list) or not params:
            raise RtilError(f"{path}: task {task!r} needs a list of parameters")
        for p in params:
            check_task_parameter(task, p)

    comparisons = {}
    for name, c in raw["comparisons"].items():
        for key in ("baseline", "treatment", "methods"):
            if not isinstance(c.get(key), list) or not c[key]:
                raise RtilError(f"{path}: comparison {name!r} needs a non-empty list '{key}'")
        if len(c["baseline"]) != len(c["treatment"]):
            raise RtilError(f"{path}: comparison {name!r} pairs baseline[i] with treatment[i]: the lists must have "
                            f"the same length")
        for g in c["baseline"] + c["treatment"]:
            if g not in generators:
                raise RtilError(f"{path}: comparison {name!r} names generator {g!r}, which 'generators' does not "
                                f"define")
        for m in c["methods"]:
            if m not in methods:
                raise RtilError(f"{path}: comparison {name!r} names method {m!r}, which 'methods' does not define")
        own_tasks = c.get("tasks") or list(tasks)
        for t in own_tasks:
            if t not in tasks:
                raise RtilError(f"{path}: comparison {name!r} names task {t!r}, which evaluate.tasks does not list")
        own_settings = c.get("settings") or evaluate.get("settings") or ["tuned", "common"]
        for kind in own_settings:
            if kind not in ("tuned", "common"):
                raise RtilError(f"{path}: evaluate.settings (or a comparison's settings) take 'tuned' and/or "
                                f"'common', got {kind!r}")
        comparisons[name] = {"baseline": list(c["baseline"]), "treatment": list(c["treatment"]),
                             "methods": list(c["methods"]), "tasks": own_tasks, "settings": list(own_settings),
                             "labels": c.get("labels") or ["baseline", "treatment"], "title": c.get("title", name)}
    cfg["comparisons"] = comparisons

    grids = tune.get("grids") or {}
    for method, grid in grids.items():
        if method not in methods:
            raise RtilError(f"{path}: tune.grids names method {method!r}, which 'methods' does not define")
        for change in grid:
            make_solver(solvers[method], {**methods[method], **change})
    cfg["tune"] = {"task": tune["task"], "param": tune["param"], "grids": grids,
                   "images": _image_range(tune.get("images"), "validation", path),
                   "batch_size": int(tune.get("batch_size", 16))}
    cfg["evaluate"] = {"tasks": tasks, "images": _image_range(evaluate.get("images"), "test", path),
                       "batch_size": int(evaluate.get("batch_size", 16)), "seed": int(evaluate.get("seed", 0)),
                       "settings": list(evaluate.get("settings") or ["tuned", "common"]),
                       "common_tasks": list(evaluate.get("common_tasks") or tasks)}
    for task in cfg["evaluate"]["common_tasks"]:
        if task not in tasks:
            raise RtilError(f"{path}: evaluate.common_tasks names task {task!r}, which evaluate.tasks does not list")
    val, test = cfg["tune"]["images"], cfg["evaluate"]["images"]
    if val.get("split") == "validation" and cfg["holdout"] < val["first"] + val["count"]:
        raise RtilError(f"{path}: the tuning images reach validation digit {val['first'] + val['count'] - 1}, but "
                        f"only {cfg['holdout']} training digits are held out (holdout)")
    shared = _image_files(val) & _image_files(test)
    if shared:
        raise RtilError(f"{path}: the validation images overlap the test images ({len(shared)} shared, e.g. "
                        f"{sorted(shared)[0]}); tune on images the evaluation never sees")
    return cfg


def save_run_config(cfg: dict) -> Path:
    """The resolved config of this run, which its worker processes read (so that editing a config or settings file
    while a study runs cannot give its workers other settings than the ones it started with)."""
    path = cfg["out"] / "run_config.json"
    write_json_atomically(path, {**cfg, "out": str(cfg["out"]), "report": str(cfg["report"])})
    return path


def load_run_config(path: str | Path) -> dict:
    cfg = json.loads(Path(path).read_text())
    return {**cfg, "out": Path(cfg["out"]), "report": Path(cfg["report"])}


def _image_range(spec, default_split: str, path: Path) -> dict:
    """{split, first, count} (the built-in digits' validation or test split) or {folder, first, count} (the
    sorted images of a folder, e.g. CelebA-HQ test images at the generators' size)."""
    spec = dict(spec or {})
    first, count = int(spec.get("first", 0)), int(spec.get("count", 16))
    if first < 0 or count < 1:
        raise RtilError(f"{path}: images need first >= 0 and count >= 1; got {spec}")
    if "folder" in spec:
        from rtil.data.folder import find_image_files

        folder = resolve_config_path(spec["folder"], path.resolve().parent)
        files = find_image_files(folder)  # raises for a missing folder or one without images
        if first + count > len(files):
            raise RtilError(f"{path}: {folder} has {len(files)} images, fewer than first + count = {first + count}")
        return {"folder": str(folder), "first": first, "count": count}
    out = {"split": spec.get("split", default_split), "first": first, "count": count}
    if out["split"] not in SPLITS:
        raise RtilError(f"{path}: images need a folder or a split in {SPLITS}; got {spec}")
    return out


def _image_files(spec: dict) -> set[str]:
    """The files (resolved) or digits indices an image range selects, to check that two ranges are disjoint."""
    if "folder" in spec:
        from rtil.data.folder import find_image_files

        files = find_image_files(spec["folder"])[spec["first"]:spec["first"] + spec["count"]]
        return {str(Path(f).resolve()) for f in files}
    return {f"digits-{spec['split']}/{i}" for i in range(spec["first"], spec["first"] + spec["count"])}


def study_images(cfg: dict, which: str, resolution: int, channels: int):
    """The tuning ('tune') or test ('evaluate') images, (N, C, R, R) in [-1, 1], and their names."""
    from rtil.data.digits import digits_test_images, digits_validation_images

    spec = cfg[which]["images"]
    first, count = spec["first"], spec["count"]
    if "folder" in spec:
        from rtil.data.images import load_images

        images, names = load_images(spec["folder"], resolution, channels, first + count)
        return images[first:], names[first:]
    if spec["split"] == "test":
        pool = digits_test_images(resolution, channels)
    else:
        pool = digits_validation_images(cfg["holdout"], resolution, channels)
    if first + count > pool.shape[0]:
        raise RtilError(f"{which}: images {first}..{first + count - 1} of the {spec['split']} split do not exist "
                        f"(it has {pool.shape[0]})")
    return pool[first:first + count], [f"{spec['split']}/{first + i}" for i in range(count)]


def study_device(cfg: dict) -> str:
    """cfg['device']: 'auto' (a GPU when there is one) or a torch device name."""
    import torch

    device = cfg.get("device", "auto")
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def used_generators(cfg: dict) -> list[str]:
    """The generators some comparison needs, in the config's order."""
    used = {g for c in cfg["comparisons"].values() for g in c["baseline"] + c["treatment"]}
    return [g for g in cfg["generators"] if g in used]


def generator_methods(cfg: dict) -> dict[str, list[str]]:
    """generator -> the methods some comparison runs on it."""
    out = {g: [] for g in used_generators(cfg)}
    for c in cfg["comparisons"].values():
        for g in c["baseline"] + c["treatment"]:
            out[g] += [m for m in c["methods"] if m not in out[g]]
    return out


def generator_fingerprint(cfg: dict, name: str) -> str:
    """A hash of everything that determines a trained generator: its training settings (normalised, see
    training_settings), seed and the study's train_kimg (computed when the config is read)."""
    return cfg["generators"][name]["fingerprint"]


def training_settings(train_cfg: dict, changes: dict) -> dict:
    """A training config (parsed) with the study's changes (dotted keys) applied and the model's RTIL setting
    normalised, so that rewording a config (comments, flat or nested `rtil`) does not change the fingerprint of
    the generators it trained."""
    from rtil.training.rtil_settings import normalise_settings

    out = json.loads(json.dumps(train_cfg))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    model = out.get("model") or {}
    kind = {"StyleGAN2Module": "gaussian", "PGGANModule": "dirichlet"}.get(str(model.get("class_path")).split(".")[-1])
    if kind and isinstance(model.get("init_args"), dict):
        model["init_args"] = normalise_settings(model["init_args"], kind)
    return out


def members_per_step(settings: dict) -> int:
    """How many RTIL members a training config trains per step (its cost relative to a vanilla generator)."""
    init = (settings.get("model") or {}).get("init_args") or {}
    rtil = init.get("rtil") or {}
    members = 1 + len(rtil.get("cut_points") or rtil.get("codes_per_member") or [])
    return members if init.get("member_sampling", "all") == "all" else 1


def effective_settings(cfg: dict, method: str, settings: dict, task: str) -> dict:
    """The settings the method's solver really uses for `task` (its per-task entries applied, every field
    present): what keys a tuning run or a cell, so that an entry for another task does not invalidate it."""
    from rtil.inverse.run import make_solver

    out = make_solver(cfg["solvers"][method], settings, task).settings()
    out.pop("method")
    return out


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------------------------------------------
# Stage 1: train


def train_arguments(cfg: dict, name: str) -> list[str]:
    """The train.py arguments of one generator of the study."""
    g, out = cfg["generators"][name], cfg["out"]
    args = ["fit", "--config", g["config"], "--seed_everything", str(g["seed"]), "--data.seed", str(g["seed"]),
            "--model.init_args.seed", str(g["seed"]),
            "--trainer.default_root_dir", str(out / "train"), "--run_name", name, "--wandb", "disabled",
            "--trainer.enable_progress_bar", "false", "--export.path", str(out / "train" / name / "generator.pt")]
    if cfg["train_kimg"] is not None:
        args += ["--model.init_args.total_kimg", str(cfg["train_kimg"])]
        args += ["--checkpoint.every_kimg", str(cfg["train_kimg"] / 2), "--samples.every_kimg", str(cfg["train_kimg"])]
    for key, value in g["set"].items():
        args += [f"--{key}", yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()]
    if (out / "train" / name / "checkpoints" / "last.ckpt").is_file():
        args += ["--ckpt_path", str(out / "train" / name / "checkpoints" / "last.ckpt")]
    return args


def train_done(cfg: dict, name: str) -> bool:
    """Whether the generator is trained; a generator trained with other settings is an error (not reused)."""
    done = cfg["out"] / "train" / name / "done.json"
    if not done.is_file():
        return False
    if json.loads(done.read_text()).get("fingerprint") != generator_fingerprint(cfg, name):
        raise RtilError(f"generator {name!r} in {done.parent} was trained with other settings than the config now "
                        f"gives; delete that folder (and {cfg['out'] / 'generators' / name}.pt) to retrain it")
    return True


def train_one(cfg: dict, name: str) -> None:
    """Train (or resume) one generator in this process; done.json records the wall time of every segment."""
    from rtil.training.cli import main as train_main

    timing = cfg["out"] / "train" / name / "timing.json"
    segments = json.loads(timing.read_text()) if timing.is_file() else []
    t0 = time.perf_counter()
    cli = train_main(train_arguments(cfg, name))
    segments.append({"seconds": time.perf_counter() - t0, "kimg": float(cli.model.kimg)})
    write_json_atomically(timing, segments)
    write_json_atomically(cfg["out"] / "train" / name / "done.json",
                          {"kimg": float(cli.model.kimg), "seconds": sum(s["seconds"] for s in segments),
                           "fingerprint": generator_fingerprint(cfg, name),
                           "segments": segments, "arguments": train_arguments(cfg, name)})


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: export


def export_one(cfg: dict, name: str) -> None:
    """generators/<name>.pt, samples/<name>.png (one row per member) and fdd/<name>.json (FDD per member at every
    checkpoint's kimg)."""
    import tempfile

    from rtil.checkpoints import export_lightning_checkpoint, load_generator
    from rtil.evaluation.digits_fd import member_fdds
    from rtil.evaluation.plots import save_member_grid

    out = cfg["out"]
    checkpoints = out / "train" / name / "checkpoints"
    final = export_lightning_checkpoint(checkpoints / "last.ckpt", out / "generators" / f"{name}.pt")
    G = load_generator(final)
    save_member_grid(G, out / "samples" / f"{name}.png", 8, 0)
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in sorted(checkpoints.glob("kimg*.ckpt")) if cfg["fdd_samples"] > 0 else []:
            path = export_lightning_checkpoint(ckpt, Path(tmp) / "g.pt")
            kimg = float(re.match(r"kimg(\d+(?:\.\d+)?)", ckpt.stem).group(1))
            curve.append({"kimg": kimg, "fdd": member_fdds(load_generator(path), cfg["fdd_samples"])})
    final = member_fdds(G, cfg["fdd_samples"]) if cfg["fdd_samples"] > 0 else None
    write_json_atomically(out / "fdd" / f"{name}.json", {"generator": name, "curve": curve, "final": final,
                                                         "fingerprint": generator_fingerprint(cfg, name)})


# ----------------------------------------------------------------------------------------------------------------
# Stages 3 and 4: tune and evaluate (work items, each one JSON file)


def tune_items(cfg: dict) -> list[dict]:
    items = []
    for g, methods in generator_methods(cfg).items():
        for m in methods:
            for change in cfg["tune"]["grids"].get(m, []):
                settings = {**cfg["methods"][m], **change}
                task = cfg["tune"]["task"]
                key = _key([generator_fingerprint(cfg, g), m, effective_settings(cfg, m, settings, task), task,
                            cfg["tune"]["param"], cfg["tune"]["images"], cfg["evaluate"]["seed"]])
                items.append({"generator": g, "method": m, "change": change, "settings": settings,
                              "path": str(cfg["out"] / "tune" / f"{g}__{m}__{key}.json")})
    return items


def tune_one(cfg: dict, item: dict) -> None:
    from rtil.checkpoints import load_generator
    from rtil.evaluation.metrics import reconstruction_metrics
    from rtil.inverse.run import solve_images

    G = load_generator(cfg["out"] / "generators" / f"{item['generator']}.pt", device=study_device(cfg))
    images, _ = study_images(cfg, "tune", G.resolution, G.img_channels)
    t0 = time.perf_counter()
    task = cfg["tune"]["task"]
    results = solve_images(G, images, cfg["solvers"][item["method"]], task, item["settings"], cfg["evaluate"]["seed"],
                           batch_size=cfg["tune"]["batch_size"], **{TASK_PARAMETER[task]: cfg["tune"]["param"]})
    metrics = reconstruction_metrics(results.reconstructions, images)
    write_json_atomically(Path(item["path"]), {**item, "psnr": metrics["psnr"], "ssim": metrics["ssim"],
                                               "seconds": time.perf_counter() - t0})


def tuned_settings(cfg: dict, generator: str, method: str) -> tuple[dict, dict | None]:
    """The best tuning candidate (highest mean validation PSNR) of `method` on `generator` and its change to the
    common settings; (common settings, None) when the method has no grid."""
    items = [i for i in tune_items(cfg) if i["generator"] == generator and i["method"] == method]
    if not items:
        return cfg["methods"][method], None
    scored = []
    for item in items:
        path = Path(item["path"])
        if not path.is_file():
            raise RtilError(f"tuning result missing: {path} (run the tune stage)")
        psnr = json.loads(path.read_text())["psnr"]
        scored.append((sum(psnr) / len(psnr), item))
    best = max(scored, key=lambda s: s[0])[1]
    return best["settings"], best["change"]


def evaluate_cells(cfg: dict) -> list[dict]:
    """Every evaluation cell: generator x method x settings kind x task x parameter. Cells whose settings coincide
    (tuned = common) share one file; a cell's file name holds a hash of everything that determines it."""
    cells = []
    ev = cfg["evaluate"]
    for cname, c in cfg["comparisons"].items():
        for g in c["baseline"] + c["treatment"]:
            for m in c["methods"]:
                for kind in c["settings"]:
                    settings = tuned_settings(cfg, g, m)[0] if kind == "tuned" else cfg["methods"][m]
                    for task in c["tasks"]:
                        if kind == "common" and m in cfg["tune"]["grids"] and task not in ev["common_tasks"]:
                            continue
                        for param in ev["tasks"][task]:
                            key = _key([generator_fingerprint(cfg, g), m, effective_settings(cfg, m, settings, task),
                                        task, param, ev["images"], ev["seed"]])
                            cells.append({"comparison": cname, "generator": g, "method": m, "kind": kind,
                                          "task": task, "param": param, "settings": settings,
                                          "id": f"{g}__{m}__{task}__{param}__{key}"})
    return cells


def evaluate_one(cfg: dict, cell: dict, lpips_metric=None) -> None:
    from rtil.checkpoints import load_generator
    from rtil.inverse.sweep import solve_cell

    G = load_generator(cfg["out"] / "generators" / f"{cell['generator']}.pt", device=study_device(cfg))
    images, names = study_images(cfg, "evaluate", G.resolution, G.img_channels)
    sweep_cfg = {"methods": {cell["method"]: {**cell["settings"], "method": cfg["solvers"][cell["method"]]}},
                 "seed": cfg["evaluate"]["seed"], "batch_size": cfg["evaluate"]["batch_size"],
                 "models": {cell["generator"]: str(cfg["out"] / "generators" / f"{cell['generator']}.pt")}}
    sweep_cell = {"model": cell["generator"], "method": cell["method"], "task": cell["task"], "param": cell["param"],
                  "id": cell["id"]}
    solve_cell(sweep_cell, G, images, names, sweep_cfg, lpips_metric, cfg["out"])  # writes out/cells/<id>.json, .pt


def _cell_file(cfg: dict, cell: dict) -> Path:
    return cfg["out"] / "cells" / f"{cell['id']}.json"


# ----------------------------------------------------------------------------------------------------------------
# Running the stages


def stage_items(cfg: dict, stage: str) -> list:
    """The stage's unfinished work items (generator names, tuning items or cells)."""
    if stage == "train":  # the costliest first, so that the workers finish together
        return sorted([g for g in used_generators(cfg) if not train_done(cfg, g)],
                      key=lambda g: -cfg["generators"][g]["members_per_step"])
    if stage == "export":
        return [g for g in used_generators(cfg) if not (cfg["out"] / "fdd" / f"{g}.json").is_file()
                or json.loads((cfg["out"] / "fdd" / f"{g}.json").read_text()).get("fingerprint")
                != generator_fingerprint(cfg, g)]
    if stage == "tune":
        return [i for i in tune_items(cfg) if not Path(i["path"]).is_file()]
    if stage == "evaluate":
        unique = {c["id"]: c for c in evaluate_cells(cfg)}
        return [c for c in unique.values() if not _cell_file(cfg, c).is_file()]
    raise RtilError(f"unknown stage {stage!r}")


def item_label(item) -> str:
    return item if isinstance(item, str) else item.get("id") or Path(item["path"]).stem


def run_items(cfg: dict, stage: str, items: list, workers: int = 1) -> None:
    """Run a stage's items in this process. With several workers, each item is claimed first (a claim file
    created atomically), so the workers share the items dynamically whatever each one costs."""
    from tqdm import tqdm

    lpips_metric = None
    if stage == "evaluate":
        from rtil.evaluation.metrics import load_lpips

        lpips_metric = load_lpips(study_device(cfg))
    claims = cfg["out"] / "claims" / stage
    claims.mkdir(parents=True, exist_ok=True)
    for item in tqdm(items, desc=stage, unit="item", disable=workers > 1):
        if workers > 1:
            try:
                os.close(os.open(claims / item_label(item), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue  # another worker has it
        t0 = time.perf_counter()
        if stage == "train":
            train_one(cfg, item)
        elif stage == "export":
            export_one(cfg, item)
        elif stage == "tune":
            tune_one(cfg, item)
        else:
            evaluate_one(cfg, item, lpips_metric)
        if workers > 1:
            print(f"done: {item_label(item)} ({time.perf_counter() - t0:.0f} s)", flush=True)


def run_stage(cfg: dict, stage: str, run_config: Path) -> int:
    """Run one stage's unfinished items (in cfg['jobs'] worker processes when there are several); returns how many
    items it ran."""
    items = stage_items(cfg, stage)
    workers = min(cfg["jobs"], len(items))
    print(f"[{stage}] {len(items)} to do", flush=True)
    if not items:
        return 0
    if workers <= 1:
        run_items(cfg, stage, items)
    else:
        logs = cfg["out"] / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(cfg["out"] / "claims" / stage, ignore_errors=True)  # claims of an interrupted earlier run
        import torch

        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        gpus = torch.cuda.device_count() if study_device(cfg) == "cuda" else 0
        procs = []
        for w in range(workers):
            if gpus:  # one GPU per worker, round robin
                env = {**env, "CUDA_VISIBLE_DEVICES": str(w % gpus)}
            command = [sys.executable, "-m", "rtil", "study", "--config", cfg["path"], "--stage", stage,
                       "--workers", str(workers), "--run-config", str(run_config)]
            log = open(logs / f"{stage}_{w}.log", "a")
            procs.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log))
        print(f"[{stage}] {workers} workers, logs in {logs}/{stage}_*.log", flush=True)
        from tqdm import tqdm

        with tqdm(total=len(items), desc=stage, unit="item") as bar:
            while any(proc.poll() is None for proc, _ in procs):
                time.sleep(5)
                finished = len(items) - len(stage_items(cfg, stage))
                if finished > bar.n:
                    bar.update(finished - bar.n)
        failed = [w for w, (proc, _) in enumerate(procs) if proc.returncode != 0]
        for _, log in procs:
            log.close()
        if failed:
            raise RtilError(f"{stage}: worker(s) {failed} failed; see {logs}/{stage}_<worker>.log "
                            f"(finished items are kept: rerun the study to resume)")
    left = stage_items(cfg, stage)
    if left:
        raise RtilError(f"{stage}: {len(left)} item(s) did not finish")
    return len(items)


def run_study(config_path: str | Path, quick: bool = False, stages: list[str] | None = None) -> dict:
    """Run the study's stages in order, skipping finished work; returns {stage: items run} and the seconds each
    stage took."""
    cfg = read_study_config(config_path, quick)
    cfg["out"].mkdir(parents=True, exist_ok=True)
    run_config = save_run_config(cfg)
    done, seconds = {}, {}
    for stage in stages or STAGES:
        t0 = time.perf_counter()
        if stage == "report":
            from rtil.study_report import write_report

            print("[report] writing", flush=True)
            write_report(cfg)
            done[stage] = 1
        else:
            done[stage] = run_stage(cfg, stage, run_config)
        seconds[stage] = time.perf_counter() - t0
        print(f"[{stage}] {seconds[stage]:.0f} s", flush=True)
        if stage != "report":
            log = cfg["out"] / "stage_seconds.json"
            previous = json.loads(log.read_text()) if log.is_file() else []
            write_json_atomically(log, previous + [{"stage": stage, "items": done[stage], "seconds": seconds[stage],
                                                    "finished": time.strftime("%Y-%m-%d %H:%M:%S")}])
    return {"ran": done, "seconds": seconds}


def read_cells(cfg: dict) -> list[dict]:
    """The evaluation cells with their results (every cell must be finished)."""
    out = []
    for cell in evaluate_cells(cfg):
        path = _cell_file(cfg, cell)
        if not path.is_file():
            raise RtilError(f"evaluation cell missing: {path} (run the evaluate stage)")
        out.append({**cell, "result": json.loads(path.read_text())})
    return out


def write_per_image_csv(cells: list[dict], path: Path) -> list[dict]:
    """One row per (cell, image): what every table of the report is computed from."""
    rows = []
    for c in cells:
        comparison = c["comparison"]
        r = c["result"]
        for i, image in enumerate(r["images"]):
            rows.append({"comparison": comparison, "generator": c["generator"], "method": c["method"],
                         "settings": c["kind"], "task": c["task"], "param": c["param"], "image": image,
                         "measurement_loss": r["measurement_loss"][i],
                         **{m: r["metrics"][m][i] for m in METRICS if m in r["metrics"]}})
    write_csv_atomically(path, rows)
    return rows


def copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)

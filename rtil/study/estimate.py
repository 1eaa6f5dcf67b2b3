"""How long a study will take, printed before its long work starts: a short warm-up measured on this machine,
extrapolated to the config's training length, tuning runs and evaluation cells (an extrapolation, not a promise).

Training: WARMUP_STEPS steps of each arm of the first pair (train.py in a temporary folder, from the same start),
timed by the training's own throughput logging (the first step, with the start-up, left out), times the steps of
each arm's kimg. Solving: each method run twice on one batch of validation images with the treatment's warm-up
generator, its step counts scaled down (every round kept) to about SOLVER_WARMUP_STEPS and to twice that: the
difference gives the time per step, the rest the fixed cost of a run; scaled to the methods' step counts, images
and runs. Tuning counts one sweep of each search plus the cross runs (a line that grows past an edge, or a further
sweep, adds runs); the export stage (sample grids, FID/KID) is left out.
"""

import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rtil.study.config import StudyConfig
from rtil.study.config_reading import generator_data
from rtil.study.stages import study_device, study_images, train_arguments

WARMUP_STEPS = 10  # training steps per arm
SOLVER_WARMUP_STEPS = 10  # solver steps of the shorter of a method's two warm-up runs


def print_estimate(cfg: StudyConfig) -> None:
    """Warm up (see the module docstring) and print the estimate line, or the line saying why there is none."""
    from rtil.checkpoints import load_generator

    why = skip_reason(cfg)
    if why is not None:
        print(f"estimate: skipped: {why}", flush=True)
        return
    pair = first_pair(cfg)
    methods = list(dict.fromkeys(m for c in cfg.comparisons.values() for m in c.methods))
    print(f"[estimate] warm-up: {WARMUP_STEPS} training steps of {' and '.join(pair)}, then {', '.join(methods)} "
          f"for a few steps (in a temporary folder, deleted after)", flush=True)
    with tempfile.TemporaryDirectory(prefix="rtil-estimate-") as tmp:
        step_seconds = {name: warm_up_training(cfg, name, Path(tmp)) for name in pair}
        G = load_generator(Path(tmp) / "train" / pair[1] / "generator.pt", device=study_device(cfg))
        images = study_images(cfg, "tune", G.resolution, G.img_channels)[0][:cfg.tune.batch_size]
        solver_costs = {m: warm_up_solver(cfg, m, G, images) for m in methods}
    print(estimate_line(cfg, step_seconds, solver_costs), flush=True)


def skip_reason(cfg: StudyConfig) -> str | None:
    """Why no estimate is made (None: make one): a study that has started, or one whose training is not longer than
    the warm-up (--quick)."""
    if (cfg.out / "train").is_dir() or (cfg.out / "stage_seconds.json").is_file():
        return f"the study resumes in {cfg.out} (finished work is not redone; the progress bars show what is left)"
    steps = max(run_steps(cfg, name) for name in first_pair(cfg))
    if steps <= WARMUP_STEPS:
        return (f"its warm-up ({WARMUP_STEPS} training steps per arm) would take longer than this run's training "
                f"({steps} step(s) per arm{', --quick' if cfg.quick else ''})")
    return None


def first_pair(cfg: StudyConfig) -> tuple[str, str]:
    comparison = next(iter(cfg.comparisons.values()))
    return comparison.baseline[0], comparison.treatment[0]


def run_steps(cfg: StudyConfig, name: str) -> int:
    """The training steps of one generator: its kimg at its training config's batch size."""
    kimg = cfg.generators[name].total_kimg or cfg.train_kimg
    return math.ceil(kimg * 1000 / batch_size(cfg, name))


def batch_size(cfg: StudyConfig, name: str) -> int:
    return int(generator_data(cfg.generators[name])["batch_size"])


def warm_up_training(cfg: StudyConfig, name: str, folder: Path) -> float:
    """Seconds per training step of generator `name`: WARMUP_STEPS steps in `folder` (its generator file exported
    to folder/train/<name>/generator.pt), timed from the end of the first step to the end of the last."""
    from rtil.training.cli import main as train_main

    batch = batch_size(cfg, name)
    arguments = train_arguments(replace(cfg, out=folder, train_kimg=None), name) + [
        "--model.init_args.total_kimg", str(WARMUP_STEPS * batch / 1000), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--checkpoint.every_kimg", "1e9", "--samples.every_kimg", "1e9",
        "--trainer.log_every_n_steps", "1", "--throughput.every_n_steps", str(WARMUP_STEPS)]
    trainer = train_main(arguments).trainer
    return batch / float(trainer.callback_metrics["speed/img_per_s"])


def warm_up_solver(cfg: StudyConfig, method: str, G, images) -> tuple[float, float]:
    """(fixed seconds per run, seconds per step and image) of `method` at its common settings on `images`."""
    from rtil.inverse.run import make_solver

    solver, task, settings = cfg.methods[method].solver, cfg.tune.task, cfg.methods[method].settings
    full = make_solver(solver, settings, task)
    if "steps" not in full.settings():  # no step counts to scale: one whole run is the fixed cost
        return _timed_solve(cfg, G, images, solver, settings), 0.0
    runs = []
    for target in (SOLVER_WARMUP_STEPS, 2 * SOLVER_WARMUP_STEPS):
        warm = {**settings, "steps": _scaled(full.settings()["steps"], target / full.total_steps)}
        runs.append((make_solver(solver, warm, task).total_steps, _timed_solve(cfg, G, images, solver, warm)))
    (s1, t1), (s2, t2) = runs
    per_step = (t2 - t1) / (s2 - s1) if s2 > s1 and t2 > t1 else t2 / s2  # timing noise: all of it per step
    return max(t1 - per_step * s1, 0.0), per_step / images.shape[0]


def _scaled(steps, factor: float):
    """A step count (or one per round) times factor, at least 1."""
    if isinstance(steps, list):
        return [max(1, round(s * factor)) for s in steps]
    return max(1, round(steps * factor))


def _timed_solve(cfg: StudyConfig, G, images, solver: str, settings: dict) -> float:
    from rtil.inverse.run import TASK_PARAMETER, solve_images

    t0 = time.perf_counter()
    solve_images(G, images, solver, cfg.tune.task, settings, cfg.evaluate.seed, batch_size=images.shape[0],
                 **{TASK_PARAMETER[cfg.tune.task]: cfg.tune.param})
    return time.perf_counter() - t0


def tuning_runs(cfg: StudyConfig) -> dict[str, int]:
    """method -> its tuning runs over the generators: a grid's candidates, one sweep of a search (the start and
    every other point of each axis) and its cross run (the pair partner's choice)."""
    runs = {}
    for g, methods in cfg.generator_methods().items():
        if cfg.generators[g].tune_from is not None:
            continue
        for m in methods:
            n = len(cfg.tune.grids.get(m, []))
            if m in cfg.tune.search:
                n += 1 + sum(len(axis.points) - 1 for axis in cfg.tune.search[m]) + 1
            runs[m] = runs.get(m, 0) + n
    return runs


def evaluation_cells(cfg: StudyConfig) -> dict[str, int]:
    """method -> its evaluation cells (generator x settings kind x task x parameter; a cell two comparisons share
    counts once)."""
    cells = {(g, m, kind, task, param) for c in cfg.comparisons.values() for g in c.generators for m in c.methods
             for kind in c.settings for task in c.tasks for param in cfg.evaluate.tasks[task]}
    return {m: sum(1 for cell in cells if cell[1] == m) for m in dict.fromkeys(cell[1] for cell in cells)}


def estimate_line(cfg: StudyConfig, step_seconds: dict, solver_costs: dict) -> str:
    """The estimate from the warm-up's seconds per training step (baseline and treatment of the first pair) and each
    method's (fixed seconds per run, seconds per step and image)."""
    from rtil.inverse.run import make_solver

    comparison = next(iter(cfg.comparisons.values()))
    (base, treat), labels = first_pair(cfg), comparison.labels
    arm = {name: step_seconds[base if name in {b for c in cfg.comparisons.values() for b in c.baseline} else treat]
           * run_steps(cfg, name) for name in cfg.trained_generators()}

    def run_seconds(method: str, images: int) -> float:
        fixed, per_step_image = solver_costs[method]
        steps = make_solver(cfg.methods[method].solver, cfg.methods[method].settings, cfg.tune.task).total_steps
        return fixed + per_step_image * steps * images

    runs, cells = tuning_runs(cfg), evaluation_cells(cfg)
    tune = sum(n * run_seconds(m, cfg.tune.images.count) for m, n in runs.items()) / cfg.jobs
    evaluate = sum(n * run_seconds(m, cfg.evaluate.images.count) for m, n in cells.items()) / cfg.jobs
    total = sum(arm.values()) / cfg.jobs + tune + evaluate
    return (f"estimated: training ~{_minutes(arm[base])} min ({labels[0]}) and ~{_minutes(arm[treat])} min "
            f"({labels[1]}) per arm, tuning ~{_minutes(tune)} min ({sum(runs.values())} runs), evaluation "
            f"~{_minutes(evaluate)} min ({sum(cells.values())} cells); ~{_minutes(total)} min in all with "
            f"{cfg.jobs} worker(s). An extrapolation from a {WARMUP_STEPS}-step training warm-up of each arm and a "
            f"{SOLVER_WARMUP_STEPS}-step solver warm-up of each method on this machine; tuning counts one sweep of "
            f"each search (a line that grows past an edge, or another sweep, adds runs); export not included")


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.2g}" if minutes < 10 else f"{minutes:.0f}"

"""Running the study: each stage's unfinished items in this process or in `jobs` worker processes (one thread or
one GPU each, claiming items one at a time), then the report; out/stage_seconds.json records every stage run."""

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from rtil.errors import RtilError
from rtil.study.config import StudyConfig, save_run_config
from rtil.study.config_reading import read_study_config
from rtil.study.stages import WORK_STAGES, item_label, log_stage_run, run_item, stage_items, study_device

STAGES = (*WORK_STAGES, "report")


def run_items(cfg: StudyConfig, stage: str, items: list, workers: int = 1) -> None:
    """Run a stage's items in this process. With several workers, each item is claimed first (a claim file
    created atomically, out/claims/<stage>/<item>), so the workers share the items whatever each one costs."""
    from tqdm import tqdm

    lpips_metric = None
    if stage == "evaluate":
        from rtil.evaluation.metrics import load_lpips

        lpips_metric = load_lpips(study_device(cfg))
    claims = cfg.out / "claims" / stage
    claims.mkdir(parents=True, exist_ok=True)
    for item in tqdm(items, desc=stage, unit="item", disable=workers > 1):
        if workers > 1:
            try:
                os.close(os.open(claims / item_label(item), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue  # another worker has it
        t0 = time.perf_counter()
        run_item(cfg, stage, item, lpips_metric)
        if workers > 1:
            print(f"done: {item_label(item)} ({time.perf_counter() - t0:.0f} s)", flush=True)


def run_stage(cfg: StudyConfig, stage: str, run_config: Path) -> int:
    """Run one stage's unfinished items (in cfg.jobs worker processes, logs in out/logs/, when there are several);
    returns how many items it ran. Items that become ready meanwhile (a generator continued from one just trained)
    run in a further round."""
    items = stage_items(cfg, stage)
    print(f"[{stage}] {len(items)} to do", flush=True)
    ran = 0
    while items:
        workers = min(cfg.jobs, len(items))
        if workers <= 1:
            run_items(cfg, stage, items)
        else:
            _run_workers(cfg, stage, run_config, workers, len(items))
        ran += len(items)
        left = stage_items(cfg, stage)
        if {item_label(i) for i in left} & {item_label(i) for i in items}:
            raise RtilError(f"{stage}: {len(left)} item(s) did not finish")
        items = left
        if items:
            print(f"[{stage}] {len(items)} more ready", flush=True)
    return ran


def _run_workers(cfg: StudyConfig, stage: str, run_config: Path, workers: int, total: int) -> None:
    """`python -m rtil study --stage <stage> --run-config ...` in `workers` processes; waits for them all."""
    import torch
    from tqdm import tqdm

    logs = cfg.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(cfg.out / "claims" / stage, ignore_errors=True)  # claims of an interrupted earlier run
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    gpus = torch.cuda.device_count() if study_device(cfg) == "cuda" else 0
    procs = []
    for w in range(workers):
        if gpus:  # one GPU per worker, round robin
            env = {**env, "CUDA_VISIBLE_DEVICES": str(w % gpus)}
        command = [sys.executable, "-m", "rtil", "study", "--config", cfg.path, "--stage", stage,
                   "--workers", str(workers), "--run-config", str(run_config)]
        log = open(logs / f"{stage}_{w}.log", "a")
        procs.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    print(f"[{stage}] {workers} workers, logs in {logs}/{stage}_*.log", flush=True)
    with tqdm(total=total, desc=stage, unit="item") as bar:
        while any(proc.poll() is None for proc, _ in procs):
            time.sleep(5)
            finished = total - len(stage_items(cfg, stage))
            if finished > bar.n:
                bar.update(finished - bar.n)
    failed = [w for w, (proc, _) in enumerate(procs) if proc.returncode != 0]
    for _, log in procs:
        log.close()
    if failed:
        raise RtilError(f"{stage}: worker(s) {failed} failed; see {logs}/{stage}_<worker>.log "
                        f"(finished items are kept: rerun the study to resume)")


def only_comparisons(cfg: StudyConfig, names: list[str]) -> StudyConfig:
    """cfg with only the comparisons named (a config comparison's name covers its snapshot comparisons)."""
    known = set(cfg.comparisons) | {c.group for c in cfg.comparisons.values() if c.group}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RtilError(f"--only: no comparison {unknown[0]!r}; the comparisons are {', '.join(sorted(known))}")
    kept = {n: c for n, c in cfg.comparisons.items() if n in names or c.group in names}
    return replace(cfg, comparisons=kept)


@contextmanager
def study_lock(out: Path):
    """out/study.lock names the one study process working on `out` (host and pid) while it runs: a second one is
    refused, as it would train or evaluate the same items at once. A lock whose process no longer runs on this
    host is taken over."""
    lock, me = out / "study.lock", f"{socket.gethostname()} {os.getpid()}"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = lock.read_text().strip() if lock.is_file() else ""
            if _still_running(owner):
                raise RtilError(f"another study process ({owner or 'unknown'}) is working on {out}: wait for it or "
                                f"stop it (if none runs, delete {lock})") from None
            lock.unlink(missing_ok=True)
    with os.fdopen(fd, "w") as f:
        f.write(me)
    try:
        yield
    finally:
        if lock.is_file() and lock.read_text().strip() == me:
            lock.unlink()


def _still_running(owner: str) -> bool:
    """Whether the process named '<host> <pid>' runs (one on another host is assumed to run)."""
    host, _, pid = owner.rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return bool(owner)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_study(config_path: str | Path, quick: bool = False, stages: list[str] | None = None,
              only: list[str] | None = None, jobs: int | None = None) -> dict:
    """Read the config, then run the stages in order, skipping finished work; returns {"ran": {stage: items run},
    "seconds": {stage: seconds}}. `only`: the work stages do only these comparisons' items (no report); `jobs`:
    the number of worker processes instead of the config's."""
    cfg = read_study_config(config_path, quick)
    if jobs is not None:
        cfg = replace(cfg, jobs=jobs)
    if only is not None:
        cfg = only_comparisons(cfg, only)
        if "report" in (stages or STAGES):
            stages = [s for s in (stages or STAGES) if s != "report"]
            if not stages:
                raise RtilError("--only runs work stages; the report needs every comparison: run it without --only")
    try:
        cfg.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RtilError(f"cannot create the study's out folder {cfg.out}: {e.strerror or e}") from None
    with study_lock(cfg.out):
        run_config = save_run_config(cfg)
        done, seconds = {}, {}
        for stage in stages or STAGES:
            t0 = time.perf_counter()
            if stage == "report":
                from rtil.study.report import write_report

                print("[report] writing", flush=True)
                write_report(cfg)
                done[stage] = 1
            else:
                done[stage] = run_stage(cfg, stage, run_config)
            seconds[stage] = time.perf_counter() - t0
            print(f"[{stage}] {seconds[stage]:.0f} s", flush=True)
            if stage != "report":
                log_stage_run(cfg, stage, done[stage], seconds[stage])
    return {"ran": done, "seconds": seconds}

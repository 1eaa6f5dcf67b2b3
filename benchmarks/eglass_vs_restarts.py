"""Time to N feasible solutions per image: e-GLASS (its initial solve, eigen-decompositions and step search) vs
PULSE-style restarts (one restart per solution), on trained digits generators, super-resolution x4 and box
inpainting.

    python benchmarks/eglass_vs_restarts.py --stylegan2 G.pt --pggan P.pt [--images 4] [--tau 0.01]
        [--solutions 10 20 40] [--out results.json]

Both methods use the same solver and settings: PULSE (configs/invert/pulse.yaml). Restarts, two baselines:
sequential (one restart per call, seeds 0, 1, 2, ...) and batched (--restart-batch restarts per call, every
restart of a call one solution per image: what the restarts solver does when asked for several); each runs
until every image has max(--solutions) feasible solutions (||A G(z) - y||^2 / ||y||^2 <= tau), at most
--max-solves restarts; the time to N is the time of the first call after which every image has N. e-GLASS:
its start is one PULSE solve with one restart and seed 0 (the first sequential restart), solved again with
the next seeds for images whose start is not within tau (at most --start-attempts solves); then N / 2
directions (k = max(8, N / 2)) in both signs. Each e-GLASS run is timed from scratch, start included.
Diversity: the mean pairwise RMS pixel distance between the first N feasible solutions of an image (LPIPS is
not available offline), averaged over images.
"""

import argparse
import time
from pathlib import Path

import torch

from rtil.atomic_files import write_json_atomically
from rtil.checkpoints import load_generator
from rtil.config import read_yaml
from rtil.data.images import load_images
from rtil.inverse.eglass import EGlass, initial_solution, normalised_error
from rtil.inverse.operators import build_operator
from rtil.inverse.run import make_solver

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "invert"
TASKS = {"sr x4": ("sr", {"factor": 4}), "box inpainting": ("inpaint_box", {"ratio": 0.75})}


def diversity(solutions: list[torch.Tensor]) -> float:
    """Mean pairwise RMS distance between the solutions (each (C, H, W)) of one image; nan below two."""
    if len(solutions) < 2:
        return float("nan")
    flat = torch.stack(solutions).flatten(1)
    s = flat.shape[0]
    return float((torch.cdist(flat, flat) / flat.shape[1] ** 0.5).sum() / (s * (s - 1)))


def mean_diversity(kept: list[list[torch.Tensor]], n: int) -> float:
    """Mean over images of the diversity of each image's first n solutions."""
    return sum(diversity(k[:n]) for k in kept) / len(kept)


def pulse_settings() -> dict:
    settings = {k: v for k, v in read_yaml(CONFIGS / "pulse.yaml").items() if k != "method"}
    return {**settings, "restarts": 1}


def restarts(G, operator, y, tau: float, wanted: int, max_solves: int, batch: int) -> dict:
    """PULSE calls of `batch` restarts each (seeds 0, 1, ...; every restart of a call is one solution per
    image) until every image has `wanted` feasible solutions, or max_solves restarts in all."""
    solver = make_solver("pulse", {**pulse_settings(), "restarts": batch})
    b = y.shape[0]
    kept = [[] for _ in range(b)]
    elapsed, times, errors = 0.0, [], []
    t0 = time.perf_counter()
    prepared = solver.prepare(G)
    elapsed += time.perf_counter() - t0
    for seed in range(-(-max_solves // batch)):
        t0 = time.perf_counter()
        images = solver.solve(G, operator, y, seed=seed, **prepared).restart_images  # (batch, B, C, H, W)
        elapsed += time.perf_counter() - t0
        for solutions in images:
            error = normalised_error(operator, solutions, y)
            errors.append(error)
            for i in range(b):
                if error[i] <= tau:
                    kept[i].append(solutions[i])
        times.append((elapsed, min(len(k) for k in kept)))
        if min(len(k) for k in kept) >= wanted:
            break
    errors = torch.stack(errors, dim=1)  # (B, restarts)
    return {"times": times, "kept": kept, "errors": errors, "solves": errors.shape[1],
            "seconds_per_solve": elapsed / errors.shape[1]}


def time_to(times: list[tuple[float, int]], n: int) -> float | None:
    """Seconds until every image had n feasible solutions; None if it never did."""
    return next((t for t, count in times if count >= n), None)


def eglass(G, operator, y, tau: float, n: int, attempts: int) -> dict:
    directions = n // 2
    t0 = time.perf_counter()
    result, space = initial_solution(G, operator, y, "pulse", pulse_settings(), tau=tau, attempts=attempts)
    start_seconds = time.perf_counter() - t0
    e = EGlass(tau=tau, k=max(8, directions), directions=directions).explore(G, operator, y, space, result.latent,
                                                                           result.noises)
    seconds = time.perf_counter() - t0
    kept = [[e.solutions[b, s] for s in range(e.solutions.shape[1]) if e.keep[b, s]] for b in range(y.shape[0])]
    return {"seconds": seconds, "start": start_seconds, "eigen": e.seconds["eigen"],
            "search": e.seconds["total"] - e.seconds["eigen"], "kept": kept, "feasible": e.feasible,
            "errors": e.errors, "start_errors": e.initial_error, "start_seeds": result.info["start_seeds"],
            "eigensolver": e.eigensolver, "perceptual": e.perceptual, "steps": e.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stylegan2", required=True)
    parser.add_argument("--pggan", default=None)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--tau", type=float, default=1e-2)
    parser.add_argument("--solutions", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--max-solves", type=int, default=None, help="default: 1.5 x max(--solutions)")
    parser.add_argument("--start-attempts", type=int, default=3)
    parser.add_argument("--restart-batch", type=int, default=10,
                        help="restarts per PULSE call in the batched baseline (default 10)")
    parser.add_argument("--out", default=None, help="write every number to this JSON file")
    args = parser.parse_args()
    if any(n < 2 or n % 2 for n in args.solutions):
        parser.error("--solutions must be even numbers >= 2 (e-GLASS gives two solutions per direction)")
    wanted = max(args.solutions)
    max_solves = args.max_solves or (3 * wanted) // 2
    print(f"threads {torch.get_num_threads()}, tau {args.tau}, {args.images} test digits per cell, PULSE "
          f"{pulse_settings()}")
    record = []
    for name, path in (("StyleGAN2", args.stylegan2), ("PGGAN", args.pggan)):
        if path is None:
            continue
        G = load_generator(path)
        x, _ = load_images("digits-test", G.resolution, G.img_channels, args.images)
        for task_name, (task, param) in TASKS.items():
            operator = build_operator(task, tuple(x.shape[1:]), x.shape[0], seed=0, **param)
            y = operator.measure(x, generator=torch.Generator().manual_seed(0))
            runs = {}
            for mode, batch in (("sequential", 1), ("batched", args.restart_batch)):
                r = runs[mode] = restarts(G, operator, y, args.tau, wanted, max_solves, batch)
                feasible = int((r["errors"] <= args.tau).sum())
                print(f"{name}, {task_name}, restarts ({mode}, {batch} per call): {r['solves']} restarts x "
                      f"{args.images} images, {r['seconds_per_solve']:.2f} s per restart, {feasible} of "
                      f"{r['errors'].numel()} feasible, errors {float(r['errors'].min()):.1e}.."
                      f"{float(r['errors'].max()):.1e}", flush=True)
            r, rb = runs["sequential"], runs["batched"]
            for n in args.solutions:
                e = eglass(G, operator, y, args.tau, n, args.start_attempts)
                t_restarts, t_batched = time_to(r["times"], n), time_to(rb["times"], n)
                reached = min(len(k) for k in e["kept"]) >= n
                row = {"generator": name, "task": task_name, "solutions": n,
                       "restarts_seconds": t_restarts, "restarts_diversity": mean_diversity(r["kept"], n),
                       "batched_restarts_seconds": t_batched,
                       "batched_restarts_diversity": mean_diversity(rb["kept"], n),
                       "eglass_seconds": e["seconds"], "eglass_start_seconds": e["start"],
                       "eglass_eigen_seconds": e["eigen"], "eglass_search_seconds": e["search"],
                       "eglass_feasible": int(e["feasible"].sum()), "eglass_returned": e["feasible"].numel(),
                       "eglass_reached": reached, "eglass_diversity": mean_diversity(e["kept"], n),
                       "eglass_max_error": float(e["errors"][e["feasible"]].max()) if e["feasible"].any() else None,
                       "eglass_start_errors": e["start_errors"].tolist(), "eglass_start_seeds": e["start_seeds"],
                       "eglass_mean_step": float(e["steps"].mean()), "eigensolver": e["eigensolver"],
                       "image_metric": e["perceptual"]}
                for key, t in (("speedup", t_restarts), ("speedup_batched", t_batched)):
                    row[key] = (t / e["seconds"]) if t is not None and reached else None
                record.append(row)
                speed = " / ".join(f"{row[key]:.1f}x" if row[key] is not None else "n/a (a method fell short)"
                                   for key in ("speedup", "speedup_batched"))
                t_text = " / ".join(f"{t:.1f} s" if t is not None else "not reached"
                                    for t in (t_restarts, t_batched))
                print(f"  N={n}: restarts (sequential / batched) {t_text}, diversity "
                      f"{row['restarts_diversity']:.3f} / {row['batched_restarts_diversity']:.3f} | e-GLASS "
                      f"{e['seconds']:.1f} s (start {e['start']:.1f}, eigen {e['eigen']:.1f}, search "
                      f"{e['search']:.1f}), {row['eglass_feasible']} of {row['eglass_returned']} feasible, "
                      f"diversity {row['eglass_diversity']:.3f}, start errors "
                      f"{', '.join(f'{v:.1e}' for v in row['eglass_start_errors'])} (seeds {e['start_seeds']}), "
                      f"mean step {row['eglass_mean_step']:.2f} | speed-up (sequential / batched) {speed}",
                      flush=True)
            if args.out:
                write_json_atomically(Path(args.out), {"tau": args.tau, "images": args.images, "rows": record})


if __name__ == "__main__":
    main()

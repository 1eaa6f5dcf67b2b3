"""Time to 10 feasible solutions: e-GLASS (initial solve + eigen-decompositions + step search) vs PULSE-style
restarts (10 independent solves), on trained digits generators, super-resolution x4 and box inpainting.

    python benchmarks/eglass_vs_restarts.py --stylegan2 G.pt --pggan P.pt [--images 4] [--tau 0.01]

For each generator and task: seconds to the 10 solutions of each method, how many are feasible
(||A G(z) - y||^2 / ||y||^2 <= tau), their mean normalised measurement error, and their diversity: the mean
pairwise RMS pixel distance between the solutions of an image (LPIPS is not available offline).
Restarts: the PULSE solver (shipped settings, restarts=1) with seeds 0..9. e-GLASS: the initial solution from
the CSGM solver (shipped settings), then 5 directions x 2 signs.
"""

import argparse
import time
from pathlib import Path

import torch

from rtil.checkpoints import load_generator
from rtil.config import read_yaml
from rtil.data.images import load_images
from rtil.inverse.eglass import EGlass, initial_solution, normalised_error
from rtil.inverse.operators import build_operator
from rtil.inverse.run import make_solver

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "invert"
TASKS = {"sr x4": ("sr", {"factor": 4}), "box inpainting": ("inpaint_box", {"ratio": 0.75})}


def diversity(solutions: list[torch.Tensor]) -> float:
    """Mean pairwise RMS distance between the solutions of each image, averaged over images."""
    stack = torch.stack(solutions, dim=1)  # (B, S, C, H, W)
    s = stack.shape[1]
    if s < 2:
        return float("nan")
    flat = stack.flatten(2)
    dist = torch.cdist(flat, flat) / flat.shape[-1] ** 0.5  # (B, S, S)
    return float(dist.sum((1, 2)).mean() / (s * (s - 1)))


def restarts(G, operator, y, tau):
    settings = {k: v for k, v in read_yaml(CONFIGS / "pulse.yaml").items() if k != "method"}
    solver = make_solver("pulse", {**settings, "restarts": 1})
    t0 = time.perf_counter()
    prepared = solver.prepare(G)
    images = [solver.solve(G, operator, y, seed=seed, **prepared).images for seed in range(10)]
    seconds = time.perf_counter() - t0
    errors = torch.stack([normalised_error(operator, x, y) for x in images], dim=1)  # (B, 10)
    feasible = errors <= tau
    kept = [[images[s][b] for s in range(10) if feasible[b, s]] for b in range(y.shape[0])]
    return seconds, feasible, errors, kept


def eglass(G, operator, y, tau):
    settings = {k: v for k, v in read_yaml(CONFIGS / "csgm.yaml").items() if k != "method"}
    t0 = time.perf_counter()
    result, space = initial_solution(G, operator, y, "csgm", settings)
    e = EGlass(tau=tau).explore(G, operator, y, space, result.latent, result.noises)
    seconds = time.perf_counter() - t0
    kept = [[e.solutions[b, s] for s in range(e.solutions.shape[1]) if e.keep[b, s]] for b in range(y.shape[0])]
    return seconds, e.feasible, e.errors, kept, e


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stylegan2", required=True)
    parser.add_argument("--pggan", default=None)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--tau", type=float, default=1e-2)
    args = parser.parse_args()
    print(f"threads {torch.get_num_threads()}, tau {args.tau}, {args.images} test digits per cell")
    for name, path in (("StyleGAN2", args.stylegan2), ("PGGAN", args.pggan)):
        if path is None:
            continue
        G = load_generator(path)
        x, _ = load_images("digits-test", G.resolution, G.img_channels, args.images)
        for task_name, (task, param) in TASKS.items():
            operator = build_operator(task, tuple(x.shape[1:]), x.shape[0], seed=0, **param)
            y = operator.measure(x, generator=torch.Generator().manual_seed(0))
            rows = []
            for method, run in (("restarts", restarts), ("e-GLASS", eglass)):
                seconds, feasible, errors, kept, *extra = run(G, operator, y, args.tau)
                div = sum(diversity(k) if len(k) > 1 else 0.0 for k in kept) / len(kept)
                rows.append((method, seconds, feasible, errors, div, extra))
                note = ""
                if extra:
                    e = extra[0]
                    note = (f" (initial solve {seconds - e.seconds['total']:.1f} s, eigen {e.seconds['eigen']:.1f} s, "
                            f"{e.eigensolver}, H_X {e.perceptual})")
                print(f"{name} {task_name} {method}: {seconds:.1f} s for {feasible.shape[1]} solutions per image x "
                      f"{feasible.shape[0]} images, feasible {int(feasible.sum())}/{feasible.numel()}, mean error "
                      f"{float(errors.mean()):.2e}, diversity (RMS pixel distance) {div:.3f}{note}", flush=True)
            print(f"{name} {task_name}: e-GLASS speed-up {rows[0][1] / rows[1][1]:.1f}x", flush=True)


if __name__ == "__main__":
    main()

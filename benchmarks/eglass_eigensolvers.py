"""Time and agreement of e-GLASS's eigensolvers on one start: dense (exact) against the matrix-free ones.

    python benchmarks/eglass_eigensolvers.py --generator G.pt [--task sr] [--images 4] [--solvers dense subspace]

One CSGM solve (shipped settings, one restart) on test digits gives z0; then e-GLASS (defaults) runs with each
eigensolver from that z0. Printed per solver: seconds for the eigen-decompositions, the largest error of the top-8
H_X and top-16 H_Y eigenvalues relative to the dense top eigenvalue, and the smallest |<d, d_dense>| over the
directions (near-equal eigenvalues make single eigenvectors, and so directions, differ without being wrong).
"""

import argparse

import torch
from eglass_vs_restarts import CONFIGS, TASKS  # this folder is on sys.path when run as a script

from rtil.checkpoints import load_generator
from rtil.config import read_yaml
from rtil.data.images import load_images
from rtil.inverse.eglass import EIGENSOLVERS, EGlass, initial_solution
from rtil.inverse.operators import build_operator


def relative_error(values: torch.Tensor, exact: torch.Tensor, top: int) -> float:
    return float(((values[:, :top] - exact[:, :top]).abs() / exact[:, :1]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--task", choices=sorted(TASKS), default="sr x4")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--solvers", nargs="+", choices=[s for s in EIGENSOLVERS if s != "auto"],
                        default=["dense", "subspace", "lanczos"])
    args = parser.parse_args()
    G = load_generator(args.generator)
    x, _ = load_images("digits-test", G.resolution, G.img_channels, args.images)
    task, param = TASKS[args.task]
    operator = build_operator(task, tuple(x.shape[1:]), x.shape[0], seed=0, **param)
    y = operator.measure(x, generator=torch.Generator().manual_seed(0))
    settings = {k: v for k, v in read_yaml(CONFIGS / "csgm.yaml").items() if k != "method"}
    result, space = initial_solution(G, operator, y, "csgm", {**settings, "restarts": 1})
    print(f"threads {torch.get_num_threads()}, {args.task}, {args.images} images, latent dimension "
          f"{result.latent[0].numel()}")
    runs = {s: EGlass(eigensolver=s).explore(G, operator, y, space, result.latent, result.noises)
            for s in args.solvers}
    exact = runs.get("dense")
    for name, e in runs.items():
        line = f"{name}: eigen {e.seconds['eigen']:.1f} s, feasible {int(e.feasible.sum())}/{e.feasible.numel()}"
        if exact is not None:
            line += (f", top-8 H_X error {relative_error(e.eigenvalues_image, exact.eigenvalues_image, 8):.1e}, "
                     f"top-16 H_Y error "
                     f"{relative_error(e.eigenvalues_measurement, exact.eigenvalues_measurement, 16):.1e}, "
                     f"min |<d, d_dense>| {float((e.directions * exact.directions).sum(-1).abs().min()):.3f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()

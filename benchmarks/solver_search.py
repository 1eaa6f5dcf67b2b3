"""Study: a small search for the solvers' default settings on trained digits generators.

For one method, each candidate setting (the current defaults with one change, see GRIDS, and DENOISE_GRIDS for
--task denoise) reconstructs the same tuning images with every given generator: digits test images 200..215 by
default, disjoint from the first 200 that evaluation sweeps use, measured by 25% compressed sensing (or denoised,
--task denoise). The score is the PSNR against the true image (hyper-parameter tuning on held-out images; inside
each solve the iterate is still chosen by the measurement loss only). One JSON line per (setting, model) goes to
<out>/<method>.jsonl (<method>_denoise.jsonl) as it finishes, so an interrupted search resumes; a table sorted
by the PSNR averaged over the models is printed and written to <out>/<method>.md (<method>_denoise.md).

    python benchmarks/solver_search.py --method ilo --generators vanilla=V.pt rtil=R.pt --out outputs/search
    python benchmarks/solver_search.py --method ilo --task denoise --sigma 0.1 --generators ... --out ...
"""

import argparse
import json
import time
from pathlib import Path

from tqdm import tqdm

from rtil.checkpoints import load_generator
from rtil.data.digits import digits_test_images
from rtil.evaluation.metrics import reconstruction_metrics
from rtil.evaluation.stats import mean_ci
from rtil.inverse.run import SOLVERS, make_solver, solve_images

# Candidate changes to the defaults, one axis at a time (coordinate search around the current defaults).
GRIDS = {
    "ilo": [
        {},
        {"noise_layers": [0, 0, 0]},
        {"noise_layers": [3, 5, 7]},
        {"noise_layers": [7, 7, 7]},  # every map from round 0 on (the former behaviour)
        {"project_range": False},
        {"lr": [0.1, 0.1, 0.1]},  # the paper's 0.1 per layer
        {"l1_radius": [0.1, 0.05]},
        {"latent_l1_radius": [0.05, 0.1], "noise_l1_radius": [0.5, 0.5]},
        {"geocross": 0.1},
        # second stage: the best single change (no range projection) with the next best ones
        {"project_range": False, "lr": [0.1, 0.1, 0.1]},
        {"project_range": False, "latent_l1_radius": [0.05, 0.1], "noise_l1_radius": [0.5, 0.5]},
    ],
    "mganprior": [
        {},
        {"lr": 0.03},
        {"lr": 0.3},
        {"num_codes": 4},
        {"cut_point": 2},
        {"restarts": 1},
        {"cut_point": 2, "num_codes": 4},  # second stage: the two best single changes together
    ],
    "csgm": [
        {},
        {"lr": 0.05},
        {"latent_space": "w+"},
        {"optimize_noises": True},
        {"restarts": 1},
    ],
    "pulse": [
        {},
        {"noise_layers": 0},
        {"noise_layers": 3},
        {"noise_layers": 5},  # PULSE's 5 (of 17 maps at 1024 px)
        {"noise_layers": 7},  # every map (the former behaviour)
    ],
}

# Denoising (--task denoise): ILO's last rounds can fit below the noise level, so the candidates tighten the
# feature balls, drop a round or the finest noise maps, or switch SNA off. Other methods: their defaults only,
# as the reference.
DENOISE_GRIDS = {
    "ilo": [
        {},
        {"l1_radius": [0.1, 0.05]},
        {"l1_radius": [0.2, 0.1]},
        {"l1_radius": [0.3, 0.05]},
        {"l1_radius": [0.15, 0.05]},
        {"cut_points": [0, 1], "steps": [200, 100], "lr": [0.3, 0.05], "noise_layers": [1, 3], "l1_radius": [0.3]},
        {"noise_layers": [1, 3, 3]},
        {"stochastic_noise": 0.0},
    ],
}


def parse_generators(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise SystemExit(f"--generators takes name=path pairs of existing files, got {item!r}")
        out[name] = path
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True, choices=list(SOLVERS))
    p.add_argument("--generators", nargs="+", required=True, help="name=path of exported digits generators")
    p.add_argument("--ratio", type=float, default=0.25, help="compressed-sensing ratio (default 0.25)")
    p.add_argument("--task", default="cs", choices=["cs", "denoise"],
                   help="cs (at --ratio) or denoise (at --sigma); results go to <out>/<method>[_denoise].jsonl")
    p.add_argument("--sigma", type=float, default=0.1, help="denoising noise std in [-1, 1] units (default 0.1)")
    p.add_argument("--first-image", type=int, default=200, help="first digits test image used (default 200)")
    p.add_argument("--num-images", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/solver_search")
    args = p.parse_args()
    generators = parse_generators(args.generators)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.method if args.task == "cs" else f"{args.method}_{args.task}"
    task_parameter = {"ratio": args.ratio} if args.task == "cs" else {"sigma": args.sigma}
    log = out / f"{stem}.jsonl"
    done = {(r["change"], r["model"]): r for r in map(json.loads, log.read_text().splitlines())} \
        if log.is_file() else {}

    grid = GRIDS[args.method] if args.task == "cs" else DENOISE_GRIDS.get(args.method, [{}])
    for change in grid:
        make_solver(args.method, change)  # fail on a bad grid entry before any work
    todo = [(json.dumps(c, sort_keys=True), name) for c in grid for name in generators]
    todo = [key for key in todo if key not in done]
    print(f"{args.method}: {len(grid)} settings x {len(generators)} models, {len(todo)} to run")
    models = {name: load_generator(path) for name, path in generators.items()}
    for change_key, name in tqdm(todo, desc=f"search {args.method}", unit="run"):
        G = models[name]
        images = digits_test_images(G.resolution, G.img_channels)[args.first_image:args.first_image + args.num_images]
        t0 = time.perf_counter()
        results = solve_images(G, images, args.method, args.task, json.loads(change_key), args.seed,
                               batch_size=args.num_images, first_index=args.first_image, **task_parameter)
        seconds = time.perf_counter() - t0
        metrics = reconstruction_metrics(results.reconstructions, images)
        row = {"change": change_key, "model": name, "seconds": seconds, "psnr": metrics["psnr"],
               "ssim": metrics["ssim"], "measurement_loss": results.measurement_loss.tolist(),
               "task": args.task, **task_parameter, "images": [args.first_image, args.first_image + images.shape[0]],
               "seed": args.seed, "solver": results.solver}
        with open(log, "a") as f:
            f.write(json.dumps(row) + "\n")
        done[(change_key, name)] = row

    task = f"compressed sensing ratio {args.ratio}" if args.task == "cs" else f"denoising sigma {args.sigma}"
    lines = [f"Method {args.method}, {task}, digits test images "
             f"{args.first_image}..{args.first_image + args.num_images - 1}, seed {args.seed}; PSNR in dB "
             "(mean and 95% CI over the images), sorted by the PSNR averaged over the models.", "",
             "| change to the defaults | " + " | ".join(f"{n} PSNR | {n} SSIM" for n in generators)
             + " | mean PSNR | s / run |",
             "|---|" + "---|---|" * len(generators) + "---|---|"]
    table = []
    for change in grid:
        key = json.dumps(change, sort_keys=True)
        rows = [done[(key, n)] for n in generators]
        cells = []
        for r in rows:
            psnr = mean_ci(r["psnr"])
            cells.append(f"{psnr.mean:.2f} ± {psnr.half_width:.2f} | {mean_ci(r['ssim']).mean:.3f}")
        average = sum(mean_ci(r["psnr"]).mean for r in rows) / len(rows)
        seconds = sum(r["seconds"] for r in rows) / len(rows)
        table.append((average, f"| {key if change else '(defaults)'} | " + " | ".join(cells)
                      + f" | **{average:.2f}** | {seconds:.0f} |"))
    lines += [line for _, line in sorted(table, key=lambda t: -t[0])]
    text = "\n".join(lines) + "\n"
    (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

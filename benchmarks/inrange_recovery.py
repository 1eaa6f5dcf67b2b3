"""Benchmark: every solver on images the generator itself made, x = G(z*) with its const noise maps.

A perfect answer exists for these images, so a solver that returns something far from x (or farther than
plain CSGM) has a bug, not a weak prior. For each (method, task) cell the solver, with its shipped settings
(configs/invert/<method>.yaml unless --settings-dir says otherwise), reconstructs the same N in-range images
from the same measurements; the PSNR against x is the score. Denoising also reports the noisy input's
PSNR: a solver must beat it. One JSON line per cell goes to <out>/inrange.jsonl as it finishes (reruns skip
finished cells), and the methods x tasks table goes to <out>/inrange.md.

    python benchmarks/inrange_recovery.py --generator G.pt --num-images 32 --out outputs/inrange
"""

import argparse
import json
import time
from pathlib import Path

import torch

from rtil.checkpoints import load_generator
from rtil.evaluation.metrics import psnr, reconstruction_metrics, to_unit_range
from rtil.evaluation.stats import mean_ci
from rtil.inverse.run import load_settings, solve_images

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "invert"
TASKS = {"cs": {"ratio": 0.25}, "inpaint": {"ratio": 0.3}, "sr": {"factor": 2}, "denoise": {"sigma": 0.1}}
TASK_NAMES = {"cs": "CS 25%", "inpaint": "inpaint 30%", "sr": "SR x2", "denoise": "denoise sigma 0.1"}


@torch.no_grad()
def in_range_images(G, num_images: int, seed: int) -> torch.Tensor:
    """x = G(z*) for z* ~ N(0, I) drawn from `seed`, with the generator's const noise maps: (N, C, R, R)."""
    z = torch.randn(num_images, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G(z, noise_mode="const")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True, help="exported generator file")
    p.add_argument("--methods", nargs="+", default=["csgm", "mganprior", "ilo", "pulse"])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--num-images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="seed of z*, the operators, noise and solver starts")
    p.add_argument("--settings-dir", default=str(CONFIGS), help="folder with <method>.yaml solver settings")
    p.add_argument("--cs-ratio", type=float, default=0.25, help="compressed-sensing ratio (default 0.25)")
    p.add_argument("--sr-factor", type=int, default=2, help="super-resolution factor (default 2)")
    p.add_argument("--label", default="", help="a name for this run in the table (e.g. 'before')")
    p.add_argument("--out", default="outputs/inrange")
    args = p.parse_args()
    TASKS.update(cs={"ratio": args.cs_ratio}, sr={"factor": args.sr_factor})
    TASK_NAMES.update(cs=f"CS {args.cs_ratio:.0%}", sr=f"SR x{args.sr_factor}")
    if not Path(args.generator).is_file():
        raise SystemExit(f"no generator file {args.generator}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "inrange.jsonl"
    rows = map(json.loads, log.read_text().splitlines()) if log.is_file() else []
    done = {(r["method"], r["task"]): r for r in rows  # rows of other task parameters are not reused
            if r["parameters"] == TASKS[r["task"]] and r["num_images"] == args.num_images and r["seed"] == args.seed}

    G = load_generator(args.generator)
    images = in_range_images(G, args.num_images, args.seed)
    for method in args.methods:
        settings = load_settings(Path(args.settings_dir) / f"{method}.yaml")
        for task in args.tasks:
            if (method, task) in done:
                continue
            t0 = time.perf_counter()
            results = solve_images(G, images, method, task, settings, args.seed, batch_size=args.batch_size,
                                   progress=True, **TASKS[task])
            seconds = time.perf_counter() - t0
            metrics = reconstruction_metrics(results.reconstructions, images)
            row = {"method": method, "task": task, "parameters": TASKS[task], "psnr": metrics["psnr"],
                   "ssim": metrics["ssim"], "measurement_loss": results.measurement_loss.tolist(),
                   "seconds": seconds, "num_images": args.num_images, "seed": args.seed,
                   "generator": str(args.generator), "solver": results.solver, "label": args.label}
            if task == "denoise":
                row["noisy_input_psnr"] = psnr(to_unit_range(results.measurements), to_unit_range(images)).tolist()
            with open(log, "a") as f:
                f.write(json.dumps(row) + "\n")
            done[(method, task)] = row
            print(f"{method} {task}: {mean_ci(row['psnr']).mean:.2f} dB ({seconds:.0f} s)", flush=True)

    lines = [f"In-range images x = G(z*) ({args.num_images} images, seed {args.seed}, generator {args.generator}"
             f"{', ' + args.label if args.label else ''}): PSNR in dB, mean ± 95% CI half-width.", "",
             "| method | " + " | ".join(TASK_NAMES[t] for t in args.tasks) + " |",
             "|---|" + "---|" * len(args.tasks)]
    for method in args.methods:
        cells = []
        for task in args.tasks:
            ci = mean_ci(done[(method, task)]["psnr"])
            cells.append(f"{ci.mean:.2f} ± {ci.half_width:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    noisy = [r["noisy_input_psnr"] for (m, t), r in done.items() if t == "denoise" and "noisy_input_psnr" in r]
    if noisy:
        lines.append("| (noisy input) | " + " | ".join(
            f"{mean_ci(noisy[0]).mean:.2f}" if t == "denoise" else "" for t in args.tasks) + " |")
    text = "\n".join(lines) + "\n"
    (out / "inrange.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

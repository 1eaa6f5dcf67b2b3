"""Solve inverse problems with a GAN prior and write reconstructions and metrics (`python invert.py`).

    python invert.py sweep --config configs/eval/digits_demo.yaml     # models x methods x tasks x ratios

    python invert.py solve --generator G.pt --method ilo --task cs --ratio 0.25 --images digits-test \\
        --num-images 32 --config configs/invert/ilo.yaml --out outputs/invert/ilo_cs25

Methods: csgm, ilo, mganprior, pulse. Tasks: cs (--ratio, measurement ratio), inpaint (--ratio, observed
pixel fraction), sr (--factor), denoise (--sigma, noise std in [-1, 1] units). --images is a folder of images
of exactly the generator's size and channels, or "digits-test" (the built-in test digits at the generator's
resolution). Solver settings come from --config (YAML), by default the shipped configs/invert/<method>.yaml
(which also holds per-task settings, e.g. ILO's for denoising); --set KEY=VALUE changes one of them.

Writes into --out: reconstructions/<index>.png, grid.png (rows: truth | measurement | reconstruction),
measurements.pt (torch.load(..., weights_only=True)), metrics.json (per-image PSNR / SSIM / LPIPS, means with
95% confidence intervals, metric, operator and solver settings, generator provenance).
--out is never an input, never holds one and never lies inside the --images folder (rtil/inverse/output_folders.py).
A sweep writes into a new or empty folder, or resumes in the folder of a sweep with the same config; it refuses any
other folder (rtil/inverse/sweep.py, check_sweep_folder).
Errors in the input print one line "error: ..." and exit with status 2.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

from rtil.cli_checks import ArgumentParser, Ranged, add_overwrite_argument, check_device, check_output_folder
from rtil.errors import RtilError
from rtil.inverse.output_folders import check_apart_from_inputs

SHIPPED_CONFIGS = Path(__file__).resolve().parent.parent.parent / "configs" / "invert"


RATIO = Ranged(float, 0, 1, open_low=True)
FACTOR = Ranged(int, 1)
SIGMA = Ranged(float, 0)
COUNT = Ranged(int, 1)  # images, batch sizes, threads, attempts, processes
SEED = Ranged(int, 0)


def build_parser() -> argparse.ArgumentParser:
    from rtil.data.images import DIGITS_TEST
    from rtil.inverse.run import SOLVERS, TASKS

    parser = ArgumentParser(prog="python invert.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("solve", help="reconstruct images from simulated measurements")
    p.add_argument("--generator", required=True, help="exported generator file (.pt)")
    p.add_argument("--method", required=True, help=f"one of {', '.join(SOLVERS)}")
    p.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    p.add_argument("--ratio", type=RATIO, help="cs: measurement ratio m/n; inpaint: observed fraction; in (0, 1]")
    p.add_argument("--factor", type=FACTOR, help="sr: down-sampling factor (1, 2, 4, 8 or 16)")
    p.add_argument("--sigma", type=SIGMA, help="denoise: noise standard deviation in [-1, 1] image units")
    p.add_argument("--images", required=True, help=f"a folder of images, or {DIGITS_TEST!r}")
    p.add_argument("--num-images", type=COUNT, default=None, help="use the first N images (default: all)")
    p.add_argument("--batch-size", type=COUNT, default=8, help="images solved at once (default 8)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of operators, noise and random starts (default 0)")
    p.add_argument("--config", default=None,
                   help="solver settings (YAML); default: the shipped configs/invert/<method>.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change one solver setting of the config, the value in YAML (repeatable), e.g. "
                        "--set 'steps=[100, 50, 50]' --set lr=0.1")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=COUNT, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output folder (refused if it holds files, unless --overwrite)")
    add_overwrite_argument(p, "the results in --out")
    p.set_defaults(run=run_solve)

    p = sub.add_parser("explore", help="e-GLASS: many feasible solutions around one, and an uncertainty map")
    p.add_argument("--generator", required=True, help="exported generator file (.pt)")
    p.add_argument("--task", required=True, help=f"one of {', '.join(EXPLORE_TASKS)}")
    p.add_argument("--ratio", type=RATIO, help="cs, inpaint, inpaint_box: the observed fraction, in (0, 1]")
    p.add_argument("--factor", type=FACTOR, help="sr: down-sampling factor")
    p.add_argument("--sigma", type=SIGMA, help="denoise: noise standard deviation in [-1, 1] image units")
    p.add_argument("--images", required=True, help=f"a folder of images, or {DIGITS_TEST!r}")
    p.add_argument("--num-images", type=COUNT, default=4, help="use the first N images (default 4)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of operators, noise and the initial solve (default 0)")
    p.add_argument("--initial", default="csgm", help="solver of the initial solution z0: csgm or pulse")
    p.add_argument("--initial-config", default=None, help="its settings (YAML); default: configs/invert/<it>.yaml")
    p.add_argument("--start-attempts", type=COUNT, default=3,
                   help="solve again, with the next seeds, the images whose initial solution is not within tau "
                        "(no step from it can be feasible): at most this many solves (default 3)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change one e-GLASS setting (rtil/inverse/eglass.py), e.g. --set k=12 --set tau=0.005")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or stage lines")
    p.add_argument("--out", required=True, help="output folder (refused if it holds files, unless --overwrite)")
    add_overwrite_argument(p, "the results in --out")
    p.set_defaults(run=run_explore)

    p = sub.add_parser("sweep", help="models x methods x tasks x parameters from a YAML config (resumable)")
    p.add_argument("--config", required=True, help="sweep config, e.g. configs/eval/digits_demo.yaml")
    p.add_argument("--out", default=None, help="results folder (default: the config's 'out'): a new or empty "
                   "folder, or that of a sweep with the same config, which resumes")
    p.add_argument("--rank", type=SEED, default=None, help="this process's share of the cells (default: $RANK or 0)")
    p.add_argument("--world-size", type=COUNT, default=None, help="number of processes (default: $WORLD_SIZE or 1)")
    p.add_argument("--merge-only", action="store_true", help="only merge the finished cells into tables and plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_sweep_command)
    return parser


EXPLORE_TASKS = ("cs", "inpaint", "inpaint_box", "sr", "denoise")


def run_explore(args) -> None:
    import dataclasses

    from tqdm import tqdm

    from rtil.checkpoints import load_generator
    from rtil.data.images import load_images
    from rtil.evaluation.explore_outputs import write_explore_outputs
    from rtil.evaluation.metrics import load_lpips
    from rtil.inverse.eglass import EGlass, initial_solution
    from rtil.inverse.objectives import LPIPS_MIN_SIZE
    from rtil.inverse.operators import build_operator
    from rtil.inverse.run import load_settings, measurement_view

    overrides = parse_overrides(args.overrides)
    known = {f.name for f in dataclasses.fields(EGlass)}
    if set(overrides) - known:
        raise RtilError(f"unknown e-GLASS setting(s) {sorted(set(overrides) - known)}; known: {sorted(known)}")
    try:
        eglass = EGlass(**overrides)
    except (TypeError, ValueError) as e:
        raise RtilError(f"bad e-GLASS settings ({e})") from None
    if args.task not in EXPLORE_TASKS:
        raise RtilError(f"unknown task {args.task!r}; choose one of {', '.join(EXPLORE_TASKS)}")
    if args.initial not in ("csgm", "pulse"):
        raise RtilError(f"--initial must be csgm or pulse (a solution at cut 0), got {args.initial!r}")
    check_device(args.device)
    config = args.initial_config or SHIPPED_CONFIGS / f"{args.initial}.yaml"
    check_apart_from_inputs(args.out, [args.generator, config], args.images)
    check_output_folder(args.out, args.overwrite, inputs=[args.generator, args.images, config])
    settings = load_settings(config)
    G = load_generator(args.generator, device=args.device)
    images, names = load_images(args.images, G.resolution, G.img_channels, args.num_images)
    images = images.to(args.device)
    operator = build_operator(args.task, tuple(images.shape[1:]), images.shape[0], ratio=args.ratio,
                              factor=args.factor, sigma=args.sigma, seed=args.seed).to(args.device)
    with torch.no_grad():
        y = operator.measure(images, generator=torch.Generator().manual_seed(args.seed))
    lpips = load_lpips(args.device) if G.resolution >= LPIPS_MIN_SIZE else None
    start = time.perf_counter()
    with tqdm(desc=f"initial solution ({args.initial})", unit="step", disable=args.quiet) as bar:
        result, space = initial_solution(G, operator, y, args.initial, settings, seed=args.seed, tau=eglass.tau,
                                         attempts=args.start_attempts, progress=bar.update)
    solve_seconds = time.perf_counter() - start
    report = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    exploration = eglass.explore(G, operator, y, space, result.latent, result.noises, perceptual=lpips,
                                 report=report)
    exploration.seconds["initial_solve"] = solve_seconds
    record = {"generator": str(args.generator), "task": args.task, "operator": operator.describe(),
              "images": args.images, "names": names, "seed": args.seed,
              "initial": {"method": args.initial, "settings": settings, "latent_space": space.name,
                          "seeds": result.info["start_seeds"]}}
    with torch.no_grad():
        views = measurement_view(operator, y)
    write_explore_outputs(Path(args.out), images.cpu(), views.cpu(), names, exploration, record)
    dim, measurements = result.latent[0].numel(), y[0].numel()
    if hasattr(operator, "observed_fraction"):  # masks: the observed pixels, not the zeros, are the measurements
        measurements = round(float(operator.observed_fraction.min()) * images[0].numel())
    if dim <= measurements:
        print(f"note: the latent has {dim} numbers and each image {measurements} measurements, so (generically) no "
              f"latent direction leaves the measurements unchanged: the solutions can move only as far as tau allows",
              file=sys.stderr)
    for name, error in zip(names, exploration.initial_error.tolist(), strict=True):
        if error > eglass.tau:
            print(f"warning: {name}: no initial solution within tau after {args.start_attempts} solve(s) (normalised "
                  f"error {error:.2e} > {eglass.tau:g}); none of its solutions is feasible", file=sys.stderr)
    feasible = int(exploration.feasible.sum())
    print(f"{feasible} of {exploration.feasible.numel()} solutions feasible (tau {eglass.tau:g}); "
          f"H_X from {exploration.perceptual}; wrote {args.out}/grid.png, correlations.png, explore.json")


def run_sweep_command(args) -> None:
    from rtil.evaluation.sweep_tables import merge_sweep
    from rtil.inverse.sweep import check_sweep_folder, read_sweep_config, run_sweep

    cfg = read_sweep_config(args.config)  # the config and the results folder are checked before any work
    out = Path(args.out or cfg["out"])
    ours = check_sweep_folder(out, cfg)  # raises for the user's folder or that of another sweep
    if args.merge_only:
        if not ours:  # merges only the cells of a sweep of this config, in its own folder
            raise RtilError(f"{out} holds no results of a sweep (no sweep_config.json) to merge; run the sweep first")
        merge_sweep(out)
        return
    rank = _process_number("--rank", args.rank, "RANK", 0)
    world_size = _process_number("--world-size", args.world_size, "WORLD_SIZE", 1)
    if not 0 <= rank < world_size or world_size < 1:
        raise RtilError(f"--rank must be in 0..world size - 1 (the world size is the number of processes), got rank "
                        f"{rank} of {world_size}")
    out = run_sweep(args.config, out=out, rank=rank, world_size=world_size, progress=not args.quiet)
    print(f"sweep results: {out} (summary.csv, paired.csv, curves/, grids/)")


def _process_number(option: str, value: int | None, variable: str, default: int) -> int:
    """`value` if given, else the environment variable torchrun sets (or `default` without it)."""
    import os

    if value is not None:
        return value
    text = os.environ.get(variable, str(default))
    try:
        return int(text)
    except ValueError:
        raise RtilError(f"{variable}={text!r} in the environment is not an integer (give {option})") from None


def run_solve(args) -> None:
    from rtil.checkpoints import load_generator
    from rtil.data.images import load_images
    from rtil.evaluation.solve_outputs import write_solve_outputs
    from rtil.inverse.operators import build_operator
    from rtil.inverse.run import TASKS, load_settings, make_solver, solve_images

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shipped = SHIPPED_CONFIGS / f"{args.method}.yaml"
    config = args.config or (shipped if shipped.is_file() else None)
    settings = {**(load_settings(config) if config else {}), **parse_overrides(args.overrides)}
    make_solver(args.method, settings)  # unknown method or bad settings fail before any work
    if args.task not in TASKS:
        raise RtilError(f"unknown task {args.task!r}; choose one of {', '.join(TASKS)}")
    check_device(args.device)
    check_apart_from_inputs(args.out, [args.generator, config], args.images)
    check_output_folder(args.out, args.overwrite, inputs=[args.generator, args.images, config])
    G = load_generator(args.generator, device=args.device)
    image_shape = (G.img_channels, G.resolution, G.resolution)
    build_operator(args.task, image_shape, 1, ratio=args.ratio, factor=args.factor, sigma=args.sigma)  # validates
    images, names = load_images(args.images, G.resolution, G.img_channels, args.num_images)

    from rtil.evaluation.metrics import load_lpips
    from rtil.inverse.objectives import LPIPS_MIN_SIZE

    lpips_note = None
    if G.resolution < LPIPS_MIN_SIZE:
        lpips_metric, lpips_note = None, f"images of {G.resolution} px are smaller than LPIPS needs ({LPIPS_MIN_SIZE})"
    else:
        lpips_metric = load_lpips(args.device)
    start = time.perf_counter()
    results = solve_images(G, images, args.method, args.task, settings, args.seed, ratio=args.ratio,
                           factor=args.factor, sigma=args.sigma, batch_size=args.batch_size,
                           perceptual=lpips_metric, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    out = Path(args.out)
    write_solve_outputs(out, images, names, results, lpips_metric, lpips_note, args, G, elapsed)
    print(f"wrote {len(names)} reconstructions and metrics to {out}")


def parse_overrides(items: list[str]) -> dict:
    """--set KEY=VALUE items as a settings dict (values parsed as YAML: numbers, lists, true/false, null)."""
    import yaml

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RtilError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RtilError(f"--set {item!r}: the value is not valid YAML ({e.problem})") from None
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except RtilError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

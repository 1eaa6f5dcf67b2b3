"""Inversion speed: the cost of an ILO step relative to a plain generator pass, batched versus
one-at-a-time solving, and the compressed-sensing operator at 1024x1024x3.

    python benchmarks/inversion.py                       # digits-scale StyleGAN2 (32x32x1)
    python benchmarks/inversion.py --generator G.pt      # any exported generator

1. ILO step / (generator forward + backward): one ILO round-0 optimisation step (styles through
   the mapping proxy, synthesis, measurement loss, GeoCross, backward, Adam, sphere projection,
   iterate tracking), timed as the difference of a 2N-step and an N-step solve divided by N,
   over one synthesis forward + backward to the styles, at the same batch (target <= 1.3).
   [1b] A whole solve with the default settings, and with the range projection on, per round step in
   the same unit: the range projection is extra work per round, not per step.
2. Batched / sequential throughput: 16 images solved in one batch versus one at a time, same
   ILO settings (target >= 4x).
3. CompressedSensing at 1024x1024x3 (--cs-ratio, default 0.5): build, forward, adjoint time and
   the process's peak resident memory increase.
"""

import argparse
import resource
import time

import torch

from rtil.checkpoints import load_generator
from rtil.config import build_generator
from rtil.data.digits import digits_test_images
from rtil.inverse.ilo import ILO
from rtil.inverse.mapping_proxy import fit_mapping_proxy
from rtil.inverse.operators import CompressedSensing, build_operator

DIGITS_STYLEGAN2 = dict(family="stylegan2", resolution=32, img_channels=1, z_dim=64, w_dim=64, mapping_layers=2,
                        channel_base=2048, channel_max=64)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def ilo_solve(G, images, proxy, steps, seed=0):
    op = build_operator("cs", tuple(images.shape[1:]), images.shape[0], ratio=0.25, seed=seed)
    y = op(images)
    solver = ILO(cut_points=[0, 1, 2], steps=steps, lr=[0.3, 0.05, 0.05], range_steps=steps[1])
    t0 = time.perf_counter()
    solver.solve(G, op, y, seed=seed, proxy=proxy)
    return time.perf_counter() - t0


def step_ratio(G, proxy, batch: int, steps: int) -> tuple[float, float, float]:
    """(ILO step time, generator forward+backward time, their ratio) at `batch`. The step time is
    the difference of two round-0 solves of `steps` and 2 * `steps` steps, divided by `steps`, so
    the one-off set-up (initialisation, final render) cancels."""
    images = digits_test_images(G.resolution, G.img_channels)[:batch] if G.img_channels == 1 else \
        torch.rand(batch, G.img_channels, G.resolution, G.resolution) * 2 - 1
    op = build_operator("cs", tuple(images.shape[1:]), batch, ratio=0.25, seed=0)
    y = op(images)

    def solve(n):
        solver = ILO(cut_points=[0], steps=[n], lr=[0.3], noise_layers=[1], l1_radius=[])
        t0 = time.perf_counter()
        solver.solve(G, op, y, proxy=proxy)
        return time.perf_counter() - t0

    solve(steps)  # warm-up
    t_ilo = (solve(2 * steps) - solve(steps)) / steps

    ws = G.styles(torch.randn(batch, G.z_dim)).detach().clone().requires_grad_(True)
    noises = G.make_noises(batch, "const")

    def fwd_bwd():
        ws.grad = None
        G.synthesize(G.start_state(ws, noises)).square().mean().backward()

    t_g = timed(fwd_bwd, 10)
    return t_ilo, t_g, t_ilo / t_g


def full_solve_ratio(G, proxy, batch: int, t_g: float, solver: ILO) -> tuple[float, float]:
    """(seconds, ratio): one solve with `solver` (every round and range projection) at `batch`, and its time
    per optimisation step of the rounds over one generator forward+backward."""
    images = digits_test_images(G.resolution, G.img_channels)[:batch] if G.img_channels == 1 else \
        torch.rand(batch, G.img_channels, G.resolution, G.resolution) * 2 - 1
    op = build_operator("cs", tuple(images.shape[1:]), batch, ratio=0.25, seed=0)
    t0 = time.perf_counter()
    solver.solve(G, op, op(images), proxy=proxy)
    seconds = time.perf_counter() - t0
    return seconds, seconds / sum(solver.steps) / t_g


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default=None, help="exported generator file (default: a random digits-scale G)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=40, help="ILO round-0 steps timed for the step ratio")
    p.add_argument("--repeats", type=int, default=3, help="runs of the batched vs one-at-a-time comparison")
    p.add_argument("--skip-cs", action="store_true")
    p.add_argument("--cs-ratio", type=float, default=0.5, help="ratio of the 1024x1024x3 CS measurement")
    args = p.parse_args()
    torch.manual_seed(0)
    G = load_generator(args.generator) if args.generator else build_generator(DIGITS_STYLEGAN2).eval()
    G.requires_grad_(False)
    proxy = fit_mapping_proxy(G, 20000, 0)
    print(f"generator: {G.family} {G.resolution}x{G.resolution}x{G.img_channels}, threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}")

    t_ilo, t_g, ratio = step_ratio(G, proxy, args.batch, args.steps)
    print(f"[1] batch {args.batch}: ILO step {t_ilo * 1e3:.1f} ms, generator forward+backward {t_g * 1e3:.1f} ms, "
          f"ratio {ratio:.2f} (target <= 1.3)")
    for solver in (ILO(), ILO(project_range=True)):
        seconds, full = full_solve_ratio(G, proxy, args.batch, t_g, solver)
        print(f"[1b] batch {args.batch}: ILO solve, defaults{' with project_range' * solver.project_range}, "
              f"{seconds:.1f} s ({sum(solver.steps)} round steps, {solver.range_projections} range projection(s) "
              f"of {solver.range_steps} steps): {full:.2f} generator forward+backward per round step")

    images = digits_test_images(G.resolution, G.img_channels)[:16] if G.img_channels == 1 else \
        torch.rand(16, G.img_channels, G.resolution, G.resolution) * 2 - 1
    steps = [20, 10, 10]
    ilo_solve(G, images[:1], proxy, steps)  # warm-up
    speedups = []
    for run in range(args.repeats):
        t_batched = ilo_solve(G, images, proxy, steps)
        t_single = sum(ilo_solve(G, images[i:i + 1], proxy, steps) for i in range(16))
        speedups.append(t_single / t_batched)
        print(f"[2] run {run + 1}/{args.repeats}: 16 images, ILO steps {steps}: batched {t_batched:.1f} s, "
              f"one at a time {t_single:.1f} s, speed-up {speedups[-1]:.1f}x (target >= 4x)")
    if args.repeats > 1:
        print(f"[2] speed-up over {args.repeats} runs: min {min(speedups):.1f}x, median "
              f"{sorted(speedups)[len(speedups) // 2]:.1f}x, max {max(speedups):.1f}x")

    if not args.skip_cs:
        x = torch.rand(1, 3, 1024, 1024) * 2 - 1
        for r in (args.cs_ratio,):  # one ratio per process: the peak-memory reading is process-wide
            base = peak_rss_mb()
            t0 = time.perf_counter()
            op = CompressedSensing((3, 1024, 1024), 1, ratio=r, seed=0)
            t_build = time.perf_counter() - t0
            t_fwd = timed(lambda op=op: op(x), 3)
            y = op(x)
            t_adj = timed(lambda op=op, y=y: op.adjoint(y), 3)
            print(f"[3] CS 1024x1024x3 ratio {r}: build {t_build:.2f} s, forward {t_fwd:.2f} s, adjoint {t_adj:.2f} s,"
                  f" peak memory +{peak_rss_mb() - base:.0f} MB")
            del op, y


if __name__ == "__main__":
    main()

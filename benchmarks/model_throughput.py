"""Forward+backward throughput of one non-saturating G+D training iteration (no regularisers).

    python benchmarks/model_throughput.py --family stylegan2 --resolution 32 --channel-max 512 --batch 8

Prints images/s for the full iteration and for G and D forward+backward alone, plus the achieved
GFLOP/s (FLOPs counted with torch.utils.flop_counter over one iteration).
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from rtil.config import build_generator
from rtil.models import DISCRIMINATORS


def build(args):
    gcfg = dict(family=args.family, resolution=args.resolution, img_channels=args.channels, z_dim=args.z_dim,
                channel_base=args.channel_base, channel_max=args.channel_max)
    if args.family == "stylegan2":
        gcfg.update(w_dim=args.z_dim, mapping_layers=args.mapping_layers)
    G = build_generator(gcfg)
    D = DISCRIMINATORS[args.family](resolution=args.resolution, img_channels=args.channels,
                                    channel_base=args.channel_base, channel_max=args.channel_max)
    return G.train(), D.train()


def train_iteration(G, D, opt_g, opt_d, reals, z_dim):
    b = reals.shape[0]
    # G step: non-saturating loss through D.
    D.requires_grad_(False)
    G.requires_grad_(True)
    loss_g = F.softplus(-D(G(torch.randn(b, z_dim)))).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    # D step: logistic loss on fakes (no G graph) and reals.
    D.requires_grad_(True)
    G.requires_grad_(False)
    with torch.no_grad():
        fakes = G(torch.randn(b, z_dim))
    loss_d = F.softplus(D(fakes)).mean() + F.softplus(-D(reals)).mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="stylegan2", choices=["stylegan2", "pggan"])
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--z-dim", type=int, default=512)
    p.add_argument("--mapping-layers", type=int, default=8)
    p.add_argument("--channel-base", type=int, default=32768)
    p.add_argument("--channel-max", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    G, D = build(args)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    reals = torch.rand(args.batch, args.channels, args.resolution, args.resolution) * 2 - 1

    with FlopCounterMode(display=False) as counter:
        train_iteration(G, D, opt_g, opt_d, reals, args.z_dim)
    flops = counter.get_total_flops()

    t_iter = timed(lambda: train_iteration(G, D, opt_g, opt_d, reals, args.z_dim), args.warmup, args.iters)

    def g_fwd_bwd():
        G.requires_grad_(True)
        G(torch.randn(args.batch, args.z_dim)).square().mean().backward()

    def d_fwd_bwd():
        D.requires_grad_(True)
        D(reals).sum().backward()

    t_g = timed(g_fwd_bwd, 1, args.iters)
    t_d = timed(d_fwd_bwd, 1, args.iters)
    print(f"config: {args.family} {args.resolution}x{args.resolution}x{args.channels}, channel_base "
          f"{args.channel_base}, channel_max {args.channel_max}, z {args.z_dim}, batch {args.batch}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"G+D training iteration: {t_iter:.3f} s/it = {args.batch / t_iter:.3f} img/s, "
          f"{flops / 1e9:.1f} GFLOP/it = {flops / t_iter / 1e9:.1f} GFLOP/s")
    print(f"G forward+backward:     {args.batch / t_g:.3f} img/s")
    print(f"D forward+backward:     {args.batch / t_d:.3f} img/s")


if __name__ == "__main__":
    main()

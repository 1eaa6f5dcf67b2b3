"""Training throughput of the StyleGAN2 RTIL family: images/s and kimg/h per number of extended
members K, through the real Lightning training loop on the built-in digits.

    python benchmarks/train_throughput.py --members 0 2 4 --iterations 12 --warmup 3

Other architecture flags mirror configs/stylegan2_digits.yaml. `--member-sampling one` trains one
member per step instead of all of them.
"""

import argparse
import time
import warnings

import pytorch_lightning as pl
import torch

from rtil.data.datamodule import GanDataModule
from rtil.training import StyleGAN2Module


class Timer(pl.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.t0, self.n0, self.t1, self.n1 = warmup, None, 0, None, 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if int(module.iteration) == self.warmup:
            self.t0, self.n0 = time.perf_counter(), int(module.nimg)
        self.t1, self.n1 = time.perf_counter(), int(module.nimg)


def gaussian_family(members: int) -> dict | None:
    """The RTIL Gaussian family with latents after blocks 1..members (None: vanilla)."""
    return {"kind": "gaussian", "cut_points": list(range(1, members + 1)), "sigma": 1.0} if members else None


def measure(args, k: int) -> float:
    torch.manual_seed(0)
    batch = args.batch
    module = StyleGAN2Module(resolution=args.resolution, img_channels=1, z_dim=args.z_dim, w_dim=args.z_dim,
                             mapping_layers=args.mapping_layers, channel_base=args.channel_base,
                             channel_max=args.channel_max, rtil=gaussian_family(k),
                             member_sampling=args.member_sampling,
                             total_kimg=(args.warmup + args.iterations) * batch / 1000)
    data = GanDataModule(resolution=args.resolution, channels=1, batch_size=batch)
    timer = Timer(args.warmup)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, max_epochs=-1,
                         use_distributed_sampler=False, callbacks=[timer])
    trainer.fit(module, data)
    return (timer.n1 - timer.n0) / (timer.t1 - timer.t0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, nargs="+", default=[0, 2, 4], help="values of K (extended members)")
    p.add_argument("--member-sampling", default="all", choices=["all", "one"])
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--z-dim", type=int, default=64)
    p.add_argument("--mapping-layers", type=int, default=2)
    p.add_argument("--channel-base", type=int, default=2048)
    p.add_argument("--channel-max", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iterations", type=int, default=12, help="timed iterations (after warm-up)")
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    print(f"StyleGAN2 {args.resolution}x{args.resolution}x1, channel_base {args.channel_base}, channel_max "
          f"{args.channel_max}, z {args.z_dim}, batch {args.batch}, member_sampling {args.member_sampling}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    for k in args.members:
        rate = measure(args, k)
        print(f"K={k} ({k + 1} members): {rate:.1f} img/s = {rate * 3.6:.1f} kimg/h")


if __name__ == "__main__":
    main()

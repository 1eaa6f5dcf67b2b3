"""Study: is training one randomly drawn RTIL member per step as good as training all members?

Trains the digits StyleGAN2 RTIL family (configs/stylegan2_digits.yaml architecture) twice with
the same seed and the same number of images, once with member_sampling=all and once with
member_sampling=one, and reports wall time and, per member, the Fréchet digits distance (FDD,
rtil.evaluation.digits_fd; lower is better; train-vs-test digits score about 1.1) of 1,000 EMA
samples against the 297 test digits.

    python benchmarks/member_sampling_study.py --kimg 10 --out outputs/studies/member_sampling
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from rtil.data.datamodule import GanDataModule
from rtil.data.digits import digits_images
from rtil.evaluation.digits_fd import digits_fd
from rtil.training import StyleGAN2Module


@torch.no_grad()
def member_fd(module, num_samples: int = 1000, seed: int = 123) -> list[float]:
    test = digits_images("test", module.G.resolution)
    G, family = module.G_ema.eval(), module.family
    out = []
    for member in range(module.num_members):
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(num_samples, G.z_dim, generator=gen)
        images = family.generate(G, z, member, generator=gen, noise_mode="random") if member else G(z, generator=gen)
        out.append(digits_fd(images, test))
    return out


def train(args, sampling: str) -> dict:
    torch.manual_seed(args.seed)
    module = StyleGAN2Module(resolution=args.resolution, img_channels=1, z_dim=64, w_dim=64, mapping_layers=2,
                             channel_base=args.channel_base, channel_max=args.channel_max,
                             rtil={"kind": "gaussian", "cut_points": list(range(1, args.members + 1)), "sigma": 1.0},
                             member_sampling=sampling,
                             ema_kimg=1.0, total_kimg=args.kimg, seed=args.seed)
    data = GanDataModule(resolution=args.resolution, channels=1, batch_size=args.batch, seed=args.seed)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=True, enable_model_summary=False, max_epochs=-1,
                         use_distributed_sampler=False)
    t0 = time.perf_counter()
    trainer.fit(module, data)
    seconds = time.perf_counter() - t0
    return {"member_sampling": sampling, "kimg": module.kimg, "seconds": seconds, "fdd_per_member": member_fd(module)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kimg", type=float, default=10.0)
    p.add_argument("--members", type=int, default=2, help="K, the number of extended members")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channel-base", type=int, default=2048)
    p.add_argument("--channel-max", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/studies/member_sampling")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    results = [train(args, "all"), train(args, "one")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    for r in results:
        fdd = ", ".join(f"G{i} {v:.2f}" for i, v in enumerate(r["fdd_per_member"]))
        print(f"member_sampling={r['member_sampling']}: {r['kimg']:.1f} kimg in {r['seconds']:.0f} s; FDD {fdd}")


if __name__ == "__main__":
    main()

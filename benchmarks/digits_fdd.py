"""Sample quality of exported digits generators: the Fréchet digits distance (FDD, rtil.evaluation.digits_fd;
lower is better; the training digits score about 1.1 against the test digits) of `--samples` samples per RTIL
member (G0 = the plain generator) against the 297 test digits.

    python benchmarks/digits_fdd.py outputs/study/digits_vanilla.pt outputs/study/digits_rtil.pt
"""

import argparse

import torch

from rtil.checkpoints import build_generator, read_generator_file
from rtil.config import build_family
from rtil.data.digits import digits_images
from rtil.evaluation.digits_fd import digits_fd


@torch.no_grad()
def member_fdds(path: str, num_samples: int, seed: int) -> list[float]:
    record = read_generator_file(path)
    G = build_generator(record).eval()
    family = build_family(record["rtil"])
    test = digits_images("test", G.resolution, G.img_channels)
    out = []
    for member in range(family.num_members if family is not None else 1):
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(num_samples, G.z_dim, generator=gen)
        images = G(z, generator=gen, noise_mode="random") if member == 0 else \
            family.generate(G, z, member, generator=gen, noise_mode="random")
        out.append(digits_fd(images, test))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("generators", nargs="+", help="exported generator files (.pt)")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=123)
    args = p.parse_args()
    for path in args.generators:
        fdds = member_fdds(path, args.samples, args.seed)
        print(f"{path}: " + ", ".join(f"G{k} {v:.2f}" for k, v in enumerate(fdds)))


if __name__ == "__main__":
    main()

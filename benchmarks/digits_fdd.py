"""Sample quality of exported digits generators: the Fréchet digits distance (FDD, rtil.evaluation.digits_fd;
lower is better; the training digits score about 1.1 against the test digits) of `--samples` samples per RTIL
member (G0 = the plain generator) against the 297 test digits.

    python benchmarks/digits_fdd.py outputs/study/digits_vanilla.pt outputs/study/digits_rtil.pt
"""

import argparse

from rtil.checkpoints import load_generator
from rtil.evaluation.digits_fd import member_fdds


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("generators", nargs="+", help="exported generator files (.pt)")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=123)
    args = p.parse_args()
    for path in args.generators:
        fdds = member_fdds(load_generator(path), args.samples, args.seed)
        print(f"{path}: " + ", ".join(f"G{k} {v:.2f}" for k, v in enumerate(fdds)))


if __name__ == "__main__":
    main()

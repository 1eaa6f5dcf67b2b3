"""Where a study's tuning searches stand, from its finished tuning runs (out/tune/*.json), as a markdown table: per
generator and searched method, the candidates scored, the best so far with its change to the common settings, the
common settings' PSNR, and how many candidates are pending. Reads only; runs no solver.

    python benchmarks/study_tuning_status.py --config configs/study/digits_long.yaml \
        --only stylegan2_length_160kimg,stylegan2_same_start
"""

import argparse

from rtil.study.cells import search_state, searched_base
from rtil.study.config_reading import read_study_config
from rtil.study.runner import only_comparisons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--only", default=None, help="comma-separated comparisons (as `python -m rtil study --only`)")
    args = parser.parse_args()
    cfg = read_study_config(args.config)
    if args.only:
        cfg = only_comparisons(cfg, args.only.split(","))
    print(f"Validation: {cfg.tune.images.count} images, {cfg.tune.task} {cfg.tune.param}; mean PSNR in dB.\n")
    print("| generator | method | scored | pending | best so far | its change to the common settings | common |")
    print("|---|---|---|---|---|---|---|")
    for generator, methods in cfg.generator_methods().items():
        for method in methods:
            if method not in cfg.tune.search:
                continue
            state = search_state(cfg, generator, method)
            base = searched_base(cfg, method)
            scored = dict((repr(s), v) for s, v in state.scored)
            if not state.scored:
                print(f"| {generator} | {method} | 0 | {len(state.pending)} | | | |")
                continue
            best, value = max(state.scored, key=lambda sv: sv[1])
            change = {k: v for k, v in best.items() if base.get(k) != v}
            common = scored.get(repr(base))
            print(f"| {generator} | {method} | {len(state.scored)} | {len(state.pending)} | {value:.2f} | "
                  f"{change or '(common)'} | {'' if common is None else f'{common:.2f}'} |")


if __name__ == "__main__":
    main()

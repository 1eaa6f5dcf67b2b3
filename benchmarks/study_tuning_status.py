"""Where a study's tuning searches stand, from its finished tuning runs (out/tune/*.json), as a markdown table: per
generator and searched method, the candidates scored, the best so far with its change to the common settings, the
common settings' PSNR, and how many candidates are pending; each searched generator with its pair partner's choice;
each exported generator's FDD per member, and each trained one's at its checkpoints; then the interim verdicts: per
comparison, every test cell (method, settings, task) that all its generators have finished, with the report's paired
statistics (treatment - baseline, pooled over the pairs, 95% CI). Reads only; runs no solver.

    python benchmarks/study_tuning_status.py --config configs/study/digits_long.yaml \
        --only stylegan2_length_160kimg,stylegan2_same_start
"""

import argparse
import json
from dataclasses import replace

from rtil.study.cells import (
    cell_done,
    cell_file,
    cross_items,
    evaluate_cells,
    per_image_rows,
    search_state,
    searched_base,
    tune_done,
    tune_mean_psnr,
)
from rtil.study.config_reading import read_study_config
from rtil.study.report_stats import cell_name, cell_statistics, fmt_ci, fmt_diff
from rtil.study.runner import only_comparisons
from rtil.study.stages import export_record, fdd_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--only", default=None, help="comma-separated comparisons (as `python -m rtil study --only`)")
    parser.add_argument("--candidates", default=None, metavar="METHOD",
                        help="instead of the tables: every scored candidate of METHOD's search, per generator")
    args = parser.parse_args()
    cfg = read_study_config(args.config)
    if args.only:
        cfg = only_comparisons(cfg, args.only.split(","))
    if args.candidates:
        print_candidates(cfg, args.candidates)
        return
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
    print_robustness(cfg)
    print_sample_quality(cfg)
    print_fdd_curves(cfg)
    print_interim_verdicts(cfg)


def print_candidates(cfg, method: str) -> None:
    """Every scored candidate of a method's search on each generator: its change to the common settings and its
    validation PSNR, best first."""
    base = searched_base(cfg, method)
    print("| generator | validation PSNR | change to the common settings |")
    print("|---|---|---|")
    for generator, methods in cfg.generator_methods().items():
        if method in methods and method in cfg.tune.search:
            for settings, value in sorted(search_state(cfg, generator, method).scored, key=lambda sv: -sv[1]):
                change = {k: v for k, v in settings.items() if base.get(k) != v}
                print(f"| {generator} | {value:.2f} | {change or '(common)'} |")


def print_robustness(cfg) -> None:
    """Each generator whose pair's searches have finished, run with its partner's chosen settings."""
    print("\nRobustness: each generator with its pair partner's choice (validation PSNR, dB).\n")
    print("| generator | method | its own choice | partner's choice | loss |")
    print("|---|---|---|---|---|")
    for item in cross_items(cfg):
        own = search_state(cfg, item["generator"], item["method"])
        best = max(v for _, v in own.scored)
        if tune_done(item):
            other = tune_mean_psnr(item)
            print(f"| {item['generator']} | {item['method']} | {best:.2f} | {other:.2f} | {best - other:.2f} |")
        else:
            print(f"| {item['generator']} | {item['method']} | {best:.2f} | pending | |")


def print_sample_quality(cfg) -> None:
    """Each exported generator's digits Fréchet distance per member (G0 first) at its end (out/fdd/<name>.json)."""
    print("\nSample quality: FDD per member (G0, G1, ...) of each exported generator (lower is better).\n")
    print("| generator | FDD per member |")
    print("|---|---|")
    for generator in cfg.generator_methods():
        final = export_record(cfg, generator).get("final") if fdd_file(cfg, generator).is_file() else None
        print(f"| {generator} | {', '.join(f'{v:.2f}' for v in final) if final else 'not exported yet'} |")


def print_fdd_curves(cfg) -> None:
    """Each trained generator's FDD per member at its checkpoints (out/fdd/<name>.json 'curve'), for the pilots."""
    rows = []
    for generator in cfg.trained_generators():
        curve = export_record(cfg, generator).get("curve") if fdd_file(cfg, generator).is_file() else None
        if curve:
            points = "; ".join(f"{p['kimg']:g}: {' / '.join(f'{v:.2f}' for v in p['fdd'])}" for p in curve)
            rows.append(f"| {generator} | {points} |")
    if rows:
        print("\nFDD per member (G0 / G1 / ...) at each checkpoint of the trained generators (kimg: FDD).\n")
        print("| generator | kimg: FDD per member |")
        print("|---|---|")
        print("\n".join(rows))


def tuned_methods(cfg, comparison) -> list[str]:
    """The comparison's methods whose tuning (if searched) has finished on every one of its generators."""
    return [m for m in comparison.methods if m not in cfg.tune.search
            or all(search_state(cfg, g, m).finished for g in comparison.generators)]


def print_interim_verdicts(cfg) -> None:
    """Per comparison, the finished test cells' pooled statistics (cells some generator lacks are left out)."""
    cfg = replace(cfg, comparisons={name: replace(c, methods=tuned_methods(cfg, c))
                                    for name, c in cfg.comparisons.items()})
    cells = [{**c, "result": json.loads(cell_file(cfg, c).read_text())} for c in evaluate_cells(cfg)
             if cell_done(cfg, c)]
    print(f"\nInterim test verdicts: {cfg.evaluate.images.count} test images per cell; PSNR in dB; treatment - "
          f"baseline pooled over the pairs with its 95% CI.")
    for name, comparison in cfg.comparisons.items():
        rows = per_image_rows([c for c in cells if c["comparison"] == name])
        complete = {key for key in {(r["method"], r["settings"], r["task"], r["param"]) for r in rows}
                    if {r["generator"] for r in rows if (r["method"], r["settings"], r["task"], r["param"]) == key}
                    == set(comparison.generators)}
        rows = [r for r in rows if (r["method"], r["settings"], r["task"], r["param"]) in complete]
        print(f"\n{comparison.title} ({', '.join(comparison.labels)}):\n")
        if not rows:
            print("no cell finished for every generator yet")
            continue
        print(f"| method | settings | task | {comparison.labels[0]} | {comparison.labels[1]} | difference | verdict |")
        print("|---|---|---|---|---|---|---|")
        for entry in cell_statistics(rows, comparison):
            psnr = entry["pooled"]["psnr"]
            print(f"| {entry['method']} | {entry['settings']} | {cell_name(entry['task'], entry['param'])} | "
                  f"{fmt_ci(psnr['baseline'])} | {fmt_ci(psnr['treatment'])} | {fmt_diff(psnr['difference'])} | "
                  f"{entry['verdict']} |")


if __name__ == "__main__":
    main()

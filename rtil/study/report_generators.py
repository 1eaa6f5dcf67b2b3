"""Parts of the report about the generators and the study's cost: training time and sample quality (FDD against
kimg, FID and KID per member, sample grids), whether each comparison's G0s sample equally well, and the wall time per
stage."""

import json
import math
import shutil
import statistics
from pathlib import Path

from rtil.atomic_files import save_figure_atomically, write_json_atomically
from rtil.study.cells import read_cells, tune_items, tune_result
from rtil.study.config import StudyConfig
from rtil.study.config_reading import trains_on_digits
from rtil.study.snapshots import train_record
from rtil.study.stages import WORK_STAGES, export_generators, export_record, samples_file, stage_log, timed_kimg

FDD_SEEDS = (123, 124, 125)


def g0_fdd(cfg: StudyConfig, name: str) -> list[float]:
    """FDD of the final G0 for three independent sample draws (cached in fdd/<name>_g0_draws.json): how much the
    FDD moves with the samples alone."""
    from rtil.checkpoints import load_generator
    from rtil.evaluation.digits_fd import member_fdds

    path = cfg.out / "fdd" / f"{name}_g0_draws.json"
    if path.is_file():
        return json.loads(path.read_text())
    G = load_generator(cfg.generator_file(name))
    G.rtil = None  # G0 only
    values = [member_fdds(G, cfg.fdd_samples, seed)[0] for seed in FDD_SEEDS]
    write_json_atomically(path, values)
    return values


def g0_quality(cfg: StudyConfig) -> list[str]:
    """A plain statement per comparison: are the baseline's and treatment's G0 equally good samplers?"""
    if cfg.fdd_samples <= 0:
        return []
    lines = []
    for comparison in cfg.comparisons.values():
        label_b, label_t = comparison.labels
        draws = {g: g0_fdd(cfg, g) for g in comparison.generators}
        base = [statistics.mean(draws[g]) for g in comparison.baseline]
        treat = [statistics.mean(draws[g]) for g in comparison.treatment]
        noise = 2 * max(statistics.stdev(v) for v in draws.values())
        if max(treat) < min(base) - noise:
            word = f"better (lower FDD) than the {label_b} G0"
        elif min(treat) > max(base) + noise:
            word = (f"worse (higher FDD) than the {label_b} G0, so the inversion results also compare generators of "
                    f"different sample quality")
        else:
            word = f"within noise of the {label_b} G0"
        lines.append(f"- {comparison.title}: G0 sample quality (FDD, mean of {len(FDD_SEEDS)} draws of "
                     f"{cfg.fdd_samples} samples) {label_b} " + ", ".join(f"{v:.2f}" for v in base)
                     + f"; {label_t} " + ", ".join(f"{v:.2f}" for v in treat)
                     + f" (two standard deviations over draws: {noise:.2f}): the {label_t} G0 is {word}.")
    return lines


def stage_times(cfg: StudyConfig) -> list[str]:
    """The wall-time table: every run of each stage, and what a fresh run of this config would take."""
    entries = stage_log(cfg)
    if not entries:
        return []
    work = _item_seconds(cfg, entries)
    lines = ["## Wall time per stage", "",
             f"On the machine that ran the study, with {cfg.jobs} worker process(es). 'Wall time' sums every run "
             "of the stage (a resumed or extended study runs a stage more than once, and items of earlier configs "
             "count too); 'items of this config' sums the time each of the current config's items took, divided "
             "by the number of workers (export: its last run over every generator): what a fresh run of this "
             "config would take.", "",
             "| stage | items run | wall time | items of this config | their time / workers |", "|---|---|---|---|---|"]
    # a fresh run's time per stage: the items' time shared by the workers (export: one run's wall time; nan when no
    # export run over every generator was recorded)
    fresh = {stage: seconds / (1 if stage == "export" else cfg.jobs) for stage, (_, seconds) in work.items()}
    for stage in WORK_STAGES:
        mine = [e for e in entries if e["stage"] == stage]
        if mine:
            shown = ("not recorded (no export run over every generator)" if math.isnan(fresh[stage])
                     else f"{fresh[stage] / 60:.1f} min")
            lines.append(f"| {stage} | {sum(e['items'] for e in mine)} | {sum(e['seconds'] for e in mine) / 60:.1f} min"
                         f" | {work[stage][0]} | {shown} |")
    known = [seconds for seconds in fresh.values() if not math.isnan(seconds)]
    missing = " and export" if len(known) < len(fresh) else ""
    return lines + [f"| all (without the report{missing}) | | | | **{sum(known) / 60:.1f} min** |", ""]


def _item_seconds(cfg: StudyConfig, entries: list[dict]) -> dict[str, tuple[int, float]]:
    """{stage: (items, seconds)} of the current config: the summed time of its train, tune and evaluate items as
    each item recorded it (training segments, tuning runs, cells), and the last export run over every generator
    in `entries` (stage_seconds.json)."""
    train = [train_record(cfg, g)["seconds"] for g in cfg.trained_generators()]
    tune = [tune_result(i)["seconds"] for i in tune_items(cfg)]
    generators = len(export_generators(cfg))
    exports = [e["seconds"] for e in entries if e["stage"] == "export" and e["items"] == generators]
    cells = {c["id"]: c for c in read_cells(cfg)}  # cells whose settings coincide share one file
    evaluate = [c["result"]["seconds"] for c in cells.values()]
    return {"train": (len(train), sum(train)), "export": (generators, exports[-1] if exports else float("nan")),
            "tune": (len(tune), sum(tune)), "evaluate": (len(cells), sum(evaluate))}


def trained_run(cfg: StudyConfig, generator: str) -> tuple[str, float]:
    """(the trained generator behind a generator, the kimg its own clock starts at): a snapshot's source from 0, a
    trained generator itself from the kimg it continued (init_from; 0 for one trained from scratch)."""
    g = cfg.generators[generator]
    if g.source is not None:
        return g.source, 0.0
    return generator, (g.init_from or {}).get("kimg", 0.0)


def training(cfg: StudyConfig, figures: Path, stem: str, base: Path) -> list[str]:
    """The generators section: a table of training cost and final FDD, FDD against kimg (trained generators; a
    continued one from its start), the sample grids (every generator the comparisons use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    digits = trains_on_digits(cfg.generators)
    records = {name: export_record(cfg, name) for name in cfg.trained_generators()}
    fid = not digits or any("fid_kid" in r for r in records.values())  # a digits study shows FID only if computed
    notes = []
    if digits and cfg.fdd_samples > 0:
        notes.append(f"FDD: Fréchet digits distance of {cfg.fdd_samples:,} samples per member against the test "
                     f"digits; lower is better; train vs test digits score about 1.1")
    elif digits:
        notes.append("FDD: not computed, fdd_samples is 0")
    if fid:
        notes.append(fid_kid_note(cfg, records.values()))
    lines = ["## Generators", "", f"Training cost and sample quality ({'; '.join(notes)}).", "",
             "| generator | seed | kimg | wall time | s / kimg | "
             + ("FDD per member (G0, G1, ...) at the end |" if digits else "")
             + ("FID / KID per member (G0, G1, ...) at the end |" if fid else ""),
             "|---|---|---|---|---|" + "---|" * (int(digits) + int(fid))]
    fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=150)
    for name in cfg.trained_generators():
        done = train_record(cfg, name)
        fdd = records[name]
        start = cfg.generators[name].init_from
        label = (name if not start else f"{name} (from {Path(start['file']).name})" if "file" in start
                 else f"{name} (from {start['generator']} at {start['kimg']:g} kimg)")
        timed = timed_kimg(done)
        untimed = f" ({timed:g} of its kimg timed)" if timed < done["kimg"] - 1e-6 else ""
        lines.append(f"| {label} | {cfg.generators[name].seed} | {done['kimg']:.1f} | {done['seconds'] / 60:.1f} "
                     f"min{untimed} | {done['seconds'] / max(timed, 1e-9):.0f} | "
                     + ((", ".join(f"{v:.2f}" for v in fdd["final"]) if fdd["final"] else "not computed") + " |"
                        if digits else "")
                     + (f"{fid_kid_cell(fdd.get('fid_kid'))} |" if fid else ""))
        curve, (_, start) = fdd["curve"], trained_run(cfg, name)
        if curve:
            for member in range(len(curve[0]["fdd"])):
                ax.plot([start + c["kimg"] for c in curve], [c["fdd"][member] for c in curve], marker=".",
                        linestyle="-" if member == 0 else "--", label=f"{name} G{member}")
    for name in cfg.used_generators():
        copy = figures / f"{stem}_samples_{name}.png"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(samples_file(cfg, name), copy)
    lines += ["", "Wall time is of the whole training process on the study machine (the workers share its CPU); "
              "s / kimg is over the kimg its recorded segments trained (a segment killed before it could record its "
              "time is left out, and the row says so).", ""]
    if digits:
        lines += _fdd_figure(fig, ax, figures, stem, base)
    plt.close(fig)
    lines += ["Samples (one row per member, the same latents in every row):", ""]
    for name in cfg.used_generators():
        lines += [f"- {name}: ![{name}]({(figures / f'{stem}_samples_{name}.png').relative_to(base)})"]
    return lines + [""]


def fid_kid_cell(record: dict | None) -> str:
    """A generator's FID / KID per member (an export record's 'fid_kid'), or why there are none."""
    if not record:
        return "not computed"
    if "unavailable" in record:
        return "unavailable"
    return ", ".join(f"{m['fid']:.2f} / {m['kid_mean']:.4f}" for m in record["members"])


def fid_kid_note(cfg: StudyConfig, records) -> str:
    """What the FID / KID column holds: the images compared and the features, or why it is empty."""
    quality = [r["fid_kid"] for r in records if r.get("fid_kid")]
    computed = [q for q in quality if "unavailable" not in q]
    reasons = list(dict.fromkeys(q["unavailable"] for q in quality if "unavailable" in q))
    parts = []
    if computed:
        q, images = computed[0], computed[0]["real_images"]
        source = images.get("folder") or f"the digits {images.get('split')} split"
        subsets = sorted({m["kid_subset_size"] for c in computed for m in c["members"]})
        parts.append(f"FID, KID: {q['num_generated']:,} generated images per member against the study's "
                     f"{q['num_real']} test images ({source}, from image {images['first']}), in the features of "
                     f"torch-fidelity's FID Inception-v3 (SHA-256 checked); lower is better; KID is the mean over "
                     f"subsets of {', '.join(map(str, subsets))} images; with so few real images FID is biased "
                     f"upwards, so compare generators only at these same counts")
    if reasons:
        parts.append("FID, KID: unavailable: " + "; ".join(reasons) + "; rerun the study once the weights are there "
                     "(its export stage then computes them)")
    if not quality:
        parts.append("FID, KID: not computed, fid_samples is 0")
    if not trains_on_digits(cfg.generators):
        parts.append("the Fréchet digits distance is for the built-in digits only")
    return "; ".join(parts)


def _fdd_figure(fig, ax, figures: Path, stem: str, base: Path) -> list[str]:
    """Save the FDD-against-kimg figure; its lines for the report."""
    ax.set_xlabel("kimg")
    ax.set_ylabel("FDD")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:  # no curve without FDD records
        ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    save_figure_atomically(fig, figures / f"{stem}_fdd.png")
    return [f"![FDD against kimg]({(figures / f'{stem}_fdd.png').relative_to(base)})", ""]

"""The study's work stages, each a list of items to do and a function that does one item:

- train     every generator a comparison names, with train.py (resumed from its last checkpoint);
- export    its generator file, a sample grid per RTIL member, the Fréchet digits distance (FDD) of every
            member at every checkpoint (digits studies) and every member's FID and KID against the test images
            (fid_samples > 0: studies on other data by default);
- tune      each method's candidate settings on the validation images, per generator;
- evaluate  every comparison's generators x methods x settings x task cells on the test images (paired: the same
            images, operators, noise and starts for every generator).

Items finished earlier are not listed again: an interrupted stage resumes, a finished one does nothing."""

import json
import time
from pathlib import Path

import yaml

from rtil.errors import RtilError
from rtil.study.cells import cell_done, evaluate_cells, tune_done, tune_items, write_tune_result
from rtil.study.config import StudyConfig
from rtil.study.config_arms import init_file_changed
from rtil.study.snapshots import checkpoint_at, checkpoint_folder, final_checkpoint, kimg_checkpoints, train_done

WORK_STAGES = ("train", "export", "tune", "evaluate")


def study_device(cfg: StudyConfig) -> str:
    """cfg.device: 'auto' (a GPU when there is one) or a torch device name."""
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device


def study_images(cfg: StudyConfig, which: str, resolution: int, channels: int):
    """The tuning ('tune') or test ('evaluate') images, (N, C, R, R) in [-1, 1], and their names."""
    from rtil.data.digits import digits_test_images, digits_validation_images

    spec = (cfg.tune if which == "tune" else cfg.evaluate).images
    first, count = spec.first, spec.count
    if spec.folder is not None:
        from rtil.data.images import load_images

        images, names = load_images(spec.folder, resolution, channels, first + count)
        return images[first:], names[first:]
    if spec.split == "test":
        pool = digits_test_images(resolution, channels)
    else:
        pool = digits_validation_images(cfg.holdout, resolution, channels)
    if first + count > pool.shape[0]:
        raise RtilError(f"{which}: images {first}..{first + count - 1} of the {spec.split} split do not exist "
                        f"(it has {pool.shape[0]})")
    return pool[first:first + count], [f"{spec.split}/{first + i}" for i in range(count)]


# ----------------------------------------------------------------------------------------------------------------
# train: out/train/<name>/ (checkpoints, timing.json, done.json)


def train_arguments(cfg: StudyConfig, name: str) -> list[str]:
    """The train.py arguments of one generator of the study (a continued generator: --init_from the checkpoint it
    starts from, until it has its own last.ckpt to resume from). Training shows its kimg progress bar when the study
    trains in its own process (jobs 1), not in workers' log files."""
    g, out = cfg.generators[name], cfg.out
    args = ["fit", "--config", g.config, "--seed_everything", str(g.seed), "--data.seed", str(g.seed),
            "--model.init_args.seed", str(g.seed),
            "--trainer.default_root_dir", str(out / "train"), "--run_name", name, "--wandb", "disabled",
            "--trainer.enable_progress_bar", "true" if cfg.jobs == 1 else "false",
            "--export.path", str(out / "train" / name / "generator.pt")]
    if cfg.train_kimg is not None:
        args += ["--model.init_args.total_kimg", str(cfg.train_kimg)]
        args += ["--checkpoint.every_kimg", str(cfg.train_kimg / 2), "--samples.every_kimg", str(cfg.train_kimg)]
    for key, value in g.set.items():
        args += [f"--{key}", yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()]
    last = out / "train" / name / "checkpoints" / "last.ckpt"
    if last.is_file():
        if g.init_from is not None and "file" in g.init_from:
            check_resumed_start(last, g.init_from, name)
        args += ["--ckpt_path", str(last)]
    elif g.init_from is not None:
        args += ["--init_from", init_from_path(cfg, name)]
    return args


def check_resumed_start(last: Path, init_from: dict, name: str) -> None:
    """An interrupted run of a generator that starts from a file resumes only if it started from that file (its
    checkpoint records the file's SHA-256): a run started from an earlier version of the file is refused."""
    from rtil.checkpoints import safe_torch_load

    record = (safe_torch_load(last, "Lightning checkpoint", mmap=True).get("hyper_parameters") or {}).get("init_from")
    if not isinstance(record, dict) or record.get("sha256") != init_from["sha256"]:
        raise RtilError(f"generator {name!r}: its interrupted run {last.parent.parent} started from another file than "
                        f"{init_from['file']} is now; delete that folder to train it again")


def init_from_path(cfg: StudyConfig, name: str) -> str:
    """The file a continued generator starts from: its init_from file (an error if it changed since the config was
    read) or the checkpoint of the generator it continues."""
    start = cfg.generators[name].init_from
    if "file" in start:
        why = init_file_changed(start)
        if why is not None:
            raise RtilError(f"generator {name!r} starts from {why}; rerun the study to read it again (a generator "
                            f"trained from the earlier file is then refused as trained with other settings)")
        return start["file"]
    return str(checkpoint_at(cfg, start["generator"], start["kimg"], f"generator {name!r} (init_from)"))


def train_one(cfg: StudyConfig, name: str) -> None:
    """Train (or resume) one generator in this process. timing.json records every segment, {seconds, kimg_from,
    kimg}, an interrupted one too (up to the checkpoint it left); done.json sums them when the run is finished."""
    from rtil.atomic_files import write_json_atomically
    from rtil.training.cli import main as train_main

    timing = cfg.out / "train" / name / "timing.json"
    segments = json.loads(timing.read_text()) if timing.is_file() else []
    arguments = train_arguments(cfg, name)
    kimg_from, kimg, t0 = saved_kimg(cfg, name), None, time.perf_counter()
    try:
        kimg = float(train_main(arguments).model.kimg)
    finally:
        segments.append({"seconds": time.perf_counter() - t0, "kimg_from": kimg_from,
                         "kimg": saved_kimg(cfg, name) if kimg is None else kimg})
        write_json_atomically(timing, segments)
    start = cfg.generators[name].init_from
    write_json_atomically(cfg.out / "train" / name / "done.json",
                          {"kimg": kimg, "seconds": sum(s["seconds"] for s in segments),
                           "fingerprint": cfg.generators[name].fingerprint,
                           "segments": segments, "arguments": arguments,
                           **({"init_from": init_from_path(cfg, name)} if start else {})})


def saved_kimg(cfg: StudyConfig, name: str) -> float:
    """The kimg of the generator's last.ckpt (0 when it has none yet, or it is unreadable)."""
    from rtil.checkpoints import safe_torch_load

    last = checkpoint_folder(cfg, name) / "last.ckpt"
    try:
        return int(safe_torch_load(last, "Lightning checkpoint", mmap=True)["state_dict"]["nimg"]) / 1000
    except (RtilError, OSError, KeyError, TypeError):
        return 0.0


def timed_kimg(record: dict) -> float:
    """How many of a done.json's kimg its segments timed (a segment killed before it could record itself is
    missing; a segment recorded before kimg_from existed starts where the previous one ended)."""
    timed, end = 0.0, 0.0
    for segment in record["segments"]:
        timed += segment["kimg"] - segment.get("kimg_from", end)
        end = segment["kimg"]
    return timed


# ----------------------------------------------------------------------------------------------------------------
# export: out/generators/<name>.pt, out/samples/<name>.png, out/fdd/<name>.json


def samples_file(cfg: StudyConfig, name: str) -> Path:
    return cfg.out / "samples" / f"{name}.png"


def fdd_file(cfg: StudyConfig, name: str) -> Path:
    return cfg.out / "fdd" / f"{name}.json"


def export_record(cfg: StudyConfig, name: str) -> dict:
    """fdd/<name>.json: FDD per member at the end ('final', None when not computed) and at every checkpoint
    ('curve': [{kimg, fdd}]); with fid_samples > 0, 'fid_kid' (see export_fid_kid)."""
    return json.loads(fdd_file(cfg, name).read_text())


def export_done(cfg: StudyConfig, name: str) -> bool:
    """Whether the generator's file, samples and FDD record exist (a clone holds the records, not the files: it
    exports again), the record is of the generator's current settings and holds the FID/KID the config asks for."""
    if not (fdd_file(cfg, name).is_file() and cfg.generator_file(name).is_file() and samples_file(cfg, name).is_file()):
        return False
    record = export_record(cfg, name)
    return record.get("fingerprint") == cfg.generators[name].fingerprint and fid_kid_current(cfg, record)


def fid_kid_current(cfg: StudyConfig, record: dict) -> bool:
    """Whether an export record holds the FID/KID the config asks for: none (fid_samples 0), or fid_samples images
    against the current test images; a record that found the Inception weights file missing is current until a
    file is there (nothing is read: the export stage checks it before loading it)."""
    from rtil.evaluation.sample_quality import inception_weights_path

    if cfg.fid_samples == 0:
        return True
    fid = record.get("fid_kid")
    if not fid or fid["num_generated"] != cfg.fid_samples or fid["real_images"] != cfg.evaluate.images.as_dict():
        return False
    return not (fid.get("weights_missing") and inception_weights_path().is_file())


def export_one(cfg: StudyConfig, name: str) -> None:
    """generators/<name>.pt, samples/<name>.png (one row per member) and fdd/<name>.json (FDD per member at the end
    and, for a trained generator, at every checkpoint's kimg; a snapshot is its source's checkpoint at its kimg;
    FID and KID per member when fid_samples > 0)."""
    import tempfile

    from rtil.atomic_files import write_json_atomically
    from rtil.checkpoints import export_lightning_checkpoint, load_generator
    from rtil.evaluation.digits_fd import member_fdds
    from rtil.evaluation.plots import save_member_grid

    out, g = cfg.out, cfg.generators[name]
    checkpoints = checkpoint_folder(cfg, name)
    if g.source is not None:
        last = checkpoint_at(cfg, g.source, g.kimg, f"snapshot {name!r}")
    elif not train_done(cfg, name):
        raise RtilError(f"generator {name!r} is not trained yet ({out / 'train' / name / 'done.json'} missing): "
                        f"run the train stage")
    else:
        last = final_checkpoint(cfg, name)
    final = export_lightning_checkpoint(last, cfg.generator_file(name))
    G = load_generator(final)
    save_member_grid(G, samples_file(cfg, name), 8, 0)
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        for kimg, ckpt in kimg_checkpoints(checkpoints) if cfg.fdd_samples > 0 and g.source is None else []:
            path = export_lightning_checkpoint(ckpt, Path(tmp) / "g.pt")
            curve.append({"kimg": kimg, "fdd": member_fdds(load_generator(path), cfg.fdd_samples)})
    curve = sorted(curve + earlier_fdd_points(cfg, name, {point["kimg"] for point in curve}), key=lambda p: p["kimg"])
    final = member_fdds(G, cfg.fdd_samples) if cfg.fdd_samples > 0 else None
    quality = {"fid_kid": export_fid_kid(cfg, cfg.generator_file(name))} if cfg.fid_samples > 0 else {}
    write_json_atomically(fdd_file(cfg, name), {"generator": name, "curve": curve, "final": final,
                                                "fingerprint": cfg.generators[name].fingerprint, **quality})


def earlier_fdd_points(cfg: StudyConfig, name: str, measured: set[float]) -> list[dict]:
    """The FDD curve points an earlier export of the same generator measured at checkpoints that are gone now (a shared
    copy of the study keeps a few of them), so exporting again never shortens the curve."""
    earlier = export_record(cfg, name) if fdd_file(cfg, name).is_file() else {}
    if earlier.get("fingerprint") != cfg.generators[name].fingerprint:
        return []
    return [point for point in earlier.get("curve", []) if point["kimg"] not in measured]


FID_SEED = 123  # the generated images' latents: the same for every generator and member


def export_fid_kid(cfg: StudyConfig, generator_file: Path) -> dict:
    """FID and KID of every RTIL member of a generator: cfg.fid_samples generated images against the study's test
    images (evaluate.images), in the features of torch-fidelity's FID Inception-v3 (rtil.evaluation.sample_quality:
    its SHA-256 checked before it is loaded; RTIL_OFFLINE=1 never downloads it). Returns {real_images,
    num_generated, seed, and num_real, members: [{fid, kid_mean, kid_std, kid_subset_size}], or unavailable: why,
    weights_missing: whether the weights file was not there}."""
    from rtil.checkpoints import load_generator
    from rtil.config import build_family
    from rtil.evaluation.sample_quality import fid_kid, inception_weights_path, load_inception
    from rtil.members import num_members

    device = study_device(cfg)
    G = load_generator(generator_file, device=device)
    images, _ = study_images(cfg, "evaluate", G.resolution, G.img_channels)
    record = {"real_images": cfg.evaluate.images.as_dict(), "num_generated": cfg.fid_samples, "seed": FID_SEED}
    if images.shape[0] < 2:
        return {**record, "unavailable": f"FID and KID need at least 2 test images, the study has {images.shape[0]}"}
    extractor, why = load_inception()
    if extractor is None:
        return {**record, "unavailable": why, "weights_missing": not inception_weights_path().is_file()}
    family = build_family(G.rtil)
    members = []
    for member in range(num_members(family)):
        values = fid_kid(G, family, images.split(64), cfg.fid_samples, extractor.to(device), member, seed=FID_SEED)
        members.append({k: values[k] for k in ("fid", "kid_mean", "kid_std", "kid_subset_size")})
    return {**record, "num_real": images.shape[0], "members": members}


# ----------------------------------------------------------------------------------------------------------------
# tune and evaluate: one file per item (rtil.study.cells)


def tune_one(cfg: StudyConfig, item: dict) -> None:
    """Solve the validation images with one tuning candidate (item from cells.tune_items) and write its file."""
    from rtil.checkpoints import load_generator
    from rtil.evaluation.metrics import reconstruction_metrics
    from rtil.inverse.run import TASK_PARAMETER, solve_images

    G = load_generator(cfg.generator_file(item["generator"]), device=study_device(cfg))
    images, _ = study_images(cfg, "tune", G.resolution, G.img_channels)
    t0 = time.perf_counter()
    task = cfg.tune.task
    results = solve_images(G, images, cfg.methods[item["method"]].solver, task, item["settings"], cfg.evaluate.seed,
                           batch_size=cfg.tune.batch_size, **{TASK_PARAMETER[task]: cfg.tune.param})
    metrics = reconstruction_metrics(results.reconstructions, images)
    write_tune_result(item, metrics["psnr"], metrics["ssim"], time.perf_counter() - t0)


def evaluate_one(cfg: StudyConfig, cell: dict, lpips_metric=None) -> None:
    """Solve the test images of one cell (from cells.evaluate_cells) and write out/cells/<id>.json and .pt."""
    from rtil.checkpoints import load_generator
    from rtil.inverse.sweep import solve_cell

    G = load_generator(cfg.generator_file(cell["generator"]), device=study_device(cfg))
    images, names = study_images(cfg, "evaluate", G.resolution, G.img_channels)
    sweep_cfg = {"methods": {cell["method"]: {**cell["settings"], "method": cfg.methods[cell["method"]].solver}},
                 "seed": cfg.evaluate.seed, "batch_size": cfg.evaluate.batch_size,
                 "models": {cell["generator"]: str(cfg.generator_file(cell["generator"]))}}
    sweep_cell = {"model": cell["generator"], "method": cell["method"], "task": cell["task"], "param": cell["param"],
                  "id": cell["id"]}
    solve_cell(sweep_cell, G, images, names, sweep_cfg, lpips_metric, cfg.out)


# ----------------------------------------------------------------------------------------------------------------
# every stage


def stage_items(cfg: StudyConfig, stage: str) -> list:
    """The stage's unfinished work items (generator names, tuning items or cells)."""
    if stage == "train":  # the costliest first, so that the workers finish together; a continued generator once
        return sorted([g for g in cfg.trained_generators() if not train_done(cfg, g) and _can_start(cfg, g)],
                      key=lambda g: -cfg.generators[g].members_per_step)  # the one it starts from is trained
    if stage == "export":
        return [g for g in export_generators(cfg) if not export_done(cfg, g)]
    if stage == "tune":
        return [i for i in tune_items(cfg) if not tune_done(i)]
    if stage == "evaluate":  # the verdicts' cells of every comparison first, then the budget and protocol cells
        unique = {c["id"]: c for c in evaluate_cells(cfg)}
        return sorted([c for c in unique.values() if not cell_done(cfg, c)],
                      key=lambda c: c["kind"] not in ("tuned", "common"))
    raise RtilError(f"unknown stage {stage!r}")


def export_generators(cfg: StudyConfig) -> list[str]:
    """The trained generators and the used ones (snapshots too)."""
    return list(dict.fromkeys(cfg.trained_generators() + cfg.used_generators()))


def _can_start(cfg: StudyConfig, name: str) -> bool:
    init_from = cfg.generators[name].init_from
    return init_from is None or "file" in init_from or train_done(cfg, init_from["generator"])


def stage_log(cfg: StudyConfig) -> list[dict]:
    """out/stage_seconds.json: every run of a work stage, {stage, items, seconds, finished}."""
    path = cfg.out / "stage_seconds.json"
    return json.loads(path.read_text()) if path.is_file() else []


def log_stage_run(cfg: StudyConfig, stage: str, items: int, seconds: float) -> None:
    from rtil.atomic_files import write_json_atomically

    write_json_atomically(cfg.out / "stage_seconds.json", stage_log(cfg) + [
        {"stage": stage, "items": items, "seconds": seconds, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}])


def item_label(item) -> str:
    """A work item's name (a generator's name, or its file's stem)."""
    return item if isinstance(item, str) else item.get("id") or Path(item["path"]).stem


def run_item(cfg: StudyConfig, stage: str, item, lpips_metric=None) -> None:
    """Do one item of a stage in this process (lpips_metric: for the evaluate stage, None if unavailable)."""
    if stage == "train":
        train_one(cfg, item)
    elif stage == "export":
        export_one(cfg, item)
    elif stage == "tune":
        tune_one(cfg, item)
    elif stage == "evaluate":
        evaluate_one(cfg, item, lpips_metric)
    else:
        raise RtilError(f"unknown stage {stage!r}")

"""Checks of the study config file that need more than its own text: unknown keys, generator changes (`set:`)
against the training config and the classes it trains, and image ranges against the images that exist."""

import inspect
from pathlib import Path

from rtil.errors import RtilError

SPLITS = ("validation", "test")
# train.py options outside a config section (rtil.training.cli.RtilCLI and LightningCLI's own)
TRAINING_TOP_LEVEL = ("seed_everything", "wandb", "run_name", "ckpt_path")


def check_known_keys(mapping, allowed, where: str, what: str) -> None:
    """RtilError naming the first key of `mapping` that is not in `allowed` (a typo would otherwise be ignored)."""
    if not isinstance(mapping, dict):
        raise RtilError(f"{where}: {what} must be a mapping, got {mapping!r}")
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        raise RtilError(f"{where}: unknown key {unknown[0]!r} in {what}; the keys are {', '.join(allowed)}")


def _training_sections() -> dict:
    """Config section -> the class whose arguments it holds, as rtil.training.cli.RtilCLI builds its parser."""
    import pytorch_lightning as pl

    from rtil.data.datamodule import GanDataModule
    from rtil.training.callbacks import ExportGenerator, KimgCheckpoint, SampleGrid, SampleQuality, Throughput

    return {"trainer": pl.Trainer, "data": GanDataModule, "checkpoint": KimgCheckpoint, "samples": SampleGrid,
            "quality": SampleQuality, "throughput": Throughput, "export": ExportGenerator}


def _model_class(train_cfg: dict):
    from rtil.training import PGGANModule, StyleGAN2Module

    classes = {"StyleGAN2Module": StyleGAN2Module, "PGGANModule": PGGANModule}
    return classes.get(str((train_cfg.get("model") or {}).get("class_path")).split(".")[-1])


def _arguments(cls) -> set[str] | None:
    """The keyword arguments of cls (None: it takes any)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.name != "self"}


def check_training_changes(changes, train_cfg: dict, where: str, config: Path) -> None:
    """Every key of a generator's `set:` (train.py options without the leading --, e.g. model.init_args.lr) must
    name a setting of its training config, or an argument of the class that config section configures."""
    if not isinstance(changes, dict):
        raise RtilError(f"{where}: 'set' must map train.py options (e.g. model.init_args.lr) to values")
    sections = None
    for key in changes:
        parts = str(key).split(".")
        node = train_cfg
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts[-1] in node:
            continue  # a setting of the training config
        if len(parts) == 1:
            if key in TRAINING_TOP_LEVEL:
                continue
            cls, name = None, None
        elif parts[0] == "model":
            if parts[1:] == ["class_path"]:
                continue
            is_argument = parts[1] == "init_args" and len(parts) >= 3
            cls, name = (_model_class(train_cfg), parts[2]) if is_argument else (None, None)
        else:
            sections = sections or _training_sections()
            cls, name = sections.get(parts[0]), parts[1]
        arguments = _arguments(cls) if cls is not None else set()
        if arguments is None or name in arguments:
            continue
        raise RtilError(f"{where}: set: {key!r} is not a setting of the training config {config} nor a train.py "
                        f"option (check its spelling; e.g. model.init_args.lr, data.holdout, trainer.devices)")


def image_range(spec, default_split: str, path: Path) -> dict:
    """{split, first, count} (the built-in digits' validation or test split) or {folder, first, count} (the
    sorted images of a folder, e.g. CelebA-HQ test images at the generators' size)."""
    from rtil.inverse.sweep import resolve_config_path

    spec = dict(spec or {})
    check_known_keys(spec, ("split", "folder", "first", "count"), f"{path}", "images")
    first, count = int(spec.get("first", 0)), int(spec.get("count", 16))
    if first < 0 or count < 1:
        raise RtilError(f"{path}: images need first >= 0 and count >= 1; got {spec}")
    if "folder" in spec:
        from rtil.data.folder import find_image_files

        folder = resolve_config_path(spec["folder"], path.resolve().parent)
        files = find_image_files(folder)  # raises for a missing folder or one without images
        if first + count > len(files):
            raise RtilError(f"{path}: {folder} has {len(files)} images, fewer than first + count = {first + count}")
        return {"folder": str(folder), "first": first, "count": count}
    out = {"split": spec.get("split", default_split), "first": first, "count": count}
    if out["split"] not in SPLITS:
        raise RtilError(f"{path}: images need a folder or a split in {SPLITS}; got {spec}")
    return out


def image_files(spec: dict) -> set[str]:
    """The files (resolved) or digits indices an image range selects, to check that two ranges are disjoint."""
    if "folder" in spec:
        from rtil.data.folder import find_image_files

        files = find_image_files(spec["folder"])[spec["first"]:spec["first"] + spec["count"]]
        return {str(Path(f).resolve()) for f in files}
    return {f"digits-{spec['split']}/{i}" for i in range(spec["first"], spec["first"] + spec["count"])}

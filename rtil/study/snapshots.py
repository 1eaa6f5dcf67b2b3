"""A trained generator's record (out/train/<name>/done.json) and checkpoints (checkpoints/kimgXXXXX.XX.ckpt, every
`checkpoint_kimg`): the one a snapshot is exported from and the one a continued generator (`init_from`) starts from."""

import json
import re
from pathlib import Path

from rtil.errors import RtilError
from rtil.study.config import StudyConfig

KIMG_NAME = re.compile(r"kimg(\d+(?:\.\d+)?)")
NAME_ROUNDING = 0.005  # the file names round kimg to 2 decimals


def train_done(cfg: StudyConfig, name: str) -> bool:
    """Whether the generator is trained; a generator trained with other settings is an error (not reused)."""
    done = cfg.out / "train" / name / "done.json"
    if not done.is_file():
        return False
    if json.loads(done.read_text()).get("fingerprint") != cfg.generators[name].fingerprint:
        raise RtilError(f"generator {name!r} in {done.parent} was trained with other settings than the config now "
                        f"gives; delete that folder (and {cfg.generator_file(name)}) to retrain it")
    return True


def train_record(cfg: StudyConfig, name: str) -> dict:
    """A trained generator's done.json: kimg, seconds (all training segments), fingerprint, segments, arguments."""
    return json.loads((cfg.out / "train" / name / "done.json").read_text())


def checkpoint_folder(cfg: StudyConfig, name: str) -> Path:
    return cfg.out / "train" / name / "checkpoints"


def kimg_checkpoints(folder: Path) -> list[tuple[float, Path]]:
    """(kimg, file) of every kimg*.ckpt in folder, by kimg."""
    found = [(float(KIMG_NAME.match(p.stem).group(1)), p) for p in folder.glob("kimg*.ckpt") if KIMG_NAME.match(p.stem)]
    return sorted(found)


def checkpoint_at(cfg: StudyConfig, name: str, kimg: float, why: str) -> Path:
    """The checkpoint of trained generator `name` nearest at or below `kimg`; an error when it is not trained or
    has none within one checkpoint interval below kimg (`why`: what needs it, for the message). A name rounded up to
    kimg (e.g. kimg00000.02 for 0.016) counts as at kimg."""
    g = cfg.generators[name]
    done = cfg.out / "train" / name / "done.json"
    if not train_done(cfg, name):
        raise RtilError(f"{why} needs generator {name!r} trained to {kimg:g} kimg, but it is not trained yet "
                        f"({done} missing): run the train stage")
    below = [(k, p) for k, p in kimg_checkpoints(checkpoint_folder(cfg, name)) if k <= kimg + NAME_ROUNDING]
    if not below or kimg - below[-1][0] > g.checkpoint_kimg + NAME_ROUNDING:
        have = ", ".join(f"{k:g}" for k, _ in kimg_checkpoints(checkpoint_folder(cfg, name))) or "none"
        raise RtilError(f"{why}: generator {name!r} has no checkpoint within {g.checkpoint_kimg:g} kimg at or below "
                        f"{kimg:g} kimg (it has kimg {have}); keep every checkpoint (checkpoint.save_top_k: -1) and "
                        f"choose budgets it passes")
    return below[-1][1]


def final_checkpoint(cfg: StudyConfig, name: str) -> Path:
    """The checkpoint a trained generator is exported from: its last.ckpt or, where that was not kept (the large file
    stays out of a shared copy of the study), its kimg checkpoint at the kimg its done.json records."""
    folder = checkpoint_folder(cfg, name)
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    kimg = train_record(cfg, name)["kimg"]
    at_end = [p for k, p in kimg_checkpoints(folder) if abs(k - kimg) <= NAME_ROUNDING]
    if not at_end:
        raise RtilError(f"generator {name!r} is trained to {kimg:g} kimg but {folder} has neither last.ckpt nor a "
                        f"checkpoint at {kimg:g} kimg to export it from; delete {folder.parent} to retrain it")
    return at_end[-1]

"""Validation and test images held out of a training image folder, for a study of a generator trained on it.

    split = split_image_folder(folder, out, resolution=256, channels=3, validation=32, test=100, min_train=16)

The held-out images are chosen deterministically: the folder's images ordered by the SHA-256 of "<seed>:<path
relative to the folder>" (the same on every machine, whatever order the files are listed in), the first
`validation` of them for tuning and the next `test` for the evaluation; or the test images are the first `test`
images of a folder of their own (`test_folder`). Written to `out`:

    split.json                the record: folder, seed, sizes, every held-out image (relative path, SHA-256)
    held_out.txt              the images training leaves out (GanDataModule's `exclude`), one per line
    images/validation/*.png   the held-out images at the generator's size and channels, which the study reads
    images/test/*.png         (named <index>__<path in the folder, '/' as '__'>.png)

Images of another size are center-cropped and resized as training reads them (rtil.data.folder), and the record
says how many; images of another channel count (gray for a colour generator, or colour for a gray one) are an
error. A rerun with the same request finds split.json and uses the same images; another request is refused.
"""

import hashlib
import json
from pathlib import Path

from rtil.atomic_files import atomic_write, write_json_atomically, write_text_atomically
from rtil.errors import RtilError

SPLIT_FILE = "split.json"
EXCLUDE_FILE = "held_out.txt"
PARTS = ("validation", "test")


def split_image_folder(folder: str | Path, out: str | Path, resolution: int, channels: int, validation: int,
                       test: int, min_train: int, seed: int = 0, test_folder: str | Path | None = None) -> dict:
    """Hold `validation` (and, without `test_folder`, `test`) images out of `folder`, keeping at least `min_train`
    (e.g. one batch) for training; write them to `out` (see the module docstring) and return the record. A split
    already in `out` is returned when it was made with the same request, else refused."""
    from rtil.data.folder import find_image_files

    folder, out = Path(folder).resolve(), Path(out)
    test_folder = None if test_folder is None else Path(test_folder).resolve()
    request = {"folder": str(folder), "test_folder": None if test_folder is None else str(test_folder),
               "seed": seed, "resolution": resolution, "channels": channels, "validation": validation, "test": test}
    if (out / SPLIT_FILE).is_file():
        return _existing_split(out, request)
    if test_folder is not None and (test_folder.is_relative_to(folder) or folder.is_relative_to(test_folder)):
        raise RtilError(f"the test folder {test_folder} and the training folder {folder} overlap; the test images "
                        f"must not be training images: give folders side by side")
    files = find_image_files(folder)
    names = sorted((f.relative_to(folder).as_posix() for f in files),
                   key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())
    held = validation + (test if test_folder is None else 0)
    if len(names) - held < min_train:
        raise RtilError(f"{folder} has {len(names)} images: too few to hold out {held} (validation {validation}"
                        + ("" if test_folder is not None else f", test {test}") + f") and keep {min_train} (one "
                        f"batch) for training; lower the held-out counts or add images")
    chosen = {"validation": [(folder, n) for n in names[:validation]]}
    if test_folder is None:
        chosen["test"] = [(folder, n) for n in names[validation:validation + test]]
    else:
        tests = [f.relative_to(test_folder).as_posix() for f in find_image_files(test_folder)]
        if len(tests) < test:
            raise RtilError(f"the test folder {test_folder} has {len(tests)} images, fewer than the {test} asked for "
                            f"(lower the test count)")
        chosen["test"] = [(test_folder, n) for n in tests[:test]]
    record = {**request, "train_images": len(names) - validation - (test if test_folder is None else 0),
              "resized": {}, "images": {}}
    for part, items in chosen.items():
        record["images"][part] = []
        for i, (root, name) in enumerate(items):
            file = f"images/{part}/{_flat_name(i, name)}"
            size, digest = _write_held_out(root / name, out / file, resolution, channels)
            record["images"][part].append({"source": name, "file": file, "sha256": digest})
            if size is not None:
                record["resized"][size] = record["resized"].get(size, 0) + 1
    write_text_atomically(out / EXCLUDE_FILE, "".join(f"{item['source']}\n" for part in PARTS
                                                      for item in record["images"][part]
                                                      if part == "validation" or test_folder is None))
    write_json_atomically(out / SPLIT_FILE, record)
    return record


def split_summary(record: dict) -> str:
    """One line: how many images went where, and how many were resized."""
    resized = ", ".join(f"{n} from {size}" for size, n in record["resized"].items())
    size = f"{record['resolution']}x{record['resolution']}"
    where = record["test_folder"] or "the training folder"
    return (f"held out {len(record['images']['validation'])} validation images from {record['folder']} and "
            f"{len(record['images']['test'])} test images from {where}; training keeps {record['train_images']}"
            + (f"; resized to {size} (center crop, as training reads them): {resized}" if resized else ""))


def _existing_split(out: Path, request: dict) -> dict:
    record = json.loads((out / SPLIT_FILE).read_text())
    differing = [key for key, value in request.items() if record.get(key) != value]
    if differing:
        key = differing[0]
        raise RtilError(f"{out / SPLIT_FILE} holds a split made with {key} {record.get(key)!r}, not {request[key]!r}; "
                        f"use the same settings to resume it, or a new --out")
    for part in PARTS:
        for item in record["images"][part]:
            if not (out / item["file"]).is_file():
                raise RtilError(f"{out / item['file']} (a held-out image of {out / SPLIT_FILE}) is missing; use a new "
                                f"--out")
    return record


def _flat_name(index: int, name: str) -> str:
    """The file name of the index-th held-out image of a part: the index (which keeps the names distinct and in the
    split's order), then its path in its folder with '/' as '__', as PNG."""
    return f"{index:05d}__" + Path(name.replace("/", "__")).with_suffix(".png").name


def _write_held_out(source: Path, target: Path, resolution: int, channels: int) -> tuple[str | None, str]:
    """Write the image at the generator's size as PNG; returns (its original size "WxH" if it was resized, the
    source file's SHA-256)."""
    from rtil.data.folder import UNREADABLE_IMAGE_ERRORS, open_image, resize_center_crop

    data = source.read_bytes()
    try:
        img = open_image(source)
    except UNREADABLE_IMAGE_ERRORS as e:
        raise RtilError(f"cannot read image {source}: {e}") from None
    found = 1 if img.mode == "L" else 3
    if found != channels:
        kinds = {1: "gray (1 channel)", 3: "colour (3 channels)"}
        raise RtilError(f"image {source} is {kinds[found]}, but the generator makes {kinds[channels]} images; give "
                        f"images of the generator's kind")
    size = None if img.size == (resolution, resolution) else f"{img.size[0]}x{img.size[1]}"
    img = resize_center_crop(img, resolution)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda f: img.save(f, format="PNG"))
    return size, hashlib.sha256(data).hexdigest()

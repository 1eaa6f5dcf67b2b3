"""Atomic file writes: a crash, a kill -9 or a second process writing the same file never leaves a
half-written file behind. Every write goes to a uniquely named temporary file in the target's folder
(so the final rename never crosses filesystems), is flushed to disk and renamed over the target."""

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch

from rtil.errors import RtilError


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a fresh temporary file beside `path`, then rename it over `path`.
    The file gets the usual permissions (0666 less the umask)."""
    path = Path(path)
    if path.is_dir():
        raise RtilError(f"{path} is a folder; give the file to write (e.g. {path / 'generator.pt'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise RtilError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
        replace_durably(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """torch.save(obj) to `path`, atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_image_atomically(images: torch.Tensor, path: str | os.PathLike, **kwargs) -> None:
    """torchvision's save_image(images, path, **kwargs) as a PNG, atomically."""
    from torchvision.utils import save_image

    atomic_write(path, lambda f: save_image(images, f, format="png", **kwargs))


def save_figure_atomically(fig, path: str | os.PathLike, **kwargs) -> None:
    """A matplotlib figure saved to `path` (the format from its suffix, e.g. .png or .pdf), atomically."""
    atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix.lstrip("."), **kwargs))


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text to `path`, atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def json_safe(obj):
    """`obj` with NaN and infinite floats replaced by None (JSON has neither; e.g. an interval from one image)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomically(path: str | os.PathLike, obj) -> None:
    """`obj` as indented JSON to `path`, atomically."""
    write_text_atomically(path, json.dumps(obj, indent=1))


def write_csv_atomically(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rows of dicts as CSV to `path`, atomically; the columns are every key, in order of first use."""
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(path, text.getvalue())


def replace_durably(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Flush `tmp` to disk and rename it over `path` (same folder), then flush the folder entry."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        folder = os.open(Path(path).parent, os.O_RDONLY)
    except OSError:  # some filesystems cannot open folders; the rename itself is still atomic
        return
    try:
        os.fsync(folder)
    except OSError:
        pass
    finally:
        os.close(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

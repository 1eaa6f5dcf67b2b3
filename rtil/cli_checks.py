"""Checks every rtil command line makes the same way: one-line argument errors, numeric options with a declared
range, devices, and the overwrite rule of every command that writes files.

The overwrite rule: a command never replaces an existing output unless it is given --overwrite, and never writes
over one of its own inputs, --overwrite or not. An output file that exists is refused; an output folder that
exists and is not empty is refused (--overwrite writes the command's files into it, replacing those of the same
name; other files stay). Every file is still written atomically (rtil/atomic_files.py).
"""

import argparse
import math
import os
import sys
from pathlib import Path

from rtil.errors import RtilError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2, like every rtil user error) instead of the usage text."""

    def error(self, message):
        print(f"error: {' '.join(str(message).split())} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


class Ranged:
    """A numeric range: an int or a finite float within [low, high] (a bound of None: unbounded; `open_low` /
    `open_high`: that bound itself excluded; no bounds: any integer, or any finite number). An argparse `type`, and
    `check` for the settings of the training command's classes. Tests read `kind`, `low`, `high`, `open_low` and
    `open_high` to try values outside the range."""

    def __init__(self, kind: type, low: float | None = None, high: float | None = None, open_low: bool = False,
                 open_high: bool = False):
        self.kind, self.low, self.high, self.open_low, self.open_high = kind, low, high, open_low, open_high
        self.__name__ = kind.__name__  # argparse names the type in its messages

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {self.low}"
        if self.high is not None:
            return f"{'<' if self.open_high else '<='} {self.high}"
        return "finite" if self.kind is float else ""

    def contains(self, value) -> bool:
        """Whether the number `value` is finite and within the range."""
        too_low = self.low is not None and (value < self.low or (self.open_low and value == self.low))
        too_high = self.high is not None and (value > self.high or (self.open_high and value == self.high))
        return math.isfinite(value) and not too_low and not too_high

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if self.kind is int else 'a number'} "
                                             f"{self.describe()}, got {text!r}") from None
        if not self.contains(value):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text}")
        return value

    def check(self, name: str, value) -> None:
        """Raise RtilError, naming the setting `name` and the range, unless `value` is a number of this kind in the
        range (for a tuple or list: every item is)."""
        several = isinstance(value, (list, tuple))
        must = "must each be" if several else "must be"
        for item in value if several else [value]:
            if isinstance(item, bool) or not isinstance(item, int if self.kind is int else (int, float)):
                noun = "an integer" if self.kind is int else "a number"
                raise RtilError(f"{name} {must} {' '.join(filter(None, (noun, self.describe())))}, got {value!r}")
            if not self.contains(item):
                raise RtilError(f"{name} {must} {self.describe()}, got {value!r}")


# The seeds of training (model, data, sample grids): NumPy's and Lightning's seed range, which also keeps the data
# order's torch seed (seed * 1,000,003 + pass, rtil.data.sampler) within torch's 64 bits.
SEED_RANGE = Ranged(int, 0, 2 ** 32 - 1)


def check_ranges(ranges: dict[str, Ranged], settings: dict, prefix: str = "") -> None:
    """Check every setting named in `ranges` (a table of a class's numeric settings) against its range; None (not
    set, or absent from `settings`) is always allowed. Messages name a setting as `prefix` + its name."""
    for name, ranged in ranges.items():
        if settings.get(name) is not None:
            ranged.check(prefix + name, settings[name])


def check_device(name: str) -> None:
    """A clear error for a device name torch does not know or a GPU this machine does not have."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise RtilError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise RtilError(f"--device {name}: no such GPU here (torch sees {torch.cuda.device_count()} CUDA device(s))")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RtilError(f"--device {name}: Apple's MPS is not available here")


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file or folder (after symbolic links; hard links too when both exist)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output_file(path: str | os.PathLike, overwrite: bool, inputs=(), what: str = "output") -> None:
    """The overwrite rule for an output file: never one of `inputs` (paths; None entries ignored); an existing file
    only with `overwrite`; never a folder."""
    path = Path(path)
    for source in inputs:
        if source is not None and _same_path(path, source):
            raise RtilError(f"{what} {path} is also an input of this command; write to another file")
    if path.is_dir():
        raise RtilError(f"{what} {path} is a folder; give the file to write (e.g. {path / 'generator.pt'})")
    if path.exists() and not overwrite:
        raise RtilError(f"{what} {path} exists; pass --overwrite to replace it, or write to another file")


def check_output_folder(path: str | os.PathLike, overwrite: bool, inputs=(), what: str = "--out") -> None:
    """The overwrite rule for an output folder: never one of `inputs` (or a folder holding an input file); never an
    existing file; an existing non-empty folder only with `overwrite`."""
    path = Path(path)
    for source in inputs:
        if source is None:
            continue
        source = Path(source)
        if _same_path(path, source) or (source.is_file() and _same_path(path, source.parent)):
            raise RtilError(f"{what} {path} holds an input of this command ({source}); write to another folder")
    if path.exists() and not path.is_dir():
        raise RtilError(f"{what} {path} is an existing file; give a folder for the results")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise RtilError(f"{what} {path} already holds files (results of an earlier run?); pass --overwrite to write "
                        f"over them, or give another folder")


def add_overwrite_argument(parser: argparse.ArgumentParser, what: str = "the output") -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace {what} if it exists (an input is never overwritten)")

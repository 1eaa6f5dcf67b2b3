"""Where invert.py's commands (solve, explore, sweep) may write: a results folder apart from their inputs.

A command never writes over one of its inputs, --overwrite or not. Its results folder is therefore never an input,
never holds an input (at any depth: a later run with --overwrite or a resumed sweep writes files and subfolders
there), and never lies inside the images folder (which is read recursively: the next run would take the results
for images)."""

import os
from pathlib import Path

from rtil.errors import RtilError


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies somewhere under it (after symbolic links)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_apart_from_inputs(out: str | os.PathLike, inputs, images: str | os.PathLike | None = None,
                            what: str = "--out") -> None:
    """Raise RtilError unless the results folder `out` is apart from the command's input files and folders
    `inputs` (None entries ignored) and from its images folder `images` (None or the built-in digits: none)."""
    from rtil.data.images import DIGITS_TEST

    out = Path(out)
    folder = None if images is None or str(images) == DIGITS_TEST else Path(images)
    sources = [Path(p) for p in (*inputs, folder) if p is not None]
    for source in sources:
        same = out.exists() and source.exists() and os.path.samefile(out, source)
        if same or out.resolve() == source.resolve():
            raise RtilError(f"{what} {out} is an input of this command; write the results to another folder")
    if folder is not None and _inside(out, folder):
        raise RtilError(f"{what} {out} lies inside the images folder {folder}, so a later run would read the results "
                        f"as images; write them outside it")
    for source in sources:
        if _inside(source, out):
            raise RtilError(f"{what} {out} holds an input of this command ({source}); write the results to a folder "
                            f"apart from the inputs")

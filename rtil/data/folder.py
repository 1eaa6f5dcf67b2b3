"""Image folders: every PNG/JPEG/WebP/BMP/TIFF file under a root folder (recursively), read with
Pillow, converted to 1 or 3 channels, resized (shorter side) and center-cropped to a square, and
scaled to float [-1, 1].

Unreadable or truncated files are skipped with a warning and counted (`FolderDataset.num_skipped`).
"""

import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from rtil.errors import RtilError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "I;16", "F")

# What Pillow raises for unreadable, truncated or malformed files (broken PNG chunks raise SyntaxError).
UNREADABLE_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def find_image_files(root: str | os.PathLike) -> list[Path]:
    """All image files under `root` (recursive, extensions case-insensitive), sorted by path.
    Hidden files and folders (names starting with '.', e.g. macOS '._x.jpg') are ignored.
    Raises RtilError for a missing path or a folder without images."""
    root = Path(root)
    accepted = ", ".join(IMAGE_EXTENSIONS)
    if not root.exists():
        raise RtilError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise RtilError(f"{root} is not a folder (expected a folder of {accepted} images)")
    files, visited = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a symlink back into a folder already read (a loop, or a second path to it)
            subfolders[:] = []
            continue
        visited.add(real)
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        files += [Path(folder, n) for n in names if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise RtilError(f"no images in {root} (searched recursively for {accepted}, any case)")
    return sorted(files)


def read_exclude_list(path: str | os.PathLike) -> list[str]:
    """The relative paths an exclude list names (one per line; blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise RtilError(f"exclude list {path} does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def without_excluded(root: Path, files: list[Path], exclude: str | os.PathLike) -> list[Path]:
    """`files` (of the folder `root`) without those the exclude list names; every name must be an image of the
    folder (a list of another folder would otherwise exclude nothing) and some image must remain."""
    names = set(read_exclude_list(exclude))
    relative = {f.relative_to(root).as_posix(): f for f in files}
    missing = sorted(names - set(relative))
    if missing:
        raise RtilError(f"exclude list {exclude} names {len(missing)} file(s) that are not images of {root}, e.g. "
                        f"{missing[0]!r} (paths relative to the folder, one per line)")
    kept = [f for name, f in relative.items() if name not in names]
    if not kept:
        raise RtilError(f"exclude list {exclude} leaves out every image of {root}: nothing to train on")
    return kept


def open_image(file: str | os.PathLike | BinaryIO, channels: int | None = None) -> Image.Image:
    """Decode an image fully (so truncation is detected here), apply its EXIF orientation and convert
    it to 1 ("L") or 3 ("RGB") channels; alpha is dropped. channels=None keeps grayscale images gray
    and makes everything else RGB. Raises one of UNREADABLE_IMAGE_ERRORS for a bad file."""
    mode = None if channels is None else channels_to_mode(channels)
    with Image.open(file) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        gray = img.mode in GRAYSCALE_MODES
        img = to_8bit(img)
        return img.convert(mode or ("L" if gray else "RGB"))


def to_8bit(img: Image.Image) -> Image.Image:
    """Gray images stored with more than 8 bits, rescaled by their real depth to mode "L" (Pillow's convert
    clips them instead: a 16-bit PNG comes out white, a float TIFF black). 16-bit integers: 0..65535; floats:
    0..1 (or 0..255). Other modes are returned unchanged. Raises ValueError for a float image outside both."""
    if img.mode not in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return img
    pixels = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        top = pixels.max() if pixels.size else 0.0
        if pixels.min() < 0 or top > 255:
            raise ValueError(f"float image with values in [{pixels.min():g}, {top:g}], neither 0..1 nor 0..255")
        scale = 255.0 if top <= 1.0 else 1.0
    else:
        if pixels.min() < 0 or pixels.max() > 65535:
            raise ValueError(f"integer image with values in [{pixels.min():g}, {pixels.max():g}], not 16-bit")
        scale = 255.0 / 65535.0
    return Image.fromarray(np.clip(np.rint(pixels * scale), 0, 255).astype(np.uint8), mode="L")


def channels_to_mode(channels: int) -> str:
    """The Pillow mode for 1 ("L") or 3 ("RGB") channels."""
    if channels not in (1, 3):
        raise RtilError(f"channels must be 1 or 3, got {channels}")
    return "L" if channels == 1 else "RGB"


def resize_center_crop(img: Image.Image, resolution: int) -> Image.Image:
    """The centered square of side min(width, height), resized to resolution x resolution (Lanczos,
    antialiased); the same as resizing the shorter side and center-cropping, in one resampling."""
    width, height = img.size
    if width == height == resolution:
        return img
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return img.resize((resolution, resolution), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """An "L" or "RGB" Pillow image as float (C, H, W) in [-1, 1]."""
    pixels = torch.from_numpy(np.array(img, dtype=np.uint8))
    if pixels.ndim == 2:
        pixels = pixels.unsqueeze(-1)
    return pixels.permute(2, 0, 1).float() / 127.5 - 1.0


class FolderDataset(Dataset):
    """The images of a folder; items are (channels, resolution, resolution) float in [-1, 1].

    flip=True appends the mirror image of every image (the dataset doubles in length, as with
    StyleGAN2-ADA's --mirror), so flips come from the sampler's seeded order, not a hidden RNG.

    An unreadable file is replaced by the next readable one, with a warning; `num_skipped` counts the
    distinct unreadable files found so far, over all DataLoader worker processes (shared memory).

    exclude: a text file naming images of the folder to leave out (paths relative to `root`, one per line), e.g.
    the validation and test images a study holds out (rtil.data.split).
    """

    def __init__(self, root: str | os.PathLike, resolution: int, channels: int = 3, flip: bool = False,
                 exclude: str | os.PathLike | None = None):
        self.root = Path(root)
        self.files = find_image_files(self.root)
        if exclude is not None:
            self.files = without_excluded(self.root, self.files, exclude)
        self.resolution = resolution
        if channels not in (1, 3):
            raise RtilError(f"channels must be 1 or 3, got {channels}")
        self.channels = channels
        self.flip = flip
        self._unreadable = torch.zeros(len(self.files), dtype=torch.bool).share_memory_()

    @property
    def num_skipped(self) -> int:
        """How many distinct files were found unreadable so far."""
        return int(self._unreadable.sum())

    @property
    def skipped_files(self) -> list[Path]:
        return [self.files[i] for i in self._unreadable.nonzero().flatten().tolist()]

    def __len__(self) -> int:
        return len(self.files) * (2 if self.flip else 1)

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self.files)
        for offset in range(n):
            i = (index + offset) % n
            if self._unreadable[i]:
                continue
            try:
                img = open_image(self.files[i], self.channels)
            except UNREADABLE_IMAGE_ERRORS as e:
                self._unreadable[i] = True
                warnings.warn(f"skipping unreadable image {self.files[i]} ({type(e).__name__}: {e}); "
                              f"{self.num_skipped} skipped so far", stacklevel=2)
                continue
            image = image_to_tensor(resize_center_crop(img, self.resolution))
            return image.flip(-1) if index >= n else image
        raise RtilError(f"none of the {n} image files in {self.root} is readable")

"""The built-in data: scikit-learn's 1,797 handwritten digits (8x8, values 0..16), which ship inside
scikit-learn, so nothing is downloaded.

Fixed split: train = the first 1,500 images, test = the last 297 (what inversion evaluates on). A
validation split for tuning solvers can be carved from the end of the training split (`holdout`): those
digits are then left out of training, so neither the test nor the validation images were seen by the GAN.
Images are resampled with antialiasing to the configured resolution and scaled to [-1, 1].
"""

from typing import Literal

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from rtil.cli_checks import Ranged
from rtil.errors import RtilError

NUM_TRAIN = 1500
NUM_TEST = 297


def digits_images(split: Literal["train", "test"], resolution: int = 32, channels: int = 1) -> torch.Tensor:
    """The digits of one split as float images (N, channels, resolution, resolution) in [-1, 1];
    N = 1500 (train) or 297 (test). channels=3 replicates the gray channel."""
    if split not in ("train", "test"):
        raise RtilError(f"digits split must be 'train' or 'test', got {split!r}")
    if channels not in (1, 3):
        raise RtilError(f"channels must be 1 or 3, got {channels}")
    if resolution < 1:
        raise RtilError(f"resolution must be positive, got {resolution}")
    images = torch.from_numpy(load_digits().images).float()  # (1797, 8, 8), values 0..16
    images = images[:NUM_TRAIN] if split == "train" else images[NUM_TRAIN:]
    images = (images / 8.0 - 1.0).unsqueeze(1)
    if resolution != images.shape[-1]:
        # bicubic overshoots at the strokes' edges, hence the clamp
        images = F.interpolate(images, size=(resolution, resolution), mode="bicubic", align_corners=False,
                               antialias=True).clamp(-1.0, 1.0)
    return images.repeat(1, channels, 1, 1).contiguous()


def digits_test_images(resolution: int = 32, channels: int = 1) -> torch.Tensor:
    """The 297 test digits, (297, channels, resolution, resolution) in [-1, 1]: the images inversion
    is evaluated on."""
    return digits_images("test", resolution, channels)


def digits_validation_images(holdout: int, resolution: int = 32, channels: int = 1) -> torch.Tensor:
    """The last `holdout` training digits, (holdout, channels, resolution, resolution) in [-1, 1]: images for
    tuning solvers, valid only for generators trained with the same holdout (DigitsDataset)."""
    check_holdout(holdout)
    if holdout == 0:
        raise RtilError("the validation split is empty: train with holdout > 0 to carve one from the training digits")
    return digits_images("train", resolution, channels)[NUM_TRAIN - holdout:]


def save_digits_images(folder, split: Literal["train", "test"] = "test", resolution: int = 32,
                       count: int | None = None) -> list:
    """Write the first `count` (default all) digits of a split as gray PNGs <split>_<index>.png into `folder`, which
    must be new or empty (an image folder to try the folder commands on); returns the files."""
    from pathlib import Path

    from PIL import Image

    from rtil.atomic_files import atomic_write

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise RtilError(f"{folder} exists and is not an empty folder; give a new or empty folder for the digits")
    images = digits_images(split, resolution, 1)[:count]
    pixels = ((images[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, image in enumerate(pixels):
        files.append(folder / f"{split}_{i:04d}.png")
        atomic_write(files[-1], lambda f, image=image: Image.fromarray(image).save(f, format="PNG"))
    return files


HOLDOUT_RANGE = Ranged(int, 0, NUM_TRAIN - 1)  # how many of the training digits can be held out


def check_holdout(holdout: int) -> None:
    HOLDOUT_RANGE.check("holdout", holdout)


class DigitsDataset(Dataset):
    """One split of the digits held in memory; items are (channels, resolution, resolution) in [-1, 1].

    flip=True appends the mirror image of every digit (the dataset doubles in length). Off by default:
    mirrored digits are not digits. holdout (train split only): leave the last `holdout` training digits out
    (the validation split, digits_validation_images).
    """

    def __init__(self, split: Literal["train", "test"] = "train", resolution: int = 32, channels: int = 1,
                 flip: bool = False, holdout: int = 0):
        check_holdout(holdout)
        if holdout and split != "train":
            raise RtilError("holdout carves the validation split from the training digits; use it with split='train'")
        self.images = digits_images(split, resolution, channels)[:NUM_TRAIN - holdout if split == "train" else None]
        self.flip = flip

    def __len__(self) -> int:
        return len(self.images) * (2 if self.flip else 1)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index % len(self.images)]
        return image.flip(-1) if index >= len(self.images) else image

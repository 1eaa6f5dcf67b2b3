"""The built-in data: scikit-learn's 1,797 handwritten digits (8x8, values 0..16), which ship inside
scikit-learn, so nothing is downloaded.

Fixed split: train = the first 1,500 images, test = the last 297 (what inversion evaluates on).
Images are resampled with antialiasing to the configured resolution and scaled to [-1, 1].
"""

from typing import Literal

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

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


class DigitsDataset(Dataset):
    """One split of the digits held in memory; items are (channels, resolution, resolution) in [-1, 1].

    flip=True appends the mirror image of every digit (the dataset doubles in length). Off by default:
    mirrored digits are not digits.
    """

    def __init__(self, split: Literal["train", "test"] = "train", resolution: int = 32, channels: int = 1,
                 flip: bool = False):
        self.images = digits_images(split, resolution, channels)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.images) * (2 if self.flip else 1)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index % len(self.images)]
        return image.flip(-1) if index >= len(self.images) else image

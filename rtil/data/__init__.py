"""Training images for the GANs: float NCHW in [-1, 1] from the built-in digits, image folders or
webdataset shards. `GanDataModule` is in `rtil.data.datamodule` (kept out of this import, which
would otherwise load Lightning for the `python -m rtil shards` converter too)."""

from rtil.data.digits import DigitsDataset, digits_images, digits_test_images
from rtil.data.folder import IMAGE_EXTENSIONS, FolderDataset, find_image_files
from rtil.data.shards import brace_pattern, shard_dataset, shards_main, write_shards

__all__ = [
    "IMAGE_EXTENSIONS",
    "DigitsDataset",
    "FolderDataset",
    "brace_pattern",
    "digits_images",
    "digits_test_images",
    "find_image_files",
    "shard_dataset",
    "shards_main",
    "write_shards",
]

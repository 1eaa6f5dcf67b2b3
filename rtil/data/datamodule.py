"""GanDataModule: a GAN's training images, from the built-in digits, an image folder or webdataset
shards, as batches (batch_size, channels, resolution, resolution) of float in [-1, 1]."""

from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from rtil.cli_checks import SEED_RANGE, Ranged, check_ranges
from rtil.data.digits import HOLDOUT_RANGE, DigitsDataset, digits_test_images
from rtil.data.folder import FolderDataset, find_image_files, read_exclude_list, without_excluded
from rtil.data.sampler import InfiniteSampler
from rtil.data.shards import expand_shard_urls, shard_dataset
from rtil.data.sigterm import StoppableDataLoader
from rtil.errors import RtilError

DATASETS = ("digits", "folder", "shards")


class GanDataModule(pl.LightningDataModule):
    """Training batches for a GAN (train_dataloader only). Arguments are checked at construction,
    so a wrong path or an empty folder fails before training starts.

    Args:
        dataset: where the images come from: "digits" (built in: scikit-learn's digits, train split),
            "folder" (a folder of images at `path`) or "shards" (webdataset shards at `path`, a brace
            pattern such as "/data/ffhq256-{000000..000006}.tar", as printed by `python -m rtil shards`).
        path: the image folder or shard pattern; must be None for digits.
        resolution: image side in pixels, a power of two >= 4.
        channels: 1 (gray) or 3 (RGB); sources are converted (gray replicated, RGB to luma).
        batch_size: images per batch per device.
        num_workers: DataLoader worker processes (0: load in the main process, right for digits).
        flip: x-flip augmentation: the mirror image of every image is added (not for digits).
        shuffle: shuffle the image order (seeded).
        drop_last: drop a last incomplete batch.
        seed: seed of every random choice of the pipeline (order, shard draws). Digits and folders use
            rtil's own endless rank-aware sampler, so train.py sets `use_distributed_sampler: false`.
            Independent of the training module's seed; logged as the hyper-parameter `data_seed`.
        resampled: shards only: an endless stream of shards drawn with replacement, seeded per rank and
            worker (use it for multi-GPU); False reads each shard once per epoch, split across ranks.
        shuffle_buffer: shards only: encoded images held per worker for shuffling.
        holdout: digits only: leave the last `holdout` training digits out of training, as a validation split
            for tuning solvers (rtil.data.digits.digits_validation_images).
        exclude: folders only: a text file naming images of the folder to leave out of training (paths relative
            to `path`, one per line), e.g. the validation and test images of a study (rtil.data.split).
    """

    # The valid range of every numeric init argument (rtil.cli_checks.Ranged), checked first.
    RANGES = {"resolution": Ranged(int, 4),  # a power of two (checked below)
              "channels": Ranged(int, 1, 3),  # 1 or 3 (checked below)
              "batch_size": Ranged(int, 1),
              "num_workers": Ranged(int, 0),
              "seed": SEED_RANGE,
              "shuffle_buffer": Ranged(int, 1),
              "holdout": HOLDOUT_RANGE}

    def __init__(
        self,
        dataset: Literal["digits", "folder", "shards"] = "digits",
        path: str | None = None,
        resolution: int = 32,
        channels: int = 1,
        batch_size: int = 32,
        num_workers: int = 0,
        flip: bool = False,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        resampled: bool = True,
        shuffle_buffer: int = 1000,
        holdout: int = 0,
        exclude: str | None = None,
    ):
        super().__init__()
        # The seed is logged as `data_seed`: Lightning logs the model's and the data's hyper-parameters together and
        # refuses one name with two values, and the training module's `seed` (its random draws) may differ.
        self.save_hyperparameters(ignore="seed")
        self.save_hyperparameters({"data_seed": seed})
        check_ranges(self.RANGES, locals())
        if dataset not in DATASETS:
            raise RtilError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
        if resolution & (resolution - 1):
            raise RtilError(f"resolution must be a power of two >= 4, got {resolution}")
        if channels not in (1, 3):
            raise RtilError(f"channels must be 1 or 3, got {channels}")
        if dataset == "digits" and path is not None:
            raise RtilError(f"path is not used with dataset='digits' (got {path!r}); use dataset='folder' or "
                            f"'shards' to read it")
        if dataset != "digits" and not path:
            raise RtilError(f"dataset={dataset!r} needs a path (an image folder or a shard pattern)")
        if holdout and dataset != "digits":
            raise RtilError(f"holdout is for the built-in digits only, not dataset={dataset!r}")
        if exclude is not None and dataset != "folder":
            raise RtilError(f"exclude is for image folders only (dataset='folder'), not dataset={dataset!r}")
        if dataset == "folder":
            files = find_image_files(path)  # raises for a missing path or a folder without images
            if exclude is not None:
                without_excluded(Path(path), files, exclude)  # raises for a list of other files, or of them all
        if dataset == "shards":
            expand_shard_urls(path)  # raises for missing shard files
        self.dataset = dataset
        self.path = path
        self.resolution = resolution
        self.channels = channels
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.flip = flip
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.holdout = holdout
        self.exclude = exclude
        self.train_dataset: Dataset | IterableDataset | None = None
        self._start_iteration = 0

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        if self.dataset == "digits":
            self.train_dataset = DigitsDataset("train", self.resolution, self.channels, flip=self.flip,
                                               holdout=self.holdout)
        elif self.dataset == "folder":
            self.train_dataset = FolderDataset(Path(self.path), self.resolution, self.channels, flip=self.flip,
                                               exclude=self.exclude)
        else:
            self.train_dataset = shard_dataset(self.path, self.resolution, self.channels, seed=self.seed,
                                               resampled=self.resampled, shuffle=self.shuffle, flip=self.flip,
                                               shuffle_buffer=self.shuffle_buffer)

    def train_dataloader(self) -> DataLoader:
        """Endless batches (batch_size, channels, resolution, resolution) in [-1, 1].

        Digits and folders are read in an endless seeded order split across ranks
        (`InfiniteSampler`), starting where the restored checkpoint stopped, so a resumed run
        reads exactly the batches an uninterrupted one would have. Shards stream on their own.
        """
        self.setup("fit")
        sampler = None
        if not isinstance(self.train_dataset, IterableDataset):
            trainer = self.trainer
            rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
            sampler = InfiniteSampler(len(self.train_dataset), seed=self.seed, shuffle=self.shuffle, rank=rank,
                                      world_size=world, start=self._start_iteration * self.batch_size)
        return StoppableDataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,  # keeps per-worker epoch counters (new shuffles each epoch)
            pin_memory=torch.cuda.is_available(),
        )

    def state_dict(self) -> dict:
        """Saved in Lightning checkpoints: how many batches training has consumed."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        return {"iteration": int(getattr(module, "iteration", 0))}

    def load_state_dict(self, state: dict) -> None:
        self._start_iteration = int(state.get("iteration", 0))

    def describe(self) -> dict:
        """What the data is, for the provenance of exported generators."""
        return {"dataset": self.dataset, "path": self.path, "resolution": self.resolution, "channels": self.channels,
                "flip": self.flip, "batch_size_per_device": self.batch_size, "seed": self.seed,
                **({"holdout": self.holdout} if self.holdout else {}),
                **({"exclude": self.exclude, "excluded": len(read_exclude_list(self.exclude))} if self.exclude else {})}

    @property
    def num_skipped(self) -> int:
        """Unreadable images skipped so far (image folders; 0 for digits and shards), for the training log."""
        return self.train_dataset.num_skipped if isinstance(self.train_dataset, FolderDataset) else 0

    def test_images(self) -> torch.Tensor:
        """The held-out images inversion is evaluated on: digits only, (297, channels, resolution, resolution)."""
        if self.dataset != "digits":
            raise RtilError(f"test images are built in only for dataset='digits'; for {self.dataset!r} data, give "
                            f"the inversion its own image folder")
        return digits_test_images(self.resolution, self.channels)

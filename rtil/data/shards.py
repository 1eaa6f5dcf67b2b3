"""webdataset shards: a converter from an image folder, and a streaming reader.

A shard is a tar file of samples {"__key__": "00000042", "png": <PNG bytes>}; the key is the
image's index in the sorted file list of the source folder. PNG is lossless, so a shard image
decodes to exactly the pixels the folder dataset reads.

Reading (`shard_dataset`):
  resampled=False: every shard is read once per pass; shards are split across ranks
      (webdataset's split_by_node: env RANK/WORLD_SIZE, else torch.distributed) and then across
      DataLoader workers (split_by_worker). The stream ends; ranks may get unequal counts.
  resampled=True: an endless stream; each (rank, worker) draws shards with replacement from its own
      generator seeded by (seed, rank, worker, pass), so ranks never run dry at different times
      (what multi-GPU training needs) and the same seed gives the same stream.
"""

import argparse
import io
import os
import re
import sys
import warnings
from functools import partial
from pathlib import Path

import torch
import webdataset as wds
from tqdm import tqdm
from webdataset.shardlists import expand_urls

from rtil.cli_checks import ArgumentParser, Ranged, add_overwrite_argument, check_output_file
from rtil.data.folder import (
    UNREADABLE_IMAGE_ERRORS,
    channels_to_mode,
    find_image_files,
    image_to_tensor,
    open_image,
    resize_center_crop,
)
from rtil.errors import RtilError

_PRINTF_INT = re.compile(r"%(0?\d*)d")


def write_shards(image_folder: str | os.PathLike, out_pattern: str, resolution: int | None = None,
                 channels: int | None = None, max_per_shard: int = 1000, max_shard_bytes: float = 1e9,
                 progress: bool = True) -> list[str]:
    """Convert every image under `image_folder` into webdataset shards; returns the shard paths.

    out_pattern: a path with one printf integer field, e.g. "/data/ffhq256-%06d.tar" (shards are
        numbered from 0; `brace_pattern` gives the reader's pattern).
    resolution: resize (shorter side) + center crop to this size; None keeps each image's size.
    channels: 1 or 3 to convert; None stores grayscale images as gray and everything else as RGB.
    A shard is closed after max_per_shard images or max_shard_bytes bytes.
    Unreadable images are skipped with a warning each and a count (progress bar and a final warning).
    """
    _check_out_pattern(out_pattern)
    if channels is not None:
        channels_to_mode(channels)  # fail on a bad value before reading anything
    files = find_image_files(image_folder)
    Path(out_pattern % 0).parent.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []
    num_skipped = 0
    # mtime=0 makes the tar files byte-identical across runs
    with wds.ShardWriter(out_pattern, maxcount=max_per_shard, maxsize=max_shard_bytes, post=paths.append,
                         verbose=0, mtime=0) as writer:
        bar = tqdm(files, desc="writing shards", unit="img", disable=not progress)
        for index, file in enumerate(bar):
            try:
                img = open_image(file, channels)
            except UNREADABLE_IMAGE_ERRORS as e:
                num_skipped += 1
                bar.set_postfix(skipped=num_skipped)
                warnings.warn(f"skipping unreadable image {file} ({type(e).__name__}: {e})", stacklevel=2)
                continue
            if resolution is not None:
                img = resize_center_crop(img, resolution)
            png = io.BytesIO()
            img.save(png, format="PNG")
            writer.write({"__key__": f"{index:08d}", "png": png.getvalue()})
    if num_skipped == len(files):
        for path in paths:
            Path(path).unlink(missing_ok=True)
        raise RtilError(f"none of the {len(files)} images in {image_folder} is readable; no shards written")
    if num_skipped:
        warnings.warn(f"skipped {num_skipped} unreadable of {len(files)} images in {image_folder}", stacklevel=2)
    return paths


def brace_pattern(out_pattern: str, num_shards: int) -> str:
    """The brace pattern naming the shards written by `write_shards`:
    ("/data/ffhq-%06d.tar", 3) -> "/data/ffhq-{000000..000002}.tar"."""
    _check_out_pattern(out_pattern)
    field = _PRINTF_INT.search(out_pattern)
    first, last = field.group() % 0, field.group() % (num_shards - 1)
    return f"{out_pattern[:field.start()]}{{{first}..{last}}}{out_pattern[field.end():]}"


def _check_out_pattern(out_pattern: str) -> None:
    if len(_PRINTF_INT.findall(out_pattern)) != 1 or out_pattern.count("%") != 1:
        raise RtilError(f"the output pattern needs exactly one printf integer field for the shard number, "
                        f"e.g. /data/ffhq256-%06d.tar; got {out_pattern!r}")


def expand_shard_urls(urls: str | list[str]) -> list[str]:
    """Shard paths from a brace pattern ("/data/ffhq-{000000..000099}.tar"; several joined by "::")
    or a list. Local files must exist; remote URLs (with "://" or "pipe:") are passed on unchecked."""
    urls = expand_urls(urls) if isinstance(urls, str) else [str(url) for url in urls]
    if not urls:
        raise RtilError("no shard paths given")
    missing = [url for url in urls if "://" not in url and not url.startswith("pipe:") and not Path(url).is_file()]
    if missing:
        raise RtilError(f"{len(missing)} of {len(urls)} shard files do not exist, e.g. {missing[0]}; expected "
                        f"files written by `python -m rtil shards`, named by a brace pattern such as "
                        f"/data/ffhq256-{{000000..000009}}.tar")
    return urls


def shard_dataset(urls: str | list[str], resolution: int, channels: int = 3, seed: int = 0,
                  resampled: bool = True, shuffle: bool = True, flip: bool = False,
                  shuffle_buffer: int = 1000) -> wds.DataPipeline:
    """An iterable dataset of images (channels, resolution, resolution) float in [-1, 1] from shards.

    urls: a brace pattern or list of shard paths (see `expand_shard_urls`).
    resampled: endless, per-(rank, worker) seeded draws of shards with replacement (multi-GPU
        training); False: each shard once per pass, split across ranks and DataLoader workers.
    shuffle: seeded shuffle of the shard order (when not resampled) and of samples through a buffer
        of `shuffle_buffer` encoded images (memory: about shuffle_buffer x PNG size per worker).
    flip: every image is followed by its mirror image before shuffling (the data doubles).
    Images whose stored size differs from `resolution` are resized (shorter side) + center-cropped.
    Unreadable shards and images are skipped with a warning, but MAX_FAILURES_IN_A_ROW failures without one
    good image in between stop the stream with an error (all-corrupt shards would otherwise loop forever).
    """
    if channels not in (1, 3):
        raise RtilError(f"channels must be 1 or 3, got {channels}")
    urls = expand_shard_urls(urls)
    budget = _FailureBudget(MAX_FAILURES_IN_A_ROW, urls)
    if resampled:
        stages = [wds.ResampledShards(urls, seed=seed, deterministic=True)]
    else:
        stages = [wds.SimpleShardList(urls, seed=seed if shuffle else None), wds.split_by_node, wds.split_by_worker]
    stages.append(wds.tarfile_to_samples(handler=budget.handler))
    if flip:
        stages.append(_with_mirrors)
    if shuffle:
        stages.append(wds.detshuffle(shuffle_buffer, seed=seed))
    stages.append(wds.map(partial(decode_sample, resolution=resolution, channels=channels), handler=budget.handler))
    stages.append(budget.reset_on_success)
    return wds.DataPipeline(*stages)


MAX_FAILURES_IN_A_ROW = 50


class _FailureBudget:
    """webdataset error handler that skips bad shards and samples with a warning, until `limit` failures come in
    a row (counted per process: each DataLoader worker has its own copy)."""

    def __init__(self, limit: int, urls: list[str]):
        self.limit, self.urls, self.in_a_row = limit, urls, 0

    def handler(self, error: Exception) -> bool:
        self.in_a_row += 1
        if self.in_a_row >= self.limit:
            raise RtilError(f"{self.in_a_row} unreadable shards or images in a row and no good image in between "
                            f"(last: {type(error).__name__}: {error}); are the {len(self.urls)} shard(s) "
                            f"{self.urls[0]}... really webdataset tar files of PNG images?")
        warnings.warn(f"skipping unreadable shard data ({type(error).__name__}: {error})", stacklevel=2)
        return True

    def reset_on_success(self, samples):
        for sample in samples:
            self.in_a_row = 0
            yield sample


def decode_sample(sample: dict, resolution: int, channels: int) -> torch.Tensor:
    """A shard sample's PNG as float (channels, resolution, resolution) in [-1, 1], mirrored if marked."""
    image = image_to_tensor(resize_center_crop(open_image(io.BytesIO(sample["png"]), channels), resolution))
    return image.flip(-1) if sample.get("__mirror__") else image


def _with_mirrors(samples):
    for sample in samples:
        yield sample
        yield {**sample, "__mirror__": True}


def add_shards_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `python -m rtil shards`."""
    parser.add_argument("image_folder", help="folder of PNG/JPEG/WebP/BMP/TIFF images (searched recursively)")
    parser.add_argument("out_pattern", help="shard paths with one printf field for the shard number, "
                                            "e.g. /data/ffhq256-%%06d.tar")
    parser.add_argument("--resolution", type=Ranged(int, 1), default=None,
                        help="resize (shorter side) and center-crop to this size (default: keep each size)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="convert to 1 or 3 channels (default: gray images stay gray, others become RGB)")
    parser.add_argument("--max-per-shard", type=Ranged(int, 1), default=1000, help="images per shard (default 1000)")
    parser.add_argument("--max-shard-gb", type=Ranged(float, 0, open_low=True), default=1.0,
                        help="bytes per shard, in GB (default 1)")
    add_overwrite_argument(parser, "existing shards of the pattern")


def run_shards(args: argparse.Namespace) -> None:
    """Write the shards described by `add_shards_arguments`' arguments and print their brace pattern."""
    _check_out_pattern(args.out_pattern)
    check_output_file(args.out_pattern % 0, args.overwrite, inputs=[args.image_folder], what="shard")
    paths = write_shards(args.image_folder, args.out_pattern, resolution=args.resolution, channels=args.channels,
                         max_per_shard=args.max_per_shard, max_shard_bytes=args.max_shard_gb * 1e9)
    print(f"wrote {len(paths)} shards: {brace_pattern(args.out_pattern, len(paths))}")


def shards_main(argv: list[str] | None = None) -> int:
    """`python -m rtil shards IMAGE_FOLDER OUT_PATTERN [options]`; returns the exit code (2 on a user error)."""
    parser = ArgumentParser(prog="python -m rtil shards",
                                     description="convert an image folder to webdataset shards of PNG images")
    add_shards_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_shards(args)
    except RtilError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0

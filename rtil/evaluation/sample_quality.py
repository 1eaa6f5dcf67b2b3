"""Sample quality of a generator: FID and KID through torchmetrics (with torch-fidelity's Inception-v3, the
features of the original FID code), and the digits Fréchet distance, which needs no downloaded weights.

    python -m rtil fid GENERATOR --data digits|FOLDER|SHARDS [--num-gen 50000] [--member K] [--offline]

fid50k_full semantics by default: 50,000 generated images against every image of the data set. Why
torchmetrics: rtil already depends on it (SSIM), its FID accepts any feature network (tests use a small
stand-in), and with torch-fidelity installed it uses the standard FID Inception weights, fetched on first use
into the torch hub cache ($TORCH_HOME/hub/checkpoints) and checked against their published SHA-256 before
anything reads them. `--offline` (or RTIL_OFFLINE=1) never downloads:
without the cached weights FID and KID are reported unavailable, with how to get them, never computed with
other weights.
"""

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
# The full SHA-256 of that file (95,628,359 bytes; its name carries the first 8 digits). torch-fidelity unpickles it
# with weights_only=False, so it must be exactly this file: anything else could run code when loaded.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


def inception_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def load_inception(offline: bool = False) -> tuple[nn.Module | None, str | None]:
    """torch-fidelity's FID Inception-v3 (2048 pool features) as used by torchmetrics, or (None, why not).

    torch-fidelity unpickles the weights file with weights_only=False, so it only ever sees a private copy whose
    full SHA-256 was checked (a copy: the cached file could be swapped between our check and its load). Another
    file in the cache raises RtilError and nothing is loaded; a missing file (downloads off) makes FID unavailable.
    """
    import shutil
    import tempfile

    from rtil.checkpoints import error_detail
    from rtil.weights import check_sha256, fetch, shown_cache_path

    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError:
        return None, "torch-fidelity is not installed (pip install torch-fidelity)"
    path = inception_weights_path()
    why = fetch(INCEPTION_URL, path, INCEPTION_SHA256[:8], offline)
    if why is not None:
        return None, (f"the FID Inception weights are not in {shown_cache_path(path)} ({why}); on a machine with "
                      f"internet access download {INCEPTION_URL} and copy it there (or set TORCH_HOME)")
    with tempfile.TemporaryDirectory(prefix="rtil-inception-") as private:  # readable by this user only
        copy = Path(private) / INCEPTION_FILE
        shutil.copyfile(path, copy)
        check_sha256(copy, INCEPTION_SHA256, "torch-fidelity's FID Inception weights file", INCEPTION_URL,
                     shown_as=str(path))
        try:
            return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(copy)).eval(), None
        except Exception as e:  # noqa: BLE001 - the verified file failed to load: unavailable, with the reason
            return None, (f"the FID Inception weights could not be loaded ({error_detail(e)}); download "
                          f"{INCEPTION_URL} to {path}")


def inception_unavailable() -> str | None:
    """Why FID and KID cannot be computed here without a download (None: torch-fidelity is installed and the
    Inception weights file is cached with its published SHA-256). Nothing is downloaded or loaded."""
    import importlib.util

    from rtil.weights import file_sha256, shown_cache_path

    if importlib.util.find_spec("torch_fidelity") is None:
        return "torch-fidelity is not installed (pip install torch-fidelity)"
    path = inception_weights_path()
    if not path.is_file():
        return (f"the FID Inception weights are not in {shown_cache_path(path)}; on a machine with internet access "
                f"download {INCEPTION_URL} and copy it there (or set TORCH_HOME)")
    if file_sha256(path) != INCEPTION_SHA256:
        return f"{shown_cache_path(path)} is not the published FID Inception weights file (its SHA-256 differs)"
    return None


@torch.no_grad()
def fid_kid(G, family, real_batches: Iterable[torch.Tensor], num_generated: int, extractor: nn.Module,
            member: int = 0, batch_size: int = 64, seed: int = 0, kid_subset_size: int = 1000, progress=None) -> dict:
    """FID and KID (mean, std over subsets) between the real images (batches (B, C, H, W) in [-1, 1]) and
    `num_generated` images of member `member` of G's RTIL `family` (None: vanilla; random noise maps, seeded),
    in `extractor`'s features.
    Grey images are repeated to 3 channels. Returns {"fid", "kid_mean", "kid_std", "num_real", "num_generated"}."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    from rtil.members import member_images

    device = next(G.buffers()).device
    fid = FrechetInceptionDistance(feature=extractor, normalize=True).to(device)
    real_features, fake_features = [], []
    num_real = 0
    for batch in real_batches:
        x = _as_rgb_unit(batch.to(device))
        fid.update(x, real=True)
        real_features.append(x)
        num_real += x.shape[0]
    done = 0
    while done < num_generated:
        n = min(batch_size, num_generated - done)
        x = _as_rgb_unit(member_images(G, family, member, n, seed + done, noise_mode="random", device=device))
        fid.update(x, real=False)
        fake_features.append(x)
        done += n
        if progress is not None:
            progress(n)
    subset = min(kid_subset_size, num_real, num_generated)
    kid = KernelInceptionDistance(feature=extractor, subset_size=subset, normalize=True).to(device)
    for x in real_features:
        kid.update(x, real=True)
    for x in fake_features:
        kid.update(x, real=False)
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std),
            "num_real": num_real, "num_generated": num_generated, "kid_subset_size": subset}


def _as_rgb_unit(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> (B, 3, H, W) in [0, 1]."""
    x = ((images.float() + 1) / 2).clamp(0, 1)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def real_image_batches(data: str, resolution: int, channels: int, batch_size: int = 64,
                       num_images: int | None = None, report=None):
    """Batches (B, channels, resolution, resolution) in [-1, 1] of a data set, once through, in order: "digits"
    (the built-in training split), an image folder, or webdataset shards (a brace pattern).

    Unreadable images are skipped without a warning each: once the data is read, `report` (default: warnings.warn)
    gets one line saying how many were skipped. When none is readable, the RtilError is all there is to see."""
    import re
    import warnings

    from torch.utils.data import DataLoader

    from rtil.errors import RtilError

    if data == "digits":
        from rtil.data.digits import digits_images

        images = digits_images("train", resolution, channels)[:num_images]
        yield from images.split(batch_size)
        return
    if Path(data).is_dir():
        from rtil.data.folder import FolderDataset

        dataset = FolderDataset(data, resolution, channels)
    elif ".tar" in data or "pipe:" in data:
        from rtil.data.shards import shard_dataset

        dataset = shard_dataset(data, resolution, channels, resampled=False, shuffle=False)
    else:
        raise RtilError(f"--data must be 'digits', an image folder or a shard pattern (.tar), got {data!r}")
    seen, skipped = 0, []
    batches = iter(DataLoader(dataset, batch_size=batch_size))
    while num_images is None or seen < num_images:
        with warnings.catch_warnings(record=True) as caught:  # only around the read: no yield in here
            warnings.simplefilter("always")
            batch = next(batches, None)
        for w in caught:
            if str(w.message).startswith("skipping unreadable"):
                skipped.append(str(w.message))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if batch is None:
            break
        batch = batch if num_images is None else batch[:num_images - seen]
        seen += batch.shape[0]
        yield batch
    if skipped:
        first = re.sub(r"; \d+ skipped so far$", "", skipped[0]).removeprefix("skipping ")
        (report or warnings.warn)(f"{data}: skipped {len(skipped)} unreadable file(s); the first: {first}")

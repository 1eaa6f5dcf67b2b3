"""Pretrained weights rtil's metrics need (AlexNet for LPIPS; the FID Inception goes through torch-fidelity):
fetched on first use into the torch hub cache ($TORCH_HOME/hub/checkpoints), as torchvision does, unless
downloads are off (`offline`, or the environment variable RTIL_OFFLINE=1). A failed download is reported,
never replaced by other weights."""

import hashlib
import os
import socket
from pathlib import Path

import torch

from rtil.errors import RtilError

OFFLINE_ENV = "RTIL_OFFLINE"
DOWNLOAD_TIMEOUT = 30.0  # seconds without data before a download is given up


def shown_cache_path(path: str | os.PathLike) -> str:
    """`path` as messages and result files name it: a file in the torch hub cache as $TORCH_HOME/hub/... (torch's
    default TORCH_HOME, $XDG_CACHE_HOME/torch or ~/.cache/torch, included), so that no machine's home directory
    is printed or stored; any other path (torch.hub.set_dir elsewhere) as it is."""
    default_home = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    hub = Path(os.path.expanduser(os.environ.get("TORCH_HOME", default_home))) / "hub"
    if Path(torch.hub.get_dir()) == hub:
        try:
            return "$TORCH_HOME/hub/" + Path(path).relative_to(hub).as_posix()
        except ValueError:
            pass
    return str(path)


def downloads_off(offline: bool = False) -> bool:
    """Whether downloads are off: `offline`, or RTIL_OFFLINE set to anything but '' or '0'."""
    return offline or os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def fetch(url: str, path: Path, hash_prefix: str | None = None, offline: bool = False) -> str | None:
    """Download `url` to `path` (atomically, checking the SHA-256 prefix) unless it is there or downloads are
    off. Returns None when the file is there, else why it is not."""
    if path.is_file():
        return None
    if downloads_off(offline):
        return f"downloads are off ({OFFLINE_ENV}=1 or --offline)"
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=False)
    except Exception as e:  # noqa: BLE001 - no network, a proxy, a bad file: say why, the caller reports it
        return f"the download of {url} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    finally:
        socket.setdefaulttimeout(previous)
    return None


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in chunks)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def check_sha256(path: str | os.PathLike, expected: str, what: str, url: str, shown_as: str | None = None) -> None:
    """Raise RtilError unless the SHA-256 of `path` starts with `expected` (a full digest, or the prefix in a torch
    hub file name). The message names `shown_as` (default `path`): the file the user has to replace."""
    digest = file_sha256(path)
    if not digest.startswith(expected.lower()):
        raise RtilError(f"{shown_as or path} is not {what} (SHA-256 {digest[:16]}..., expected {expected[:16]}...), "
                        f"so nothing was loaded from it; delete it and download {url} again")

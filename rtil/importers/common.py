"""Shared helpers for reading community checkpoints safely."""

import argparse
import hashlib
import os
from pathlib import Path

import torch

from rtil.checkpoints import safe_torch_load


def load_source(path: str | os.PathLike, what: str):
    """Weights-only load of a community checkpoint. Their training scripts pickle an argparse
    Namespace of arguments; that plain attribute bag is the only class allow-listed."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return safe_torch_load(path, what)


def training_args(obj: dict) -> dict:
    """The checkpoint's saved command-line arguments as a dict ({} when absent)."""
    args = obj.get("args")
    return vars(args) if isinstance(args, argparse.Namespace) else args if isinstance(args, dict) else {}


def strip_prefix(state: dict, prefix: str = "module.") -> tuple[dict, str | None]:
    """Remove DataParallel's `module.` prefix when every key has it; returns (state, prefix or None)."""
    keys = list(state)
    if keys and all(isinstance(k, str) and k.startswith(prefix) for k in keys):
        return {k[len(prefix):]: v for k, v in state.items()}, prefix
    return state, None


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, recorded in provenance."""
    digest = hashlib.sha256()
    with open(Path(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

import contextlib
import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests use tiny networks, which run far faster (and reproducibly) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _no_downloads():
    """Tests never download weights (the metrics fetch them on first use otherwise)."""
    import os

    previous = os.environ.get("RTIL_OFFLINE")
    os.environ["RTIL_OFFLINE"] = "1"
    yield
    if previous is None:
        del os.environ["RTIL_OFFLINE"]
    else:
        os.environ["RTIL_OFFLINE"] = previous


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def make_trainer(tmp_path, callbacks=()):
    """A quiet single-CPU Lightning trainer for the training tests; checkpointing only with a KimgCheckpoint."""
    import pytorch_lightning as pl

    from rtil.training.callbacks import KimgCheckpoint

    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, max_epochs=-1, use_distributed_sampler=False,
                      default_root_dir=tmp_path, callbacks=list(callbacks),
                      enable_checkpointing=any(isinstance(c, KimgCheckpoint) for c in callbacks))


def tiny_stylegan2(resolution=16, img_channels=3, **kw):
    from rtil.models.stylegan2 import Generator

    args = dict(z_dim=16, w_dim=16, resolution=resolution, img_channels=img_channels, mapping_layers=2,
                channel_base=128, channel_max=16)
    args.update(kw)
    G = Generator(**args)
    perturb_(G)
    return G


def perturb_(module, scale=0.3, seed=1):
    """Give every parameter non-trivial values (noise strengths and biases start at 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))
    return module


@contextlib.contextmanager
def float64_default():
    """Build models in float64: their initial weights come from torch's float64 sampler, which draws the same
    numbers on every CPU (the float32 one rounds differently with AVX2 and AVX-512 kernels)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _load_invert_script():
    spec = importlib.util.spec_from_file_location("invert", ROOT / "invert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_invert(argv) -> int:
    """invert.py's main in this process; returns its exit status (argparse's SystemExit included)."""
    global _invert
    if _invert is None:
        _invert = _load_invert_script()
    try:
        return _invert.main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


_invert = None

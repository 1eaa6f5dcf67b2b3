"""The optimisation loop every solver runs: Adam (or SGD) with the ILO / StyleGAN2-projector learning-rate
schedule, the iterate recorded at every step, projections after every step."""

import math
from collections.abc import Callable

import torch

from rtil.errors import RtilError
from rtil.inverse.results import IterateTracker

OPTIMIZERS = ("adam", "sgd")

Progress = Callable[[int], None] | None
Render = Callable[[], torch.Tensor]
Loss = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def learning_rate(step: int, steps: int, lr: float, warmup: float, rampdown: float) -> float:
    """ILO/StyleGAN2-projector schedule at t = step / steps: linear warm-up over the first `warmup` fraction,
    then flat, then a cosine decay to 0 over the last `rampdown` fraction (rampdown 0: no decay)."""
    t = step / steps
    scale = min(1.0, t / warmup) if warmup > 0 else 1.0
    if rampdown > 0:
        scale *= 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown))
    return lr * scale


def check_schedule(lr: float, warmup: float, rampdown: float, optimizer: str = "adam") -> None:
    if not lr > 0:
        raise RtilError(f"lr must be > 0, got {lr}")
    if not (0 <= warmup <= 1 and 0 <= rampdown <= 1):
        raise RtilError(f"warmup and rampdown are fractions of the steps in [0, 1], got {warmup} and {rampdown}")
    if optimizer not in OPTIMIZERS:
        raise RtilError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def run_optimizer(params: list[torch.Tensor], render: Render, loss: Loss, steps: int, lr: float,
                  warmup: float, rampdown: float, tracker: IterateTracker, optimizer: str = "adam",
                  after_step: Callable[[], None] | None = None, progress: Progress = None,
                  variables: Callable[[], dict] | None = None) -> None:
    """`steps` optimiser steps on `params`. Each step renders the images (N, C, H, W), evaluates
    loss(images) -> (total (N,), measurement (N,)), records the iterate in `tracker`, and steps on the sum of
    the per-row totals; `after_step` (projections) runs after every step. The LR follows `learning_rate`.
    `variables`, if given, returns the tensors that made the images, recorded with them (see IterateTracker)."""
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup, rampdown)
        images = render()
        total, measured = loss(images)
        tracker.record(images, measured, None if variables is None else variables())
        opt.zero_grad(set_to_none=True)
        total.sum().backward()
        opt.step()
        if after_step is not None:
            after_step()
        if progress is not None:
            progress(1)


@torch.no_grad()
def record_final(render: Render, loss: Loss, tracker: IterateTracker,
                 variables: Callable[[], dict] | None = None) -> None:
    """Record the iterate left by the last optimiser step."""
    images = render()
    tracker.record(images, loss(images)[1], None if variables is None else variables())

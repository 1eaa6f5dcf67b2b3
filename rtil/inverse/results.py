"""What a solver returns, and the honest selection of its iterate.

A solver returns, per image, the recorded iterate with the lowest *measurement* loss (select="best") or the
last one (select="last"). Regularisers and perceptual terms are not part of the selection loss, and the
ground truth is never seen.
"""

import math
from dataclasses import dataclass, field

import torch

from rtil.errors import RtilError

SELECTIONS = ("best", "last")


@dataclass
class SolveResult:
    """What a solver returns for a batch of B images.

    images:            (B, C, H, W) in [-1, 1], the selected iterate per image.
    measurement_loss:  (B,) mean squared measurement error of the selected iterate.
    loss_history:      (R, T, B) measurement loss of every recorded iterate (R restarts, T iterates each).
    selected_restart:  (B,) restart of the selected iterate.
    selected_step:     (B,) index into the T recorded iterates of the selected one.
    feasible:          (B,) measurement_loss <= tolerance (PULSE), or None when the solver has no tolerance.
    round_losses:      (rounds, B) measurement loss of each round's last iterate (ILO), or None.
    info:              solver-specific notes (e.g. whether the perceptual term was used).
    """

    images: torch.Tensor
    measurement_loss: torch.Tensor
    loss_history: torch.Tensor
    selected_restart: torch.Tensor
    selected_step: torch.Tensor
    feasible: torch.Tensor | None = None
    round_losses: torch.Tensor | None = None
    info: dict = field(default_factory=dict)


def check_select(select: str) -> None:
    if select not in SELECTIONS:
        raise RtilError(f"select must be one of {SELECTIONS} (selection by measurement loss or the last iterate), "
                        f"got {select!r}")


class IterateTracker:
    """Records the measurement loss of every iterate of N rows and keeps, per row, the selected one:
    the lowest measurement loss so far (select="best"; NaN losses never win) or the latest (select="last")."""

    def __init__(self, select: str = "best"):
        check_select(select)
        self.select = select
        self.losses: list[torch.Tensor] = []
        self.images: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None
        self.step: torch.Tensor | None = None

    def new_round(self) -> None:
        """Forget the selected iterates (the loss history stays): the selection then comes from later records
        only, e.g. ILO's final round."""
        self.images = self.loss = self.step = None

    def last_losses(self) -> torch.Tensor:
        """(N,) measurement loss of the latest recorded iterate."""
        return self.losses[-1]

    def record(self, images: torch.Tensor, loss: torch.Tensor) -> None:
        images, loss = images.detach(), loss.detach().float()
        step = len(self.losses)
        self.losses.append(loss.cpu())
        if self.images is None or self.select == "last":
            self.images, self.loss = images.clone(), loss.clone()
            self.step = torch.full_like(loss, step, dtype=torch.long)
            return
        better = ~loss.isnan() & ((loss < self.loss) | self.loss.isnan())
        self.images = torch.where(better.view(-1, *([1] * (images.ndim - 1))), images, self.images)
        self.loss = torch.where(better, loss, self.loss)
        self.step = torch.where(better, torch.full_like(self.step, step), self.step)

    def result(self, batch_size: int, feasibility_tolerance: float | None = None, info: dict | None = None,
               round_losses: torch.Tensor | None = None) -> SolveResult:
        """Per image, the selected iterate of the restart whose selected loss is lowest (rows r * B + b)."""
        restarts = self.loss.shape[0] // batch_size
        loss = self.loss.view(restarts, batch_size)
        restart = torch.nan_to_num(loss, nan=math.inf).argmin(0)
        rows = restart * batch_size + torch.arange(batch_size, device=restart.device)
        history = torch.stack(self.losses).view(len(self.losses), restarts, batch_size).permute(1, 0, 2)
        selected = self.loss[rows]
        feasible = None if feasibility_tolerance is None else selected <= feasibility_tolerance
        return SolveResult(images=self.images[rows], measurement_loss=selected, loss_history=history,
                           selected_restart=restart.cpu(), selected_step=self.step[rows].cpu(),
                           feasible=None if feasible is None else feasible.cpu(), round_losses=round_losses,
                           info=dict(info or {}))

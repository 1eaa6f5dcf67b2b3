"""What a solver returns, and the honest selection of its iterate.

A solver returns, per image, the recorded iterate with the lowest *measurement* loss (select="best") or the
last one (select="last"). Regularisers and perceptual terms are not part of the selection loss, and the
ground truth is never seen.
"""

import math
from dataclasses import dataclass, field

import torch

from rtil.errors import RtilError
from rtil.nn import at_least_float32

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
    restart_images:    (R, B, C, H, W) the selected iterate of every restart (`images` holds the best one per
                       image): R solutions per image, as PULSE-style restarts offer them.
    solution:          the selected iterate's variables, what re-renders `images` (see rtil/inverse/solutions.py):
                       {"latent": (B, L, D) in the space info["latent_space"], "noises": [(B, 1, H, W), ...]} and,
                       for ILO, "features" at the final cut info["cut"] and the frozen "skip_image"; None for
                       solvers that do not record it (mGANprior).
    """

    images: torch.Tensor
    measurement_loss: torch.Tensor
    loss_history: torch.Tensor
    selected_restart: torch.Tensor
    selected_step: torch.Tensor
    feasible: torch.Tensor | None = None
    round_losses: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    solution: dict | None = None
    restart_images: torch.Tensor | None = None

    @property
    def latent(self) -> torch.Tensor | None:
        return None if self.solution is None else self.solution["latent"]

    @property
    def noises(self) -> list[torch.Tensor] | None:
        return None if self.solution is None else self.solution["noises"]


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
        self.variables: list[torch.Tensor] | None = None

    def new_round(self) -> None:
        """Forget the selected iterates (the loss history stays): the selection then comes from later records
        only, e.g. ILO's final round."""
        self.images = self.loss = self.step = self.variables = None

    def last_losses(self) -> torch.Tensor:
        """(N,) measurement loss of the latest recorded iterate."""
        return self.losses[-1]

    def record(self, images: torch.Tensor, loss: torch.Tensor, variables: dict | None = None) -> None:
        """Record an iterate: images (N, ...), loss (N,), and optionally the variables that made it (a dict of
        tensors or lists of tensors, each with N rows or one shared row), selected per row with the images."""
        images, loss = images.detach(), at_least_float32(loss.detach())
        step = len(self.losses)
        self.losses.append(loss.cpu())
        if self.images is None or self.select == "last":
            self.images, self.loss = images.clone(), loss.clone()
            self.step = torch.full_like(loss, step, dtype=torch.long)
            self.variables = tree_map(lambda v: v.detach().expand(loss.shape[0], *v.shape[1:]).clone(), variables)
            return
        better = ~loss.isnan() & ((loss < self.loss) | self.loss.isnan())
        self.images = _where_rows(better, images, self.images)
        self.loss = torch.where(better, loss, self.loss)
        self.step = torch.where(better, torch.full_like(self.step, step), self.step)
        if variables is not None:
            self.variables = tree_map(lambda v, kept: _where_rows(better, v.detach(), kept), variables, self.variables)

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
        solution = tree_map(lambda v: v[rows], self.variables)
        return SolveResult(images=self.images[rows], measurement_loss=selected, loss_history=history,
                           selected_restart=restart.cpu(), selected_step=self.step[rows].cpu(),
                           feasible=None if feasible is None else feasible.cpu(), round_losses=round_losses,
                           info=dict(info or {}), solution=solution,
                           restart_images=self.images.view(restarts, batch_size, *self.images.shape[1:]))


# the batch dimension of each SolveResult field that is not batch-first
BATCH_DIMS = {"loss_history": -1, "round_losses": -1, "restart_images": 1}


def pick_per_image(results: list[SolveResult], chosen: torch.Tensor) -> SolveResult:
    """One SolveResult taking image b's fields from results[chosen[b]] (results of the same solver and settings
    on the same batch); info is the first result's."""
    from dataclasses import fields

    def picker(dim):
        def pick(*leaves):
            if not torch.is_tensor(leaves[0]):
                return leaves[0]
            return torch.stack([leaves[c].select(dim, b) for b, c in enumerate(chosen.tolist())], dim=dim)
        return pick

    picked = {f.name: tree_map(picker(BATCH_DIMS.get(f.name, 0)), *(getattr(r, f.name) for r in results))
              for f in fields(SolveResult) if f.name != "info"}
    return SolveResult(**picked, info=dict(results[0].info))


def tree_map(fn, tree, *others):
    """fn applied to every tensor of a dict / list / tensor tree (and the matching leaves of `others`);
    None stays None."""
    if tree is None:
        return None
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *(o[k] for o in others)) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [tree_map(fn, v, *(o[i] for o in others)) for i, v in enumerate(tree)]
    return fn(tree, *others)


def _where_rows(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Rows of `new` where mask (N,) is true, else rows of `old`."""
    return torch.where(mask.view(-1, *([1] * (new.ndim - 1))), new, old)

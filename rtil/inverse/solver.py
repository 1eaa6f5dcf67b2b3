"""What every solver shares: its common settings, their checks, and the `solve()` skeleton.

    solver.solve(G, operator, y, seed, item_offset) -> SolveResult

checks that the operator fits the generator, draws one random generator per image (rtil/inverse/randomness.py),
builds the measurement objective (rtil/inverse/objectives.py) and an iterate tracker
(rtil/inverse/results.py), and hands them to the solver's own `optimize()`, which sets up its variables
in a latent space (rtil/inverse/latent_spaces.py) and runs the optimisation loop (rtil/inverse/optimize.py).
A solver subclass declares its settings (a dataclass), checks them in `check()`, and implements `optimize()`.
"""

import math
from dataclasses import asdict, dataclass, fields

import torch

from rtil.errors import RtilError
from rtil.inverse.objectives import MeasurementObjective, check_stochastic_noise
from rtil.inverse.optimize import Progress
from rtil.inverse.randomness import image_generators
from rtil.inverse.results import IterateTracker, SolveResult, check_select


def generator_device(G) -> torch.device:
    return next(G.buffers()).device


def check_generator(G, operator, y: torch.Tensor) -> None:
    """Raise if the operator's images do not have the generator's shape, or y does not fit the operator."""
    expected = (G.img_channels, G.resolution, G.resolution)
    if tuple(operator.image_shape) != expected:
        raise RtilError(f"the operator works on images {tuple(operator.image_shape)} but the generator makes "
                        f"{expected}")
    if tuple(y.shape) != (operator.batch_size, *operator.measurement_shape):
        raise RtilError(f"measurements of shape {tuple(y.shape)} do not fit the operator "
                        f"{(operator.batch_size, *operator.measurement_shape)}")


def check_numbers(settings) -> None:
    """Every number of a settings dataclass (alone or in a list) is finite, and a number field holds no true/false
    (YAML's yes/no): the type checks every solver shares; each checks its own ranges."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        items = value if isinstance(value, (list, tuple)) else [value]
        numeric_default = isinstance(f.default, (int, float)) and not isinstance(f.default, bool)
        if numeric_default and any(isinstance(v, bool) for v in items):
            raise RtilError(f"{f.name} must be a number, got {value!r}")
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise RtilError(f"{f.name} must be finite, got {value!r}")


@dataclass
class Solver:
    """Settings every solver has (subclasses add theirs and may change these defaults).

    warmup, rampdown: learning-rate schedule fractions (rtil/inverse/optimize.py).
    perceptual: weight of LPIPS(A x, y) (image-shaped measurements only, when LPIPS is available).
    stochastic_noise: ILO's SNA: std of noise added to generated images in the loss (0 = off), or "measurement"
        for the operator's own noise std.
    select: "best" (lowest measurement loss) or "last" (the last iterate).
    """

    warmup: float = 0.05
    rampdown: float = 0.25
    perceptual: float = 0.0
    stochastic_noise: float | str = 0.0
    select: str = "best"

    method = ""  # the name in configs and result files

    def __post_init__(self):
        check_numbers(self)
        if not self.perceptual >= 0:
            raise RtilError(f"perceptual must be >= 0, got {self.perceptual}")
        check_stochastic_noise(self.stochastic_noise)
        check_select(self.select)
        self.check()

    def check(self) -> None:
        """Check the solver's own settings (raise RtilError)."""

    @property
    def total_steps(self) -> int:
        """Optimisation steps per solve (what a progress bar counts)."""
        return self.steps

    @property
    def feasibility_tolerance(self) -> float | None:
        """Measurement MSE up to which a result counts as feasible, or None when the solver has none."""
        return None

    def settings(self) -> dict:
        return {"method": self.method, **asdict(self)}

    def prepare(self, G) -> dict:
        """What `solve` needs once per generator rather than per batch (e.g. a fitted mapping proxy), as
        keyword arguments for `solve`."""
        return {}

    def check_fits(self, G) -> None:
        """Raise if the settings do not fit generator G (e.g. a cut point it does not have)."""

    def solve(self, G, operator, y: torch.Tensor, seed: int = 0, item_offset: int = 0, perceptual=None,
              progress: Progress = None, **prepared) -> SolveResult:
        """Reconstruct the B images measured as y (B, *measurement_shape) by `operator`; images of the batch
        are items item_offset.. of the data set (for their per-image random starts). `perceptual` is an
        LPIPS network for the perceptual term; `prepared` holds what `prepare(G)` returns (made here if
        missing) and solver-specific options."""
        check_generator(G, operator, y)
        self.check_fits(G)
        gens = image_generators(operator.batch_size, seed, item_offset)
        data_term = MeasurementObjective(operator, y, gens, perceptual, self.perceptual, self.stochastic_noise)
        tracker = IterateTracker(self.select)
        info, round_losses = self.optimize(G, gens, data_term, tracker, progress, **prepared)
        space = info.pop("space", None)  # the latent space of a recorded solution
        result = tracker.result(operator.batch_size, self.feasibility_tolerance,
                                info={"perceptual": data_term.status, **info}, round_losses=round_losses)
        if result.solution is not None:
            with torch.no_grad():
                result.solution["styles"] = space.styles(result.solution["latent"])
            result.info.setdefault("cut", 0)
            result.info["latent_space"] = space.name
        return result

    def optimize(self, G, gens: list[torch.Generator], data_term: MeasurementObjective, tracker: IterateTracker,
                 progress: Progress, **prepared) -> tuple[dict, torch.Tensor | None]:
        """Set up the variables, optimise, record iterates in `tracker` (with their variables, see
        rtil/inverse/solutions.py). Returns (info, round_losses or None); info["space"] is the latent space
        of recorded variables (taken out of the info)."""
        raise NotImplementedError

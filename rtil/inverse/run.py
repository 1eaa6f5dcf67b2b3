"""Solve a set of images with one method on one task: what `invert.py solve` (and a sweep) calls.

    images, names = load_images("digits-test", G.resolution, G.img_channels, num_images=32)  # rtil.data.images
    results = solve_images(G, images, "ilo", "cs", settings, seed, ratio=0.25)
    metrics = reconstruction_metrics(results.reconstructions, images, lpips_metric)  # rtil.evaluation.metrics

Images are split into batches; the batch holding images k..k+B-1 gets operators built with item_offset=k
and per-image random starts drawn for images k.., so every image gets the same operator and start whatever
the batch size (measurement noise too: image k's noise comes from its own generator).
The ground truth is used only to make the measurements.
"""

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from rtil.config import read_yaml
from rtil.errors import RtilError
from rtil.inverse.csgm import CSGM
from rtil.inverse.ilo import ILO
from rtil.inverse.mganprior import MGANPrior
from rtil.inverse.operators import build_operator
from rtil.inverse.pulse import Pulse
from rtil.inverse.randomness import image_generators
from rtil.inverse.results import tree_map
from rtil.inverse.solver import check_generator, generator_device

# Raised by a change meant to change solvers' results for the same settings and seed (2: normal draws made in
# float64, the same on every CPU). Study tuning runs and cells are named with it, so a study never mixes results
# of two versions: work finished under an older one is recomputed.
RESULTS_VERSION = 2

SOLVERS = {"csgm": CSGM, "ilo": ILO, "mganprior": MGANPrior, "pulse": Pulse}
TASKS = ("cs", "inpaint", "sr", "denoise")
TASK_PARAMETER = {"cs": "ratio", "inpaint": "ratio", "sr": "factor", "denoise": "sigma"}  # each task's one parameter
MEASUREMENT_NOISE_STREAM = 0x4015E


def make_solver(method: str, settings: dict | None = None, task: str | None = None):
    """The solver for `method` with `settings` (field -> value; missing fields keep their defaults). A
    'method' entry, if present, must name the same method (so a config file cannot be used for another).
    A 'tasks' entry maps task names to settings that replace the others for that task (e.g. ILO's smaller
    l1 balls for denoising); all of them are checked, and those of `task` (if given) are applied."""
    if method not in SOLVERS:
        raise RtilError(f"unknown method {method!r}; choose one of {', '.join(SOLVERS)}")
    settings = dict(settings or {})
    declared = settings.pop("method", method)
    if declared != method:
        raise RtilError(f"the settings are for method {declared!r}, not {method!r}")
    per_task = settings.pop("tasks", None) or {}
    if not isinstance(per_task, dict):
        raise RtilError(f"{method} setting 'tasks' must map task names to settings, got {per_task!r}")
    for name, changes in per_task.items():
        if name not in TASKS:
            raise RtilError(f"{method} setting 'tasks' names unknown task {name!r}; choose from {', '.join(TASKS)}")
        if not isinstance(changes, dict):
            raise RtilError(f"{method} setting 'tasks.{name}' must be a mapping of settings, got {changes!r}")
        if "method" in changes or "tasks" in changes:
            raise RtilError(f"{method} setting 'tasks.{name}' cannot set 'method' or 'tasks'")
        try:
            _solver(method, {**settings, **changes})
        except RtilError as e:
            raise RtilError(f"{method} settings with their 'tasks.{name}' entry: {e}") from None
    return _solver(method, {**settings, **per_task.get(task, {})})


def _solver(method: str, settings: dict):
    cls = SOLVERS[method]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise RtilError(f"unknown {method} setting(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**settings)
    except (TypeError, ValueError) as e:  # e.g. steps: abc
        raise RtilError(f"bad {method} settings ({type(e).__name__}: {e})") from None


def check_task_parameter(task: str, value) -> None:
    """Raise unless `value` is a valid parameter of `task` (ratio in (0, 1], integer factor >= 2, sigma >= 0),
    checked by building the task's operator for a nominal 64-px image (a factor that does not divide the real
    size is caught when the images are known)."""
    if task not in TASKS:
        raise RtilError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    build_operator(task, (1, 64, 64), 1, seed=0, **{TASK_PARAMETER[task]: value})


def load_settings(path: str | Path) -> dict:
    """A solver settings file (YAML mapping of setting -> value, optionally with 'method'; may be empty)."""
    return read_yaml(path, empty_ok=True)


def measurement_view(operator, y: torch.Tensor) -> torch.Tensor:
    """Measurements as images (B, C, H, W) to look at: image-shaped measurements as they are (masks,
    denoising), low-resolution ones nearest-up-sampled, others (CS) back-projected, A^T y / E[A^T A]."""
    shape = tuple(operator.measurement_shape)
    if shape == tuple(operator.image_shape):
        return operator.adjoint(y)
    if len(shape) == 3:
        return F.interpolate(y, size=operator.image_shape[1:], mode="nearest")
    gain = getattr(operator, "scale", 1.0) ** 2 * getattr(operator, "m", 1)
    return operator.adjoint(y) / gain


@dataclass
class InversionResults:
    """Results for N images (in the order given).

    reconstructions: (N, C, H, W) in [-1, 1]; measurements: (N, *measurement_shape);
    measurement_views: (N, C, H, W) the measurements as images (see measurement_view);
    measurement_loss, selected_step, selected_restart: (N,); feasible: (N,) bool or None;
    round_losses: (rounds, N) measurement loss at the end of each round (ILO) or None;
    operators: describe() of each batch's operator; solver: the solver settings; info: solver notes;
    solution: the selected iterates' variables, one row per image (rtil/inverse/solutions.py), or None.
    """

    reconstructions: torch.Tensor
    measurements: torch.Tensor
    measurement_views: torch.Tensor
    measurement_loss: torch.Tensor
    selected_step: torch.Tensor
    selected_restart: torch.Tensor
    feasible: torch.Tensor | None
    round_losses: torch.Tensor | None = None
    operators: list[dict] = field(default_factory=list)
    solver: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    solution: dict | None = None


def solve_images(G, images: torch.Tensor, method: str, task: str, settings: dict | None, seed: int, *,
                 ratio: float | None = None, factor: int | None = None, sigma: float | None = None,
                 batch_size: int = 8, first_index: int = 0, operator_options: dict | None = None,
                 perceptual=None, progress: bool = False) -> InversionResults:
    """Measure `images` (N, C, H, W) in [-1, 1] with the `task` operator and reconstruct them with `method`.

    ratio (cs, inpaint), factor (sr), sigma (denoise): the task's parameter; settings: solver settings
    (see make_solver; their 'tasks' entry for `task` applies); seed: operators, measurement noise and random
    starts; first_index: data-set index of images[0] (for per-image draws); operator_options: extra
    build_operator options (e.g. noise_std);
    perceptual: LPIPS network for a perceptual loss term (loaded if None and the solver's weight is > 0).
    """
    if task not in TASKS:
        raise RtilError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    solver = make_solver(method, settings, task)
    if images.ndim != 4 or images.shape[0] == 0:
        raise RtilError(f"images must be a non-empty (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise RtilError(f"batch_size must be >= 1, got {batch_size}")
    device = generator_device(G)
    if perceptual is None and solver.perceptual > 0 and task != "cs":  # CS measurements are no images for LPIPS
        from rtil.evaluation.metrics import load_lpips

        perceptual = load_lpips(device)
    if perceptual is not None:
        perceptual.requires_grad_(False)
    prepared = solver.prepare(G)  # once per generator, e.g. the mapping proxy

    from tqdm import tqdm

    num_batches = -(-images.shape[0] // batch_size)
    bar = tqdm(total=num_batches * solver.total_steps, desc=f"{method} {task}", unit="step", disable=not progress)
    parts, operators, info = [], [], {}
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        b, offset = x.shape[0], first_index + start
        random_options = {"item_offset": offset} if task in ("cs", "inpaint") else {}
        operator = build_operator(task, tuple(x.shape[1:]), b, ratio=ratio, factor=factor, sigma=sigma, seed=seed,
                                  **random_options, **(operator_options or {})).to(device)
        with torch.no_grad():
            noise = image_generators(b, seed, offset, stream=MEASUREMENT_NOISE_STREAM)
            y = operator.measure(x, generator=noise)
        check_generator(G, operator, y)
        result = solver.solve(G, operator, y, seed=seed, item_offset=offset, perceptual=perceptual,
                              progress=bar.update, **prepared)
        with torch.no_grad():
            view = measurement_view(operator, y)
        parts.append((result, y, view))
        operators.append(operator.describe())
        info = result.info
    bar.close()

    def cat(name):
        return torch.cat([getattr(r, name).detach().cpu() for r, _, _ in parts])

    feasible = None if parts[0][0].feasible is None else cat("feasible")
    round_losses = None
    if parts[0][0].round_losses is not None:
        round_losses = torch.cat([r.round_losses.cpu() for r, _, _ in parts], dim=1)
    solution = tree_map(lambda *rows: torch.cat([t.detach().cpu() for t in rows]),
                        *[r.solution for r, _, _ in parts])
    return InversionResults(
        reconstructions=cat("images"), measurements=torch.cat([y.cpu() for _, y, _ in parts]),
        measurement_views=torch.cat([v.cpu() for _, _, v in parts]), measurement_loss=cat("measurement_loss"),
        selected_step=cat("selected_step"), selected_restart=cat("selected_restart"), feasible=feasible,
        round_losses=round_losses, operators=operators, solver=solver.settings(), info=info, solution=solution)

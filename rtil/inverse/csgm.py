"""CSGM (Bora et al. 2017): optimise the generator's input latent to explain the measurements.

PGGAN: the latent z (whatever `latent_space` says). StyleGAN2: z (through the mapping network), one w
shared by all layers, or W+ (one w per layer), chosen by `latent_space`; the noise maps are the generator's
stored 'const' maps, or optimised from N(0, 1) with `optimize_noises`. Several random restarts per image run
side by side; each image keeps the iterate with the lowest measurement loss over all restarts and steps (or
the last iterate of its best restart, select="last").
"""

from dataclasses import dataclass

import torch

from rtil.errors import RtilError
from rtil.inverse.solvers import (
    IterateTracker,
    MeasurementObjective,
    Progress,
    Solver,
    SolveResult,
    check_generator,
    check_schedule,
    check_select,
    check_stochastic_noise,
    generator_device,
    image_generators,
    randn_rows,
    record_final,
    run_optimizer,
)

LATENT_SPACES = ("z", "w", "w+")


@dataclass
class CSGM(Solver):
    """CSGM settings (defaults from a search on trained digits StyleGAN2s, see configs/invert/csgm.yaml).

    latent_space: StyleGAN2: "z", "w" (one style for all layers) or "w+" (one per layer); PGGAN: always z.
    optimize_noises: StyleGAN2: optimise the noise maps too (from N(0, 1)); else use the stored const maps.
    steps: optimiser steps per restart; lr, warmup, rampdown: Adam with the warm-up/cosine schedule.
    restarts: random initialisations per image (run in parallel).
    perceptual: weight of LPIPS(A x, y) (image-shaped measurements only, when LPIPS is available).
    stochastic_noise: ILO's SNA: std of noise added to generated images in the loss (0 = off), or "measurement"
        for the operator's own noise std.
    select: "best" (lowest measurement loss) or "last".
    """

    latent_space: str = "w+"
    optimize_noises: bool = False
    steps: int = 300
    lr: float = 0.2
    warmup: float = 0.05
    rampdown: float = 0.25
    restarts: int = 4
    perceptual: float = 0.0
    stochastic_noise: float | str = 0.0
    select: str = "best"

    method = "csgm"

    def __post_init__(self):
        if self.latent_space not in LATENT_SPACES:
            raise RtilError(f"latent_space must be one of {LATENT_SPACES}, got {self.latent_space!r}")
        if self.steps < 1 or self.restarts < 1:
            raise RtilError(f"steps and restarts must be >= 1, got {self.steps} and {self.restarts}")
        check_schedule(self.lr, self.warmup, self.rampdown)
        check_stochastic_noise(self.stochastic_noise)
        check_select(self.select)

    def solve(self, G, operator, y: torch.Tensor, seed: int = 0, item_offset: int = 0, perceptual=None,
              progress: Progress = None) -> SolveResult:
        """Reconstruct the B images measured as y (B, *measurement_shape) by `operator`; images of the batch
        are items item_offset.. of the data set (for their per-image random starts)."""
        check_generator(G, operator, y)
        stylegan = G.family == "stylegan2"
        b, r, device = operator.batch_size, self.restarts, generator_device(G)
        gens = image_generators(b, seed, item_offset)
        z = randn_rows(gens, (G.z_dim,), r, device)
        params = []
        if not stylegan or self.latent_space == "z":
            latent = z.requires_grad_()
        else:
            with torch.no_grad():
                w = G.mapping(z)
            latent = (w if self.latent_space == "w" else w[:, None].repeat(1, G.num_ws, 1)).requires_grad_()
        params.append(latent)
        noises = []
        if stylegan:
            if self.optimize_noises:
                noises = [randn_rows(gens, (1, *hw), r, device).requires_grad_() for hw in G.noise_shapes()]
                params += noises
            else:
                noises = G.make_noises(1, "const")

        def render() -> torch.Tensor:
            if not stylegan:
                return G.synthesize(G.start_state(latent))
            if self.latent_space == "z":
                ws = G.styles(latent)
            elif self.latent_space == "w":
                ws = latent[:, None].expand(-1, G.num_ws, -1)
            else:
                ws = latent
            return G.synthesize(G.start_state(ws, noises))

        objective = MeasurementObjective(operator, y, gens, perceptual, self.perceptual, self.stochastic_noise)
        tracker = IterateTracker(self.select)
        run_optimizer(params, render, objective, self.steps, self.lr, self.warmup, self.rampdown, tracker,
                      progress=progress)
        record_final(render, objective, tracker)
        space = self.latent_space if stylegan else "z"
        return tracker.result(b, info={"perceptual": objective.status, "latent_space": space})

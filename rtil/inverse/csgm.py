"""CSGM (Bora et al. 2017): optimise the generator's input latent to explain the measurements.

The latent lives in `latent_space` (rtil/inverse/latent_spaces.py: z, one w for all layers, or W+; a PGGAN
has only z); the noise maps are the generator's stored const maps, or optimised from N(0, 1) with
`optimize_noises`. Several random restarts per image run side by side; each image keeps the iterate with
the lowest measurement loss over all restarts and steps (or the last iterate of its best restart,
select="last").
"""

from dataclasses import dataclass

from rtil.errors import RtilError
from rtil.inverse.latent_spaces import latent_space
from rtil.inverse.optimize import check_schedule, record_final, run_optimizer
from rtil.inverse.solver import Solver

LATENT_SPACES = ("z", "w", "w+")


@dataclass
class CSGM(Solver):
    """CSGM settings (defaults from a search on trained digits StyleGAN2s, see configs/invert/csgm.yaml).

    latent_space: "z", "w" (one style for all layers) or "w+" (one per layer); PGGAN: always z.
    optimize_noises: optimise the noise maps too (from N(0, 1)); else use the stored const maps.
    steps: optimiser steps per restart; lr: Adam's with the warm-up/cosine schedule.
    restarts: random initialisations per image (run in parallel).
    Common settings (warmup, rampdown, perceptual, stochastic_noise, select): see Solver.
    """

    latent_space: str = "w+"
    optimize_noises: bool = False
    steps: int = 300
    lr: float = 0.2
    restarts: int = 4

    method = "csgm"

    def check(self):
        if self.latent_space not in LATENT_SPACES:
            raise RtilError(f"latent_space must be one of {LATENT_SPACES}, got {self.latent_space!r}")
        if self.steps < 1 or self.restarts < 1:
            raise RtilError(f"steps and restarts must be >= 1, got {self.steps} and {self.restarts}")
        check_schedule(self.lr, self.warmup, self.rampdown)

    def optimize(self, G, gens, data_term, tracker, progress):
        space = latent_space(G, self.latent_space, noise_start="gaussian" if self.optimize_noises else "const")
        latent, noises = space.draw(gens, self.restarts)
        params = [latent.requires_grad_()] + ([n.requires_grad_() for n in noises] if self.optimize_noises else [])

        def render():
            return G.synthesize(space.start_state(latent, noises))

        def variables():
            return {"latent": latent, "noises": noises}

        run_optimizer(params, render, data_term, self.steps, self.lr, self.warmup, self.rampdown, tracker,
                      progress=progress, variables=variables)
        record_final(render, data_term, tracker, variables)
        return {"space": space}, None

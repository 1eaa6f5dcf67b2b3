"""PULSE-style restarts (Menon et al. 2020): many random starts with the latent on the sphere.

The latent lives in the Gaussianised W+ of the mapping proxy ("gaussian-w+", rtil/inverse/latent_spaces.py;
a PGGAN's z): each row kept on the sphere of radius sqrt(dim), with a GeoCross penalty between the rows.
Only the first `noise_layers` noise maps are optimised, each kept on the sphere of its start norm (PULSE's
num_trainable_noise_layers, 5 of 17 at 1024 px: optimising the fine maps too lets them paint any image). The
other maps keep their start: the generator's stored const maps (noise_start="const") or N(0, 1) draws per
restart ("random"). All restarts of all images run in one batch. Each image gets the iterate with the lowest
measurement loss over its restarts and steps, and a feasibility flag: measurement loss <= tolerance. Unlike
PULSE we never fail with "no solution found": the best iterate is returned whether or not it is feasible.
"""

import math
from dataclasses import dataclass

from rtil.errors import RtilError
from rtil.inverse.latent_spaces import check_noise_start, latent_space, prepare_proxy
from rtil.inverse.objectives import geocross
from rtil.inverse.optimize import check_schedule, record_final, run_optimizer
from rtil.inverse.projections import norms, project_to_sphere_
from rtil.inverse.solver import Solver


@dataclass
class Pulse(Solver):
    """PULSE-restart settings (defaults from a search on trained digits StyleGAN2s, see configs/invert/pulse.yaml).

    restarts: random starts per image; steps: optimiser steps per start; lr: Adam's (schedule: see Solver).
    geocross: weight of the GeoCross penalty between W+ rows.
    noise_layers: how many of the first noise maps are optimised (0: none).
    noise_start: "const" (the generator's stored maps) or "random" (N(0, 1) per restart, on the sphere sqrt(H W)).
    tolerance: an image's result is feasible when its measurement MSE is <= tolerance.
    proxy_samples, proxy_seed: fit of the mapping proxy.
    Common settings (warmup, rampdown, perceptual, stochastic_noise, select): see Solver.
    """

    restarts: int = 4
    steps: int = 200
    lr: float = 0.5
    geocross: float = 0.0
    noise_layers: int = 3
    noise_start: str = "const"
    tolerance: float = 1e-3
    proxy_samples: int = 20000
    proxy_seed: int = 0

    method = "pulse"

    def check(self):
        if self.steps < 1 or self.restarts < 1:
            raise RtilError(f"steps and restarts must be >= 1, got {self.steps} and {self.restarts}")
        if self.tolerance < 0 or self.geocross < 0:
            raise RtilError(f"tolerance and geocross must be >= 0, got {self.tolerance} and {self.geocross}")
        if self.noise_layers < 0:
            raise RtilError(f"noise_layers must be >= 0, got {self.noise_layers}")
        check_noise_start(self.noise_start)
        check_schedule(self.lr, self.warmup, self.rampdown)

    @property
    def feasibility_tolerance(self) -> float:
        return self.tolerance

    def prepare(self, G) -> dict:
        return {"proxy": prepare_proxy(G, self.proxy_samples, self.proxy_seed)}

    def optimize(self, G, gens, data_term, tracker, progress, proxy=None):
        proxy = proxy or self.prepare(G)["proxy"]
        space = latent_space(G, "gaussian-w+", proxy, self.noise_start)
        latent, noises = space.draw(gens, self.restarts)
        radius = math.sqrt(latent.shape[-1])
        project_to_sphere_(latent, dim=-1, radius=radius)
        trainable = [n.requires_grad_() for n in noises[:self.noise_layers]]
        noise_radii = norms(trainable, (1, 2, 3))
        params = [latent.requires_grad_()] + trainable

        def render():
            return G.synthesize(space.start_state(latent, noises))

        def objective(images):
            data, measured = data_term(images)
            if self.geocross > 0:
                data = data + self.geocross * geocross(latent)
            return data, measured

        def project():
            project_to_sphere_(latent, dim=-1, radius=radius)
            for n, r in zip(trainable, noise_radii, strict=True):
                project_to_sphere_(n, dim=(1, 2, 3), radius=r)

        def variables():
            return {"latent": latent, "noises": noises}

        run_optimizer(params, render, objective, self.steps, self.lr, self.warmup, self.rampdown, tracker,
                      after_step=project, progress=progress, variables=variables)
        record_final(render, objective, tracker, variables)
        info = {"trainable_noise_maps": len(trainable), "space": space}
        if proxy is not None:
            info["mapping_proxy"] = proxy.describe()
        return info, None

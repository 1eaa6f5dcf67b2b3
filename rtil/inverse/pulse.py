"""PULSE-style restarts (Menon et al. 2020): many random starts with the latent on the sphere.

StyleGAN2: W+ latents in the Gaussianised space of the mapping proxy (one row per layer, each kept on the
sphere of radius sqrt(w_dim)), a GeoCross penalty between the rows, and the noise maps optimised on their own
spheres (radius sqrt(H W)). PGGAN: z on the sphere of radius sqrt(z_dim). All restarts of all images run in
one batch. Each image gets the iterate with the lowest measurement loss over its restarts and steps, and a
feasibility flag: measurement loss <= tolerance. Unlike PULSE we never fail with "no solution found": the
best iterate is returned whether or not it is feasible.
"""

import math
from dataclasses import dataclass

import torch

from rtil.errors import RtilError
from rtil.inverse.mapping_proxy import MappingProxy, fit_mapping_proxy
from rtil.inverse.solvers import (
    IterateTracker,
    MeasurementObjective,
    Progress,
    Solver,
    SolveResult,
    check_generator,
    check_schedule,
    check_select,
    generator_device,
    geocross,
    image_generators,
    randn_rows,
    record_final,
    run_optimizer,
    to_sphere_,
)


@dataclass
class Pulse(Solver):
    """PULSE-restart settings (defaults from a search on trained digits StyleGAN2s, see configs/invert/pulse.yaml).

    restarts: random starts per image; steps: optimiser steps per start; lr, warmup, rampdown: Adam schedule.
    geocross: weight of the GeoCross penalty between W+ rows (StyleGAN2).
    optimize_noises: StyleGAN2: optimise the noise maps (on spheres); else use the stored const maps.
    tolerance: an image's result is feasible when its measurement MSE is <= tolerance.
    perceptual, stochastic_noise, select: as in CSGM.
    proxy_samples, proxy_seed: fit of the mapping proxy (StyleGAN2).
    """

    restarts: int = 4
    steps: int = 200
    lr: float = 0.5
    warmup: float = 0.05
    rampdown: float = 0.25
    geocross: float = 0.0
    optimize_noises: bool = True
    tolerance: float = 1e-3
    perceptual: float = 0.0
    stochastic_noise: float = 0.0
    select: str = "best"
    proxy_samples: int = 20000
    proxy_seed: int = 0

    method = "pulse"

    def __post_init__(self):
        if self.steps < 1 or self.restarts < 1:
            raise RtilError(f"steps and restarts must be >= 1, got {self.steps} and {self.restarts}")
        if self.tolerance < 0 or self.geocross < 0:
            raise RtilError(f"tolerance and geocross must be >= 0, got {self.tolerance} and {self.geocross}")
        check_schedule(self.lr, self.warmup, self.rampdown)
        check_select(self.select)

    def solve(self, G, operator, y: torch.Tensor, seed: int = 0, item_offset: int = 0, perceptual=None,
              proxy: MappingProxy | None = None, progress: Progress = None) -> SolveResult:
        """Reconstruct the B images measured as y by `operator` (see CSGM.solve); `proxy` skips the fit."""
        check_generator(G, operator, y)
        stylegan = G.family == "stylegan2"
        b, r, device = operator.batch_size, self.restarts, generator_device(G)
        gens = image_generators(b, seed, item_offset)
        if stylegan:
            proxy = proxy or fit_mapping_proxy(G, self.proxy_samples, self.proxy_seed)
            latent = randn_rows(gens, (G.num_ws, G.w_dim), r, device)
            latent_radius = math.sqrt(G.w_dim)
        else:
            latent = randn_rows(gens, (G.z_dim,), r, device)
            latent_radius = math.sqrt(G.z_dim)
        to_sphere_([latent], [latent_radius], dims=-1)
        params = [latent.requires_grad_()]
        noises, noise_radii = [], []
        if stylegan and self.optimize_noises:
            noises = [randn_rows(gens, (1, *hw), r, device) for hw in G.noise_shapes()]
            noise_radii = [math.sqrt(h * w) for h, w in G.noise_shapes()]
            to_sphere_(noises, noise_radii, dims=(1, 2, 3))
            params += [n.requires_grad_() for n in noises]
        elif stylegan:
            noises = G.make_noises(1, "const")

        def render() -> torch.Tensor:
            if stylegan:
                return G.synthesize(G.start_state(proxy(latent), noises))
            return G.synthesize(G.start_state(latent))

        data_term = MeasurementObjective(operator, y, gens, perceptual, self.perceptual, self.stochastic_noise)

        def objective(images):
            data, measured = data_term(images)
            if stylegan and self.geocross > 0:
                data = data + self.geocross * geocross(latent)
            return data, measured

        def project():
            to_sphere_([latent], [latent_radius], dims=-1)
            if self.optimize_noises and noises:
                to_sphere_(noises, noise_radii, dims=(1, 2, 3))

        tracker = IterateTracker(self.select)
        run_optimizer(params, render, objective, self.steps, self.lr, self.warmup, self.rampdown, tracker,
                      after_step=project, progress=progress)
        record_final(render, objective, tracker)
        info = {"perceptual": data_term.status}
        if stylegan:
            info["mapping_proxy"] = proxy.describe()
        return tracker.result(b, feasibility_tolerance=self.tolerance, info=info)

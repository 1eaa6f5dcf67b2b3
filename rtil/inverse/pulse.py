"""PULSE-style restarts (Menon et al. 2020): many random starts with the latent on the sphere.

StyleGAN2: W+ latents in the Gaussianised space of the mapping proxy (one row per layer, each kept on the
sphere of radius sqrt(w_dim)), a GeoCross penalty between the rows, and only the first `noise_layers` noise
maps optimised, each kept on the sphere of its start norm (PULSE's num_trainable_noise_layers, 5 of 17 at
1024 px: optimising the fine maps too lets them paint any image). The other maps keep their start: the
generator's stored const maps (noise_start="const") or N(0, 1) draws per restart ("random").
PGGAN: z on the sphere of radius sqrt(z_dim). All restarts of all images run in
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
    check_noise_start,
    check_schedule,
    check_select,
    check_stochastic_noise,
    generator_device,
    geocross,
    image_generators,
    norms,
    randn_rows,
    record_final,
    run_optimizer,
    start_noises,
    to_sphere_,
)


@dataclass
class Pulse(Solver):
    """PULSE-restart settings (defaults from a search on trained digits StyleGAN2s, see configs/invert/pulse.yaml).

    restarts: random starts per image; steps: optimiser steps per start; lr, warmup, rampdown: Adam schedule.
    geocross: weight of the GeoCross penalty between W+ rows (StyleGAN2).
    noise_layers: StyleGAN2: how many of the first noise maps are optimised (0: none).
    noise_start: "const" (the generator's stored maps) or "random" (N(0, 1) per restart, on the sphere sqrt(H W)).
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
    noise_layers: int = 3
    noise_start: str = "const"
    tolerance: float = 1e-3
    perceptual: float = 0.0
    stochastic_noise: float | str = 0.0
    select: str = "best"
    proxy_samples: int = 20000
    proxy_seed: int = 0

    method = "pulse"

    def __post_init__(self):
        if self.steps < 1 or self.restarts < 1:
            raise RtilError(f"steps and restarts must be >= 1, got {self.steps} and {self.restarts}")
        if self.tolerance < 0 or self.geocross < 0:
            raise RtilError(f"tolerance and geocross must be >= 0, got {self.tolerance} and {self.geocross}")
        if self.noise_layers < 0:
            raise RtilError(f"noise_layers must be >= 0, got {self.noise_layers}")
        check_noise_start(self.noise_start)
        check_schedule(self.lr, self.warmup, self.rampdown)
        check_stochastic_noise(self.stochastic_noise)
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
        noises, trainable = [], []
        if stylegan:
            noises = start_noises(G, gens, r, self.noise_start, device)
            trainable = [n.requires_grad_() for n in noises[:self.noise_layers]]
            params += trainable
        noise_radii = norms(trainable, (1, 2, 3))

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
            to_sphere_(trainable, noise_radii, dims=(1, 2, 3))

        tracker = IterateTracker(self.select)
        run_optimizer(params, render, objective, self.steps, self.lr, self.warmup, self.rampdown, tracker,
                      after_step=project, progress=progress)
        record_final(render, objective, tracker)
        info = {"perceptual": data_term.status, "trainable_noise_maps": len(trainable)}
        if stylegan:
            info["mapping_proxy"] = proxy.describe()
        return tracker.result(b, feasibility_tolerance=self.tolerance, info=info)

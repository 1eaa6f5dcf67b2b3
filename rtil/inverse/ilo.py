"""Intermediate Layer Optimization (ILO, Daras et al. 2021) on the generators' cut points.

Rounds r = 0, 1, ... work at cut points cut_points[r] (cut_points[0] must be 0).

Round 0 (cut 0). StyleGAN2: W+ latents v (B, num_ws, w_dim) in the Gaussianised space of the mapping proxy
fitted from this generator's own mapping network (w = proxy(v)), and the noise maps. PGGAN: the latent z.

Round r >= 1 (cut c). The features at cut c, started from the previous round's solution, are optimised too;
every variable upstream of the cut is dropped (frozen at its value), the StyleGAN2 W+ rows and noise maps
used downstream of the cut keep being optimised. With `project_l1` the features are projected, after every
step, onto the l1 ball of radius l1_radius[r - 1] * (C H W) around the previous round's solution (Duchi's
sort-based projection; per image).

Latent rows and noise maps start on the spheres of radius sqrt(dim) (their typical norm); with
`project_sphere` they are rescaled after every step to the norms they had at the start of the round (ILO's
sphere projection), i.e. they stay on those spheres. The loss is the measurement MSE, plus optional
LPIPS(A x, y), plus GeoCross on the W+ rows still optimised, per image. (The authors' code slices the
*batch* dimension by mistake, so their GeoCross is only active in round 0; ours is the intended term.)

Skip-RGB path: our StyleGAN2 cut-point state carries the running skip image of the blocks before the cut, so
every round keeps the frozen upstream RGB contributions. The official ILO (and RTIL's copy) drops them for
start_layer >= 1, which makes rounds >= 1 use a different generator (pitfall 26 of the reference notes); we do
not reproduce that.

Each round uses a fresh Adam with the warm-up/cosine schedule. Every iterate of every round is recorded (each
round's final one too); selection: the lowest measurement loss over all of them, or the very last iterate.
"""

from dataclasses import dataclass, field

import torch

from rtil.errors import RtilError
from rtil.inverse.mapping_proxy import MappingProxy, fit_mapping_proxy
from rtil.inverse.projections import project_l1_ball
from rtil.inverse.solvers import (
    IterateTracker,
    MeasurementObjective,
    Progress,
    Solver,
    SolveResult,
    check_generator,
    check_schedule,
    check_select,
    first_style_after,
    generator_device,
    geocross,
    image_generators,
    norms,
    randn_rows,
    record_final,
    run_optimizer,
    stylegan2_state,
    to_sphere_,
)
from rtil.models.state import SynthesisState


@dataclass
class ILO(Solver):
    """ILO settings (defaults from a search on trained digits StyleGAN2s, see configs/invert/ilo.yaml).

    cut_points: cut point of each round, starting with 0.
    steps, lr: per round (one value each).
    warmup, rampdown: schedule fractions of each round's steps.
    project_sphere: keep latent rows and noise maps at their round-start norms.
    project_l1: project the round's features onto the l1 ball around the previous round's solution.
    l1_radius: per round >= 1, the ball's radius per feature entry (radius = l1_radius * C * H * W).
    geocross: weight of the GeoCross penalty between the W+ rows still optimised (StyleGAN2).
    perceptual, stochastic_noise, select: as in CSGM.
    proxy_samples, proxy_seed: fit of the mapping proxy (StyleGAN2).
    """

    cut_points: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: list[int] = field(default_factory=lambda: [200, 100, 100])
    lr: list[float] = field(default_factory=lambda: [0.3, 0.05, 0.05])
    warmup: float = 0.05
    rampdown: float = 0.25
    project_sphere: bool = True
    project_l1: bool = True
    l1_radius: list[float] = field(default_factory=lambda: [0.3, 0.15])
    geocross: float = 0.1
    perceptual: float = 0.0
    stochastic_noise: float = 0.0
    select: str = "best"
    proxy_samples: int = 20000
    proxy_seed: int = 0

    method = "ilo"

    def __post_init__(self):
        self.cut_points = [int(c) for c in self.cut_points]
        self.steps = [int(s) for s in self.steps]
        self.lr = [float(v) for v in self.lr]
        self.l1_radius = [float(v) for v in self.l1_radius]
        rounds = len(self.cut_points)
        if rounds < 1 or self.cut_points[0] != 0:
            raise RtilError(f"cut_points must start with 0 (round 0 optimises the latents), got {self.cut_points}")
        if any(b <= a for a, b in zip(self.cut_points, self.cut_points[1:], strict=False)):
            raise RtilError(f"cut_points must increase, got {self.cut_points}")
        if len(self.steps) != rounds or len(self.lr) != rounds:
            raise RtilError(f"steps and lr need one value per round ({rounds}), got {self.steps} and {self.lr}")
        if len(self.l1_radius) != rounds - 1:
            raise RtilError(f"l1_radius needs one value per round after the first ({rounds - 1}), "
                            f"got {self.l1_radius}")
        if any(s < 1 for s in self.steps) or any(r < 0 for r in self.l1_radius) or self.geocross < 0:
            raise RtilError("steps must be >= 1 and l1_radius, geocross >= 0")
        for lr in self.lr:
            check_schedule(lr, self.warmup, self.rampdown)
        check_select(self.select)

    @property
    def total_steps(self) -> int:
        return sum(self.steps)

    def solve(self, G, operator, y: torch.Tensor, seed: int = 0, item_offset: int = 0, perceptual=None,
              proxy: MappingProxy | None = None, progress: Progress = None,
              on_round_end=None) -> SolveResult:
        """Reconstruct the B images measured as y by `operator` (see CSGM.solve); `proxy` skips the fit.

        on_round_end(r, features, center), if given, is called after every round r >= 1 with that round's
        final features and the previous round's solution at the same cut (both (B, C, H, W)), for checks."""
        check_generator(G, operator, y)
        if self.cut_points[-1] > G.highest_cut:
            raise RtilError(f"ILO cut point {self.cut_points[-1]} does not exist: this generator's cut points "
                            f"are 0..{G.highest_cut}")
        stylegan = G.family == "stylegan2"
        b, device = operator.batch_size, generator_device(G)
        gens = image_generators(b, seed, item_offset)
        if stylegan:
            proxy = proxy or fit_mapping_proxy(G, self.proxy_samples, self.proxy_seed)
            latent = randn_rows(gens, (G.num_ws, G.w_dim), 1, device)
            noises = [randn_rows(gens, (1, *hw), 1, device) for hw in G.noise_shapes()]
        else:
            latent = randn_rows(gens, (1, G.z_dim), 1, device)  # one row, like W+
            noises = []
        # Start on the spheres of the typical norms: sqrt(dim) for latent rows and noise maps.
        to_sphere_([latent], [latent.shape[-1] ** 0.5], dims=-1)
        to_sphere_(noises, [(n.shape[-2] * n.shape[-1]) ** 0.5 for n in noises], dims=(1, 2, 3))
        data_term = MeasurementObjective(operator, y, gens, perceptual, self.perceptual, self.stochastic_noise)
        tracker = IterateTracker(self.select)
        solution: SynthesisState | None = None  # the previous round's solution, at this round's cut
        for r, cut in enumerate(self.cut_points):
            latent, noises, features = self._round(G, proxy, r, cut, latent, noises, solution, data_term, tracker,
                                                   progress)
            if features is not None and on_round_end is not None:
                on_round_end(r, features.clone(), solution.x)
            if r + 1 < len(self.cut_points):
                with torch.no_grad():
                    state = self._state(G, proxy, cut, features, latent, noises, solution)
                    solution = G.advance(state, self.cut_points[r + 1])
        info = {"perceptual": data_term.status}
        if stylegan:
            info["mapping_proxy"] = proxy.describe()
        return tracker.result(b, info=info)

    def _round(self, G, proxy, r, cut, latent, noises, solution, data_term, tracker, progress):
        """Round r at `cut`: optimise the variables used downstream of the cut (and the features at the cut,
        from the previous solution); record every iterate and the final one. Returns the updated
        (latent, noises, features), detached."""
        stylegan = G.family == "stylegan2"
        # StyleGAN2: the W+ rows and noise maps from `first` on are used downstream of the cut.
        # PGGAN: its one latent row is upstream of every cut > 0.
        first = first_style_after(cut) if stylegan else (0 if cut == 0 else 1)
        rows = latent[:, first:].clone().requires_grad_()
        own_noises = [n.clone().requires_grad_() for n in noises[first:]]
        params = ([rows] if rows.numel() else []) + own_noises
        features = center = radius = None
        if cut > 0:
            center = solution.x.detach()
            features = center.clone().requires_grad_()
            params.append(features)
            radius = self.l1_radius[r - 1] * center[0].numel()
        frozen_latent, frozen_noises = latent[:, :first], noises[:first]
        latent_norms, noise_norms = norms([rows], -1), norms(own_noises, (1, 2, 3))

        def render() -> torch.Tensor:
            full_latent = torch.cat([frozen_latent, rows], dim=1)
            return G.synthesize(self._state(G, proxy, cut, features, full_latent, frozen_noises + own_noises,
                                            solution))

        def objective(images):
            data, measured = data_term(images)
            if stylegan and self.geocross > 0:
                data = data + self.geocross * geocross(rows)
            return data, measured

        def project():
            if self.project_sphere:
                to_sphere_([rows], latent_norms, dims=-1)
                to_sphere_(own_noises, noise_norms, dims=(1, 2, 3))
            if features is not None and self.project_l1:
                with torch.no_grad():
                    features.copy_(project_l1_ball(features, radius, center))

        run_optimizer(params, render, objective, self.steps[r], self.lr[r], self.warmup, self.rampdown, tracker,
                      after_step=project, progress=progress)
        record_final(render, objective, tracker)
        latent = torch.cat([frozen_latent, rows.detach()], dim=1)
        noises = frozen_noises + [n.detach() for n in own_noises]
        return latent, noises, None if features is None else features.detach()

    @staticmethod
    def _state(G, proxy, cut, features, latent, noises, solution) -> SynthesisState:
        """The state at `cut` for these variables. Features (and, for StyleGAN2, the skip image of the frozen
        upstream blocks, from the previous solution) are used for cut > 0; latent rows upstream are ignored."""
        if G.family != "stylegan2":
            return G.start_state(latent[:, 0]) if cut == 0 else SynthesisState(x=features, cut=cut)
        img = solution.img if cut > 0 else None
        return stylegan2_state(G, cut, features, proxy(latent), noises, img)

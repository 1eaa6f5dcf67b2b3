"""Intermediate Layer Optimization (ILO, Daras et al. 2021, Algorithm 1 and section 4) on the cut points.

Rounds r = 0, 1, ... work at cut points cut_points[r] (cut_points[0] must be 0).

Round 0 (cut 0), CSGM-like. StyleGAN2: W+ latents v (B, num_ws, w_dim) in the Gaussianised space of the
mapping proxy fitted from this generator's own mapping network (w = proxy(v)), and the first
noise_layers[0] noise maps. PGGAN: the latent z.

Round r >= 1 (cut c). The features at cut c, started from the previous round's solution, are optimised in the
l1 ball of radius l1_radius[r - 1] * (C H W) around it (Duchi's projection, per image); every variable
upstream of the cut is frozen. StyleGAN2: the W+ rows used downstream of the cut keep being optimised, and so
do the noise maps downstream of the cut with index < noise_layers[r]; with latent_l1_radius / noise_l1_radius
set, each within an l1 ball around its round-start value (the paper's appendix; radii per entry).

Noise maps: the paper optimises only the first (coarse) maps and adds the next ones gradually; optimising all
of them jointly lets the fine maps paint any image (they fit the measurement noise, or the null space of a
compressed-sensing operator). Maps that are not optimised keep their start: the generator's stored const maps
(noise_start="const") or per-image N(0, 1) draws ("random").

Range projection (Algorithm 1, lines 5-6; project_range): after round r >= 1, if another round follows, the
variables of round r - 1 that act between cuts c_{r-1} and c_r are re-optimised (range_steps Adam steps,
under round r - 1's constraints) so that the generator's features at c_r match round r's solution; the next
round starts from the features they give, i.e. from the previous layer's range, not from the off-range
solution. The last round's output is returned, off the range but within its balls (Algorithm 1, line 7).
Off by default: on the digits generators it cost 1 dB (docs/earlier_results.md); the authors' code does not do it.

Latent rows and noise maps start on the spheres of radius sqrt(dim) (their typical norm; "const" maps keep
their own norm); with project_sphere they are rescaled after every step to the norms they had at the start of
the round (ILO's spherical optimiser). Order after each Adam step, as in the ILO code: sphere, then l1 balls.
The loss is the measurement MSE (with stochastic noise addition, SNA, when stochastic_noise > 0; "measurement"
uses the operator's noise std, so denoising gets SNA and noiseless tasks none), plus perceptual * LPIPS(A x, y)
for image-shaped measurements when LPIPS is available (the result says whether it was used), plus GeoCross on
the W+ rows still optimised. (The authors' code slices the *batch* dimension by mistake, so their GeoCross is
only active in round 0; ours is the intended term.)

Skip-RGB path: our StyleGAN2 cut-point state carries the running skip image of the blocks before the cut, so
every round keeps the frozen upstream RGB contributions. The official ILO (and RTIL's copy) drops them for
start_layer >= 1 (pitfall 26 of the reference notes); we do not reproduce that.

Selection: every iterate of every round is recorded (loss_history); the returned image is the final round's
iterate with the lowest measurement loss (or its last iterate), and round_losses holds each round's last
measurement loss per image, so the effect of each round is visible.
"""

from dataclasses import dataclass, field

import torch

from rtil.errors import RtilError
from rtil.inverse.latent_spaces import LatentSpace, check_noise_start, latent_space, prepare_proxy
from rtil.inverse.objectives import geocross
from rtil.inverse.optimize import Progress, check_schedule, learning_rate, record_final, run_optimizer
from rtil.inverse.projections import norms, project_l1_ball, project_to_sphere_
from rtil.inverse.solver import Solver
from rtil.models.state import SynthesisState


@dataclass
class ILO(Solver):
    """ILO settings (defaults from a search on trained digits StyleGAN2s, see configs/invert/ilo.yaml).

    cut_points: cut point of each round, starting with 0.
    steps, lr: per round (one value each); the schedule fractions warmup, rampdown apply to each round.
    noise_layers: per round, how many of the first noise maps may be optimised (the paper: 5 + 2r of 17 at
        1024 px); the maps upstream of a round's cut are frozen whatever this says.
    noise_start: "const" (the generator's stored maps) or "random" (per-image N(0, 1)).
    project_sphere: keep latent rows and optimised noise maps at their round-start norms.
    project_l1, l1_radius: per round >= 1, keep the features in the l1 ball of radius l1_radius * C * H * W
        around the previous round's solution.
    latent_l1_radius, noise_l1_radius: per round >= 1, l1 balls (radius per entry) around the round-start values
        of the W+ rows and of each optimised noise map; None: unconstrained.
    project_range, range_steps, range_lr: the range projection between rounds (see the module docstring).
    geocross: weight of the GeoCross penalty between the W+ rows still optimised.
    proxy_samples, proxy_seed: fit of the mapping proxy.
    Common settings (warmup, rampdown, perceptual, stochastic_noise, select): see Solver; ILO's defaults are
    perceptual 1 and stochastic_noise "measurement" (the operator's noise std).
    """

    cut_points: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: list[int] = field(default_factory=lambda: [200, 100, 100])
    lr: list[float] = field(default_factory=lambda: [0.3, 0.05, 0.05])
    noise_layers: list[int] = field(default_factory=lambda: [1, 3, 5])
    noise_start: str = "const"
    project_sphere: bool = True
    project_l1: bool = True
    l1_radius: list[float] = field(default_factory=lambda: [0.3, 0.15])
    latent_l1_radius: list[float] | None = None
    noise_l1_radius: list[float] | None = None
    project_range: bool = False
    range_steps: int = 100
    range_lr: float = 0.05
    geocross: float = 0.01
    perceptual: float = 1.0
    stochastic_noise: float | str = "measurement"
    proxy_samples: int = 20000
    proxy_seed: int = 0

    method = "ilo"

    def check(self):
        self.cut_points = [int(c) for c in self.cut_points]
        self.steps = [int(s) for s in self.steps]
        self.lr = [float(v) for v in self.lr]
        self.noise_layers = [int(n) for n in self.noise_layers]
        self.l1_radius = [float(v) for v in self.l1_radius]
        rounds = len(self.cut_points)
        if rounds < 1 or self.cut_points[0] != 0:
            raise RtilError(f"cut_points must start with 0 (round 0 optimises the latents), got {self.cut_points}")
        if any(b <= a for a, b in zip(self.cut_points, self.cut_points[1:], strict=False)):
            raise RtilError(f"cut_points must increase, got {self.cut_points}")
        for name in ("steps", "lr", "noise_layers"):
            if len(getattr(self, name)) != rounds:
                raise RtilError(f"{name} needs one value per round ({rounds}), got {getattr(self, name)}")
        for name in ("l1_radius", "latent_l1_radius", "noise_l1_radius"):
            value = getattr(self, name)
            if value is None and name != "l1_radius":
                continue
            value = [float(v) for v in value]
            setattr(self, name, value)
            if len(value) != rounds - 1:
                raise RtilError(f"{name} needs one value per round after the first ({rounds - 1}), got {value}")
            if any(not v >= 0 for v in value):
                raise RtilError(f"{name} must be >= 0, got {value}")
        if any(s < 1 for s in self.steps) or any(n < 0 for n in self.noise_layers) or self.geocross < 0:
            raise RtilError("steps must be >= 1 and noise_layers, geocross >= 0")
        check_noise_start(self.noise_start)
        if self.range_steps < 1 or not self.range_lr > 0:
            raise RtilError(f"range_steps must be >= 1 and range_lr > 0, got {self.range_steps} and {self.range_lr}")
        for lr in self.lr:
            check_schedule(lr, self.warmup, self.rampdown)

    @property
    def range_projections(self) -> int:
        """How many range projections a solve makes (after rounds 1 .. R - 2)."""
        return max(len(self.cut_points) - 2, 0) if self.project_range else 0

    @property
    def total_steps(self) -> int:
        return sum(self.steps) + self.range_projections * self.range_steps

    def prepare(self, G) -> dict:
        return {"proxy": prepare_proxy(G, self.proxy_samples, self.proxy_seed)}

    def check_fits(self, G) -> None:
        if self.cut_points[-1] > G.highest_cut:
            raise RtilError(f"ILO cut point {self.cut_points[-1]} does not exist: this generator's cut points "
                            f"are 0..{G.highest_cut}")

    def optimize(self, G, gens, data_term, tracker, progress, proxy=None, on_round_end=None,
                 on_range_projection=None):
        """The rounds (see the module docstring). For checks: on_round_end(r, features, center), if given, is
        called after every round r >= 1 with that round's final features and the centre of its l1 ball;
        on_range_projection(r, target, reached), after the range projection that follows round r, with round
        r's features and the features the re-optimised variables of round r - 1 reach at the same cut (all
        (B, C, H, W))."""
        proxy = proxy or self.prepare(G)["proxy"]
        space = latent_space(G, "gaussian-w+", proxy, self.noise_start)
        latent, noises = space.draw(gens)
        project_to_sphere_(latent, dim=-1, radius=latent.shape[-1] ** 0.5)  # the typical norm sqrt(dim)
        start: SynthesisState | None = None  # the state at this round's cut that the round starts from
        previous: _Round | None = None
        round_losses = []
        for r, cut in enumerate(self.cut_points):
            tracker.new_round()  # the returned iterate comes from the final round (Algorithm 1, line 7)
            current = _Round(self, space, r, cut, latent, noises, start)

            def objective(images, current=current):
                data, measured = data_term(images)
                if self.geocross > 0:
                    data = data + self.geocross * geocross(current.rows)
                return data, measured

            run_optimizer(current.params, current.render, objective, self.steps[r], self.lr[r], self.warmup,
                          self.rampdown, tracker, after_step=current.project, progress=progress,
                          variables=current.variables)
            record_final(current.render, objective, tracker, current.variables)
            round_losses.append(tracker.last_losses())
            if current.features is not None and on_round_end is not None:
                on_round_end(r, current.features.detach().clone(), current.center)
            if r + 1 == len(self.cut_points):
                break
            with torch.no_grad():
                latent, noises, state = current.latent(), current.noises(), current.state()
            if self.project_range and previous is not None:
                latent, noises, state = self._project_to_range(space, previous, current, progress)
                if on_range_projection is not None:
                    on_range_projection(r, current.features.detach().clone(), state.x.clone())
            with torch.no_grad():
                start = G.advance(state, self.cut_points[r + 1])
            previous = current
        info = {"space": space, "cut": self.cut_points[-1], "stochastic_noise": data_term.stochastic_noise,
                "rounds": [{"cut": c, "trainable_noise_maps": len(_Round.trainable_indices(self, G, r, c))}
                           for r, c in enumerate(self.cut_points)],
                "range_projections": self.range_projections}
        if proxy is not None:
            info["mapping_proxy"] = proxy.describe()
        return info, torch.stack(round_losses)

    def _project_to_range(self, space: LatentSpace, previous: "_Round", current: "_Round", progress: Progress):
        """Algorithm 1, lines 5-6: re-optimise `previous`'s variables (under its constraints) so that its
        features at current.cut match current's solution; returns the (latent, noises, state at current.cut)
        that the next round continues from: upstream of the cut from the projection, downstream from `current`."""
        G = space.G
        target = current.features.detach()
        params = [p for p in previous.params if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.range_lr)
        for step in range(self.range_steps):
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, self.range_steps, self.range_lr, self.warmup, self.rampdown)
            reached = G.advance(previous.state(), current.cut).x
            loss = (reached - target).pow(2).flatten(1).mean(1)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            previous.project()
            if progress is not None:
                progress(1)
        with torch.no_grad():
            first = current.first
            latent = torch.cat([previous.latent()[:, :first], current.latent()[:, first:]], dim=1)
            noises = previous.noises()[:first] + current.noises()[first:]
            reached = G.advance(previous.state(), current.cut)
            state = G.state_at(current.cut, reached.x, space.styles(latent), noises or None, reached.img)
        return latent, noises, state


class _Round:
    """The variables of ILO round r at cut `cut`, and their constraints.

    latent: (B, L, D) rows of the latent space (W+ rows, or a PGGAN's one z row); noises: per-layer maps
    (B, 1, H, W) ([] without noise inputs); start: the state at `cut` the round starts from (None at cut 0).
    Rows and maps upstream of the cut (before G.first_style_after(cut)) are frozen; rows downstream and the
    maps allowed by noise_layers[r] are optimised, and so are the features at the cut (cut > 0)."""

    def __init__(self, ilo: ILO, space: LatentSpace, r: int, cut: int, latent: torch.Tensor,
                 noises: list[torch.Tensor], start: SynthesisState | None):
        self.space, self.G, self.cut, self.start = space, space.G, cut, start
        self.project_sphere = ilo.project_sphere
        self.first = first = self.G.first_style_after(cut)
        self.frozen_latent = latent[:, :first].detach()
        self.rows = latent[:, first:].detach().clone().requires_grad_()
        trainable = set(self.trainable_indices(ilo, self.G, r, cut))
        self.frozen_noises = [n.detach() for n in noises[:first]]
        self.own_noises = [n.detach().clone().requires_grad_(first + i in trainable)
                           for i, n in enumerate(noises[first:])]
        self.trainable = [n for n in self.own_noises if n.requires_grad]
        self.features = self.center = None
        self.feature_radius = None
        if cut > 0:
            self.center = start.x.detach()
            self.features = self.center.clone().requires_grad_()
            if ilo.project_l1:
                self.feature_radius = ilo.l1_radius[r - 1] * self.center[0].numel()
        self.row_norms = norms([self.rows], -1)
        self.noise_norms = norms(self.trainable, (1, 2, 3))
        self.row_start = self.rows.detach().clone()
        self.noise_starts = [n.detach().clone() for n in self.trainable]
        self.row_radius = self.noise_radius = None
        if r > 0 and ilo.latent_l1_radius is not None and self.rows.numel():
            self.row_radius = ilo.latent_l1_radius[r - 1] * self.rows[0].numel()
        if r > 0 and ilo.noise_l1_radius is not None:
            self.noise_radius = ilo.noise_l1_radius[r - 1]

    @staticmethod
    def trainable_indices(ilo: ILO, G, r: int, cut: int) -> list[int]:
        """Indices of the noise maps optimised in round r: downstream of the cut and < noise_layers[r]."""
        return list(range(G.first_style_after(cut), min(ilo.noise_layers[r], len(G.noise_shapes()))))

    @property
    def params(self) -> list[torch.Tensor]:
        rows = [self.rows] if self.rows.numel() else []
        return rows + self.trainable + ([self.features] if self.features is not None else [])

    def latent(self) -> torch.Tensor:
        return torch.cat([self.frozen_latent, self.rows], dim=1)

    def noises(self) -> list[torch.Tensor]:
        return self.frozen_noises + self.own_noises

    def state(self) -> SynthesisState:
        """The state at the cut for the current values (features used for cut > 0, with the skip image of the
        frozen upstream blocks from the start state)."""
        if self.cut == 0:
            return self.space.start_state(self.latent(), self.noises())
        return self.G.state_at(self.cut, self.features, self.space.styles(self.latent()), self.noises() or None,
                               self.start.img)

    def render(self) -> torch.Tensor:
        return self.G.synthesize(self.state())

    def variables(self) -> dict:
        """What re-renders this round's images (rtil/inverse/solutions.py)."""
        return {"latent": self.latent(), "noises": self.noises(), "features": self.features,
                "skip_image": self.start.img if self.cut > 0 else None}

    @torch.no_grad()
    def project(self) -> None:
        """After each step: spheres (rows, optimised noise maps), then the l1 balls."""
        if self.project_sphere:
            project_to_sphere_(self.rows, dim=-1, radius=self.row_norms[0])
            for n, radius in zip(self.trainable, self.noise_norms, strict=True):
                project_to_sphere_(n, dim=(1, 2, 3), radius=radius)
        if self.feature_radius is not None:
            self.features.copy_(project_l1_ball(self.features, self.feature_radius, self.center))
        if self.row_radius is not None:
            self.rows.copy_(project_l1_ball(self.rows, self.row_radius, self.row_start))
        if self.noise_radius is not None:
            for n, s in zip(self.trainable, self.noise_starts, strict=True):
                n.copy_(project_l1_ball(n, self.noise_radius * n[0].numel(), s))

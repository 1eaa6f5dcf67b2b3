"""mGANprior (Gu et al. 2020): N latent codes fused at a cut point with per-channel importance weights.

Each image has N codes; each code runs separately up to cut point `cut_point`, where the features are fused
as x = sum_j alpha[b, j, c] * F_j[b, c] (rtil.latents.fuse_states) and the generator continues from the
fused state. Variables: the codes (B, N, z_dim) and alpha (B, N, C). alpha starts at 1/N (the weights sum to
one per channel, like the RTIL Dirichlet fusion used in training) or at one Dirichlet(1) draw per image
shared by all channels (as the RTIL authors' demo); it is not constrained afterwards.

StyleGAN2 (the official mGANprior only does PGGAN; our choice): the codes live in W (`code_space`="w",
one w per code, all layers up to the cut; started at mapping(z)) or in Z. The noise maps are the
generator's stored const maps. After the cut, the W+ rows are a separate variable per image, started from
the first code's (optimize_downstream_styles=True), or simply the first code's. The skip-RGB image at the
cut is fused too: the codes' skip images weighted by alpha averaged over channels (with alpha = 1/N, the mean).
"""

from dataclasses import dataclass

import torch

from rtil.errors import RtilError
from rtil.inverse.solvers import (
    OPTIMIZERS,
    IterateTracker,
    MeasurementObjective,
    Progress,
    Solver,
    SolveResult,
    check_generator,
    check_schedule,
    check_select,
    check_stochastic_noise,
    first_style_after,
    generator_device,
    image_generators,
    randn_rows,
    record_final,
    run_optimizer,
)
from rtil.latents import dirichlet_weights, fuse_states

ALPHA_INITS = ("uniform", "dirichlet")
CODE_SPACES = ("z", "w")


@dataclass
class MGANPrior(Solver):
    """mGANprior settings (defaults from a search on trained digits StyleGAN2s, see configs/invert/mganprior.yaml).

    num_codes: N codes per image; cut_point: where they are fused (>= 1).
    restarts: independent random starts per image (run in parallel; the best by measurement loss wins).
    code_space: StyleGAN2 codes in "w" or "z" (see the module notes); PGGAN codes are always z.
    alpha_init: "uniform" (1/N) or "dirichlet" (one Dirichlet(1) draw per image, for all channels).
    optimize_downstream_styles: StyleGAN2: optimise the W+ rows after the cut (else the first code's).
    optimizer: "adam" or "sgd" (plain gradient descent, the official mGANprior's choice with lr 1).
    steps, lr, warmup, rampdown: schedule (warm-up 0 and rampdown 0 give a constant lr).
    perceptual, stochastic_noise, select: as in CSGM.
    """

    num_codes: int = 4
    cut_point: int = 2
    restarts: int = 4
    code_space: str = "w"
    alpha_init: str = "uniform"
    optimize_downstream_styles: bool = True
    optimizer: str = "adam"
    steps: int = 300
    lr: float = 0.1
    warmup: float = 0.05
    rampdown: float = 0.25
    perceptual: float = 0.0
    stochastic_noise: float | str = 0.0
    select: str = "best"

    method = "mganprior"

    def __post_init__(self):
        if min(self.num_codes, self.steps, self.cut_point, self.restarts) < 1:
            raise RtilError(f"num_codes, steps, cut_point and restarts must be >= 1, got {self.num_codes}, "
                            f"{self.steps}, {self.cut_point}, {self.restarts}")
        if self.alpha_init not in ALPHA_INITS:
            raise RtilError(f"alpha_init must be one of {ALPHA_INITS}, got {self.alpha_init!r}")
        if self.code_space not in CODE_SPACES:
            raise RtilError(f"code_space must be one of {CODE_SPACES}, got {self.code_space!r}")
        if self.optimizer not in OPTIMIZERS:
            raise RtilError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        check_schedule(self.lr, self.warmup, self.rampdown, self.optimizer)
        check_stochastic_noise(self.stochastic_noise)
        check_select(self.select)

    def solve(self, G, operator, y: torch.Tensor, seed: int = 0, item_offset: int = 0, perceptual=None,
              progress: Progress = None) -> SolveResult:
        """Reconstruct the B images measured as y by `operator` (see CSGM.solve)."""
        check_generator(G, operator, y)
        stylegan = G.family == "stylegan2"
        cut = self.cut_point
        if cut > G.highest_cut:
            raise RtilError(f"mGANprior cut point {cut} does not exist: this generator's cut points are "
                            f"1..{G.highest_cut}")
        b, n, device = operator.batch_size, self.num_codes, generator_device(G)
        gens = image_generators(b, seed, item_offset)
        # Restart r of image b is row k = r * B + b; code j of row k is row k * N + j of the codes (the layout
        # fuse_states expects).
        k = self.restarts * b
        z = randn_rows(gens, (n, G.z_dim), self.restarts, device).reshape(k * n, G.z_dim)
        channels = G.cut_shape(cut)[0]
        if self.alpha_init == "uniform":
            alpha = torch.full((k, n, channels), 1.0 / n, device=device)
        else:
            draws = torch.stack([dirichlet_weights(self.restarts, n, g) for g in gens], dim=1)  # (R, B, N)
            alpha = draws.reshape(k, n, 1).repeat(1, 1, channels).to(device)
        alpha.requires_grad_()
        params = [alpha]
        if stylegan:
            with torch.no_grad():
                w = G.mapping(z)
            codes = (w if self.code_space == "w" else z).requires_grad_()
            first = first_style_after(cut)
            if self.optimize_downstream_styles:
                down_ws = w.detach().reshape(k, n, -1)[:, 0, None].repeat(1, G.num_ws - first, 1).requires_grad_()
                params.append(down_ws)
            noises = G.make_noises(1, "const")
        else:
            codes = z.requires_grad_()
        params.append(codes)

        def render() -> torch.Tensor:
            if not stylegan:
                return G.synthesize(fuse_states(G.advance(G.start_state(codes), cut), alpha))
            ws = G.styles(codes) if self.code_space == "z" else codes[:, None].expand(-1, G.num_ws, -1)
            state = G.advance(G.start_state(ws, noises), cut)
            fused = fuse_states(state, alpha)
            if self.optimize_downstream_styles:
                fused.ws = torch.cat([fused.ws[:, :first], down_ws], dim=1)
            if state.img is not None:
                weights = alpha.mean(dim=2)  # (R * B, N)
                images = state.img.reshape(k, n, *state.img.shape[1:])
                fused.img = (weights[:, :, None, None, None] * images).sum(dim=1)
            return G.synthesize(fused)

        objective = MeasurementObjective(operator, y, gens, perceptual, self.perceptual, self.stochastic_noise)
        tracker = IterateTracker(self.select)
        run_optimizer(params, render, objective, self.steps, self.lr, self.warmup, self.rampdown, tracker,
                      optimizer=self.optimizer, progress=progress)
        record_final(render, objective, tracker)
        space = self.code_space if stylegan else "z"
        return tracker.result(b, info={"perceptual": objective.status, "code_space": space})

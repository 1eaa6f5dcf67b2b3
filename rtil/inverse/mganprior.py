"""mGANprior (Gu et al. 2020): N latent codes fused at a cut point with per-channel importance weights.

Each image has N codes; each code runs separately up to cut point `cut_point`, where the features are fused
as x = sum_j alpha[b, j, c] * F_j[b, c] (rtil.latents.fuse_states, which also fuses a StyleGAN2's skip image
with alpha averaged over channels) and the generator continues from the fused state. Variables: the codes
(B, N, ...) and alpha (B, N, C). alpha starts at 1/N (the weights sum to one per channel, like the RTIL
Dirichlet fusion used in training) or at one Dirichlet(1) draw per image shared by all channels (as the RTIL
authors' demo); it is not constrained afterwards.

The codes live in `code_space` (rtil/inverse/latent_spaces.py): for a StyleGAN2 (the official mGANprior only
does PGGAN; our choice) "w" (one w per code for all layers up to the cut, started at mapping(z)) or "z"; a
PGGAN's codes are its z. The noise maps are the generator's stored const maps. After the cut, the styles are
a separate variable per image, started from the first code's (optimize_downstream_styles=True), or simply
the first code's.
"""

from dataclasses import dataclass

import torch

from rtil.errors import RtilError
from rtil.inverse.latent_spaces import latent_space
from rtil.inverse.optimize import OPTIMIZERS, check_schedule, record_final, run_optimizer
from rtil.inverse.solver import Solver
from rtil.latents import dirichlet_weights, fuse_states

ALPHA_INITS = ("uniform", "dirichlet")
CODE_SPACES = ("z", "w")


@dataclass
class MGANPrior(Solver):
    """mGANprior settings (defaults from searches on trained digits generators, see configs/invert/mganprior.yaml).

    num_codes: N codes per image; cut_point: where they are fused (>= 1).
    restarts: independent random starts per image (run in parallel; the best by measurement loss wins).
    code_space: "w" or "z" (see the module notes); PGGAN codes are always z.
    alpha_init: "uniform" (1/N) or "dirichlet" (one Dirichlet(1) draw per image, for all channels).
    optimize_downstream_styles: optimise the styles after the cut (else the first code's); generators
        without styles have none.
    optimizer: "adam" or "sgd" (plain gradient descent, the official mGANprior's choice with lr 1).
    steps, lr: schedule (warm-up 0 and rampdown 0 give a constant lr).
    Common settings (warmup, rampdown, perceptual, stochastic_noise, select): see Solver.
    """

    num_codes: int = 8
    cut_point: int = 2
    restarts: int = 4
    code_space: str = "w"
    alpha_init: str = "uniform"
    optimize_downstream_styles: bool = True
    optimizer: str = "adam"
    steps: int = 300
    lr: float = 0.011

    method = "mganprior"

    def check(self):
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

    def check_fits(self, G) -> None:
        if self.cut_point > G.highest_cut:
            raise RtilError(f"mGANprior cut point {self.cut_point} does not exist: this generator's cut points are "
                            f"1..{G.highest_cut}")

    def optimize(self, G, gens, data_term, tracker, progress):
        cut, n = self.cut_point, self.num_codes
        k = self.restarts * len(gens)  # restart r of image b is row r * B + b; its code j is row (r * B + b) * N + j
        space = latent_space(G, self.code_space)
        codes, noises = space.draw(gens, self.restarts, codes=n)
        channels = G.cut_shape(cut)[0]
        if self.alpha_init == "uniform":
            alpha = torch.full((k, n, channels), 1.0 / n, device=codes.device, dtype=codes.dtype)
        else:
            draws = torch.stack([dirichlet_weights(self.restarts, n, g) for g in gens], dim=1)  # (R, B, N)
            alpha = draws.reshape(k, n, 1).repeat(1, 1, channels).to(codes.device, codes.dtype)
        params = [alpha.requires_grad_()]
        first = G.first_style_after(cut)
        down_styles = None
        with torch.no_grad():
            styles = space.styles(codes)
        if self.optimize_downstream_styles and styles is not None:  # the first code's styles after the cut
            down_styles = styles.reshape(k, n, *styles.shape[1:])[:, 0, first:].clone().requires_grad_()
            params.append(down_styles)
        params.append(codes.requires_grad_())

        def render() -> torch.Tensor:
            fused = fuse_states(G.advance(space.start_state(codes, noises), cut), alpha)
            if down_styles is not None:
                fused.ws = torch.cat([fused.ws[:, :first], down_styles], dim=1)
            return G.synthesize(fused)

        run_optimizer(params, render, data_term, self.steps, self.lr, self.warmup, self.rampdown, tracker,
                      optimizer=self.optimizer, progress=progress)
        record_final(render, data_term, tracker)
        return {"code_space": space.name}, None

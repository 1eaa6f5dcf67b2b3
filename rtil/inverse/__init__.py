"""Inverse problems with a generator as the prior: y = A x + noise, find x = G(latent).

The flow, module by module:
    operators.py       A (and the noise) per image: y = operator.measure(x); operator(x) is A x.
    latent_spaces.py   where the unknowns live (z, w, W+, Gaussianised W+; noise maps): draws, state at cut 0;
                       the only module that knows the generator families.
    objectives.py      the loss per image: measurement MSE (+ SNA, LPIPS, GeoCross).
    optimize.py        the loop: Adam/SGD with the warm-up/cosine schedule, projections after each step.
    results.py         every iterate recorded; per image the one with the lowest measurement loss (or the last).
    solver.py          the shared settings and solve() skeleton; csgm.py, pulse.py, ilo.py, mganprior.py say
                       only what differs (ILO: rounds at the cut points, l1 balls, range projection).
    run.py             many images in batches with per-image operators and starts: solve_images().

    result = ILO(steps=[200, 100, 100]).solve(G, operator, y)      # result.images (B, C, H, W) in [-1, 1]
"""

from rtil.inverse.csgm import CSGM
from rtil.inverse.deepinv_physics import DeepinvPhysics
from rtil.inverse.ilo import ILO
from rtil.inverse.latent_spaces import latent_space
from rtil.inverse.mganprior import MGANPrior
from rtil.inverse.objectives import add_stochastic_noise
from rtil.inverse.operators import (
    BoxMask,
    CompressedSensing,
    Denoise,
    Downsample,
    ForwardOperator,
    GaussianCS,
    Identity,
    MaskImage,
    RandomMask,
    build_operator,
)
from rtil.inverse.projections import project_l1_ball, project_l1_ball_, project_to_sphere, project_to_sphere_
from rtil.inverse.pulse import Pulse
from rtil.inverse.results import SolveResult

__all__ = [
    "CSGM",
    "DeepinvPhysics",
    "ILO",
    "MGANPrior",
    "Pulse",
    "SolveResult",
    "latent_space",
    "BoxMask",
    "CompressedSensing",
    "Denoise",
    "Downsample",
    "ForwardOperator",
    "GaussianCS",
    "Identity",
    "MaskImage",
    "RandomMask",
    "add_stochastic_noise",
    "build_operator",
    "project_l1_ball",
    "project_l1_ball_",
    "project_to_sphere",
    "project_to_sphere_",
]

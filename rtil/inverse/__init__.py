"""Inverse problems: forward operators and the projections used by the solvers."""

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
    add_stochastic_noise,
    build_operator,
)
from rtil.inverse.projections import project_l1_ball, project_l1_ball_, project_to_sphere, project_to_sphere_

__all__ = [
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

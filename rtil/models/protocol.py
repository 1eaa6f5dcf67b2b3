"""What a cut-point generator offers (both families satisfy it): the interface RTIL training and the
inversion solvers are written against. See rtil/models/state.py for the state at a cut."""

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch

from rtil.models.state import SynthesisState


@runtime_checkable
class CutPointGenerator(Protocol):
    family: str
    z_dim: int
    resolution: int
    img_channels: int
    num_blocks: int

    @property
    def highest_cut(self) -> int:
        """The highest cut point `synthesize` can continue from."""

    def cut_shape(self, cut: int) -> tuple[int, ...]:
        """Shape of the features at `cut`, without the batch dimension."""

    def noise_shapes(self) -> list[tuple[int, int]]:
        """(H, W) of every noise input, in layer order ([] for a generator without noise inputs)."""

    def first_style_after(self, cut: int) -> int:
        """Index of the first latent row (W+ row for StyleGAN2, the one z row for PGGAN) and noise map read
        when synthesising from `cut`: rows and maps before it act only upstream of the cut."""

    def state_at(self, cut: int, x: torch.Tensor | None, ws: torch.Tensor | None = None,
                 noises: list[torch.Tensor] | None = None, img: torch.Tensor | None = None) -> SynthesisState:
        """A checked state at `cut` (the fields a family does not have must be None)."""

    def advance(self, state: SynthesisState, upto: int,
                inject: Mapping[int, torch.Tensor] | None = None) -> SynthesisState:
        """Run from state.cut to cut `upto`."""

    def synthesize(self, state: SynthesisState, inject: Mapping[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Continue from `state` to the image (B, img_channels, R, R) in about [-1, 1]."""

"""The explicit state of a generator at a cut point.

Every generator is a chain of blocks. Cut point `i` is the feature tensor entering block `i`:
cut 0 is the input of the first block, cut `num_blocks` is the output of the last block (before
the final ToRGB). Solvers and RTIL training read or replace any field, then continue with
`G.synthesize(state)`.
"""

from dataclasses import dataclass, replace

import torch


@dataclass
class SynthesisState:
    """State of a generator at cut point `cut`.

    x:      features at the cut point, (B, C, H, W); for PGGAN at cut 0 the latent (B, z_dim).
    cut:    the cut-point index, 0 <= cut <= G.num_blocks.
    ws:     StyleGAN2 only: per-layer styles W+ (B, num_ws, w_dim); all of them, the blocks after
            the cut read the ones they need.
    noises: StyleGAN2 only: one noise map per modulated conv layer, each (B or 1, 1, H_l, W_l).
    img:    StyleGAN2 only: the running skip-RGB image of the blocks before cut - 1
            (B, C_img, H, W), or None when no ToRGB has run yet.
    """

    x: torch.Tensor
    cut: int
    ws: torch.Tensor | None = None
    noises: list[torch.Tensor] | None = None
    img: torch.Tensor | None = None

    def with_features(self, x: torch.Tensor) -> "SynthesisState":
        """A copy of this state whose features are replaced by `x` (same shape)."""
        if x.shape[1:] != self.x.shape[1:]:
            raise ValueError(f"features of shape {tuple(x.shape)} do not fit cut {self.cut} {tuple(self.x.shape)}")
        return replace(self, x=x)

"""A solver's solution as variables: what re-renders, edits or explores (e-GLASS) a reconstruction.

SolveResult.solution (CSGM, PULSE, ILO) is a dict, each tensor with one row per image:
    latent      (B, L, D) rows of the latent space result.info["latent_space"]
    noises      [(B, 1, H, W), ...] every noise map ([] without noise inputs)
    styles      (B, num_ws, w_dim) the styles the latent gives (None for generators without styles)
    features    (B, C, H, W) the features at the cut result.info["cut"] (ILO with a last cut > 0, else None)
    skip_image  (B, C_img, H, W) the skip image of the frozen blocks before that cut (or None)
`invert.py solve` writes them to solutions.pt (torch.load(..., weights_only=True)).
"""

import torch

from rtil.errors import RtilError


@torch.no_grad()
def render_solution(G, solution: dict, cut: int = 0) -> torch.Tensor:
    """The images (B, C, H, W) of a solution at cut point `cut` (result.info["cut"])."""
    if not isinstance(solution, dict) or "latent" not in solution:
        raise RtilError("a solution is a dict with at least 'latent' and 'noises' (see rtil/inverse/solutions.py)")
    styles, noises = solution.get("styles"), solution.get("noises") or None
    if cut == 0:
        x = None if styles is not None else solution["latent"][:, 0]  # without styles the latent row is the input
        return G.synthesize(G.state_at(0, x, styles, noises))
    return G.synthesize(G.state_at(cut, solution.get("features"), styles, noises, solution.get("skip_image")))

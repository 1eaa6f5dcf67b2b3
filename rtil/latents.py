"""RTIL families: weight-shared generators G0..GK that differ only at cut points.

- `GaussianLatents` (StyleGAN2, for ILO): member k adds i.i.d. N(0, sigma^2) latents to the
  features at the first k cut points of `cut_points` (cumulative). Member 0 is the plain G.
- `DirichletFusion` (PGGAN, for mGANprior): member k > 0 runs `codes_per_member[k-1]` codes
  separately up to `cut_point` and fuses their features with per-sample Dirichlet(1, ..., 1)
  weights (one weight per code, shared by channels and pixels); member 0 uses one code.

Both act through the generator's cut-point interface (`features` / `synthesize` / `inject`), so
they work with any generator that has one. Every random draw takes an explicit torch.Generator.
"""

from dataclasses import asdict, dataclass, field

import torch

from rtil.errors import RtilError
from rtil.models.state import SynthesisState


@dataclass
class GaussianLatents:
    """StyleGAN2 RTIL family. `cut_points[i]` is where member i + 1 (and every later member)
    adds its Gaussian latent; the number of extended members is K = len(cut_points)."""

    cut_points: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    sigma: float = 1.0

    kind = "gaussian"

    def __post_init__(self):
        self.cut_points = [int(c) for c in self.cut_points]
        if len(set(self.cut_points)) != len(self.cut_points) or any(c < 0 for c in self.cut_points):
            raise RtilError(f"cut_points must be distinct non-negative integers, got {self.cut_points}")
        if self.sigma < 0:
            raise RtilError(f"sigma must be >= 0, got {self.sigma}")

    @property
    def num_members(self) -> int:
        return len(self.cut_points) + 1

    def check(self, G) -> None:
        """Raise if a cut point does not exist in generator G."""
        for c in self.cut_points:
            if not 0 <= c <= G.num_blocks:
                raise RtilError(f"RTIL cut point {c} does not exist: this generator has cut points 0..{G.num_blocks}")

    def _check_member(self, member: int) -> None:
        if not 0 <= member < self.num_members:
            raise RtilError(f"member must be in 0..{self.num_members - 1}, got {member}")

    def sample(self, G, member: int, batch_size: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> dict[int, torch.Tensor]:
        """Latents {cut: (B, C, H, W)} for member `member` (empty for member 0)."""
        self._check_member(member)
        out = {}
        for c in self.cut_points[:member]:
            shape = (batch_size, *G.cut_shape(c))
            out[c] = self.sigma * torch.randn(shape, generator=generator, device=device)
        return out

    def generate(self, G, z: torch.Tensor, member: int, latents: dict[int, torch.Tensor] | None = None,
                 generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        """Image of member `member` for z (B, z_dim); `latents` default to a fresh draw."""
        if latents is None:
            latents = self.sample(G, member, z.shape[0], generator, z.device)
        return G(z, inject=latents, generator=generator, **kwargs)

    def to_config(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


def dirichlet_weights(batch_size: int, num_codes: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """(B, N) weights ~ Dirichlet(1, ..., 1): normalised Exponential(1) draws (uniform on the simplex)."""
    u = torch.rand(batch_size, num_codes, generator=generator, device=device)
    # Exponential(1), finite for u in [0, 1); in float64, whose log is the same on every CPU (float32's vector
    # kernels differ in the last bit), so the same generator gives the same weights anywhere.
    e = -torch.log1p(-u.double())
    return (e / e.sum(dim=1, keepdim=True)).to(u.dtype)


@dataclass
class DirichletFusion:
    """PGGAN RTIL family. Member k > 0 fuses `codes_per_member[k-1]` codes at `cut_point`."""

    codes_per_member: list[int] = field(default_factory=lambda: [10, 20])
    cut_point: int = 4

    kind = "dirichlet"

    def __post_init__(self):
        self.codes_per_member = [int(n) for n in self.codes_per_member]
        if any(n < 1 for n in self.codes_per_member):
            raise RtilError(f"codes_per_member must be positive, got {self.codes_per_member}")
        if self.cut_point < 1:
            raise RtilError(f"the fusion cut_point must be >= 1, got {self.cut_point}")

    @property
    def num_members(self) -> int:
        return len(self.codes_per_member) + 1

    def check(self, G) -> None:
        if self.cut_point > G.num_blocks:
            raise RtilError(f"fusion cut point {self.cut_point} does not exist: this generator has "
                            f"cut points 0..{G.num_blocks}")

    def num_codes(self, member: int) -> int:
        if not 0 <= member < self.num_members:
            raise RtilError(f"member must be in 0..{self.num_members - 1}, got {member}")
        return 1 if member == 0 else self.codes_per_member[member - 1]

    def sample_z(self, G, member: int, batch_size: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Codes (B, N, z_dim) for member `member`."""
        return torch.randn(batch_size, self.num_codes(member), G.z_dim, generator=generator, device=device)

    def generate(self, G, z: torch.Tensor, member: int, weights: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        """Image (B, C, H, W) of member `member` from codes z (B, N, z_dim) (or (B, z_dim) when N = 1).

        Each code runs separately to the fusion cut; the features are summed with `weights`
        (B, N), by default a fresh Dirichlet(1) draw per sample. The fusion cut is lowered to the
        highest cut the generator can currently continue from (progressive growing).
        """
        n = self.num_codes(member)
        if z.ndim == 2:
            z = z[:, None]
        b = z.shape[0]
        if z.ndim != 3 or z.shape[1] != n:
            raise RtilError(f"member {member} needs codes of shape (B, {n}, z_dim), got {tuple(z.shape)}")
        if n == 1:
            return G(z[:, 0], generator=generator, **kwargs)
        if weights is None:
            weights = dirichlet_weights(b, n, generator, z.device)
        cut = min(self.cut_point, G.highest_cut)
        state = G.features(z.reshape(b * n, -1), upto=cut, generator=generator, **kwargs)
        return G.synthesize(fuse_states(state, weights))

    def to_config(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


def fuse_states(state: SynthesisState, weights: torch.Tensor) -> SynthesisState:
    """Fuse a state of B*N samples (code-major within each sample: row b*N + j is code j of
    sample b) into B samples: x = sum_j weights[b, j] * x[b, j]. `weights` is (B, N) or
    (B, N, C) for per-channel weights. The skip image (StyleGAN2), which has image channels instead of
    feature channels, is fused with the weights averaged over channels (with equal weights, the mean).
    Styles and noise maps are taken from each sample's first code."""
    b, n = weights.shape[:2]
    x = state.x.reshape(b, n, *state.x.shape[1:])
    w = weights.reshape(b, n, -1, *([1] * (x.ndim - 3))).to(x.dtype)
    fused = (w * x).sum(dim=1)

    def first(t):
        return None if t is None or t.shape[0] != b * n else t.reshape(b, n, *t.shape[1:])[:, 0]

    noises = None if state.noises is None else [first(t) if t.shape[0] == b * n else t for t in state.noises]
    img = None
    if state.img is not None:
        per_code = weights.mean(dim=2) if weights.ndim == 3 else weights  # (B, N)
        images = state.img.reshape(b, n, *state.img.shape[1:])
        img = (per_code[:, :, None, None, None].to(images.dtype) * images).sum(dim=1)
    return SynthesisState(x=fused, cut=state.cut, ws=first(state.ws), noises=noises, img=img)


def member_weights(num_members: int, mode: str = "equal", lam: float = 0.5) -> list[float]:
    """Loss weight of each member: 'equal' (1 / (K + 1) each, as the RTIL authors' code) or
    'lambda' (the paper's form: lam for G0, (1 - lam) shared equally by G1..GK)."""
    if mode == "equal" or num_members == 1:
        return [1.0 / num_members] * num_members
    if mode == "lambda":
        if not 0.0 <= lam <= 1.0:
            raise RtilError(f"lambda must be in [0, 1], got {lam}")
        return [lam] + [(1.0 - lam) / (num_members - 1)] * (num_members - 1)
    raise RtilError(f"member weighting must be 'equal' or 'lambda', got {mode!r}")

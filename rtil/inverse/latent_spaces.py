"""The latent spaces the solvers optimise in, one object per space with one small interface; the only
module of rtil/inverse/ that knows the generator families.

A space turns per-image draws into optimisation variables and those into the generator's state at cut 0:

    space = latent_space(G, "w+")                        # or "z", "w", "gaussian-w+" (needs the proxy)
    latent, noises = space.draw(gens, restarts=4)        # latent (N, L, D), noises [] or one map per layer
    state = space.start_state(latent, noises)            # SynthesisState at cut 0; G.synthesize(state)
    ws = space.styles(latent)                            # what states at later cuts carry (None: no styles)

Rows are restart-major (row r * B + b is restart r of image b; with `codes` > 1, row (r * B + b) * codes + j
is code j). Latents are always (N, L, D): L rows of D numbers (the rows of W+, or a single z or w row), so
solvers can split rows at a cut (G.first_style_after) and apply GeoCross to any space.

Spaces (StyleGAN2; a PGGAN has one space, its z, whatever is asked):
    "z":           z (N, 1, z_dim) through the mapping network, every layer the same style.
    "w":           one w (N, 1, w_dim) for every layer, started at mapping(z).
    "w+":          one w per layer (N, num_ws, w_dim), started at mapping(z) on every row.
    "gaussian-w+": W+ rows in the Gaussianised space of the mapping proxy (PULSE, ILO): w = proxy(v), v drawn
                   from N(0, I) (solvers keep v on spheres).

Noise maps (StyleGAN2), by `noise_start`: "const" the generator's stored maps (one copy per row),
"random" per-row N(0, 1) draws rescaled to the sphere of radius sqrt(H W), "gaussian" plain N(0, 1) draws.
"""

import math
from collections.abc import Sequence

import torch

from rtil.errors import RtilError
from rtil.inverse.mapping_proxy import MappingProxy, fit_mapping_proxy
from rtil.inverse.projections import project_to_sphere_
from rtil.inverse.randomness import randn_rows
from rtil.models.state import SynthesisState

SPACES = ("z", "w", "w+", "gaussian-w+")
NOISE_STARTS = ("const", "random", "gaussian")


def check_noise_start(value: str) -> None:
    if value not in NOISE_STARTS:
        raise RtilError(f"noise_start must be one of {NOISE_STARTS}, got {value!r}")


def uses_mapping_proxy(G) -> bool:
    """Whether the "gaussian-w+" space of G needs a fitted mapping proxy (generators with a mapping network)."""
    return G.family == "stylegan2"


def prepare_proxy(G, num_samples: int, seed: int) -> MappingProxy | None:
    """The mapping proxy of G's "gaussian-w+" space, fitted from its own mapping network (None if it has none)."""
    return fit_mapping_proxy(G, num_samples, seed) if uses_mapping_proxy(G) else None


class LatentSpace:
    """Interface of a latent space (see the module docstring). `name` is the space actually used."""

    name = ""

    def __init__(self, G, proxy: MappingProxy | None = None, noise_start: str = "const"):
        check_noise_start(noise_start)
        self.G, self.proxy, self.noise_start = G, proxy, noise_start

    def draw(self, gens: Sequence[torch.Generator], restarts: int = 1, codes: int = 1
             ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Start values: latent (restarts * B * codes, L, D) and the noise maps, from image b's generator."""
        raise NotImplementedError

    def styles(self, latent: torch.Tensor) -> torch.Tensor | None:
        """The per-layer styles (N, num_ws, w_dim) a state carries, or None for generators without styles."""
        return None

    def start_state(self, latent: torch.Tensor, noises: list[torch.Tensor]) -> SynthesisState:
        """The generator's state at cut 0 for these variables."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.G.buffers()).device

    @property
    def dtype(self) -> torch.dtype:
        """The generator's dtype, which the start values take (float32, or float64 for a `G.double()`)."""
        return next(self.G.parameters()).dtype

    def describe(self) -> dict:
        out = {"latent_space": self.name}
        if self.proxy is not None:
            out["mapping_proxy"] = self.proxy.describe()
        return out


class _StyleGAN2Space(LatentSpace):
    """Shared by the StyleGAN2 spaces: noise maps, and states from styles."""

    def draw_z(self, gens, restarts: int, codes: int) -> torch.Tensor:
        return randn_rows(gens, (codes, self.G.z_dim), restarts, self.device, self.dtype).reshape(-1, 1, self.G.z_dim)

    def draw_noises(self, gens, restarts: int, codes: int) -> list[torch.Tensor]:
        G = self.G
        rows = restarts * len(gens) * codes
        if self.noise_start == "const":
            return [n.expand(rows, -1, -1, -1).clone() for n in G.make_noises(1, "const")]
        if codes != 1:
            raise RtilError(f"noise_start={self.noise_start!r} draws one set of maps per image: codes must be 1")
        noises = [randn_rows(gens, (1, *hw), restarts, self.device, self.dtype) for hw in G.noise_shapes()]
        if self.noise_start == "random":
            for n, (h, w) in zip(noises, G.noise_shapes(), strict=True):
                project_to_sphere_(n, dim=(1, 2, 3), radius=math.sqrt(h * w))
        return noises

    def start_state(self, latent, noises):
        return self.G.start_state(self.styles(latent), noises)


class StyleGAN2Z(_StyleGAN2Space):
    name = "z"

    def draw(self, gens, restarts=1, codes=1):
        z = self.draw_z(gens, restarts, codes)
        return z, self.draw_noises(gens, restarts, codes)

    def styles(self, latent):
        return self.G.styles(latent[:, 0])


class StyleGAN2W(_StyleGAN2Space):
    name = "w"

    def draw(self, gens, restarts=1, codes=1):
        z = self.draw_z(gens, restarts, codes)
        with torch.no_grad():
            w = self.G.mapping(z[:, 0])[:, None]
        return w, self.draw_noises(gens, restarts, codes)

    def styles(self, latent):
        return latent.expand(-1, self.G.num_ws, -1)


class StyleGAN2WPlus(_StyleGAN2Space):
    name = "w+"

    def draw(self, gens, restarts=1, codes=1):
        z = self.draw_z(gens, restarts, codes)
        with torch.no_grad():
            w = self.G.mapping(z[:, 0])
        return w[:, None].repeat(1, self.G.num_ws, 1), self.draw_noises(gens, restarts, codes)

    def styles(self, latent):
        return latent


class GaussianizedWPlus(_StyleGAN2Space):
    name = "gaussian-w+"

    def __init__(self, G, proxy: MappingProxy | None = None, noise_start: str = "const"):
        if proxy is None:
            raise RtilError("the gaussian-w+ space needs the generator's mapping proxy (see prepare_proxy)")
        super().__init__(G, proxy, noise_start)

    def draw(self, gens, restarts=1, codes=1):
        G = self.G
        v = randn_rows(gens, (codes, G.num_ws, G.w_dim), restarts, self.device, self.dtype)
        return v.reshape(-1, G.num_ws, G.w_dim), self.draw_noises(gens, restarts, codes)

    def styles(self, latent):
        return self.proxy(latent)


class PGGANZ(LatentSpace):
    """PGGAN's latent z as one row (N, 1, z_dim); it has no styles or noise maps."""

    name = "z"

    def draw(self, gens, restarts=1, codes=1):
        z = randn_rows(gens, (codes, self.G.z_dim), restarts, self.device, self.dtype)
        return z.reshape(-1, 1, self.G.z_dim), []

    def start_state(self, latent, noises):
        return self.G.start_state(latent[:, 0])


_STYLEGAN2_SPACES = {"z": StyleGAN2Z, "w": StyleGAN2W, "w+": StyleGAN2WPlus, "gaussian-w+": GaussianizedWPlus}


def latent_space(G, name: str, proxy: MappingProxy | None = None, noise_start: str = "const") -> LatentSpace:
    """The space `name` (one of SPACES) of generator G; PGGANs have only z, which every name gives."""
    if name not in SPACES:
        raise RtilError(f"latent space must be one of {SPACES}, got {name!r}")
    if G.family == "pggan":
        return PGGANZ(G, None, noise_start)
    if G.family == "stylegan2":
        return _STYLEGAN2_SPACES[name](G, proxy, noise_start)
    raise RtilError(f"no latent spaces for generator family {G.family!r}")

"""e-GLASS (Montanaro, Valsesia, Magli, ICIP 2022): many feasible reconstructions from the latent geometry
around one solution z0.

Two metrics on the latent space at z0 (Algorithm 1):
    H_Y = J_phi^T J_phi, phi = A o G          how a latent step changes the measurements;
    H_X = Hessian of d_X(G(z), G(z0)) / 2     how it changes the image: d_X is LPIPS when its weights are
                                              available, else the pixel MSE (H_X = J_G^T J_G); the result
                                              records which one was used.
Their top eigenvectors U (of H_Y) and V (of H_X). A direction starts from v_K, the K-th top eigenvector of H_X
(the very top ones change the measurements too), and loses its components along the top eigenvectors u_j of
H_Y whose correlation |<d, u_j>| exceeds `threshold`, renormalised, until none is left: a step along it
changes the image but hardly the measurements. Directions from v_K, v_{K-1}, ... in both signs give the
solutions G(z0 + eta d); eta is the largest step (bisection up to max_step) whose normalised measurement
error ||A G(z) - y||^2 / ||y||^2 stays <= tau (with `etas` > 1, also fractions of it), and a solution is
returned only if its own error is <= tau, so every returned solution is feasible.

Hessians: dense (forward-mode Jacobians, d JVPs batched over images, then J^T J; exact) when the latent has
at most `dense_max_dim` numbers, else matrix-free top eigenpairs from Hessian-vector products (block subspace
iteration over a block of vectors per image, every image and column in one batched call, stopped when the
Ritz values settle; or Lanczos per image). Products with H_Y, and with H_X from pixel MSE, are Gauss-Newton
products J^T (J v) (one forward- and one reverse-mode pass); H_X from LPIPS needs second-order products.
Latents are the rows of a latent space (rtil/inverse/latent_spaces.py), flattened per image.
"""

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from rtil.errors import RtilError
from rtil.inverse.objectives import apply_per_restart
from rtil.inverse.optimize import Progress
from rtil.inverse.randomness import randn
from rtil.inverse.solver import check_generator

EIGENSOLVERS = ("auto", "dense", "subspace", "lanczos")
PERCEPTUAL = ("auto", "lpips", "mse")


_INT_SETTINGS = ("k", "directions", "top_measurement", "bisection_steps", "etas", "dense_max_dim")
_FLOAT_SETTINGS = ("threshold", "tau", "max_step")
# tau is a fraction of ||y||^2 (1: the measurements' own size); etas multiplies the solutions kept in memory; 64
# bisection steps exhaust a float; a dense Hessian of 8192 latent numbers is 256 MB per image.
_UPPER_BOUNDS = {"tau": 1.0, "etas": 32, "bisection_steps": 64, "dense_max_dim": 8192}


@dataclass
class EGlass:
    """e-GLASS settings.

    k: start from v_K, the K-th top eigenvector of H_X (1-based; the paper uses K around 8-26).
    directions: how many directions (from v_K, v_{K-1}, ..., down to v_1 at most); each in both signs.
    top_measurement: how many top eigenvectors of H_Y may be removed from a direction.
    threshold: |<d, u_j>| above which u_j's component is removed.
    tau: feasibility threshold on ||A G(z) - y||^2 / ||y||^2 (the paper: 1e-2).
    max_step: the largest step eta tried (latent units); bisection_steps: its bisection.
    etas: solutions per signed direction, at eta_max * j / etas for j = 1..etas (eta_max: the bisection's step).
    eigensolver: "dense" (exact), "subspace" (matrix-free block subspace iteration, every product batched
        over the images), "lanczos" (matrix-free, scipy's eigsh per image) or "auto" (dense up to
        dense_max_dim latent numbers, else subspace).
    perceptual: H_X from "lpips" (needs its weights), "mse" (pixels) or "auto" (LPIPS when given).
    include_infeasible: also return, per direction, the solution at max_step when no step is feasible.
    """

    k: int = 8
    directions: int = 5
    top_measurement: int = 32
    threshold: float = 0.1
    tau: float = 1e-2
    max_step: float = 8.0
    bisection_steps: int = 12
    etas: int = 1
    eigensolver: str = "auto"
    dense_max_dim: int = 2048
    perceptual: str = "auto"
    include_infeasible: bool = False

    def __post_init__(self):
        for name, value in asdict(self).items():  # YAML from --set: 1e9 is a string, .inf a float, yes a bool
            if name in _INT_SETTINGS and (isinstance(value, bool) or not isinstance(value, int)):
                raise RtilError(f"e-GLASS setting {name} must be an integer, got {value!r}")
            if name in _FLOAT_SETTINGS and (isinstance(value, bool) or not isinstance(value, (int, float))
                                            or not math.isfinite(value)):
                raise RtilError(f"e-GLASS setting {name} must be a finite number, got {value!r}")
        for name, top in _UPPER_BOUNDS.items():
            if getattr(self, name) > top:
                raise RtilError(f"e-GLASS setting {name} must be at most {top}, got {getattr(self, name)}")
        if self.k < 1 or self.directions < 1 or self.top_measurement < 1:
            raise RtilError(f"k, directions and top_measurement must be >= 1, got {self.k}, {self.directions}, "
                            f"{self.top_measurement}")
        if self.directions > self.k:
            raise RtilError(f"directions ({self.directions}) cannot exceed k ({self.k}): they start from "
                            f"v_k, v_(k-1), ..., v_1")
        if not self.tau > 0 or not self.max_step > 0 or not 0 < self.threshold < 1:
            raise RtilError(f"tau and max_step must be > 0 and threshold in (0, 1), got {self.tau}, "
                            f"{self.max_step}, {self.threshold}")
        if self.bisection_steps < 1 or self.etas < 1:
            raise RtilError(f"bisection_steps and etas must be >= 1, got {self.bisection_steps}, {self.etas}")
        if self.eigensolver not in EIGENSOLVERS:
            raise RtilError(f"eigensolver must be one of {EIGENSOLVERS}, got {self.eigensolver!r}")
        if self.perceptual not in PERCEPTUAL:
            raise RtilError(f"perceptual must be one of {PERCEPTUAL}, got {self.perceptual!r}")

    def settings(self) -> dict:
        return {"method": "eglass", **asdict(self)}

    def explore(self, G, operator, y: torch.Tensor, space, latent: torch.Tensor, noises: list[torch.Tensor],
                perceptual=None, report: Callable[[str], None] | None = None) -> "Exploration":
        """Solutions around z0 = `latent` (B, L, D) in latent space `space` with fixed `noises`, for the B
        images measured as y by `operator`. `perceptual`: an LPIPS network for H_X (see `perceptual`).
        `report`: called with a line as each stage starts (e.g. print to stderr)."""
        report = report or (lambda line: None)
        check_generator(G, operator, y)
        b = operator.batch_size
        if latent.ndim != 3 or latent.shape[0] != b:
            raise RtilError(f"z0 must be (B, L, D) with B = {b} images, got shape {tuple(latent.shape)}")
        dim = latent[0].numel()
        if self.k > dim:
            raise RtilError(f"k ({self.k}) is larger than the latent dimension ({dim})")
        use_lpips = self.perceptual == "lpips" or (self.perceptual == "auto" and perceptual is not None)
        if use_lpips and perceptual is None:
            raise RtilError("perceptual='lpips' needs the LPIPS network (its weights are not available here)")
        solver = self.eigensolver if self.eigensolver != "auto" else ("dense" if dim <= self.dense_max_dim
                                                                      else "subspace")
        shape = latent.shape[1:]
        z0 = latent.detach().reshape(b, dim).float()

        def render(z: torch.Tensor) -> torch.Tensor:  # (R * B, dim) -> images, rows r * B + b
            rows = z.shape[0]
            maps = [n.repeat(rows // b, *([1] * (n.ndim - 1))) for n in noises]
            return G.synthesize(space.start_state(z.reshape(rows, *shape), maps))

        report(f"e-GLASS: top eigenpairs of H_Y and H_X ({solver}, {dim} latent numbers per image, {b} images, "
               f"H_X from {'LPIPS' if use_lpips else 'pixel MSE'})")
        t0 = time.perf_counter()
        with torch.no_grad():
            x0 = render(z0)
        image_distance = _lpips_distance(perceptual, x0) if use_lpips else _mse_distance(x0)
        wanted = max(self.k, self.top_measurement)
        if solver == "dense":
            h_y, h_x = _dense_hessians(render, operator, z0, None if not use_lpips else image_distance)
            values_y, vectors_y = _top_eigenpairs_dense(h_y, self.top_measurement)
            values_x, vectors_x = _top_eigenpairs_dense(h_x, wanted)
        else:
            top = _top_eigenpairs_lanczos if solver == "lanczos" else _top_eigenpairs_subspace
            values_y, vectors_y = top(lambda v: _measurement_hvp(render, operator, z0, v), b, dim,
                                      self.top_measurement)
            if use_lpips:
                values_x, vectors_x = top(lambda v: _image_hvp(render, z0, v, image_distance), b, dim, wanted)
            else:  # pixel MSE: H_X = J_G^T J_G / n exactly, cheaper than a second-order product
                n = x0[0].numel()
                values_x, vectors_x = top(lambda v: _gauss_newton_hvp(render, z0, v) / n, b, dim, wanted)
        t_eig = time.perf_counter() - t0
        report(f"e-GLASS: eigenpairs in {t_eig:.1f} s; step search along {2 * self.directions} signed directions "
               f"({self.bisection_steps} bisection steps)")

        starts = [self.k - i for i in range(self.directions)]
        directions, raw, removed = [], [], []
        for kk in starts:
            v = vectors_x[:, :, kk - 1]  # (B, dim)
            d, count = construct_direction(v, vectors_y, self.threshold)
            directions.append(d)
            raw.append(v)
            removed.append(count)
        directions = torch.stack(directions, dim=1)  # (B, S, dim)
        signed = torch.cat([directions, -directions], dim=1)  # (B, 2S, dim): +d for every start, then -d
        eta_max = self._largest_feasible_steps(render, operator, y, z0, signed)  # (B, 2S)
        fractions = torch.arange(1, self.etas + 1, device=z0.device) / self.etas
        steps = (eta_max[:, :, None] * fractions).reshape(b, -1)  # (B, 2S * etas): each direction's etas in turn
        signed = signed.repeat_interleave(self.etas, dim=1)
        with torch.no_grad():
            z = z0[:, None] + steps[:, :, None] * signed
            solutions = torch.stack([render(z[:, s]) for s in range(z.shape[1])], dim=1)  # (B, 2S, C, H, W)
            errors = _solution_errors(operator, solutions, y)
            change = torch.stack([image_distance(solutions[:, s]) for s in range(z.shape[1])], dim=1)
            error0 = normalised_error(operator, x0, y)
        accepted = (errors <= self.tau) & (steps > 0)  # a zero step is G(z0) again, not a new solution
        keep = accepted if not self.include_infeasible else torch.ones_like(accepted)
        correlations = {
            "start_vs_measurement": (vectors_y.transpose(1, 2) @ raw[0][:, :, None])[..., 0].abs(),
            "direction_vs_measurement": (vectors_y.transpose(1, 2) @ directions[:, 0, :, None])[..., 0].abs(),
            "direction_vs_image": (vectors_x.transpose(1, 2) @ directions[:, 0, :, None])[..., 0].abs(),
        }
        return Exploration(
            initial=x0, solutions=solutions, keep=keep, feasible=accepted, steps=steps, errors=errors,
            perceptual_change=change, initial_error=error0, latents=z.reshape(b, -1, *shape),
            directions=signed, starts=[k for k in starts + starts for _ in range(self.etas)],
            removed=[count for count in removed + removed for _ in range(self.etas)],
            eigenvalues_measurement=values_y, eigenvalues_image=values_x, correlations=correlations,
            perceptual="lpips" if use_lpips else "mse", eigensolver=solver, settings=self.settings(),
            seconds={"eigen": t_eig, "total": time.perf_counter() - t0})

    @torch.no_grad()
    def _largest_feasible_steps(self, render, operator, y, z0, signed) -> torch.Tensor:
        """Per image and signed direction (signed (B, S, dim)), the largest eta in [0, max_step] found by
        bisection with a normalised measurement error <= tau: (B, S); 0 when even tiny steps are not feasible,
        or max_step there with include_infeasible (to show where it leads)."""
        b, s, _ = signed.shape
        lo = torch.zeros(b, s, device=z0.device)
        hi = torch.full((b, s), float(self.max_step), device=z0.device)
        at_max = _errors_along(render, operator, y, z0, signed, hi) <= self.tau
        lo = torch.where(at_max, hi, lo)
        for _ in range(self.bisection_steps):
            mid = (lo + hi) / 2
            ok = _errors_along(render, operator, y, z0, signed, mid) <= self.tau
            lo = torch.where(ok & ~at_max, mid, lo)
            hi = torch.where(ok | at_max, hi, mid)
        if self.include_infeasible:
            feasible = _errors_along(render, operator, y, z0, signed, lo) <= self.tau
            lo = torch.where(feasible & (lo > 0), lo, torch.full_like(lo, float(self.max_step)))
        return lo


def _errors_along(render, operator, y: torch.Tensor, z0: torch.Tensor, signed: torch.Tensor, eta: torch.Tensor
                  ) -> torch.Tensor:
    """Normalised measurement errors (B, S) of G(z0 + eta d) for the signed directions d (B, S, dim), eta (B, S)."""
    b, s, _ = signed.shape
    z = z0[:, None] + eta[:, :, None] * signed
    images = render(z.transpose(0, 1).reshape(s * b, -1))  # rows j * B + b
    return _solution_errors(operator, images.reshape(s, b, *images.shape[1:]).transpose(0, 1), y)


def _solution_errors(operator, solutions: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Normalised measurement errors (B, S) of solutions (B, S, C, H, W)."""
    b, s = solutions.shape[:2]
    rows = solutions.transpose(0, 1).reshape(s * b, *solutions.shape[2:])  # rows j * B + b
    return normalised_error(operator, rows, y.repeat(s, *([1] * (y.ndim - 1)))).reshape(s, b).t()


def normalised_error(operator, images: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||A x - y||^2 / ||y||^2 per row of images (rows r * B + b), y repeated to the rows: (N,)."""
    residual = apply_per_restart(operator, images) - y
    return residual.pow(2).flatten(1).sum(1) / y.pow(2).flatten(1).sum(1).clamp(min=1e-12)


def construct_direction(v: torch.Tensor, vectors_y: torch.Tensor, threshold: float, max_rounds: int = 1000
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1's direction per image: from v (B, dim), remove the components along the columns u_j of
    vectors_y (B, dim, J) with |<d, u_j>| > threshold, renormalise, until none is left. Returns the unit
    directions (B, dim) and how many u_j were removed per image (B,). A v that lies in the span of the
    removed u_j leaves no direction: then the raw v is returned and the count is -1."""
    d = v / v.norm(dim=1, keepdim=True)
    removed = torch.zeros(vectors_y.shape[0], vectors_y.shape[2], dtype=torch.bool, device=v.device)
    for _ in range(max_rounds):
        c = (vectors_y.transpose(1, 2) @ d[:, :, None])[..., 0]  # (B, J)
        big = (c.abs() > threshold) & ~removed
        if not big.any():
            break
        removed |= big
        d = d - (vectors_y @ (c * big)[:, :, None])[..., 0]
        norm = d.norm(dim=1, keepdim=True)
        d = torch.where(norm > 1e-6, d / norm.clamp(min=1e-12), d)
    count = removed.sum(1)
    degenerate = d.norm(dim=1) < 1e-3
    d = torch.where(degenerate[:, None], v / v.norm(dim=1, keepdim=True), d)
    return d, torch.where(degenerate, torch.full_like(count, -1), count)


# --------------------------------------------------------------------------------------------------- metrics


def _repeat_rows(x0: torch.Tensor, rows: int) -> torch.Tensor:
    """x0 (B, ...) repeated to `rows` rows r * B + b."""
    return x0.repeat(rows // x0.shape[0], *([1] * (x0.ndim - 1)))


def _mse_distance(x0: torch.Tensor):
    """d_X(x, x0): mean squared pixel difference per row of x (R * B,), row r * B + b against image b."""
    return lambda x: (x - _repeat_rows(x0, x.shape[0])).pow(2).flatten(1).mean(1)


def _lpips_distance(lpips, x0: torch.Tensor):
    """d_X(x, x0): LPIPS per row of x (R * B,), images in [-1, 1] mapped to [0, 1] as the metric expects."""
    target = (x0 + 1) / 2
    return lambda x: lpips((x + 1) / 2, _repeat_rows(target, x.shape[0])).reshape(-1)


def _dense_hessians(render, operator, z0: torch.Tensor, image_distance=None):
    """Exact H_Y = J_phi^T J_phi and H_X (B, dim, dim) at z0 (B, dim): forward-mode Jacobians of the images
    (dim JVPs, in chunks, every image at once), the measurements by the linear operator. H_X is J_G^T J_G / n
    (pixel MSE) unless `image_distance` is given (then its Hessian, column by column)."""
    b, dim = z0.shape
    columns_x, columns_y = [], []
    chunk = max(1, 64 // b)  # columns per call: 64 rows (larger calls were no faster on CPU)
    eye = torch.eye(dim, device=z0.device)
    for start in range(0, dim, chunk):
        basis = eye[start:start + chunk]  # (c, dim)
        c = basis.shape[0]
        z = z0.repeat(c, 1)  # rows j * B + b
        tangents = basis.repeat_interleave(b, dim=0)
        _, jx = torch.func.jvp(render, (z,), (tangents,))  # (c * B, C, H, W)
        columns_x.append(jx.reshape(c, b, -1))
        columns_y.append(apply_per_restart(operator, jx).reshape(c, b, -1))
    j_x = torch.cat(columns_x).permute(1, 2, 0)  # (B, n, dim)
    j_y = torch.cat(columns_y).permute(1, 2, 0)  # (B, m, dim)
    h_y = j_y.transpose(1, 2) @ j_y
    if image_distance is None:
        h_x = j_x.transpose(1, 2) @ j_x / j_x.shape[1]
    else:
        h_x = torch.stack([_image_hvp(render, z0, eye[i].expand(b, -1), image_distance) for i in range(dim)],
                          dim=2)
    return h_y.detach(), h_x.detach()


def _gauss_newton_hvp(f, z0: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """J_f^T (J_f v) at z0 (B, dim), per row of v (R * B, dim), row r * B + b at image b: one forward-mode and
    one reverse-mode pass."""
    z = _repeat_rows(z0, v.shape[0])
    _, jv = torch.func.jvp(f, (z,), (v,))
    _, pullback = torch.func.vjp(f, z)
    return pullback(jv)[0].detach()


def _measurement_hvp(render, operator, z0: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """H_Y v = J_phi^T (J_phi v), phi = A o G, per row of v (R * B, dim)."""
    return _gauss_newton_hvp(lambda z: apply_per_restart(operator, render(z)), z0, v)


def _image_hvp(render, z0: torch.Tensor, v: torch.Tensor, image_distance) -> torch.Tensor:
    """H_X v: the Hessian-vector product of d_X(G(z), G(z0)) / 2 at z0 (B, dim), per row of v (R * B, dim),
    row r * B + b at image b."""
    def half_distance(z):
        return image_distance(render(z)).sum() / 2

    _, hv = torch.autograd.functional.hvp(half_distance, _repeat_rows(z0, v.shape[0]), v)
    return hv.detach()


def _top_eigenpairs_dense(h: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest eigenvalues (B, k) and eigenvectors (B, dim, k) of symmetric h (B, dim, dim), descending."""
    values, vectors = torch.linalg.eigh((h + h.transpose(1, 2)) / 2)
    k = min(k, h.shape[1])
    return values.flip(1)[:, :k], vectors.flip(2)[:, :, :k]


def _top_eigenpairs_subspace(hvp, b: int, dim: int, k: int, max_iterations: int = 50, tolerance: float = 1e-5,
                             oversample: int = 8, max_rows: int = 256, seed: int = 0
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest eigenpairs per image of the positive semi-definite operator v -> hvp(v) (v (R * B, dim), rows
    r * B + b), by block subspace iteration with Rayleigh-Ritz: each iteration applies the operator to a
    (k + oversample)-column block per image in batched calls of at most `max_rows` rows, and the iteration stops
    when no top-k Ritz value moved by more than `tolerance` times the largest (at most `max_iterations`).
    Accurate for the top eigenpairs when the spectrum decays, as these metrics' do (their few top directions
    dominate; Wang and Ponce 2021)."""
    width = min(k + oversample, dim)
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(randn((b, dim, width), gen, torch.float32))[0]
    columns = max(1, max_rows // b)

    def apply(block):  # (B, dim, w) -> H block: column j of every image in rows j * B + b
        rows = block.permute(2, 0, 1).reshape(-1, dim)
        out = torch.cat([hvp(chunk) for chunk in rows.split(columns * b)])
        return out.reshape(block.shape[2], b, dim).permute(1, 2, 0)

    previous = None
    for _ in range(max_iterations):
        hq = apply(q)
        small = q.transpose(1, 2) @ hq
        values, vectors = torch.linalg.eigh((small + small.transpose(1, 2)) / 2)
        values, vectors = values.flip(1)[:, :k], vectors.flip(2)[:, :, :k]
        if previous is not None and ((values - previous).abs() <= tolerance * values[:, :1].abs()).all():
            break
        previous = values
        q = torch.linalg.qr(hq)[0]
    return values, q @ vectors


def _top_eigenpairs_lanczos(hvp, b: int, dim: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest eigenpairs per image of the operator v -> hvp(v) (v (B, dim), batched over images), by
    Lanczos (scipy's eigsh, one image at a time, on the batched products)."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    k = min(k, dim - 1)
    values, vectors = [], []
    for i in range(b):
        def matvec(x, i=i):
            v = torch.zeros(b, dim, dtype=torch.float32)
            v[i] = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(-1))
            return hvp(v)[i].double().cpu().numpy()

        w, u = eigsh(LinearOperator((dim, dim), matvec=matvec, dtype=np.float64), k=k, which="LA",
                     v0=np.ones(dim) / math.sqrt(dim))
        order = np.argsort(w)[::-1].copy()
        values.append(torch.from_numpy(w[order]).float())
        vectors.append(torch.from_numpy(u[:, order]).float())
    return torch.stack(values), torch.stack(vectors)


@dataclass
class Exploration:
    """What e-GLASS returns for B images and S = 2 x directions x etas solutions: for each signed direction
    (+d for every start, then -d) its etas steps in turn.

    initial: (B, C, H, W) G(z0); solutions: (B, S, C, H, W) G(z0 + eta d); keep: (B, S) the ones to show
    (the feasible ones, or all with include_infeasible); feasible: (B, S); steps: (B, S) eta; errors: (B, S)
    normalised measurement errors; perceptual_change: (B, S) d_X from G(z0); initial_error: (B,);
    latents: (B, S, L, D); directions: (B, S, dim); starts: K of each direction; removed: how many u_j
    each lost (B,) per direction (-1: none was left); eigenvalues_*: (B, k); correlations: (B, J) each.
    """

    initial: torch.Tensor
    solutions: torch.Tensor
    keep: torch.Tensor
    feasible: torch.Tensor
    steps: torch.Tensor
    errors: torch.Tensor
    perceptual_change: torch.Tensor
    initial_error: torch.Tensor
    latents: torch.Tensor
    directions: torch.Tensor
    starts: list[int]
    removed: list[torch.Tensor]
    eigenvalues_measurement: torch.Tensor
    eigenvalues_image: torch.Tensor
    correlations: dict
    perceptual: str
    eigensolver: str
    settings: dict
    seconds: dict = field(default_factory=dict)

    def uncertainty(self) -> torch.Tensor:
        """Per-pixel standard deviation over G(z0) and the kept solutions, (B, C, H, W): where the measurements
        leave the reconstruction free."""
        maps = []
        for b in range(self.solutions.shape[0]):
            stack = torch.cat([self.initial[b:b + 1], self.solutions[b][self.keep[b]]])
            maps.append(stack.std(dim=0, unbiased=False))
        return torch.stack(maps)


def initial_solution(G, operator, y: torch.Tensor, method: str = "csgm", settings: dict | None = None,
                     seed: int = 0, item_offset: int = 0, tau: float | None = None, attempts: int = 1,
                     progress: Progress = None):
    """z0 for e-GLASS from a solver that works at cut 0 (csgm or pulse): (SolveResult, its latent space).

    With `tau`, the images whose solution has a normalised measurement error above tau (from which no step is
    feasible) are solved again with the next seeds, up to `attempts` solves of the batch in all; each image keeps
    its first solution within tau, or its lowest-error one if none is. info["start_seeds"]: each image's seed.
    `progress` is called with the number of optimisation steps done (a progress bar's update)."""
    from rtil.inverse.latent_spaces import latent_space
    from rtil.inverse.results import pick_per_image
    from rtil.inverse.run import make_solver

    if method not in ("csgm", "pulse"):
        raise RtilError(f"e-GLASS starts from a csgm or pulse solution (a latent at cut 0), not {method!r}")
    if attempts < 1 or (tau is not None and not tau > 0):
        raise RtilError(f"attempts must be >= 1 and tau > 0, got {attempts} and {tau}")
    solver = make_solver(method, settings)
    prepared = solver.prepare(G)
    results, errors = [], []
    for attempt in range(attempts if tau is not None else 1):
        result = solver.solve(G, operator, y, seed=seed + attempt, item_offset=item_offset, progress=progress,
                              **prepared)
        results.append(result)
        with torch.no_grad():
            errors.append(normalised_error(operator, result.images, y))
        if tau is None or (torch.stack(errors).amin(0) <= tau).all():
            break
    errors = torch.stack(errors)  # (attempts, B)
    within = errors <= tau if tau is not None else torch.ones_like(errors, dtype=torch.bool)
    chosen = torch.where(within.any(0), within.int().argmax(0), errors.argmin(0))  # first within tau, else best
    space = latent_space(G, results[0].info["latent_space"], proxy=prepared.get("proxy"))
    merged = results[0] if len(results) == 1 else pick_per_image(results, chosen)
    merged.info = {**results[0].info, "start_seeds": [seed + int(c) for c in chosen]}
    return merged, space

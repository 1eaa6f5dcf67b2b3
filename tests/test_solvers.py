"""Inversion solvers on tiny random generators: in-range recovery from 25% compressed sensing, batching,
honest selection, ILO's l1 ball, the mapping proxy, PULSE feasibility, settings and config files.

The generators and images are float64 with weights drawn in float64: a few hundred optimisation steps amplify
float32's CPU-specific last-bit differences into different local minima, so thresholds on a float32 run hold
only on the CPU that set them; in float64 the runs are the same on every CPU (tests/test_solver_reference.py)."""

import dataclasses
from pathlib import Path

import pytest
import torch

from conftest import float64_default, perturb_, tiny_stylegan2
from rtil.checkpoints import load_generator
from rtil.errors import RtilError
from rtil.evaluation.metrics import psnr, to_unit_range
from rtil.inverse.csgm import CSGM
from rtil.inverse.ilo import ILO, _Round
from rtil.inverse.latent_spaces import latent_space
from rtil.inverse.mapping_proxy import fit_mapping_proxy, leaky_relu_inverse
from rtil.inverse.mganprior import MGANPrior
from rtil.inverse.objectives import geocross
from rtil.inverse.operators import CompressedSensing, RandomMask
from rtil.inverse.optimize import learning_rate
from rtil.inverse.projections import project_to_sphere
from rtil.inverse.pulse import Pulse
from rtil.inverse.randomness import image_generators, randn
from rtil.inverse.results import IterateTracker
from rtil.inverse.run import SOLVERS, load_settings, make_solver, solve_images
from rtil.models.pggan import Generator as PGGAN
from rtil.models.state import SynthesisState

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "invert"
TRAINED = Path(__file__).resolve().parent / "data" / "stylegan2_digits_5kimg.pt"
PROXY_SAMPLES = 4000  # enough for the tiny generators' 16-dim W, and fast


def stylegan2():
    """Tiny StyleGAN2 (16 px, RGB, w_dim 16) in float64; noise strengths scaled down like a trained network's."""
    with float64_default():
        G = tiny_stylegan2()
    with torch.no_grad():
        for layer in G._layers():
            layer.noise_strength.mul_(0.1)
    return G.double().eval().requires_grad_(False)


def pggan():
    """Tiny PGGAN (16 px, RGB) in float64."""
    torch.manual_seed(0)
    with float64_default():
        G = PGGAN(z_dim=16, resolution=16, img_channels=3, channel_base=128, channel_max=16)
    return perturb_(G, scale=0.1).double().eval().requires_grad_(False)


def in_range_images(G, batch=2, seed=5):
    """x = G(z*) with the generator's const noise, in the generator's dtype."""
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return G(z, noise_mode="const")


def on_sphere_images(G, proxy, batch=2, seed=5):
    """x = G(proxy(v*)) with v* on the sphere of radius sqrt(w_dim) (the same for all layers) and the const noise
    maps rescaled to their spheres: in the range of the sphere-constrained solvers (PULSE, ILO's round 0)."""
    gen = torch.Generator().manual_seed(seed)
    v = project_to_sphere(torch.randn(batch, G.w_dim, generator=gen, dtype=torch.float64))
    noises = [project_to_sphere(n, dim=(1, 2, 3)) for n in G.make_noises(1, "const")]
    return G.synthesize(G.start_state(proxy(v)[:, None].expand(-1, G.num_ws, -1), noises))


def compressed_sensing(x, seed=3):
    A = CompressedSensing(tuple(x.shape[1:]), x.shape[0], ratio=0.25, seed=seed)
    return A, A(x)


def inpainting(x, seed=3):
    A = RandomMask(tuple(x.shape[1:]), x.shape[0], ratio=0.5, seed=seed)
    return A, A(x)


def psnr_db(result, x):
    return psnr(to_unit_range(result.images), to_unit_range(x))


# ------------------------------------------------------------------------------------- in-range recovery


def test_csgm_recovers_in_range_image():
    G = stylegan2()
    x = in_range_images(G)
    A, y = compressed_sensing(x)
    result = CSGM(latent_space="w", steps=150, lr=0.2, restarts=4).solve(G, A, y, seed=0)
    assert (psnr_db(result, x) > 40).all()  # 67.8 and 56.3 dB


def test_csgm_pggan_recovers_in_range_image():
    G = pggan()
    x = in_range_images(G)
    A, y = compressed_sensing(x)
    result = CSGM(steps=150, lr=0.2, restarts=4).solve(G, A, y, seed=0)
    assert (psnr_db(result, x) > 40).all()  # 63.6 and 51.9 dB


def test_ilo_recovers_in_range_image():
    G = stylegan2()
    x = in_range_images(G)
    A, y = compressed_sensing(x)
    solver = ILO(cut_points=[0, 1, 2], steps=[100, 50, 50], lr=[0.3, 0.05, 0.05], l1_radius=[0.1, 0.05],
                 geocross=0.1, proxy_samples=PROXY_SAMPLES)
    result = solver.solve(G, A, y, seed=0)
    assert (psnr_db(result, x) > 22).all()  # 27.6 and 24.2 dB (float64 weights and draws, 2026-12-06)


def test_pulse_recovers_in_range_image():
    G = stylegan2()
    proxy = fit_mapping_proxy(G, PROXY_SAMPLES)
    x = on_sphere_images(G, proxy)
    A, y = compressed_sensing(x)
    result = Pulse(restarts=4, steps=150, lr=0.5, geocross=0.1).solve(G, A, y, seed=0, proxy=proxy)
    assert (psnr_db(result, x) > 30).all()  # 33.6 and 33.8 dB
    assert result.feasible is not None and result.feasible.dtype == torch.bool


@pytest.mark.parametrize("family", ["stylegan2", "pggan"])
def test_mganprior_recovers_in_range_image(family):
    G = stylegan2() if family == "stylegan2" else pggan()
    x = in_range_images(G)
    A, y = compressed_sensing(x)
    result = MGANPrior(num_codes=2, cut_point=3, restarts=16, steps=150, lr=0.1).solve(G, A, y, seed=0)
    # 33.2, 36.5 dB (StyleGAN2); 61.2, 77.8 dB (PGGAN; with 8 restarts its second image stayed at 23.3 dB)
    assert (psnr_db(result, x) > 30).all()


# ------------------------------------------------------- shipped settings: every solver at least as good as CSGM


def shipped(method):
    """The solver with its shipped settings (configs/invert/<method>.yaml)."""
    return make_solver(method, load_settings(CONFIGS / f"{method}.yaml"))


def trained_stylegan2():
    """A trained digits StyleGAN2 (configs/stylegan2_digits.yaml at 5 kimg; tests/data/README.md). Solvers are
    checked on a trained generator: a random tiny one hid that ILO and PULSE fitted the noise maps."""
    return load_generator(TRAINED)


def test_shipped_solvers_recover_in_range_images_as_well_as_csgm():
    """x = G(z*) from 25% compressed sensing: a perfect answer exists. Every solver must get close to it, and no
    solver may land farther from x than plain CSGM (ILO and PULSE fitted the noise maps instead, 2026-12)."""
    G = trained_stylegan2()
    x = in_range_images(G, batch=3)
    A, y = compressed_sensing(x)
    scores = {m: psnr_db(shipped(m).solve(G, A, y, seed=0), x) for m in ("csgm", "ilo", "pulse", "mganprior")}
    for method, score in scores.items():
        assert (score > 30).all(), (method, scores)
        assert (score > scores["csgm"] - 3).all() or (score > 45).all(), (method, scores)


@pytest.mark.parametrize("method", ["csgm", "ilo", "pulse", "mganprior"])
def test_shipped_solvers_denoise_in_range_images(method):
    """Denoising x = G(z*) (sigma 0.2): the reconstruction must be closer to x than the noisy measurement is
    (a solver that fits the noise returns the noisy input)."""
    G = trained_stylegan2()
    x = in_range_images(G, batch=3)
    results = solve_images(G, x, method, "denoise", load_settings(CONFIGS / f"{method}.yaml"), seed=0, sigma=0.2)
    noisy = psnr(to_unit_range(results.measurements), to_unit_range(x))
    denoised = psnr(to_unit_range(results.reconstructions), to_unit_range(x))
    assert (denoised > noisy + 3).all(), (noisy, denoised)


# ------------------------------------------------------------------------------- batching and selection

FAST_SOLVERS = {
    "csgm": CSGM(latent_space="w+", optimize_noises=True, steps=15, restarts=2),
    "ilo": ILO(cut_points=[0, 1, 2], steps=[8, 6, 6], lr=[0.1, 0.05, 0.05], l1_radius=[0.05, 0.05], geocross=0.1,
               range_steps=5, proxy_samples=PROXY_SAMPLES),
    "pulse": Pulse(restarts=2, steps=15, geocross=0.1, proxy_samples=PROXY_SAMPLES),
    "mganprior": MGANPrior(num_codes=3, steps=15),
}


@pytest.mark.parametrize("method", list(FAST_SOLVERS))
def test_batched_solve_equals_one_image_at_a_time(method):
    """Each image has its own variables, operator draw and start: solving a batch of 3 gives the same
    per-image loss curves and final iterates as solving each image alone (so images never interact). The
    last iterate is compared: a best-iterate choice between near-equal losses may flip with rounding."""
    G = stylegan2()
    solver = dataclasses.replace(FAST_SOLVERS[method], select="last")
    if method == "ilo":
        # Adam turns rounding-level gradients of features the measurements cannot see into full steps, and the
        # l1 projection couples all of an image's features, so batched and single rounding differences grow
        # there; the projection itself is per image (see test_ilo_features_stay_in_l1_ball_...).
        solver = dataclasses.replace(solver, project_l1=False)
    x = in_range_images(G, batch=3)
    A = CompressedSensing(tuple(x.shape[1:]), 3, ratio=0.25, seed=7)
    batched = solver.solve(G, A, A(x), seed=1)
    for i in range(3):
        Ai = CompressedSensing(tuple(x.shape[1:]), 1, ratio=0.25, seed=7, item_offset=i)
        assert torch.equal(Ai.indices[0], A.indices[i])
        alone = solver.solve(G, Ai, Ai(x[i:i + 1]), seed=1, item_offset=i)
        torch.testing.assert_close(alone.loss_history[..., 0], batched.loss_history[..., i], atol=1e-5, rtol=1e-3)
        torch.testing.assert_close(alone.images[0], batched.images[i], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("method", list(FAST_SOLVERS))
def test_selected_iterate_is_argmin_of_measurement_losses(method):
    G = stylegan2()
    x = in_range_images(G)
    A, y = compressed_sensing(x)
    solver = FAST_SOLVERS[method]
    result = solver.solve(G, A, y, seed=0)
    history = result.loss_history  # (R, T, B)
    first = 0
    if method == "ilo":  # ILO returns an iterate of its final round (its steps and final iterate are recorded last)
        first = history.shape[1] - (solver.steps[-1] + 1)
        history = history[:, first:]
    restarts, steps, b = history.shape
    flat = history.reshape(restarts * steps, b)
    assert torch.equal(result.selected_restart * steps + result.selected_step - first, flat.argmin(0))
    torch.testing.assert_close(result.measurement_loss.cpu(), flat.min(0).values)
    # Every restart's selected iterate is kept; the returned one is the selected restart's.
    assert result.restart_images.shape == (restarts, *result.images.shape)
    torch.testing.assert_close(result.restart_images[result.selected_restart, torch.arange(b)], result.images)
    # The returned images have exactly the selected loss: recompute it from the images.
    torch.testing.assert_close((A(result.images) - y).pow(2).flatten(1).mean(1), result.measurement_loss,
                               atol=1e-6, rtol=1e-4)


def test_select_last_returns_the_final_iterate():
    G = stylegan2()
    x = in_range_images(G)
    A, y = compressed_sensing(x)
    result = CSGM(latent_space="w", steps=10, restarts=1, select="last").solve(G, A, y, seed=0)
    assert (result.selected_step == result.loss_history.shape[1] - 1).all()
    torch.testing.assert_close(result.measurement_loss, result.loss_history[0, -1])


def test_tracker_never_selects_nan():
    tracker = IterateTracker("best")
    tracker.record(torch.zeros(2, 1), torch.tensor([float("nan"), 2.0]))
    tracker.record(torch.ones(2, 1), torch.tensor([1.0, float("nan")]))
    result = tracker.result(2)
    assert result.selected_step.tolist() == [1, 0]
    assert result.measurement_loss.tolist() == [1.0, 2.0]


def test_solvers_have_no_oracle_selection():
    for cls in SOLVERS.values():
        assert "select" in {f.name for f in dataclasses.fields(cls)}
        with pytest.raises(RtilError):
            cls(select="oracle")


# ------------------------------------------------------------------------------------------------- ILO


@pytest.mark.parametrize("project_l1", [True, False])
def test_ilo_features_stay_in_l1_ball_of_previous_solution(project_l1):
    G = stylegan2()
    x = in_range_images(G)
    A, y = compressed_sensing(x)
    radii = [0.01, 0.005]
    solver = ILO(cut_points=[0, 1, 2], steps=[10, 15, 15], lr=[0.1, 0.2, 0.2], l1_radius=radii,
                 project_l1=project_l1, proxy_samples=PROXY_SAMPLES)
    distances = {}

    def check(r, features, center):
        radius = radii[r - 1] * center[0].numel()
        distances[r] = ((features - center).abs().flatten(1).sum(1) / radius).tolist()

    solver.solve(G, A, y, seed=0, on_round_end=check)
    assert sorted(distances) == [1, 2]
    ratios = [d for r in distances.values() for d in r]
    if project_l1:
        assert max(ratios) <= 1 + 1e-4
        assert max(ratios) > 0.5  # the constraint is active, not trivially satisfied
    else:
        assert max(ratios) > 1  # without the projection the features leave the ball


def test_ilo_pggan_runs_rounds_over_features():
    G = pggan()
    x = in_range_images(G)
    A, y = compressed_sensing(x)
    rounds = []
    result = ILO(cut_points=[0, 1, 2], steps=[5, 5, 5], l1_radius=[0.05, 0.05]).solve(
        G, A, y, seed=0, on_round_end=lambda r, f, c: rounds.append((r, tuple(f.shape))))
    assert rounds == [(1, (2, *G.cut_shape(1))), (2, (2, *G.cut_shape(2)))]
    assert result.loss_history.shape == (1, 15 + 3, 2)  # every step plus each round's final iterate


@pytest.mark.parametrize("family", ["stylegan2", "pggan"])
def test_ilo_range_projection_starts_the_next_round_on_the_range(family):
    """Algorithm 1, lines 5-6: after round 1 the earlier variables are re-optimised towards round 1's features,
    and round 2 starts from what the generator makes of them, not from the off-range features."""
    G = stylegan2() if family == "stylegan2" else pggan()
    x = in_range_images(G)
    A, y = compressed_sensing(x)
    settings = dict(cut_points=[0, 1, 2], steps=[20, 20, 5], lr=[0.1, 0.2, 0.05], noise_layers=[1, 3, 3],
                    l1_radius=[0.3, 0.1], project_range=True, range_steps=30, range_lr=0.1,
                    proxy_samples=PROXY_SAMPLES)
    seen = {"rounds": {}, "projections": {}}

    def record_round(r, features, center):
        seen["rounds"][r] = (features, center)

    def record_projection(r, target, reached):
        seen["projections"][r] = (target, reached)

    ILO(**settings).solve(G, A, y, seed=0, on_round_end=record_round, on_range_projection=record_projection)
    assert sorted(seen["projections"]) == [1]  # only between rounds: the last round's output is returned as is
    target, reached = seen["projections"][1]
    round1_features, round1_center = seen["rounds"][1]
    torch.testing.assert_close(target, round1_features)
    # The projection moved the range point towards round 1's solution, without reaching it exactly.
    before = (round1_center - target).pow(2).sum()
    after = (reached - target).pow(2).sum()
    assert after < before and after > 0
    if family == "pggan":  # PGGAN's state is its features only: round 2 starts exactly where they lead
        round2_center = seen["rounds"][2][1]
        torch.testing.assert_close(round2_center, G.advance(SynthesisState(x=reached, cut=1), 2).x)

    seen["rounds"].clear()
    seen["projections"].clear()
    ILO(**{**settings, "project_range": False}).solve(G, A, y, seed=0, on_round_end=record_round,
                                                      on_range_projection=record_projection)
    assert not seen["projections"]
    if family == "pggan":
        torch.testing.assert_close(seen["rounds"][2][1], G.advance(SynthesisState(x=seen["rounds"][1][0], cut=1), 2).x)


def test_ilo_optimises_only_the_allowed_noise_maps():
    """Round r optimises the noise maps downstream of its cut with index < noise_layers[r] (ILO's 5 + 2r at
    1024 px), never all of them from the start; the result says how many each round had."""
    G = stylegan2()
    solver = ILO(cut_points=[0, 1, 2], steps=[1, 1, 1], lr=[0.1] * 3, noise_layers=[1, 3, 5], l1_radius=[0.1, 0.1])
    assert [[i for i in range(G.num_layers) if i in set(_Round.trainable_indices(solver, G, r, c))]
            for r, c in enumerate(solver.cut_points)] == [[0], [1, 2], [3, 4]]
    result = solver.solve(G, *compressed_sensing(in_range_images(G)), seed=0)
    assert [r["trainable_noise_maps"] for r in result.info["rounds"]] == [1, 2, 2]
    assert result.round_losses.shape == (3, 2)


def test_ilo_uses_lpips_on_image_measurements_and_sna_for_denoising():
    """The paper's losses: MSE + LPIPS where the measurements are images (here a stand-in network, as the LPIPS
    weights cannot be downloaded in tests), stochastic noise addition with the noise level for denoising; the
    result says what was used."""
    G = tiny_stylegan2(resolution=32, img_channels=1).eval().requires_grad_(False)
    x = in_range_images(G)
    calls = []

    class StandIn(torch.nn.Module):  # per-row distance of small conv features, like LPIPS's interface
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Conv2d(1, 4, 3)

        def forward(self, a, b):
            calls.append(a.shape)
            return (self.features(a) - self.features(b)).pow(2).flatten(1).mean(1)

    stand_in = StandIn()

    solver = ILO(cut_points=[0, 1], steps=[3, 3], lr=[0.1, 0.1], noise_layers=[1, 3], l1_radius=[0.1],
                 proxy_samples=PROXY_SAMPLES)
    assert solver.perceptual > 0 and solver.stochastic_noise == "measurement"  # the defaults
    cases = {"inpaint": {"ratio": 0.5}, "denoise": {"sigma": 0.2}, "cs": {"ratio": 0.25}}
    info = {}
    for task, parameter in cases.items():
        calls.clear()
        info[task] = solve_images(G, x, "ilo", task, dataclasses.asdict(solver), seed=0, perceptual=stand_in,
                                  **parameter).info
        assert bool(calls) == (task != "cs"), task
    assert info["inpaint"]["perceptual"] == "on" and info["cs"]["perceptual"] == "not applicable"
    assert info["denoise"]["stochastic_noise"] == 0.2 and info["inpaint"]["stochastic_noise"] == 0.0
    unavailable = ILO(**{**dataclasses.asdict(solver)}).solve(G, *inpainting(x), seed=0, perceptual=None)
    assert unavailable.info["perceptual"] == "unavailable"


def test_ilo_settings_are_checked():
    with pytest.raises(RtilError, match="start with 0"):
        ILO(cut_points=[1, 2], steps=[1, 1], lr=[0.1, 0.1], l1_radius=[0.1])
    with pytest.raises(RtilError, match="one value per round"):
        ILO(cut_points=[0, 1], steps=[1], lr=[0.1, 0.1], l1_radius=[0.1])
    with pytest.raises(RtilError, match="noise_layers needs one value per round"):
        ILO(cut_points=[0, 1], steps=[1, 1], lr=[0.1, 0.1], l1_radius=[0.1])
    rounds = {"cut_points": [0, 1], "steps": [1, 1], "lr": [0.1, 0.1], "noise_layers": [1, 3]}
    with pytest.raises(RtilError, match="l1_radius"):
        ILO(**rounds, l1_radius=[])
    with pytest.raises(RtilError, match="latent_l1_radius"):
        ILO(**rounds, l1_radius=[0.1], latent_l1_radius=[0.1, 0.1])
    with pytest.raises(RtilError, match="noise_start"):
        ILO(**rounds, l1_radius=[0.1], noise_start="zeros")
    with pytest.raises(RtilError, match="stochastic_noise"):
        ILO(**rounds, l1_radius=[0.1], stochastic_noise="sigma")


# ---------------------------------------------------------------------------------------- mapping proxy


def test_mapping_proxy_is_fitted_from_the_generators_own_mapping():
    G = stylegan2()
    proxy = fit_mapping_proxy(G, num_samples=PROXY_SAMPLES, seed=3)
    z = randn((PROXY_SAMPLES, G.z_dim), torch.Generator().manual_seed(3), torch.float32)  # as the proxy draws
    u = leaky_relu_inverse(G.mapping(z)).double()
    torch.testing.assert_close(proxy.mean, u.mean(0).float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(proxy.std, u.std(0).float(), atol=1e-4, rtol=1e-4)
    w = G.mapping(torch.randn(5, G.z_dim))
    torch.testing.assert_close(proxy(proxy.inverse(w)), w, atol=1e-5, rtol=1e-5)

    other = stylegan2()
    with torch.no_grad():
        other.mapping.layers[-1].bias.add_(1.0)
    assert not torch.allclose(fit_mapping_proxy(other, PROXY_SAMPLES, seed=3).mean, proxy.mean, atol=1e-3)
    with pytest.raises(RtilError, match="StyleGAN2"):
        fit_mapping_proxy(pggan())


# ---------------------------------------------------------------------------------------------- PULSE


def test_pulse_returns_best_result_when_nothing_is_feasible():
    G = stylegan2()
    x = in_range_images(G)
    A, y = compressed_sensing(x)
    result = Pulse(restarts=2, steps=5, tolerance=0.0, proxy_samples=PROXY_SAMPLES).solve(G, A, y, seed=0)
    assert result.feasible.tolist() == [False, False]
    assert torch.isfinite(result.images).all() and result.images.shape == x.shape
    assert torch.equal(result.measurement_loss, result.loss_history.reshape(-1, 2).min(0).values)
    generous = Pulse(restarts=2, steps=5, tolerance=1e9, proxy_samples=PROXY_SAMPLES).solve(G, A, y, seed=0)
    assert generous.feasible.tolist() == [True, True]


# ------------------------------------------------------------------------------------ shared machinery


def test_geocross_is_per_image():
    rows = torch.randn(1, 4, 8)
    same = rows[:, :1].expand(-1, 4, -1)
    both = geocross(torch.cat([same, rows]))
    assert both[0].abs() < 1e-3 and both[1] > 0
    torch.testing.assert_close(both[1:], geocross(rows))
    assert geocross(torch.randn(3, 1, 8)).eq(0).all()


def test_learning_rate_schedule():
    assert learning_rate(0, 100, 0.1, 0.05, 0.25) == 0.0
    assert learning_rate(50, 100, 0.1, 0.05, 0.25) == pytest.approx(0.1)
    assert learning_rate(99, 100, 0.1, 0.05, 0.25) < 0.01
    assert learning_rate(99, 100, 0.1, 0.0, 0.0) == 0.1


def start_noises(G, gens, restarts, noise_start, device):
    return latent_space(G, "gaussian-w+", proxy=fit_mapping_proxy(G, 100), noise_start=noise_start).draw_noises(
        gens, restarts, 1)


def test_start_noises_const_copies_the_stored_maps_and_random_draws_per_image():
    G = stylegan2()
    const = start_noises(G, image_generators(3, seed=0), 2, "const", "cpu")
    for n, stored in zip(const, G.make_noises(1, "const"), strict=True):
        assert n.shape[0] == 6 and torch.equal(n, stored.expand_as(n))
    random = start_noises(G, image_generators(3, seed=0), 2, "random", "cpu")
    alone = start_noises(G, image_generators(1, seed=0, item_offset=1), 2, "random", "cpu")
    for n, m, (h, w) in zip(random, alone, G.noise_shapes(), strict=True):
        assert torch.allclose(n.flatten(1).norm(dim=1), torch.full((6,), (h * w) ** 0.5, dtype=n.dtype))
        assert torch.equal(n[[1, 4]], m)  # image 1's maps (both restarts) do not depend on the batch
        assert not torch.equal(n[0], n[1]) and not torch.equal(n[0], n[3])
    assert not torch.equal(random[0], const[0])


def test_make_solver_checks_settings():
    assert isinstance(make_solver("ilo", {"method": "ilo", "geocross": 0.0}), ILO)
    with pytest.raises(RtilError, match="unknown method"):
        make_solver("gradient-magic")
    with pytest.raises(RtilError, match="unknown csgm setting"):
        make_solver("csgm", {"stepz": 3})
    with pytest.raises(RtilError, match="for method 'ilo'"):
        make_solver("csgm", {"method": "ilo"})
    with pytest.raises(RtilError, match="latent_space"):
        make_solver("csgm", {"latent_space": "q"})


def test_make_solver_applies_and_checks_per_task_settings():
    settings = {"l1_radius": [0.3, 0.15], "tasks": {"denoise": {"l1_radius": [0.1, 0.05]}}}
    assert make_solver("ilo", settings, "denoise").l1_radius == [0.1, 0.05]
    assert make_solver("ilo", settings, "cs").l1_radius == [0.3, 0.15]
    assert make_solver("ilo", settings).l1_radius == [0.3, 0.15]
    with pytest.raises(RtilError, match="unknown task 'deblur'"):
        make_solver("ilo", {"tasks": {"deblur": {}}})
    with pytest.raises(RtilError, match="unknown ilo setting"):  # checked even when another task is solved
        make_solver("ilo", {"tasks": {"denoise": {"radius": 1}}}, "cs")
    with pytest.raises(RtilError, match="one value per round"):
        make_solver("ilo", {"tasks": {"sr": {"l1_radius": [0.1]}}})


@pytest.mark.parametrize("method", list(SOLVERS))
def test_config_files_hold_the_dataclass_defaults(method):
    settings = load_settings(CONFIGS / f"{method}.yaml")
    assert settings.pop("method") == method
    assert make_solver(method, settings) == SOLVERS[method]()


@pytest.mark.parametrize("task, parameter", [("cs", {"ratio": 0.25}), ("denoise", {"sigma": 0.2})])
def test_solve_images_gives_batch_size_independent_results(task, parameter):
    G = stylegan2()
    x = in_range_images(G, batch=3)
    settings = {"latent_space": "w", "steps": 10, "restarts": 1}
    whole = solve_images(G, x, "csgm", task, settings, seed=4, batch_size=3, **parameter)
    pieces = solve_images(G, x, "csgm", task, settings, seed=4, batch_size=2, **parameter)
    torch.testing.assert_close(whole.measurements, pieces.measurements)  # measurement noise is per image
    if task == "denoise":
        assert (whole.measurements - x).abs().mean() > 0.1
    torch.testing.assert_close(whole.reconstructions, pieces.reconstructions, atol=1e-4, rtol=1e-4)
    assert whole.reconstructions.shape == x.shape and whole.measurement_views.shape == x.shape
    assert len(pieces.operators) == 2 and pieces.solver["method"] == "csgm"

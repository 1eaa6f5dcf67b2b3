"""Inversion solvers on tiny random generators: in-range recovery from 25% compressed sensing, batching,
honest selection, ILO's l1 ball, the mapping proxy, PULSE feasibility, settings and config files."""

import dataclasses
from pathlib import Path

import pytest
import torch

from conftest import perturb_, tiny_stylegan2
from rtil.errors import RtilError
from rtil.evaluation.metrics import psnr, to_unit_range
from rtil.inverse.csgm import CSGM
from rtil.inverse.ilo import ILO
from rtil.inverse.mapping_proxy import fit_mapping_proxy, leaky_relu_inverse
from rtil.inverse.mganprior import MGANPrior
from rtil.inverse.operators import CompressedSensing
from rtil.inverse.projections import project_to_sphere
from rtil.inverse.pulse import Pulse
from rtil.inverse.run import SOLVERS, load_settings, make_solver, solve_images
from rtil.inverse.solvers import IterateTracker, geocross, learning_rate
from rtil.models.pggan import Generator as PGGAN

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "invert"
PROXY_SAMPLES = 4000  # enough for the tiny generators' 16-dim W, and fast


def stylegan2():
    """Tiny StyleGAN2 (16 px, RGB, w_dim 16); noise strengths scaled down like a trained network's."""
    G = tiny_stylegan2()
    with torch.no_grad():
        for layer in G._layers():
            layer.noise_strength.mul_(0.1)
    return G.eval().requires_grad_(False)


def pggan():
    torch.manual_seed(0)
    G = PGGAN(z_dim=16, resolution=16, img_channels=3, channel_base=128, channel_max=16)
    return perturb_(G, scale=0.1).eval().requires_grad_(False)


def in_range_images(G, batch=2, seed=5):
    """x = G(z*) with the generator's const noise."""
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G(z, noise_mode="const")


def on_sphere_images(G, proxy, batch=2, seed=5):
    """x = G(proxy(v*)) with v* on the sphere of radius sqrt(w_dim) (the same for all layers) and the const noise
    maps rescaled to their spheres: in the range of the sphere-constrained solvers (PULSE, ILO's round 0)."""
    v = project_to_sphere(torch.randn(batch, G.w_dim, generator=torch.Generator().manual_seed(seed)))
    noises = [project_to_sphere(n, dim=(1, 2, 3)) for n in G.make_noises(1, "const")]
    return G.synthesize(G.start_state(proxy(v)[:, None].expand(-1, G.num_ws, -1), noises))


def compressed_sensing(x, seed=3):
    A = CompressedSensing(tuple(x.shape[1:]), x.shape[0], ratio=0.25, seed=seed)
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
    assert (psnr_db(result, x) > 27).all()  # 28.7 and 30.8 dB


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
    result = MGANPrior(num_codes=2, cut_point=3, restarts=8, steps=150, lr=0.1).solve(G, A, y, seed=0)
    assert (psnr_db(result, x) > 35).all()  # 39.7, 45.6 dB (StyleGAN2); 62.4, 53.7 dB (PGGAN)


# ------------------------------------------------------------------------------- batching and selection

FAST_SOLVERS = {
    "csgm": CSGM(latent_space="w+", optimize_noises=True, steps=15, restarts=2),
    "ilo": ILO(cut_points=[0, 1, 2], steps=[8, 6, 6], lr=[0.1, 0.05, 0.05], l1_radius=[0.05, 0.05], geocross=0.1,
               proxy_samples=PROXY_SAMPLES),
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
    result = FAST_SOLVERS[method].solve(G, A, y, seed=0)
    history = result.loss_history  # (R, T, B)
    restarts, steps, b = history.shape
    flat = history.reshape(restarts * steps, b)
    assert torch.equal(result.selected_restart * steps + result.selected_step, flat.argmin(0))
    torch.testing.assert_close(result.measurement_loss.cpu(), flat.min(0).values)
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


def test_ilo_settings_are_checked():
    with pytest.raises(RtilError, match="start with 0"):
        ILO(cut_points=[1, 2], steps=[1, 1], lr=[0.1, 0.1], l1_radius=[0.1])
    with pytest.raises(RtilError, match="one value per round"):
        ILO(cut_points=[0, 1], steps=[1], lr=[0.1, 0.1], l1_radius=[0.1])
    with pytest.raises(RtilError, match="l1_radius"):
        ILO(cut_points=[0, 1], steps=[1, 1], lr=[0.1, 0.1], l1_radius=[])


# ---------------------------------------------------------------------------------------- mapping proxy


def test_mapping_proxy_is_fitted_from_the_generators_own_mapping():
    G = stylegan2()
    proxy = fit_mapping_proxy(G, num_samples=PROXY_SAMPLES, seed=3)
    z = torch.randn(PROXY_SAMPLES, G.z_dim, generator=torch.Generator().manual_seed(3))
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

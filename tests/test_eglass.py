"""e-GLASS: exact and matrix-free eigenpairs agree, the constructed direction leaves the measurements alone,
every returned solution is feasible, results repeat under a seed, and bad input is a clear error."""

import json

import pytest
import torch

from conftest import run_invert, tiny_stylegan2
from rtil.checkpoints import save_generator
from rtil.errors import RtilError
from rtil.inverse.eglass import EGlass, initial_solution, normalised_error
from rtil.inverse.latent_spaces import latent_space
from rtil.inverse.operators import BoxMask, Downsample
from rtil.inverse.randomness import image_generators


def generator():
    torch.manual_seed(0)
    G = tiny_stylegan2(16, 1).eval().requires_grad_(False)
    with torch.no_grad():  # noise inputs of a trained network are weak
        for layer in G._layers():
            layer.noise_strength.mul_(0.1)
    return G


def problem(operator_class=Downsample, **kw):
    G = generator()
    space = latent_space(G, "w+")
    latent, noises = space.draw(image_generators(2, seed=3))
    with torch.no_grad():
        x = G.synthesize(space.start_state(latent, noises))
    operator = operator_class((1, 16, 16), 2, **kw)
    return G, space, latent, noises, operator, operator(x)


def test_dense_and_matrix_free_eigenpairs_agree():
    G, space, latent, noises, operator, y = problem(factor=4)
    dense = EGlass(k=4, directions=2, top_measurement=6, eigensolver="dense").explore(G, operator, y, space, latent,
                                                                                      noises)
    for solver in ("lanczos", "subspace"):
        free = EGlass(k=4, directions=2, top_measurement=6, eigensolver=solver).explore(G, operator, y, space,
                                                                                         latent, noises)
        torch.testing.assert_close(free.eigenvalues_measurement, dense.eigenvalues_measurement, rtol=1e-3, atol=1e-6)
        torch.testing.assert_close(free.eigenvalues_image, dense.eigenvalues_image, rtol=1e-3, atol=1e-7)
        # eigenvectors up to sign: |<d_dense, d_free>| = 1 for the well-separated top ones
        overlap = (dense.directions[:, 0] * free.directions[:, 0]).sum(-1).abs()
        assert (overlap > 0.99).all(), (solver, overlap)


def test_the_direction_changes_the_masked_region_not_the_measurements():
    """Box inpainting: the measurements are the pixels outside the box, so a step along d should change the
    image inside the box and leave the outside nearly as it is, unlike a step along the raw v_K."""
    G, space, latent, noises, operator, y = problem(BoxMask, box_size=8, top_left=(4, 4))
    eglass = EGlass(k=6, directions=1, top_measurement=40, threshold=0.05, eigensolver="dense")
    result = eglass.explore(G, operator, y, space, latent, noises)
    raw = result.correlations["start_vs_measurement"]
    constructed = result.correlations["direction_vs_measurement"]
    assert (constructed.amax(1) <= 0.05 + 1e-6).all() and (raw.amax(1) > constructed.amax(1)).all()
    z0 = latent.reshape(2, -1)
    mask = operator.mask.bool()

    def change(direction):
        step = 0.5 * direction
        with torch.no_grad():
            a = G.synthesize(space.start_state(z0.reshape(latent.shape), noises))
            b = G.synthesize(space.start_state((z0 + step).reshape(latent.shape), noises))
        diff = (b - a).pow(2)
        return diff[mask.expand_as(diff)].sum(), diff[~mask.expand_as(diff)].sum()

    outside_d, inside_d = change(result.directions[:, 0])
    start = EGlass(k=6, directions=1, top_measurement=1, threshold=0.999, eigensolver="dense").explore(
        G, operator, y, space, latent, noises).directions[:, 0]  # threshold 0.999: v_K itself
    outside_v, inside_v = change(start)
    assert outside_d < 0.25 * outside_v  # far less change where the measurements are
    assert inside_d / (outside_d + inside_d) > inside_v / (outside_v + inside_v)  # the change moves into the box


def test_every_returned_solution_is_feasible_and_results_repeat():
    G, space, latent, noises, operator, y = problem(factor=4)
    eglass = EGlass(k=5, directions=3, tau=1e-3, eigensolver="dense")
    first = eglass.explore(G, operator, y, space, latent, noises)
    again = eglass.explore(G, operator, y, space, latent, noises)
    assert torch.equal(first.solutions, again.solutions) and torch.equal(first.steps, again.steps)
    assert first.keep.equal(first.feasible) and (first.errors[first.keep] <= 1e-3).all()
    kept = first.solutions[first.keep]
    assert kept.shape[0] > 0
    rows = first.keep.nonzero()
    for (b, _), image in zip(rows.tolist(), kept, strict=True):
        err = normalised_error(operator_for(operator, b), image[None], y[b:b + 1])
        assert err <= 1e-3 + 1e-6
    assert (first.steps[first.keep] > 0).any()  # it does move
    assert first.uncertainty().shape == (2, 1, 16, 16)


def test_several_steps_per_direction_are_fractions_of_the_largest_feasible_one():
    G, space, latent, noises, operator, y = problem(factor=4)
    one = EGlass(k=5, directions=2, tau=1e-3, eigensolver="dense").explore(G, operator, y, space, latent, noises)
    lines = []
    three = EGlass(k=5, directions=2, tau=1e-3, etas=3, eigensolver="dense").explore(G, operator, y, space, latent,
                                                                                    noises, report=lines.append)
    assert len(lines) == 2 and "eigenpairs" in lines[0] and "step search" in lines[1]  # what the CLI prints
    assert three.solutions.shape[1] == 3 * one.solutions.shape[1] == 12
    steps = three.steps.reshape(2, 4, 3)  # (B, signed direction, eta)
    torch.testing.assert_close(steps[..., 2], one.steps)  # the last eta is the bisection's
    torch.testing.assert_close(steps[..., 0] * 3, one.steps)
    assert three.starts == [5, 5, 5, 4, 4, 4] * 2 and three.latents.shape[1] == 12
    assert (three.errors[three.keep] <= 1e-3).all() and three.keep.equal(three.feasible)
    tight = EGlass(k=5, directions=2, tau=1e-14, eigensolver="dense").explore(G, operator, y, space, latent, noises)
    assert (tight.steps == 0).any() and (tight.initial_error <= 1e-14).all()  # z0 fits, no step does
    assert not tight.feasible[tight.steps == 0].any()  # a zero step is G(z0) again, never a new solution
    with pytest.raises(RtilError, match="etas"):
        EGlass(etas=0)


def operator_for(operator, b):
    """The operator of image b alone (Downsample has no per-image draws)."""
    return Downsample((1, 16, 16), 1, factor=operator.factor)


def test_from_a_solver_solution_and_bad_input():
    G, space, latent, noises, operator, y = problem(factor=4)
    result, found = initial_solution(G, operator, y, "csgm", {"steps": 5, "restarts": 1})
    with torch.no_grad():
        again = G.synthesize(found.start_state(result.latent, result.noises))
    torch.testing.assert_close(again, result.images)  # the stored latent is the selected iterate's
    with pytest.raises(RtilError, match="larger than the latent dimension"):
        EGlass(k=10_000, directions=1).explore(G, operator, y, space, latent, noises)
    with pytest.raises(RtilError, match="tau"):
        EGlass(tau=0)
    with pytest.raises(RtilError, match="z0 must be"):
        EGlass(k=4, directions=1).explore(G, operator, y, space, latent[:1], noises)
    with pytest.raises(RtilError, match="operator works on images"):
        EGlass(k=4, directions=1).explore(G, Downsample((1, 32, 32), 2, factor=4), torch.zeros(2, 1, 8, 8), space,
                                          latent, noises)
    with pytest.raises(RtilError, match="csgm or pulse"):
        initial_solution(G, operator, y, "ilo")


def test_an_infeasible_start_is_solved_again_with_the_next_seed():
    """Each image keeps its first solution within tau, else its lowest-error one over the attempts, and the
    merged result is exactly that seed's solution of that image."""
    G, space, latent, noises, operator, y = problem(factor=4)
    settings = {"steps": 3, "restarts": 1}
    single = [initial_solution(G, operator, y, "csgm", settings, seed=s)[0] for s in range(3)]
    errors = torch.stack([normalised_error(operator, r.images, y) for r in single])  # (3, B)
    loose, _ = initial_solution(G, operator, y, "csgm", settings, tau=float(errors.max()) * 2, attempts=3)
    assert loose.info["start_seeds"] == [0, 0]  # the first solve is within tau: no second one
    counted = []
    best, _ = initial_solution(G, operator, y, "csgm", settings, tau=float(errors.min()) / 2, attempts=3,
                               progress=counted.append)
    assert sum(counted) == 3 * 3  # three solves of three steps: what a progress bar counts
    assert best.info["start_seeds"] == errors.argmin(0).tolist()  # none within tau: the lowest error
    for b, s in enumerate(best.info["start_seeds"]):
        torch.testing.assert_close(best.images[b], single[s].images[b])
        torch.testing.assert_close(best.latent[b], single[s].latent[b])
        torch.testing.assert_close(best.loss_history[..., b], single[s].loss_history[..., b])
        torch.testing.assert_close(best.restart_images[:, b], single[s].restart_images[:, b])
    middle = float(errors[:, 1].min()) * 1.001  # image 1 within tau at its best seed
    picked, _ = initial_solution(G, operator, y, "csgm", settings, tau=middle, attempts=3)
    first = int((errors[:, 1] <= middle).int().argmax())
    assert picked.info["start_seeds"][1] == first
    with pytest.raises(RtilError, match="attempts"):
        initial_solution(G, operator, y, "csgm", settings, tau=0.1, attempts=0)


def test_explore_cli(tmp_path, capsys):
    G = generator()
    save_generator(tmp_path / "g.pt", G)
    (tmp_path / "csgm.yaml").write_text("method: csgm\nsteps: 5\nrestarts: 1\n")

    def explore(*task, out):
        return ["explore", "--generator", tmp_path / "g.pt", *task, "--images", "digits-test", "--num-images", 2,
                "--initial-config", tmp_path / "csgm.yaml", "--out", tmp_path / out]

    common = explore("--task", "sr", "--factor", 4, out="out")
    assert run_invert([*common, "--set", "k=4", "--set", "directions=2", "--set", "etas=2"]) == 0
    assert "note:" not in capsys.readouterr().err  # 96 latent numbers, 16 measurements: room to move
    for name in ("grid.png", "correlations.png", "explore.json", "solutions.pt"):
        assert (tmp_path / "out" / name).is_file()
    record = json.loads((tmp_path / "out" / "explore.json").read_text())
    assert len(record["initial"]["seeds"]) == 2  # each image's start seed (a retry when a start is not within tau)
    assert len(record["per_image"][0]["solutions"]) == 2 * 2 * 2  # directions x signs x etas
    box = explore("--task", "inpaint_box", "--ratio", 0.75, out="box")
    assert run_invert([*box, "--quiet", "--set", "k=4", "--set", "directions=1"]) == 0
    assert "latent has 96 numbers and each image 192 measurements" in capsys.readouterr().err
    for bad, message in ((["--set", "tau=0"], "tau"), (["--set", "k=100000", "--set", "directions=1"], "latent"),
                         (["--set", "bogus=1"], "unknown e-GLASS setting"), (["--initial", "ilo"], "csgm or pulse"),
                         (["--start-attempts", "0"], "--start-attempts")):
        capsys.readouterr()
        assert run_invert([*common, "--quiet", "--overwrite", *bad]) == 2, bad  # k: checked after the start
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (bad, err)


class StandInPerceptual(torch.nn.Module):
    """LPIPS's interface (images in [0, 1] -> one distance per row) with small fixed conv features: the LPIPS
    weights cannot be downloaded in tests."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        torch.nn.init.normal_(self.conv.weight, generator=torch.Generator().manual_seed(0))
        torch.nn.init.zeros_(self.conv.bias)
        self.requires_grad_(False)

    def forward(self, pred, target):
        return (torch.tanh(self.conv(pred)) - torch.tanh(self.conv(target))).pow(2).flatten(1).mean(1)


def test_the_image_metric_can_be_a_perceptual_network_with_every_eigensolver():
    G, space, latent, noises, operator, y = problem(factor=4)
    perceptual = StandInPerceptual()
    results = [EGlass(k=3, directions=1, top_measurement=4, eigensolver=solver).explore(
        G, operator, y, space, latent, noises, perceptual=perceptual) for solver in ("dense", "lanczos", "subspace")]
    assert all(r.perceptual == "lpips" for r in results)
    for free in results[1:]:  # the matrix-free ones use second-order products of the network metric
        torch.testing.assert_close(free.eigenvalues_image, results[0].eigenvalues_image, rtol=1e-3, atol=1e-7)
    mse = EGlass(k=3, directions=1, top_measurement=4, perceptual="mse").explore(G, operator, y, space, latent,
                                                                               noises, perceptual=perceptual)
    assert mse.perceptual == "mse" and not torch.allclose(mse.eigenvalues_image, results[0].eigenvalues_image)
    with pytest.raises(RtilError, match="needs the LPIPS network"):
        EGlass(k=3, directions=1, perceptual="lpips").explore(G, operator, y, space, latent, noises)

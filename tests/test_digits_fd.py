"""The digits Fréchet distance separates real digits from noise and is ~0 for a set against itself."""

import numpy as np
import torch

from rtil.data.digits import digits_images
from rtil.evaluation.digits_fd import classifier_confidence, digits_fd, frechet_distance


def test_frechet_distance_of_identical_gaussians_is_zero_and_shift_is_squared_norm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 3))
    assert abs(frechet_distance(a, a)) < 1e-6
    assert abs(frechet_distance(a, a + np.array([1.0, 2.0, 0.0])) - 5.0) < 1e-6


def test_frechet_distance_matches_the_closed_form_for_gaussians_with_a_singular_covariance():
    # a: N(0, diag(1, 4, 0)); b: N(0, diag(4, 1, 0)): d = sum (sqrt(s_a) - sqrt(s_b))^2 = 1 + 1 = 2
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200000, 3)) * np.array([1.0, 2.0, 0.0])
    b = rng.normal(size=(200000, 3)) * np.array([2.0, 1.0, 0.0])
    assert abs(frechet_distance(a, b) - 2.0) < 0.03


def test_digits_fd_ranks_real_digits_far_below_noise():
    train = digits_images("train", 16)
    test = digits_images("test", 16)
    noise = torch.rand(297, 1, 16, 16) * 2 - 1
    real_fd = digits_fd(train[:297], test)
    noise_fd = digits_fd(noise, test)
    assert real_fd < 0.1 * noise_fd
    assert classifier_confidence(test) > 0.8 > classifier_confidence(noise)

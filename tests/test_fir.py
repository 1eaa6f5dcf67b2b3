"""FIR up/down-sampling against a direct construction (zero insertion / explicit 2-D convolution)."""

import numpy as np
import torch
from scipy.signal import convolve2d

from rtil.nn import downsample2d, fir_filter, upsample2d


def test_fir_filter_normalised_and_separable():
    f = fir_filter()
    assert f.shape == (4, 4)
    assert torch.isclose(f.sum(), torch.tensor(1.0))
    np.testing.assert_allclose(f.numpy(), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0, rtol=1e-6)


def _reference_up(x, f):
    # Zero insertion (x at even positions), pad (2, 1) on each axis, full 2-D convolution with
    # 4 * f, keep the "valid" part: output (2H, 2W).
    h, w = x.shape
    u = np.zeros((2 * h, 2 * w))
    u[::2, ::2] = x
    u = np.pad(u, ((2, 1), (2, 1)))
    return convolve2d(u, 4 * f, mode="valid")


def _reference_down(x, f):
    u = np.pad(x, ((1, 1), (1, 1)))
    return convolve2d(u, f, mode="valid")[::2, ::2]


def test_upsample2d_matches_zero_insertion_reference():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    f = fir_filter().double()
    y = upsample2d(x, f)
    assert y.shape == (2, 3, 10, 14)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[n, c].numpy(), _reference_up(x[n, c].numpy(), f.numpy()), atol=1e-12)


def test_downsample2d_matches_filter_then_decimate_reference():
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    f = fir_filter().double()
    y = downsample2d(x, f)
    assert y.shape == (2, 3, 4, 3)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[n, c].numpy(), _reference_down(x[n, c].numpy(), f.numpy()), atol=1e-12)


def test_upsample_preserves_constant_images():
    x = torch.full((1, 1, 6, 6), 0.7, dtype=torch.float64)
    y = upsample2d(x, fir_filter().double())
    # Away from the zero-padded border a constant image stays constant (gain 4 compensates the zeros).
    np.testing.assert_allclose(y[0, 0, 2:-2, 2:-2].numpy(), 0.7, atol=1e-12)

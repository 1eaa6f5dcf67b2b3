"""Modulated convolution: fused == non-fused, and both equal a per-sample direct computation."""

import pytest
import torch
import torch.nn.functional as F

from rtil.nn import fir_filter, modulated_conv2d, upsample2d


def _reference(x, weight, styles, demodulate, up):
    outs = []
    f = fir_filter().double()
    for n in range(x.shape[0]):
        w = weight * styles[n][None, :, None, None]
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        xi = x[n : n + 1]
        if up:
            # Upsample-then-conv defined directly: zero insertion, "full" conv, FIR with gain 4.
            k = w.shape[-1]
            u = torch.zeros(1, xi.shape[1], 2 * xi.shape[2], 2 * xi.shape[3], dtype=x.dtype)
            u[:, :, ::2, ::2] = xi
            y = F.conv2d(F.pad(u, (k - 1, k - 1, k - 1, k - 1)), w.flip([2, 3]))  # true convolution
            y = y[:, :, : 2 * xi.shape[2] + 1, : 2 * xi.shape[3] + 1]  # = transposed-conv output size
            y = F.pad(y, (1, 1, 1, 1))
            y = F.conv2d(y, (4 * f)[None, None].expand(y.shape[1], 1, 4, 4), groups=y.shape[1])
        else:
            y = F.conv2d(xi, w, padding=w.shape[-1] // 2)
        outs.append(y)
    return torch.cat(outs)


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_fused_equals_nonfused_equals_reference(up, demodulate, k):
    if up and k == 1:
        pytest.skip("1x1 up-sampling convs are not used")
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    weight = torch.randn(6, 4, k, k, dtype=torch.float64)
    styles = torch.randn(3, 4, dtype=torch.float64)
    f = fir_filter().double()
    fused = modulated_conv2d(x, weight, styles, demodulate, up=up, resample_filter=f, fused=True)
    nonfused = modulated_conv2d(x, weight, styles, demodulate, up=up, resample_filter=f, fused=False)
    ref = _reference(x, weight, styles, demodulate, up)
    assert fused.shape == ref.shape == (3, 6, 10 if up else 5, 10 if up else 5)
    torch.testing.assert_close(fused, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(nonfused, ref, atol=1e-10, rtol=1e-10)


def test_up_conv_of_a_1x1_identity_kernel_is_plain_fir_upsampling():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    weight = torch.zeros(3, 3, 3, 3, dtype=torch.float64)
    weight[:, :, 1, 1] = torch.eye(3)
    f = fir_filter().double()
    y = modulated_conv2d(x, weight, torch.ones(2, 3, dtype=torch.float64), demodulate=False, up=True,
                         resample_filter=f)
    # With a centred identity kernel the up-sampling conv must reduce to plain FIR up-sampling:
    # this pins the relative alignment of the transposed conv and the filter padding.
    torch.testing.assert_close(y, upsample2d(x, f), atol=1e-12, rtol=0)

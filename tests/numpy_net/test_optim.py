"""Optimizers and clipping (numpy_net/optim.py): clip_grad_norm_ gives torch's results at overflow."""

from __future__ import annotations

import math

import numpy as np
import pytest


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("grad, max_norm", [(3e38, 1.0), (1e200, 1.0), (math.inf, 1.0), (0.5, 1e300)])
def test_numpy_nets_clipping_gives_torchs_overflow_results_without_a_numpy_warning(dtype, grad, max_norm):
    """A norm that overflows to Inf (and Inf * 0 = NaN after it), or a max_norm past the dtype's
    range: torch's values, and no RuntimeWarning (torch gives none)."""
    import warnings

    import torch

    import numpy_net

    if dtype == "float32" and grad == 1e200:
        grad = 3e38
    net = numpy_net.MLP([3, 2], seed=0, dtype=dtype)
    params = [torch.zeros(tuple(v.shape), dtype=getattr(torch, dtype)) for v in net.grads().values()]
    for value, param in zip(net.grads().values(), params):
        value[...] = grad
        param.grad = torch.full(tuple(value.shape), grad, dtype=param.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        total = numpy_net.clip_grad_norm_(net, max_norm)
    want = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if math.isfinite(total) and math.isfinite(float(want)):
        # torch reduces the norms with the CPU's SIMD width (AVX2 or AVX-512 code), NumPy with its
        # BLAS's dot: sqrt(1.5)^2 + sqrt(0.5)^2 = 2 rounds 1 ulp apart on some CPUs (an AMD EPYC).
        np.testing.assert_array_max_ulp(np.float64(total), np.float64(float(want)), maxulp=1)
    else:
        np.testing.assert_equal(total, float(want))
    for value, param in zip(net.grads().values(), params):
        np.testing.assert_array_equal(value, param.grad.numpy())

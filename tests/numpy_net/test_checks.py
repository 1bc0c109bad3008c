"""The NumPy engine's array checks (numpy_net/checks.py): arrays in another byte order, a list delta."""

from __future__ import annotations

import numpy as np
import pytest

import numpy_net


# -- arrays in another byte order ----------------------------------------------------------------
def test_big_endian_arrays_give_the_native_results():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    y = rng.integers(0, 3, 7).astype(np.int32)
    results = []
    for xs, ys in ((x, y), (x.astype(">f4"), y.astype(">i4"))):
        net = numpy_net.MLP([5, 4, 3], seed=0)
        loss = numpy_net.SoftmaxCrossEntropy()
        value = loss.forward(net.forward(xs), ys)
        net.backward(loss.backward())
        results.append((value, {k: v.copy() for k, v in net.grads().items()}))
    assert results[0][0] == results[1][0]
    for key in results[0][1]:
        assert np.array_equal(results[0][1][key], results[1][1][key]), key
    logits = rng.standard_normal((7, 3))
    assert numpy_net.SoftmaxCrossEntropy().forward(logits.astype(">f8"), y.astype(">i8")) == \
        numpy_net.SoftmaxCrossEntropy().forward(logits, y)


def test_a_big_endian_label_out_of_range_is_named_truthfully():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got 5 at position 1"):
        numpy_net.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0, 5], ">i4"))


def test_a_big_endian_input_of_the_wrong_dtype_says_so_without_contradiction():
    with pytest.raises(TypeError, match=r"x: expected dtype float32 .*got float64"):
        numpy_net.MLP([5, 3]).forward(np.zeros((2, 5), ">f8"))


def test_the_shape_of_a_list_delta_is_named():
    with pytest.raises(RuntimeError, match=r"got a delta of shape \(5, 2\)"):
        numpy_net.MLP([3, 2]).backward([[1.0, 1.0]] * 5)

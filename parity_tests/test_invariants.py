"""Property 5: invariants of softmax cross-entropy that hold whatever the network."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine_core.naming import DTYPES

EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


@st.composite
def logit_problems(draw, bound: float = 50.0):
    batch = draw(st.integers(1, 16))
    classes = draw(st.integers(1, 12))
    dtype = draw(st.sampled_from(DTYPES))
    logits = draw(arrays(np.float64, (batch, classes),
                         elements=st.floats(-bound, bound, allow_nan=False, allow_subnormal=False)))
    y = draw(arrays(np.int64, (batch,), elements=st.integers(0, classes - 1)))
    return logits, y, dtype


def _loss_and_grad(engine, logits, y, dtype):
    loss_fn = engine.SoftmaxCrossEntropy()
    loss = loss_fn.forward(engine.asarray(logits, dtype), engine.labels(y))
    grad = engine.to_numpy(loss_fn.backward()).astype(np.float64)
    return loss, grad, loss_fn


@given(logit_problems())
def test_softmax_rows_sum_to_one(engine, problem):
    logits, y, dtype = problem
    _, _, loss_fn = _loss_and_grad(engine, logits, y, dtype)
    if not hasattr(loss_fn, "softmax"):
        pytest.skip(f"{engine.name}'s SoftmaxCrossEntropy has no softmax() (optional in the protocol)")
    probs = engine.to_numpy(loss_fn.softmax()).astype(np.float64)
    classes = logits.shape[1]
    assert np.all(probs >= 0)
    # Each of the C terms is rounded once and summed once: |sum - 1| <= 2 C u.
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=2 * classes * EPS[dtype])


@given(logit_problems())
def test_loss_gradient_rows_sum_to_zero(engine, problem):
    """(softmax - onehot) / B sums to 0 along a row, up to the rounding of C terms."""
    logits, y, dtype = problem
    _, grad, _ = _loss_and_grad(engine, logits, y, dtype)
    batch, classes = logits.shape
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, rtol=0, atol=4 * classes * EPS[dtype] / batch)


@given(logit_problems(), st.floats(-1e3, 1e3, allow_nan=False))
def test_adding_a_constant_to_a_row_changes_neither_loss_nor_gradient(engine, problem, shift):
    logits, y, dtype = problem
    shifted = logits + shift
    note(f"shift={shift}")
    loss_a, grad_a, _ = _loss_and_grad(engine, logits, y, dtype)
    loss_b, grad_b, _ = _loss_and_grad(engine, shifted, y, dtype)
    # The shift itself rounds each logit by up to u |logit + shift|: the error scales with it.
    scale = (np.abs(logits).max() + abs(shift) + 1) * EPS[dtype] * 16
    assert abs(loss_a - loss_b) <= scale, (loss_a, loss_b)
    np.testing.assert_allclose(grad_a, grad_b, rtol=0, atol=scale)


@given(st.sampled_from(DTYPES), st.sampled_from([1e4, 1e6, 1e30]), st.integers(1, 5))
def test_extreme_logits_give_a_finite_loss_and_the_exact_gradient(engine, dtype, magnitude, batch):
    """logits (M, 0, -M) per row: softmax is (1, 0, 0) to within exp(-M), so with label 1
    the loss is exactly M and the gradient exactly (1, -1, 0) / B, not Inf or NaN."""
    if dtype == "float32" and magnitude > 1e30:
        magnitude = 1e30
    logits = np.tile([magnitude, 0.0, -magnitude], (batch, 1))
    y = np.ones(batch, np.int64)
    loss, grad, _ = _loss_and_grad(engine, logits, y, dtype)
    assert np.isfinite(loss) and np.all(np.isfinite(grad)), (
        f"{engine.name}: logits ({magnitude:g}, 0, -{magnitude:g}) in {dtype} gave loss {loss} and a gradient "
        f"{'with' if not np.all(np.isfinite(grad)) else 'without'} non-finite values: compute log-softmax as "
        "z - max(z) - log(sum(exp(z - max(z)))) so that no exp overflows")
    expected_loss = float(np.asarray(magnitude, dtype))
    assert abs(loss - expected_loss) <= 4 * EPS[dtype] * expected_loss
    expected = np.tile([1.0, -1.0, 0.0], (batch, 1)) / batch
    np.testing.assert_allclose(grad, expected, rtol=4 * EPS[dtype], atol=0)

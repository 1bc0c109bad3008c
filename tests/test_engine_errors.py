"""Bad input to the library: a specific exception naming the argument, the same in both engines."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import numpy_net
import torch_net
from numpy_net import NonFiniteError
from torch_net import autograd

PROJECT_ERRORS = (ValueError, TypeError, FloatingPointError)

# NaN and Inf are fed in on purpose here; NumPy's RuntimeWarnings about them are expected noise.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _to_torch(array):
    return torch.from_numpy(np.array(array, copy=True)) if isinstance(array, np.ndarray) else array


def _outcome(module, call):
    """('ok', None) or (exception class name, message with the engine's array type neutralised)."""
    try:
        call(module)
    except PROJECT_ERRORS as error:
        message = re.sub(r"numpy\.ndarray|torch\.Tensor", "ARRAY", str(error))
        return type(error).__name__, message
    return "ok", None


def _forward(x, dtype="float32"):
    def call(module):
        net = module.MLP([4, 3, 2], seed=0, dtype=dtype)
        net.forward(x if module is numpy_net else _to_torch(x))

    return call


def _loss(logits, y):
    def call(module):
        loss_fn = module.SoftmaxCrossEntropy()
        if module is numpy_net:
            loss_fn.forward(logits, y)
        else:
            loss_fn.forward(_to_torch(logits), _to_torch(y))

    return call


CASES = {
    "wrong width": (_forward(np.zeros((2, 5), np.float32)), "ValueError", "x: expected shape (batch, 4), got (2, 5)"),
    # A Linear takes torch's (*, in_features): one row (4,) or any leading dimensions, not a 0-D array.
    "0-D": (_forward(np.zeros((), np.float32)), "ValueError",
            "x: expected an array of shape (batch, 4) (or (*, 4): any leading dimensions), got a 0-D array"),
    "wrong width, 3-D": (_forward(np.zeros((2, 3, 5), np.float32)), "ValueError",
                         "x: expected shape (*, 4) (its last dimension), got (2, 3, 5)"),
    "wrong width, 1-D": (_forward(np.zeros(5, np.float32)), "ValueError", "x: expected shape (*, 4) (its last "
                         "dimension), got (5,)"),
    "empty, 3-D": (_forward(np.zeros((2, 0, 4), np.float32)), "ValueError", "x: empty input (shape (2, 0, 4))"),
    "wrong dtype, 3-D": (_forward(np.zeros((2, 3, 4), np.float64)), "TypeError",
                         "x: expected dtype float32 (the network's dtype), got float64"),
    "empty batch": (_forward(np.zeros((0, 4), np.float32)), "ValueError", "x: empty batch"),
    "other dtype": (_forward(np.zeros((2, 4), np.float64)), "TypeError", "x: expected dtype float32"),
    "NaN input": (_forward(np.array([[0, 0, 0, 0], [0, np.nan, 0, 0]], np.float32)), "NonFiniteError",
                  "x: contains NaN or Inf (first at row 1, column 1)"),
    "Inf input": (_forward(np.array([[np.inf, 0, 0, 0]], np.float32)), "NonFiniteError",
                  "x: contains NaN or Inf (first at row 0, column 0)"),
    "a list": (_forward([[0.0] * 4]), "TypeError", "x: expected a ARRAY, got list"),
    "labels of the wrong length": (_loss(np.zeros((3, 2), np.float32), np.zeros(2, np.int64)), "ValueError",
                                   "y: expected 3 labels (one per row of logits), got 2"),
    "label too large": (_loss(np.zeros((3, 2), np.float32), np.array([0, 2, 1])), "ValueError",
                        "y: labels must lie in [0, 2), got 2 at position 1"),
    "negative label": (_loss(np.zeros((3, 2), np.float32), np.array([0, 1, -1])), "ValueError",
                       "y: labels must lie in [0, 2), got -1 at position 2"),
    "float labels": (_loss(np.zeros((2, 2), np.float32), np.zeros(2, np.float32)), "TypeError",
                     "y: expected integer class labels, got dtype float32"),
    "bool labels": (_loss(np.zeros((2, 2), np.float32), np.zeros(2, bool)), "TypeError",
                    "y: expected integer class labels, got dtype bool"),
    "2-D labels": (_loss(np.zeros((2, 2), np.float32), np.zeros((2, 1), np.int64)), "ValueError",
                   "y: expected a 1-D array of 2 labels, got shape (2, 1)"),
    "NaN logits": (_loss(np.array([[0, np.nan]], np.float32), np.array([0])), "NonFiniteError",
                   "logits: contains NaN or Inf (first at row 0, column 1)"),
    "Inf logits": (_loss(np.array([[np.inf, 0]], np.float32), np.array([1])), "NonFiniteError",
                   "logits: contains NaN or Inf (first at row 0, column 0)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_the_same_specific_error_in_both_engines(case):
    call, kind, text = CASES[case]
    outcomes = [_outcome(module, call) for module in (numpy_net, torch_net)]
    for module, (got_kind, message) in zip(("numpy_net", "torch_net"), outcomes):
        assert got_kind == kind, f"{module}: {got_kind}: {message}"
        assert text in message, f"{module}: {message!r} lacks {text!r}"
    assert outcomes[0] == outcomes[1]


def test_non_finite_errors_are_floating_point_errors():
    assert issubclass(NonFiniteError, FloatingPointError)
    assert torch_net.NonFiniteError is NonFiniteError and autograd.NonFiniteError is NonFiniteError


def test_an_array_of_the_other_engine_is_refused_by_name():
    with pytest.raises(TypeError, match=r"x: expected a numpy\.ndarray, got torch\.Tensor"):
        numpy_net.MLP([4, 2]).forward(torch.zeros(1, 4))
    with pytest.raises(TypeError, match=r"x: expected a torch\.Tensor, got numpy\.ndarray"):
        torch_net.MLP([4, 2]).forward(np.zeros((1, 4), np.float32))


@pytest.mark.parametrize("module", [numpy_net, torch_net, autograd], ids=["numpy_net", "torch_net", "autograd"])
@pytest.mark.parametrize("sizes, error", [([4, 0, 2], "sizes\\[1\\]"), ([4, -3], "sizes\\[1\\]"), ([4], "at least"),
                                          ([4, 2.5], "sizes\\[1\\]"), ("42", "sizes")])
def test_invalid_sizes_are_rejected_when_constructed(module, sizes, error):
    with pytest.raises((ValueError, TypeError), match=error):
        module.MLP(sizes)


@pytest.mark.parametrize("module", [numpy_net, torch_net], ids=["numpy_net", "torch_net"])
def test_invalid_hyper_parameters_follow_torchs_rules(module):
    net = module.MLP([3, 2])
    for kwargs, word in [({"lr": -0.1}, "learning rate"), ({"momentum": -1}, "momentum"),
                         ({"weight_decay": -1}, "weight_decay"), ({"nesterov": True}, "Nesterov"),
                         ({"nesterov": True, "momentum": 0.9, "dampening": 0.5}, "Nesterov")]:
        with pytest.raises(ValueError, match=word):
            module.SGD(net, **{"lr": 0.1, **kwargs})
        params = [torch.zeros(1, requires_grad=True)]
        with pytest.raises(ValueError, match=word):  # torch itself agrees, in the same words
            torch.optim.SGD(params, **{"lr": 0.1, **kwargs})
    for kwargs, word in [({"lr": -1}, "Invalid learning rate: -1"), ({"eps": -1}, "Invalid epsilon value: -1"),
                         ({"betas": (1.0, 0.9)}, "Invalid beta parameter at index 0: 1.0"),
                         ({"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
                         ({"weight_decay": -1}, "Invalid weight_decay value: -1")]:
        with pytest.raises(ValueError, match=re.escape(word)):
            module.Adam(net, **kwargs)
        with pytest.raises(ValueError, match=re.escape(word)):  # torch's own words
            torch.optim.Adam([torch.zeros(1, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match="activation"):
        module.MLP([3, 2, 2], activation="gelu")
    with pytest.raises(ValueError, match="init"):
        module.MLP([3, 2], init="orthogonal")
    with pytest.raises(ValueError, match="dtype"):
        module.MLP([3, 2], dtype="float16")


@st.composite
def malformed_batches(draw):
    shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.bool_]))
    x = draw(arrays(dtype, shape))
    y = draw(arrays(draw(st.sampled_from([np.int64, np.int32, np.float32, np.bool_])),
                    draw(array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6))))
    return x, y


@given(malformed_batches())
def test_any_array_either_trains_or_raises_a_project_error_identically_in_both_engines(batch):
    """Whatever arrays arrive (any shape, dtype, NaN, labels of any kind), each engine either
    runs or raises ValueError/TypeError/FloatingPointError - never an IndexError or a
    broadcasting error from inside NumPy or torch - and both engines answer alike."""
    x, y = batch
    note(f"x={x!r} y={y!r}")

    def step(module):
        net = module.MLP([4, 3, 2], seed=0)
        loss_fn = module.SoftmaxCrossEntropy()
        xs, ys = (x, y) if module is numpy_net else (_to_torch(x), _to_torch(y))
        logits = net.forward(xs)
        loss_fn.forward(logits, ys)
        net.backward(loss_fn.backward())

    outcomes = [_outcome(module, step) for module in (numpy_net, torch_net)]
    assert outcomes[0] == outcomes[1], outcomes

"""Layers (numpy_net/layers.py, and its twin torch_net/layers.py where a test runs in both): inplace=
gives the out-of-place results and keeps the caller's arrays, activations at huge inputs, Linear on
(*, in_features), layers fed their own output."""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional

import numpy_net
from engine_core.specs import LayerSpec, build
from parity_tests.compare import max_abs
from parity_tests.engines import Engine
from tests.layer_stacks import HAND_IDS, HAND_WRITTEN, INPLACE_STACKS, ORACLE, inplace_problem, linear, run_stack
from torch_net import autograd


# -- sigmoid for very negative inputs ------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_saturates_without_warnings_and_matches_torch(dtype):
    z = np.concatenate([np.linspace(-1000, 100, 2001), [-88.8, -87.0, -745.5, -103.9]]).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="warn", invalid="warn", divide="warn"):  # NumPy's defaults
            ours = numpy_net.Sigmoid().forward(z.reshape(1, -1)).ravel()
    theirs = torch.sigmoid(torch.from_numpy(z)).numpy()
    # Both are 1 / (1 + exp(-z)); only in the subnormal range (below float's smallest normal
    # number) do the two libraries' exp() differ in their last bits, hence the absolute term.
    np.testing.assert_allclose(ours, theirs, rtol=4 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)
    assert np.array_equal(ours == 0, theirs == 0)


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
@pytest.mark.parametrize("name", list(INPLACE_STACKS))
def test_inplace_gives_the_out_of_place_results_and_keeps_the_callers_arrays(subject, name):
    in_place, out_of_place, x, delta = inplace_problem(name)
    got, want = run_stack(subject, in_place, x, delta), run_stack(subject, out_of_place, x, delta)
    assert got["x kept"] and got["delta kept"], f"{subject.name}: {name}: the caller's x or delta was written"
    assert np.array_equal(got["out"], want["out"]) and np.array_equal(got["dx"], want["dx"]), name
    for key in want["grads"]:
        assert np.array_equal(got["grads"][key], want["grads"][key]), f"{name}: grads[{key!r}]"
    # And the same network out of place in torch (autograd): float64, normwise 1e-10.
    torch_result = run_stack(ORACLE, out_of_place, x, delta)
    scale = max(max_abs([torch_result["dx"], delta, *torch_result["grads"].values()]), 1.0)
    for what in ("out", "dx"):
        error = float(np.max(np.abs(got[what] - torch_result[what])))
        assert error <= 1e-10 * scale, f"{subject.name}: {name}: {what} off by {error:.3g} from torch's out-of-place"
    for key, value in torch_result["grads"].items():
        assert float(np.max(np.abs(got["grads"][key] - value))) <= 1e-10 * scale, f"{name}: grads[{key!r}]"


# -- the private overwrite ---------------------------------------------------------------------------
ACTIVATIONS = {
    "identity": lambda m: m.Identity(), "relu": lambda m: m.ReLU(), "sigmoid": lambda m: m.Sigmoid(),
    "tanh": lambda m: m.Tanh(), "leakyrelu": lambda m: m.LeakyReLU(-0.5), "gelu": lambda m: m.GELU("none"),
    "gelu-tanh": lambda m: m.GELU("tanh"),
}


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
@pytest.mark.parametrize("make", list(ACTIVATIONS.values()), ids=list(ACTIVATIONS))
def test_overwriting_activations_give_the_same_output_and_gradient(subject, make):
    """``_overwrite`` (a Sequential's choice between two Linears) saves buffers, never bits."""
    x = np.linspace(-4, 4, 18).reshape(6, 3)
    delta = np.cos(x)
    results = []
    for overwrite in (False, True):
        layer = make(subject.module)
        layer._overwrite = overwrite
        out = subject.to_numpy(layer.forward(subject.asarray(x, "float64")))
        results.append((out, subject.to_numpy(layer.backward(subject.asarray(delta, "float64")))))
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])


# -- huge and infinite inputs ------------------------------------------------------------------------
HUGE = {"float32": [1e13, 2e13, 1e19, 2e19, 1e20, 3e38, np.inf],
        "float64": [1e13, 2e13, 1e20, 3e38, 1e154, 2e154, 1e300, 1.7e308, np.inf]}


# name: (engine layer, torch function, the limit of (a, da/dz) as a function of x, or None: torch's).
LIMITS = {
    "gelu": (lambda m: m.GELU(), functional.gelu, lambda x: (np.where(x > 0, x, 0.0), (x > 0) * 1.0)),
    "gelu-tanh": (lambda m: m.GELU("tanh"), lambda t: functional.gelu(t, approximate="tanh"),
                  lambda x: (np.where(x > 0, x, 0.0), (x > 0) * 1.0)),
    "sigmoid": (lambda m: m.Sigmoid(), torch.sigmoid, lambda x: ((x > 0) * 1.0, np.zeros_like(x))),
    "tanh": (lambda m: m.Tanh(), torch.tanh, lambda x: (np.sign(x), np.zeros_like(x))),
    "leakyrelu(5)": (lambda m: m.LeakyReLU(5.0), lambda t: functional.leaky_relu(t, 5.0), None),
    "relu": (lambda m: m.ReLU(), torch.relu, None),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(LIMITS))
def test_activations_at_huge_and_infinite_inputs_give_the_limits_without_warnings(name, dtype):
    """Issue 21's fault 4 (tenstorrent/tt-metal#56517): GELU's z^2 and z^3 overflow, and Inf times
    the 0 they are multiplied by was NaN (da/dz from |z| ~ 2e13 in float32), with NumPy's overflow
    RuntimeWarnings. Now every activation gives the limits (a = z or 0, da/dz = 1 or 0 for GELU)
    and equals torch wherever torch gives a number from a finite one: torch's own z^2 overflows
    further out (the tanh form's derivative is NaN from |z| ~ 2e19 in float32, 1.3e154 in
    float64), its GELU is NaN at +-inf and its float32 erf form overflows at 3e38."""
    make, reference, limit = LIMITS[name]
    points = np.array(HUGE[dtype])
    x = np.concatenate([points, -points]).astype(dtype)
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    y = reference(t)
    y.backward(torch.ones_like(y))
    torch_a, torch_da = y.detach().numpy(), t.grad.numpy()
    for subject in HAND_WRITTEN:
        layer = make(subject.module)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no RuntimeWarning from NumPy
            a = subject.to_numpy(layer.forward(subject.asarray(x, dtype)))
            da = subject.to_numpy(layer.backward(subject.asarray(np.ones_like(x), dtype)))
        assert not np.isnan(a).any() and not np.isnan(da).any(), f"{subject.name}: NaN at {x[np.isnan(a + da)]}"
        if limit is not None:
            want_a, want_da = limit(x.astype(np.float64))
            assert np.array_equal(a, want_a.astype(dtype)), f"{subject.name}: a = {a}"
            assert np.array_equal(da, want_da.astype(dtype)), f"{subject.name}: da/dz = {da}"
        for ours, theirs in ((a, torch_a), (da, torch_da)):
            number = ~np.isnan(theirs) & ~(np.isinf(theirs) & np.isfinite(x) & (np.abs(ours) < np.inf))
            assert np.array_equal(ours[number], theirs[number]), (subject.name, x[number], ours[number], theirs[number])


def test_torch_is_nan_where_the_engines_give_the_limits():
    """The cases above where torch gives no number, so that the test above still compares
    something if torch changes: float32 tanh-form GELU at 1e20 and erf-form GELU at -inf."""
    t = torch.tensor([1e20], requires_grad=True)
    functional.gelu(t, approximate="tanh").backward(torch.ones(1))
    assert torch.isnan(t.grad).all() or t.grad.item() == 1.0
    for subject in HAND_WRITTEN:
        layer = subject.GELU("tanh")
        layer.forward(subject.asarray(np.array([1e20, -np.inf]), "float32"))
        assert subject.to_numpy(layer.backward(subject.asarray(np.ones(2), "float32"))).tolist() == [1.0, 0.0]


# -- Linear on (*, in_features), activations on changing shapes --------------------------------------
@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
def test_linear_takes_any_leading_dimensions_and_later_layers_follow_changing_shapes(subject):
    """torch.nn.Linear's (*, in) inputs: 1-D, 2-D, 3-D and 4-D one after another through one
    network (its activations' buffers follow every change of shape), each as torch computes it."""
    specs = [linear(5, 4), LayerSpec("relu"), linear(4, 4), LayerSpec("tanh"), LayerSpec("gelu"), linear(4, 3)]
    net, oracle = build(subject.module, specs, "float64", seed=2), build(autograd, specs, "float64", seed=2)
    rng = np.random.default_rng(0)
    for shape in [(5,), (7, 5), (2, 3, 5), (2, 2, 3, 5), (2, 4, 5), (5,)]:
        x, delta = rng.standard_normal(shape), rng.standard_normal((*shape[:-1], 3))
        outs = []
        for engine, model in ((subject, net), (ORACLE, oracle)):
            model.zero_grad()  # autograd adds into .grad
            out = engine.to_numpy(model.forward(engine.asarray(x, "float64")))
            dx = engine.to_numpy(model.backward(engine.asarray(delta, "float64")))
            grads = {k: engine.to_numpy(v) for k, v in model.grads().items()}
            deltas = [engine.to_numpy(d) for d in model.deltas()] if engine is subject else None
            outs.append((out, dx, grads, deltas))
        (out, dx, grads, deltas), (want_out, want_dx, want_grads, _) = outs
        assert out.shape == want_out.shape == (*shape[:-1], 3) and dx.shape == shape
        np.testing.assert_allclose(out, want_out, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, want_dx, rtol=1e-10, atol=1e-12)
        for key, value in want_grads.items():
            np.testing.assert_allclose(grads[key], value, rtol=1e-10, atol=1e-12, err_msg=f"{shape}: {key}")
        assert [d.shape for d in deltas] == [(*shape[:-1], 4), (*shape[:-1], 4), (*shape[:-1], 3)]


# A layer fed back its own output (or its own dL/dx): the array is one of the layer's reused
# buffers, which its forward writes; the results must be those of a copy fed to a twin layer.
# (the layer, the input shape): every kind whose output (or dL/dx) can be its next input.
SELF_FED = {
    "linear": (lambda m: m.Linear(3, 3, dtype="float64"), (4, 3)),
    "linear (*, in)": (lambda m: m.Linear(3, 3, dtype="float64"), (2, 4, 3)),
    "identity": (lambda m: m.Identity(), (4, 3)),
    "relu": (lambda m: m.ReLU(), (4, 3)),
    "tanh": (lambda m: m.Tanh(), (4, 3)),
    "sigmoid": (lambda m: m.Sigmoid(), (4, 3)),
    "gelu": (lambda m: m.GELU(), (4, 3)),
    "gelu tanh": (lambda m: m.GELU(approximate="tanh"), (4, 3)),
    "leakyrelu": (lambda m: m.LeakyReLU(-0.5), (4, 3)),
    "dropout": (lambda m: m.Dropout(0.3, seed=1), (4, 3)),
    "batchnorm1d": (lambda m: m.BatchNorm1d(3, dtype="float64"), (4, 3, 5)),
    "batchnorm2d": (lambda m: m.BatchNorm2d(2, dtype="float64"), (2, 2, 5, 5)),
    "conv2d": (lambda m: m.Conv2d(2, 2, 3, padding=1, dtype="float64"), (2, 2, 5, 5)),
    "maxpool2d": (lambda m: m.MaxPool2d(3, stride=1, padding=1), (2, 2, 5, 5)),
    "avgpool2d": (lambda m: m.AvgPool2d(3, stride=1, padding=1), (2, 2, 5, 5)),
    "flatten": (lambda m: m.Flatten(start_dim=0), (12,)),
    "rnn, 2 layers": (lambda m: m.RNN(3, 3, num_layers=2, dtype="float64"), (4, 2, 3)),
    "lstm": (lambda m: m.LSTM(3, 3, dtype="float64"), (4, 2, 3)),
    "gru": (lambda m: m.GRU(3, 3, dtype="float64"), (4, 2, 3)),
    "lstm batch_first": (lambda m: m.LSTM(3, 3, batch_first=True, dtype="float64"), (2, 4, 3)),
    # a composite layer: its output is its part out_proj's buffer
    "multiheadattention": (lambda m: m.MultiheadAttention(4, 2, dtype="float64"), (3, 2, 4)),
    "multiheadattention dropout": (lambda m: m.MultiheadAttention(4, 2, dropout=0.3, seed=1, dtype="float64"),
                                   (3, 2, 4)),
    "transformerencoderlayer": (lambda m: m.TransformerEncoderLayer(4, 2, 5, dropout=0.2, dtype="float64"),
                                (3, 2, 4)),
    "layernorm": (lambda m: m.LayerNorm(4, dtype="float64"), (3, 4)),
    "positionalembedding": (lambda m: m.PositionalEmbedding(5, 4, dtype="float64"), (3, 2, 4)),
}


def _twins(subject: Engine, make: Any, seed: int) -> tuple[Any, Any]:
    """Two layers with the same random parameters."""
    rng = np.random.default_rng(seed)
    layers = make(subject.module), make(subject.module)
    for name, value in layers[0].parameters().items():
        drawn = rng.uniform(-1, 1, tuple(value.shape))
        for layer in layers:
            target = layer.parameters()[name]
            if isinstance(target, np.ndarray):
                target[...] = drawn
            else:
                target.copy_(torch.from_numpy(drawn))
    return layers


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
@pytest.mark.parametrize("fed", ["output", "dL/dx"])
@pytest.mark.parametrize("name", list(SELF_FED))
def test_a_layer_fed_its_own_output_or_input_gradient_computes_as_on_a_copy(subject, fed, name):
    make, shape = SELF_FED[name]
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    layer, twin = _twins(subject, make, 8)
    own = layer.forward(subject.asarray(x, "float64"))
    if fed == "dL/dx":
        own = layer.backward(subject.asarray(rng.standard_normal(tuple(own.shape)), "float64"))
        assert tuple(own.shape) == shape
    copy = subject.to_numpy(own).copy()
    delta = rng.standard_normal(tuple(own.shape))
    got_out = subject.to_numpy(layer.forward(own)).copy()  # the layer's own array, no copy
    got_dx = subject.to_numpy(layer.backward(subject.asarray(delta, "float64"))).copy()
    twin.forward(subject.asarray(x, "float64"))
    assert np.array_equal(got_out, subject.to_numpy(twin.forward(subject.asarray(copy, "float64")))), "output"
    assert np.array_equal(got_dx, subject.to_numpy(twin.backward(subject.asarray(delta, "float64")))), "dL/dx"
    for key, value in twin.gradients().items():
        assert np.array_equal(subject.to_numpy(layer.gradients()[key]), subject.to_numpy(value)), key


def test_importing_numpy_net_does_not_import_scipy_until_a_gelu_needs_it():
    code = ("import sys, numpy_net; assert 'scipy' not in sys.modules; numpy_net.GELU('tanh'); "
            "assert 'scipy' not in sys.modules; numpy_net.GELU(); assert 'scipy.special' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

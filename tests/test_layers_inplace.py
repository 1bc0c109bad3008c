"""torch's ``inplace=`` on ReLU, LeakyReLU and Dropout, the engines' private overwrite, the
activations at huge and infinite inputs, Linear on (*, in_features) inputs and
Flatten(start_dim, end_dim), and every layer fed back its own output or dL/dx, in numpy_net,
torch_net and the oracle.

The rule for ``inplace=True`` (issue 21, pytorch/pytorch#1029, #5687): accepted and shown, as
torch's argument, and the results are exactly those of the out-of-place layer; backward never
writes into the caller's delta, forward never into the caller's x. The engines' own buffer
saving (``_overwrite``) is a Sequential's decision, made only between two Linears.
The numbers of each layer alone are the parity harness's (parity_tests/test_layers.py).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional

import numpy_net
import torch_net
from engine_core.specs import LayerSpec, build
from parity_tests.compare import max_abs
from parity_tests.engines import Engine
from torch_net import autograd

ENGINES = [Engine(numpy_net), Engine(torch_net)]
IDS = ["numpy_net", "torch_net"]
ORACLE = Engine(autograd)


def _linear(fan_in: int, fan_out: int) -> LayerSpec:
    return LayerSpec("linear", {"in_features": fan_in, "out_features": fan_out})


def _spec(kind: str, inplace: bool, **args: object) -> LayerSpec:
    return LayerSpec(kind, {**args, "inplace": inplace})


# Each stack puts an in-place layer next to layers that keep their output (Tanh, Sigmoid, ReLU) or
# their input (GELU, Linear, BatchNorm1d, Dropout's mask) for backward, first (the caller's x) and
# last (the caller's delta); inplace=False gives the reference network.
STACKS = {
    "issue 21: Linear, Tanh, LeakyReLU(0.1, inplace), Linear": (lambda i: [
        _linear(5, 4), LayerSpec("tanh"), _spec("leakyrelu", i, negative_slope=0.1), _linear(4, 3)], (6, 5)),
    "Sigmoid then ReLU(inplace)": (lambda i: [
        _linear(5, 4), LayerSpec("sigmoid"), _spec("relu", i), _linear(4, 3)], (6, 5)),
    "GELU then ReLU(inplace), tanh form": (lambda i: [
        _linear(5, 4), LayerSpec("gelu", {"approximate": "tanh"}), _spec("relu", i), _linear(4, 3)], (6, 5)),
    "ReLU(inplace) before Tanh": (lambda i: [
        _linear(5, 4), _spec("relu", i), LayerSpec("tanh"), _linear(4, 3)], (6, 5)),
    "BatchNorm1d then ReLU(inplace)": (lambda i: [
        _linear(5, 4), LayerSpec("batchnorm1d", {"num_features": 4}), _spec("relu", i), _linear(4, 3)], (6, 5)),
    "Tanh then Dropout(inplace) then LeakyReLU(inplace)": (lambda i: [
        _linear(5, 4), LayerSpec("tanh"), _spec("dropout", i, p=0.3, seed=4), _spec("leakyrelu", i), _linear(4, 3)],
        (6, 5)),
    "in place between two Linears, twice": (lambda i: [
        _linear(5, 4), _spec("relu", i), _linear(4, 4), _spec("leakyrelu", i, negative_slope=-0.5), _linear(4, 3)],
        (6, 5)),
    "first: the caller's x": (lambda i: [_spec("relu", i), _spec("leakyrelu", i), _linear(5, 3)], (6, 5)),
    "last: the caller's delta": (lambda i: [
        _linear(5, 4), LayerSpec("sigmoid"), _spec("dropout", i, p=0.5), _spec("relu", i)], (6, 5)),
    "alone": (lambda i: [_spec("leakyrelu", i, negative_slope=2.0)], (3, 4, 2)),
    "(*, in) inputs": (lambda i: [
        _linear(5, 4), LayerSpec("tanh"), _spec("leakyrelu", i, negative_slope=0.1), _linear(4, 3)], (2, 3, 5)),
    "images: Sigmoid then ReLU(inplace) before pooling": (lambda i: [
        LayerSpec("conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1}),
        LayerSpec("sigmoid"), _spec("relu", i), LayerSpec("maxpool2d", {"kernel_size": 2}), LayerSpec("flatten"),
        _linear(12, 3)], (2, 2, 4, 4)),
}


def _run(engine: Engine, specs: list[LayerSpec], x: np.ndarray, delta: np.ndarray) -> dict:
    """Output, dL/dx and gradients of one forward and backward in float64 train mode, and whether
    the caller's x and delta came back as they were."""
    net = build(engine.module, specs, "float64", seed=3)
    xs, ds = engine.asarray(x, "float64"), engine.asarray(delta, "float64")
    x_before, delta_before = engine.to_numpy(xs), engine.to_numpy(ds)  # copies
    out = engine.to_numpy(net.forward(xs))
    dx = engine.to_numpy(net.backward(ds))
    return {"out": out, "dx": dx, "grads": {k: engine.to_numpy(v) for k, v in net.grads().items()},
            "x kept": np.array_equal(engine.to_numpy(xs), x_before),
            "delta kept": np.array_equal(engine.to_numpy(ds), delta_before)}


def _problem(name: str) -> tuple[list[LayerSpec], list[LayerSpec], np.ndarray, np.ndarray]:
    make, shape = STACKS[name]
    rng = np.random.default_rng(21)
    x = rng.standard_normal(shape) * 2
    out_shape = ORACLE.to_numpy(build(autograd, make(False), "float64", seed=3).forward(ORACLE.asarray(x, "float64")))
    return make(True), make(False), x, rng.standard_normal(out_shape.shape)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
@pytest.mark.parametrize("name", list(STACKS))
def test_inplace_gives_the_out_of_place_results_and_keeps_the_callers_arrays(subject, name):
    in_place, out_of_place, x, delta = _problem(name)
    got, want = _run(subject, in_place, x, delta), _run(subject, out_of_place, x, delta)
    assert got["x kept"] and got["delta kept"], f"{subject.name}: {name}: the caller's x or delta was written"
    assert np.array_equal(got["out"], want["out"]) and np.array_equal(got["dx"], want["dx"]), name
    for key in want["grads"]:
        assert np.array_equal(got["grads"][key], want["grads"][key]), f"{name}: grads[{key!r}]"
    # And the same network out of place in torch (autograd): float64, normwise 1e-10.
    torch_result = _run(ORACLE, out_of_place, x, delta)
    scale = max(max_abs([torch_result["dx"], delta, *torch_result["grads"].values()]), 1.0)
    for what in ("out", "dx"):
        error = float(np.max(np.abs(got[what] - torch_result[what])))
        assert error <= 1e-10 * scale, f"{subject.name}: {name}: {what} off by {error:.3g} from torch's out-of-place"
    for key, value in torch_result["grads"].items():
        assert float(np.max(np.abs(got["grads"][key] - value))) <= 1e-10 * scale, f"{name}: grads[{key!r}]"


@pytest.mark.parametrize("name", list(STACKS))
def test_the_oracle_takes_inplace_and_computes_out_of_place(name):
    """torch's own in-place LeakyReLU after a Tanh makes autograd raise "modified by an inplace
    operation"; the oracle computes out of place, as the engines do, and says so in its repr."""
    in_place, out_of_place, x, delta = _problem(name)
    got, want = _run(ORACLE, in_place, x, delta), _run(ORACLE, out_of_place, x, delta)
    assert got["x kept"] and got["delta kept"]
    assert np.array_equal(got["out"], want["out"]) and np.array_equal(got["dx"], want["dx"])
    assert any("inplace=True" in repr(layer) for layer in build(autograd, in_place).leaves())


def test_torch_itself_refuses_the_issues_case_in_place():
    """Why the oracle cannot pass inplace=True on to torch: autograd refuses the gradient."""
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.LeakyReLU(0.1, inplace=True),
                              torch.nn.Linear(4, 3))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        net(torch.randn(6, 5)).sum().backward()


# -- the private overwrite ---------------------------------------------------------------------------
ACTIVATIONS = {
    "identity": lambda m: m.Identity(), "relu": lambda m: m.ReLU(), "sigmoid": lambda m: m.Sigmoid(),
    "tanh": lambda m: m.Tanh(), "leakyrelu": lambda m: m.LeakyReLU(-0.5), "gelu": lambda m: m.GELU("none"),
    "gelu-tanh": lambda m: m.GELU("tanh"),
}


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
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


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_a_sequential_overwrites_only_between_two_linears_whatever_inplace_says(subject):
    trio = build(subject.module, [_linear(5, 4), _spec("relu", False), _linear(4, 3)])
    assert trio.layers[1]._overwrite
    issue = build(subject.module, STACKS["issue 21: Linear, Tanh, LeakyReLU(0.1, inplace), Linear"][0](True))
    assert not issue.layers[1]._overwrite and not issue.layers[2]._overwrite
    assert issue.layers[2].inplace  # the user's flag, kept and shown
    assert not subject.ReLU(inplace=True)._overwrite
    assert not hasattr(subject.Dropout(inplace=True), "_overwrite")


# -- the argument itself -----------------------------------------------------------------------------
@pytest.mark.parametrize("subject", [*ENGINES, ORACLE], ids=[*IDS, "autograd"])
def test_inplace_is_torchs_argument_shown_in_the_repr_and_checked(subject):
    assert repr(subject.ReLU(inplace=True)) == "ReLU(inplace=True)" and repr(subject.ReLU()) == "ReLU()"
    assert repr(subject.LeakyReLU(0.1, True)) == "LeakyReLU(negative_slope=0.1, inplace=True)"
    assert repr(subject.LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"
    assert repr(subject.Dropout(0.2, True, 3)) == "Dropout(p=0.2, inplace=True, seed=3)"
    assert repr(subject.Dropout()) == "Dropout(p=0.5, seed=0)"
    for make in (lambda: subject.ReLU(inplace=1), lambda: subject.LeakyReLU(0.1, "yes"),
                 lambda: subject.Dropout(0.5, inplace=None)):
        with pytest.raises(TypeError, match="inplace: expected True or False"):
            make()
    for cls in ("Sigmoid", "Tanh", "GELU", "Identity"):  # torch's take no inplace either
        with pytest.raises(TypeError):
            getattr(subject, cls)(inplace=True)


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
    for subject in ENGINES:
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
    for subject in ENGINES:
        layer = subject.GELU("tanh")
        layer.forward(subject.asarray(np.array([1e20, -np.inf]), "float32"))
        assert subject.to_numpy(layer.backward(subject.asarray(np.ones(2), "float32"))).tolist() == [1.0, 0.0]


# -- Linear on (*, in_features), activations on changing shapes --------------------------------------
@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_linear_takes_any_leading_dimensions_and_later_layers_follow_changing_shapes(subject):
    """torch.nn.Linear's (*, in) inputs: 1-D, 2-D, 3-D and 4-D one after another through one
    network (its activations' buffers follow every change of shape), each as torch computes it."""
    specs = [_linear(5, 4), LayerSpec("relu"), _linear(4, 4), LayerSpec("tanh"), LayerSpec("gelu"), _linear(4, 3)]
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


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_a_linear_alone_checks_its_delta_against_the_leading_dimensions(subject):
    layer = build(subject.module, [_linear(5, 4)], "float64").layers[0]
    layer.forward(subject.asarray(np.ones((2, 3, 5)), "float64"))
    with pytest.raises(ValueError, match=r"Linear\(in_features=5, out_features=4\): delta: expected shape \(2, 3, 4\)"):
        layer.backward(subject.asarray(np.ones((6, 4)), "float64"))


# -- Flatten(start_dim, end_dim) ---------------------------------------------------------------------
@pytest.mark.parametrize("subject", [*ENGINES, ORACLE], ids=[*IDS, "autograd"])
def test_flatten_takes_torchs_dims_and_refuses_bad_ones(subject):
    assert repr(subject.Flatten()) == "Flatten()" and repr(subject.Flatten(1, -1)) == "Flatten()"
    assert repr(subject.Flatten(2)) == "Flatten(start_dim=2, end_dim=-1)"
    assert repr(subject.Flatten(0, -2)) == "Flatten(start_dim=0, end_dim=-2)"
    with pytest.raises(TypeError, match=r"start_dim: expected an int, got float 1\.5"):
        subject.Flatten(1.5)
    with pytest.raises(TypeError, match="end_dim: expected an int"):
        subject.Flatten(1, True)
    with pytest.raises(ValueError, match=r"start_dim \(2\) cannot come after end_dim \(1\)"):
        subject.Flatten(2, 1)
    with pytest.raises(ValueError, match=r"start_dim \(-1\) cannot come after end_dim \(-2\)"):
        subject.Flatten(-1, -2)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_flatten_refuses_an_input_its_dims_do_not_fit_naming_the_layer(subject):
    layer = subject.Flatten(3)
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=3, end_dim=-1\): x: start_dim=3, end_dim=-1 do not fit "
                                         r"a 3-D input \(shape \(2, 3, 4\)\)"):
        layer.forward(subject.asarray(np.ones((2, 3, 4)), "float64"))
    layer = subject.Flatten(2, -3)  # mixed signs: whether start comes after end depends on the rank
    with pytest.raises(ValueError, match=r"do not fit a 4-D input \(shape \(2, 3, 4, 5\)\): expected axes in -4..3, "
                                         "start before end"):
        layer.forward(subject.asarray(np.ones((2, 3, 4, 5)), "float64"))
    assert tuple(layer.forward(subject.asarray(np.ones((2, 3, 4, 5, 6)), "float64")).shape) == (2, 3, 4, 5, 6)


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


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
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

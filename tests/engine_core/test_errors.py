"""NaN and Inf (engine_core/errors.py's NonFiniteError): the root Sequential of every engine refuses it
naming the first bad value, whatever the first layer, and a refused call changes nothing."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import numpy_net
import torch_net
from backprop.architecture import parse_layers
from engine_core.errors import NonFiniteError
from engine_core.specs import LayerSpec, build, sequential
from torch_net import autograd


def test_non_finite_errors_are_floating_point_errors():
    assert issubclass(NonFiniteError, FloatingPointError)
    assert numpy_net.NonFiniteError is NonFiniteError
    assert torch_net.NonFiniteError is NonFiniteError and autograd.NonFiniteError is NonFiniteError


ENGINES = [numpy_net, torch_net, autograd]


# First layers of every kind, each with state of its own or in front of a layer with state.
NETWORKS = {
    "conv2d": "conv2d(1, 2, 3), relu, flatten, linear(1352, 10)",
    "maxpool2d": "maxpool2d(2), flatten, batchnorm1d(196), linear(196, 10)",
    "avgpool2d": "avgpool2d(2, padding=1, count_include_pad=False), flatten, linear(225, 10)",
    "batchnorm2d": "batchnorm2d(1), flatten, linear(784, 10)",
    "batchnorm1d momentum=None": "batchnorm1d(784, momentum=None), linear(784, 10)",
    "flatten": "flatten, dropout(0.5, seed=3), linear(784, 10)",
    "relu": "relu, batchnorm1d(784), linear(784, 10)",
    "dropout": "dropout(0.5, seed=3), linear(784, 10)",
    "sequential": "sequential(batchnorm2d(1), dropout(0.25, seed=2), relu), flatten, batchnorm1d(784), "
                  "linear(784, 10)",
    "linear": "flatten, linear(784, 10)",
}


IMAGE = {"conv2d", "maxpool2d", "avgpool2d", "batchnorm2d", "sequential"}


def _x(kind: str, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((3, 1, 28, 28) if kind in IMAGE else (3, 784))


def _state(net) -> tuple[dict, list, list]:
    """Everything a forward may change: the state dict, every dropout generator, every batch
    norm's num_batches_tracked (an engine attribute; the oracle's torch buffer)."""
    generators = [layer.rng_state() for layer in net.leaves() if hasattr(layer, "rng_state")]
    counters = []
    for layer in net.leaves():
        owner = getattr(layer, "module", layer)  # the oracle wraps a torch.nn module
        if getattr(owner, "num_batches_tracked", None) is not None:
            counters.append(int(owner.num_batches_tracked))
    return net.state_dict(), generators, counters


def _same(a: tuple[dict, list, list], b: tuple[dict, list, list]) -> bool:
    return (a[0].keys() == b[0].keys() and all(np.array_equal(a[0][k], b[0][k]) for k in a[0])
            and a[1] == b[1] and a[2] == b[2])


@pytest.mark.parametrize("engine", ENGINES, ids=lambda m: m.__name__)
@pytest.mark.parametrize("kind", list(NETWORKS))
def test_a_refused_input_leaves_every_parameter_and_buffer_as_it_was(engine, kind):
    network = parse_layers(NETWORKS[kind])
    bad = [np.nan, -np.inf][list(NETWORKS).index(kind) % 2]
    net, twin = (build(engine, network, "float64", seed=5) for _ in range(2))
    rng = np.random.default_rng(0)
    first, later = _x(kind, rng), _x(kind, rng)
    for model in (net, twin):
        model.forward(engine.asarray(first, "float64"))  # buffers and generators have moved once
    before = _state(net)
    x = first.copy()
    index = (1, 0, 5, 7) if x.ndim == 4 else (1, 147)
    x[index] = bad
    x[2, ...] = np.nan  # a later NaN: the message names the first one, in row-major order
    where = f"index [{', '.join(map(str, index))}]" if x.ndim == 4 else f"row {index[0]}, column {index[1]}"
    with pytest.raises(NonFiniteError, match=re.escape(f"x: contains NaN or Inf (first at {where})")):
        net.forward(engine.asarray(x, "float64"))
    assert _same(_state(net), before)
    with pytest.raises(RuntimeError, match="forward"):  # nothing consistent to differentiate
        net.backward(engine.asarray(np.ones((3, 10)), "float64"))
    # The next good call is the one the twin, which never saw the refused input, makes.
    out, expected = (engine.to_numpy(model.forward(engine.asarray(later, "float64"))) for model in (net, twin))
    assert np.array_equal(out, expected)
    assert _same(_state(net), _state(twin))
    net.backward(engine.asarray(np.ones((3, 10)), "float64"))


@pytest.mark.parametrize("engine", ENGINES, ids=lambda m: m.__name__)
def test_a_refused_input_in_eval_mode_and_on_the_first_call_changes_nothing_either(engine):
    network = parse_layers(NETWORKS["sequential"])
    net = build(engine, network, "float64", seed=1)
    before = _state(net)
    x = np.zeros((2, 1, 28, 28))
    x[0, 0, 27, 27] = np.inf
    with pytest.raises(NonFiniteError, match=re.escape("(first at index [0, 0, 27, 27])")):
        net.forward(engine.asarray(x, "float64"))  # the very first call: no trusted kind of input yet
    net.eval()
    with pytest.raises(NonFiniteError, match=re.escape("(first at index [0, 0, 27, 27])")):
        net.forward(engine.asarray(x, "float64"))
    assert _same(_state(net), before)


@pytest.mark.parametrize("engine", ENGINES, ids=lambda m: m.__name__)
def test_an_input_that_is_no_float_array_is_left_to_the_first_layers_type_checks(engine):
    net = build(engine, parse_layers(NETWORKS["conv2d"]), "float64")
    with pytest.raises(TypeError):
        net.forward([[0.0] * 784])  # a list: the first layer names what it expected
    if engine is not autograd:  # the oracle leaves a first convolution's dtype error to torch
        with pytest.raises(TypeError, match="float64"):
            net.forward(engine.asarray(np.zeros((2, 1, 28, 28)), "float32"))


@pytest.mark.parametrize("first", ["maxpool2d", "flatten"])
def test_the_finite_test_of_x_raises_no_numpy_warning(first):
    """With warnings as errors, a huge finite x passes and +-Inf is refused as NonFiniteError: the
    test's sum over huge or infinite values must not warn (it did, from x.sum(), and the warning
    replaced the error)."""
    layers = [LayerSpec("maxpool2d", {"kernel_size": 2}), LayerSpec("flatten"), LayerSpec("linear", {
        "in_features": 4, "out_features": 2})] if first == "maxpool2d" else [
        LayerSpec("flatten"), LayerSpec("relu"), LayerSpec("linear", {"in_features": 16, "out_features": 2})]
    net = build(numpy_net, sequential(*layers), "float32", seed=0)
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 0, :2] = [np.inf, -np.inf]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.forward(np.full((1, 1, 4, 4), 3e38, np.float32) * np.eye(4, dtype=np.float32))
        with pytest.raises(NonFiniteError, match=re.escape("x: contains")):
            net.forward(x)

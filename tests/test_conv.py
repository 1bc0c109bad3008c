"""The convolution family's contract (Conv2d, MaxPool2d, AvgPool2d, Flatten) in numpy_net and
torch_net: the same refusals in the same words, backward checks, max-pool ties as torch breaks
them, buffers reused across steps, inputs whose spatial size changes, and the oracle's layout.
The numbers themselves are the parity harness's (parity_tests/test_layers.py, test_cnn.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import numpy_net
import torch_net
from engine_core.specs import LayerSpec, build
from parity_tests.engines import Engine
from torch_net import autograd

ENGINES = [Engine(numpy_net), Engine(torch_net)]
IDS = ["numpy_net", "torch_net"]


def _outcome(call) -> tuple[str, str]:
    try:
        call()
    except (ValueError, TypeError, RuntimeError) as error:
        return type(error).__name__, str(error)
    return "ok", ""


def _conv(engine: Engine, **kwargs):
    args = {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "dtype": "float64", **kwargs}
    return engine.Conv2d(**args)


# -- the same refusals, in the same words -----------------------------------------------------------
BAD_INPUTS = [
    ("Conv2d", (4, 2 * 5 * 5), "float64", r"x: expected a 4-D input \(batch, 2, height, width\), got shape \(4, 50\)"),
    ("Conv2d", (4, 3, 5, 5), "float64", r"expected a 4-D input \(batch, 2, height, width\), got shape \(4, 3, 5, 5\)"),
    ("Conv2d", (4, 2, 5, 5), "float32", r"x: expected dtype float64 \(the layer's dtype\), got float32"),
    ("Conv2d", (4, 2, 2, 5), "float64", r"the input's 2x5 pixels are smaller than the kernel 3x3"),
    ("Conv2d", (0, 2, 5, 5), "float64", r"x: empty input"),
    ("MaxPool2d", (4, 5, 5), "float64", r"x: expected a 4-D input \(batch, channels, height, width\)"),
    ("AvgPool2d", (1, 1, 1, 5), "float32", r"the input's 1x5 pixels are smaller than the kernel 2x2"),
    ("Flatten", (4,), "float32", r"x: expected at least 2 dimensions \(batch, \.\.\.\), got shape \(4,\)"),
]


@pytest.mark.parametrize("layer, shape, dtype, words", BAD_INPUTS)
def test_a_bad_input_is_refused_alike_in_both_engines_naming_the_layer(layer, shape, dtype, words):
    outcomes = []
    for engine in ENGINES:
        instance = {"Conv2d": lambda e: _conv(e), "MaxPool2d": lambda e: e.MaxPool2d(2),
                    "AvgPool2d": lambda e: e.AvgPool2d(2), "Flatten": lambda e: e.Flatten()}[layer](engine)
        x = engine.asarray(np.zeros(shape), dtype)
        outcomes.append(_outcome(lambda: instance.forward(x)))  # noqa: B023
    assert outcomes[0] == outcomes[1], outcomes
    kind, message = outcomes[0]
    assert kind in ("ValueError", "TypeError") and layer in message, message
    assert re.search(words, message), message


@pytest.mark.parametrize("subject", [*ENGINES, Engine(autograd)], ids=[*IDS, "autograd"])
@pytest.mark.parametrize("kwargs, error, words", [
    ({"kernel_size": 0}, ValueError, "kernel_size: expected a positive int, got 0"),
    ({"stride": (1, 0)}, ValueError, r"stride: expected a positive int, got \(1, 0\)"),
    ({"padding": -1}, ValueError, "padding: expected an int >= 0, got -1"),
    ({"in_channels": 0}, ValueError, "in_channels: expected a positive int, got 0"),
    ({"kernel_size": "3"}, TypeError, "kernel_size: expected an int or a pair of ints"),
    ({"kernel_size": (3, 3, 3)}, TypeError, "kernel_size: expected an int or a pair of ints"),
])
def test_bad_arguments_are_refused_alike_everywhere(subject, kwargs, error, words):
    with pytest.raises(error, match=words):
        _conv(subject, **kwargs)


@pytest.mark.parametrize("subject", [*ENGINES, Engine(autograd)], ids=[*IDS, "autograd"])
@pytest.mark.parametrize("layer", ["MaxPool2d", "AvgPool2d"])
def test_pools_refuse_bad_kernels_and_strides_alike_everywhere(subject, layer):
    with pytest.raises(ValueError, match="kernel_size: expected a positive int, got 0"):
        getattr(subject, layer)(0)
    with pytest.raises(ValueError, match=r"stride: expected a positive int, got \(2, 0\)"):
        getattr(subject, layer)(2, (2, 0))
    with pytest.raises(TypeError, match="kernel_size: expected an int or a pair of ints"):
        getattr(subject, layer)(2.5)


# -- backward checks -----------------------------------------------------------------------------------
LAYERS = {
    "Conv2d": lambda e: _conv(e, padding=1, stride=2),
    "MaxPool2d": lambda e: e.MaxPool2d(2, 1),
    "AvgPool2d": lambda e: e.AvgPool2d((2, 3)),
    "Flatten": lambda e: e.Flatten(),
}


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_layer_checks_its_own_backward(subject, layer):
    instance = LAYERS[layer](subject)
    with pytest.raises(RuntimeError, match=rf"{layer}\(.*\): backward\(\) called before forward\(\)"):
        instance.backward(subject.asarray(np.zeros((2, 3, 4, 4)), "float64"))
    out = instance.forward(subject.asarray(np.ones((2, 2, 6, 7)), "float64"))
    shape = tuple(out.shape)
    with pytest.raises(ValueError, match=rf"{layer}\(.*\): delta: expected shape"):
        instance.backward(subject.asarray(np.zeros((3, *shape[1:])), "float64"))
    with pytest.raises(TypeError, match="delta: expected dtype float64"):
        instance.backward(subject.asarray(np.zeros(shape), "float32"))


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_a_refused_delta_changes_no_gradient_and_input_grad_false_skips_dx(subject):
    net = build(subject.module, [LayerSpec("conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": 3})],
                "float64", seed=1)
    rng = np.random.default_rng(0)
    out = net.forward(subject.asarray(rng.standard_normal((2, 2, 5, 5)), "float64"))
    delta = subject.asarray(rng.standard_normal(tuple(out.shape)), "float64")
    assert net.backward(delta, input_grad=False) is None
    grads = {k: subject.to_numpy(v).copy() for k, v in net.grads().items()}
    assert np.abs(grads["0.weight"]).sum() > 0 and sorted(grads) == ["0.bias", "0.weight"]
    with pytest.raises(ValueError, match="delta: expected shape"):
        net.backward(subject.asarray(np.zeros((1, 3, 3, 3)), "float64"))
    for key, value in net.grads().items():
        assert np.array_equal(subject.to_numpy(value), grads[key]), key
    dx = net.backward(delta)
    assert tuple(dx.shape) == (2, 2, 5, 5)
    assert [tuple(d.shape) for d in net.deltas()] == [(2, 3, 3, 3)]  # Conv2d records dL/d(output)


# -- max-pool ties -------------------------------------------------------------------------------------
@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_max_pool_ties_go_to_the_first_maximum_in_row_major_order_as_in_torch(subject):
    x = np.array([[[[0.0, 0.0, 1.0, 3.0],
                    [0.0, 0.0, 3.0, 2.0],
                    [5.0, 1.0, -1.0, -1.0],
                    [2.0, 5.0, -1.0, -1.0]]]])
    delta = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    ours = subject.MaxPool2d(2)
    ours.forward(subject.asarray(x, "float64"))
    got = subject.to_numpy(ours.backward(subject.asarray(delta, "float64")))
    xt = torch.tensor(x, requires_grad=True)
    nn.MaxPool2d(2)(xt).backward(torch.tensor(delta))
    want = np.zeros_like(x)
    want[0, 0, 0, 0], want[0, 0, 0, 3], want[0, 0, 2, 0], want[0, 0, 2, 2] = 1.0, 2.0, 3.0, 4.0
    assert np.array_equal(xt.grad.numpy(), want)  # torch's choice, written out
    assert np.array_equal(got, want)


# -- buffers and shapes ----------------------------------------------------------------------------------
def _arrays(net) -> dict[str, int]:
    """Where every array a layer holds keeps its numbers (views such as Flatten's share them)."""
    return {f"{i}.{name}": value.__array_interface__["data"][0] for i, layer in enumerate(net.layers)
            for name, value in vars(layer).items() if isinstance(value, np.ndarray)}


LENET_LIKE = [
    LayerSpec("conv2d", {"in_channels": 1, "out_channels": 3, "kernel_size": 3, "padding": 1}),
    LayerSpec("relu"), LayerSpec("maxpool2d", {"kernel_size": 2}),
    LayerSpec("conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2}),
    LayerSpec("avgpool2d", {"kernel_size": 2, "stride": 1}), LayerSpec("flatten"),
    LayerSpec("linear", {"in_features": 4, "out_features": 3}),
]


def test_a_numpy_training_step_reuses_every_buffer_when_shapes_repeat():
    net = build(numpy_net, LENET_LIKE, "float32", seed=0)
    opt = numpy_net.SGD(net, lr=0.1, momentum=0.9)
    loss = numpy_net.SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(3):
        x = rng.standard_normal((5, 1, 10, 10)).astype(np.float32)
        loss.forward(net.forward(x), rng.integers(0, 3, 5))
        net.backward(loss.backward())
        opt.step()
        seen.append(_arrays(net))
    assert seen[1] == seen[2] and seen[0] == seen[1]


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_inputs_whose_height_and_width_change_between_calls_give_the_oracles_results(subject):
    specs = [LayerSpec("conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": (3, 2), "stride": (2, 1),
                                  "padding": (1, 0)}),
             LayerSpec("maxpool2d", {"kernel_size": 2, "stride": 1}), LayerSpec("avgpool2d", {"kernel_size": (1, 2)})]
    net, ref = build(subject.module, specs, "float64", seed=3), build(autograd, specs, "float64", seed=3)
    rng = np.random.default_rng(1)
    for shape in [(2, 2, 7, 6), (1, 2, 9, 9), (2, 2, 7, 6), (3, 2, 4, 4)]:
        x = rng.standard_normal(shape)
        outs = [e.to_numpy(n.forward(e.asarray(x, "float64"))) for e, n in ((subject, net), (Engine(autograd), ref))]
        np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-12)
        delta = rng.standard_normal(outs[0].shape)
        pairs = ((subject, net), (Engine(autograd), ref))
        dxs = [e.to_numpy(n.backward(e.asarray(delta, "float64"))) for e, n in pairs]
        np.testing.assert_allclose(dxs[0], dxs[1], rtol=0, atol=1e-12)


def test_big_endian_images_give_the_native_results():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    results = []
    for xs in (x, x.astype(">f4")):
        net = build(numpy_net, LENET_LIKE[:3], "float32", seed=0)
        out = net.forward(xs).copy()
        results.append((out, net.backward(np.ones_like(out)).copy()))
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])


def test_the_state_dict_of_a_conv_stack_is_torch_nn_sequentials_bar_the_linear_transpose():
    ours = build(numpy_net, LENET_LIKE, "float64", seed=0).state_dict()
    theirs = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3, stride=2),
                           nn.AvgPool2d(2, 1), nn.Flatten(), nn.Linear(4, 3)).state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        expected = tuple(value.shape)[::-1] if key == "6.weight" else tuple(value.shape)  # Linear: (in, out)
        assert ours[key].shape == expected, key

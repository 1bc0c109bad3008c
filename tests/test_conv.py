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
    ("Flatten", (4,), "float32", r"x: start_dim=1, end_dim=-1 do not fit a 1-D input \(shape \(4,\)\)"),
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
    ({"dilation": (2, 0)}, ValueError, r"dilation: expected a positive int, got \(2, 0\)"),
    ({"padding": "same", "stride": 2}, ValueError,
     r"padding: padding='same' is not supported for strided convolutions \(stride=2\)"),
    ({"padding": "same", "stride": (1, 2)}, ValueError, "padding: padding='same' is not supported for strided"),
    ({"padding": "full"}, ValueError, r"padding: invalid padding string 'full', should be one of 'same', 'valid'"),
    ({"padding": "SAME"}, ValueError, r"padding: invalid padding string 'SAME'"),
    ({"groups": 0}, ValueError, "groups: expected a positive int, got 0"),
    ({"groups": 1.0}, TypeError, "groups: expected a positive int, got float 1.0"),
    ({"groups": 3}, ValueError, "groups: in_channels must be divisible by groups, got in_channels=2, groups=3"),
    ({"groups": 2}, ValueError, "groups: out_channels must be divisible by groups, got out_channels=3, groups=2"),
    ({"padding_mode": "reflect"}, ValueError, "padding_mode: 'reflect' is not implemented here; only 'zeros'"),
    ({"padding_mode": "circular"}, ValueError, "padding_mode: 'circular' is not implemented here"),
    ({"padding_mode": "zero"}, ValueError, "padding_mode: must be one of 'zeros', 'reflect', 'replicate', 'circular'"),
])
def test_bad_arguments_are_refused_alike_everywhere(subject, kwargs, error, words):
    with pytest.raises(error, match=words):
        _conv(subject, **kwargs)


# -- padding="same", dilation, groups -------------------------------------------------------------------
@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_same_padding_with_an_even_kernel_pads_the_bottom_and_right_as_torch_does(subject):
    """A 2x2 kernel needs one row and one column of padding in all: torch puts them after the
    input, so z[h, w] = x[h, w] + 2 x[h, w + 1] + 3 x[h + 1, w] + 4 x[h + 1, w + 1], zero past the
    last row and column; dL/dx sends delta[h, w] back to those four pixels (where they are pixels)."""
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    weight = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    want = np.array([[[[37.0, 47.0, 21.0],
                       [67.0, 77.0, 33.0],
                       [23.0, 26.0, 9.0]]]])
    delta = np.array([[[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 10.0]]]])
    want_dx = np.array([[[[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 10.0]]]])
    reference = nn.Conv2d(1, 1, 2, padding="same", bias=False, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(weight))
    xt = torch.tensor(x, requires_grad=True)
    zt = reference(xt)
    zt.backward(torch.tensor(delta))
    assert np.array_equal(zt.detach().numpy(), want) and np.array_equal(xt.grad.numpy(), want_dx)  # torch's rule

    spec = LayerSpec("conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": 2, "padding": "same",
                                "bias": False})
    net = build(subject.module, [spec], "float64")
    assert repr(net.layers[0]) == ("Conv2d(in_channels=1, out_channels=1, kernel_size=2, stride=1, padding='same', "
                                   "bias=False)")
    net.load_state_dict({"0.weight": weight})
    assert np.array_equal(subject.to_numpy(net.forward(subject.asarray(x, "float64"))), want)
    assert np.array_equal(subject.to_numpy(net.backward(subject.asarray(delta, "float64"))), want_dx)
    assert np.array_equal(subject.to_numpy(net.grads()["0.weight"]), reference.weight.grad.numpy())


CONV_REPRS = [
    ({"in_channels": 4, "out_channels": 8, "kernel_size": (2, 3), "padding": "same", "dilation": 2, "groups": 4,
      "bias": False},
     "Conv2d(in_channels=4, out_channels=8, kernel_size=(2, 3), stride=1, padding='same', dilation=2, groups=4, "
     "bias=False)"),
    ({"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": (2, 1), "padding": (1, 0), "groups": 2},
     "Conv2d(in_channels=4, out_channels=6, kernel_size=3, stride=(2, 1), padding=(1, 0), groups=2)"),
    ({"in_channels": 2, "out_channels": 3, "kernel_size": 1, "padding": "valid", "dilation": (1, 3)},
     "Conv2d(in_channels=2, out_channels=3, kernel_size=1, stride=1, padding='valid', dilation=(1, 3))"),
]


@pytest.mark.parametrize("subject", [*ENGINES, Engine(autograd)], ids=[*IDS, "autograd"])
@pytest.mark.parametrize("kwargs, text", CONV_REPRS)
def test_a_conv_shows_torchs_arguments_alike_everywhere_with_torchs_weight_shape(subject, kwargs, text):
    net = build(subject.module, [LayerSpec("conv2d", kwargs)], "float64")
    assert repr(net.layers[0]) == text
    theirs = nn.Conv2d(**kwargs).state_dict()
    ours = net.state_dict()
    assert [(k, tuple(v.shape)) for k, v in ours.items()] == [(f"0.{k}", tuple(v.shape)) for k, v in theirs.items()]


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_a_dilated_kernel_larger_than_the_input_is_refused_naming_its_extent(subject):
    conv = _conv(subject, dilation=(2, 1))
    with pytest.raises(ValueError, match=r"Conv2d\(.*dilation=\(2, 1\)\): x: the input's 4x4 pixels are smaller than "
                                         r"the kernel \(dilated\) 5x3"):
        conv.forward(subject.asarray(np.zeros((1, 2, 4, 4)), "float64"))
    assert tuple(conv.forward(subject.asarray(np.zeros((1, 2, 5, 4)), "float64")).shape) == (1, 3, 1, 2)


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


# -- pooling with torch's arguments; max pooling over NaN and +-inf (issue 21) ---------------------------
NAN, INF = float("nan"), float("inf")


def _max_pool_against_torch(subject: Engine, kwargs: dict, x: np.ndarray) -> tuple[tuple, tuple]:
    """((y, dL/dx) of ours, the same of torch's nn.MaxPool2d and autograd) in float64, delta =
    1, 2, 3, ...: integers, so gradients that add up in any order agree exactly."""
    xt = torch.tensor(x, requires_grad=True)
    yt = nn.MaxPool2d(**kwargs)(xt)
    delta = np.arange(1.0, yt.numel() + 1).reshape(yt.shape)
    yt.backward(torch.tensor(delta))
    layer = subject.MaxPool2d(**kwargs)
    y = subject.to_numpy(layer.forward(subject.asarray(x, "float64")))
    dx = subject.to_numpy(layer.backward(subject.asarray(delta, "float64")))
    return (y, dx), (yt.detach().numpy(), xt.grad.numpy())


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_max_pool_sends_a_nan_windows_gradient_to_its_last_nan_as_torch_does(subject):
    """Issue 21, fault 2 (pytorch/pytorch#7645): torch's kernels take a pixel when value > max or
    isnan(value), so a window holding NaN outputs NaN and its gradient goes to its last NaN in
    row-major order; the other windows keep their maximum."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = NAN
    (y, dx), (y_torch, dx_torch) = _max_pool_against_torch(subject, {"kernel_size": 2}, x)
    want = np.array([[0.0, 0, 0, 0], [1, 0, 0, 2], [0, 0, 0, 0], [0, 3, 0, 4]]).reshape(1, 1, 4, 4)
    assert np.array_equal(dx_torch, want)  # torch's choice, written out
    assert np.array_equal(dx, want)
    assert np.array_equal(y, y_torch, equal_nan=True) and np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1]).any()


def _grid(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)[None, None]


NON_FINITE_POOLS = {
    "NaNs in several windows": ({"kernel_size": 2}, _grid(
        [[NAN, 1, 2, NAN], [NAN, 0, NAN, 5], [3, NAN, 5, 6], [NAN, 7, 8, 9]])),
    "NaN in overlapping windows": ({"kernel_size": 3, "stride": 1}, _grid(
        [[0, 1, 2, 3, 4], [5, NAN, 7, 8, 9], [10, 11, 12, NAN, 14], [NAN, 16, 17, 18, 19], [20, 21, NAN, 23, 24]])),
    "NaN after +inf, +inf ties": ({"kernel_size": 2, "stride": 1}, _grid(
        [[INF, NAN, INF], [INF, 1, -INF], [-INF, INF, INF]])),
    "windows of -inf only, and -inf beside a finite pixel": ({"kernel_size": 2}, _grid(
        [[-INF, -INF, -INF, 1], [-INF, -INF, -INF, -INF], [2, -INF, NAN, -INF], [-INF, -INF, -INF, 3]])),
    "padding around -inf only and NaN": ({"kernel_size": 3, "stride": 1, "padding": 1}, _grid(
        [[-INF, -INF, 0], [-INF, -INF, NAN], [1, NAN, -INF]])),
    "dilation, padding and ceil_mode around NaN": (
        {"kernel_size": 2, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}, _grid(
            [[NAN, 1, -INF, 3, 4], [-INF, -INF, NAN, INF, -INF], [0, NAN, 2, -INF, NAN], [NAN, NAN, 1, 1, 1]])),
}


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
@pytest.mark.parametrize("case", list(NON_FINITE_POOLS))
def test_max_pool_over_nan_and_infinities_gives_torchs_output_and_gradient(subject, case):
    kwargs, x = NON_FINITE_POOLS[case]
    (y, dx), (y_torch, dx_torch) = _max_pool_against_torch(subject, kwargs, x)
    assert np.array_equal(y, y_torch, equal_nan=True), (y, y_torch)
    assert np.array_equal(dx, dx_torch), (dx, dx_torch)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_a_window_of_minus_infinity_sends_its_gradient_to_its_first_pixel_not_to_the_padding(subject):
    """Padding is never picked: kernel 3, padding 1 over 2x2 pixels of -inf gives four windows
    whose maximum is -inf, and all four send their gradient to pixel (0, 0), as torch does."""
    x = np.full((1, 1, 2, 2), -INF)
    (y, dx), (_, dx_torch) = _max_pool_against_torch(subject, {"kernel_size": 3, "stride": 1, "padding": 1}, x)
    assert np.array_equal(y, x) and np.array_equal(dx_torch, _grid([[10, 0], [0, 0]]))
    assert np.array_equal(dx, dx_torch)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_max_pool_over_random_nan_and_infinities_in_every_geometry_gives_torchs_results(subject):
    """Mixed inputs (NaN, +-inf, ties) under padding, dilation, ceil_mode and overlapping windows."""
    rng = np.random.default_rng(21)
    x = np.round(rng.standard_normal((2, 3, 7, 6)))
    where = rng.random(x.shape)
    x[where < 0.1], x[(where >= 0.1) & (where < 0.2)], x[(where >= 0.2) & (where < 0.25)] = NAN, -INF, INF
    for kwargs in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 1, "padding": 1},
                   {"kernel_size": (2, 3), "stride": (1, 2), "dilation": (2, 1), "padding": (1, 0), "ceil_mode": True},
                   {"kernel_size": 3, "stride": 2, "dilation": 2, "padding": 1, "ceil_mode": True}):
        (y, dx), (y_torch, dx_torch) = _max_pool_against_torch(subject, kwargs, x)
        assert np.array_equal(y, y_torch, equal_nan=True), kwargs
        assert np.array_equal(dx, dx_torch), kwargs


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
@pytest.mark.parametrize("layer, kwargs, shape", [
    # ceil_mode keeps a window that runs past the input by less than a stride (torch's output size)
    ("AvgPool2d", {"kernel_size": 2, "stride": (2, 3), "ceil_mode": True}, (1, 2, 1, 2)),
    ("MaxPool2d", {"kernel_size": 2, "stride": (2, 3), "ceil_mode": True}, (1, 2, 1, 2)),
    # ... but drops one that would start in the right padding
    ("AvgPool2d", {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 1, 5, 4)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
     (2, 2, 6, 5)),
    ("AvgPool2d", {"kernel_size": (3, 2), "stride": 1, "padding": (1, 0), "divisor_override": -2}, (1, 2, 4, 3)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": (2, 3)}, (2, 1, 5, 6)),
])
def test_pools_follow_torchs_geometry_and_divisors(subject, layer, kwargs, shape):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(nn, layer)(**kwargs)(xt)
    delta = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(delta))
    ours = getattr(subject, layer)(**kwargs)
    y = subject.to_numpy(ours.forward(subject.asarray(x, "float64")))
    dx = subject.to_numpy(ours.backward(subject.asarray(delta, "float64")))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("subject", [*ENGINES, Engine(autograd)], ids=[*IDS, "autograd"])
def test_a_max_pool_window_of_padding_only_is_refused_alike_everywhere(subject):
    """Kernel 2, dilation 3, padding 1 on 2 rows: the first window's rows are -1 and 2, both
    padding. torch returns -inf there and its backward writes outside the input; every engine
    and the oracle refuse the input, naming the layer."""
    net = build(subject.module, [LayerSpec("maxpool2d", {"kernel_size": 2, "stride": 1, "padding": 1,
                                                         "dilation": 3})], "float64")
    net.forward(subject.asarray(np.ones((1, 1, 3, 3)), "float64"))
    words = (r"MaxPool2d\(kernel_size=2, stride=1, padding=1, dilation=3\): x: a window over the input's 2x5 pixels "
             r"would hold only padding")
    with pytest.raises(ValueError, match=words):
        net.forward(subject.asarray(np.ones((1, 1, 2, 5)), "float64"))


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_a_refused_max_pool_input_leaves_the_layer_as_it_was(subject):
    layer = subject.MaxPool2d(2, 1, padding=1, dilation=3)
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    out = layer.forward(subject.asarray(x, "float64"))
    delta = subject.asarray(np.arange(1.0, 5.0).reshape(tuple(out.shape)), "float64")  # (1, 1, 2, 2)
    before = subject.to_numpy(layer.backward(delta))
    with pytest.raises(ValueError, match="would hold only padding"):
        layer.forward(subject.asarray(np.ones((1, 1, 5, 2)), "float64"))
    assert np.array_equal(subject.to_numpy(layer.backward(delta)), before)


@pytest.mark.parametrize("subject", [*ENGINES, Engine(autograd)], ids=[*IDS, "autograd"])
def test_pools_show_torchs_arguments_alike_everywhere(subject):
    assert repr(subject.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2)"
    assert (repr(subject.MaxPool2d(3, 2, 1, 2, ceil_mode=True))
            == "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)")
    assert (repr(subject.AvgPool2d((2, 3), 1, (1, 0), count_include_pad=False, divisor_override=-2))
            == "AvgPool2d(kernel_size=(2, 3), stride=1, padding=(1, 0), count_include_pad=False, divisor_override=-2)")


@pytest.mark.parametrize("subject", [*ENGINES, Engine(autograd)], ids=[*IDS, "autograd"])
@pytest.mark.parametrize("layer, kwargs, error, words", [
    ("MaxPool2d", {"return_indices": True}, ValueError, "return_indices: True is not supported"),
    ("MaxPool2d", {"kernel_size": 3, "padding": 2}, ValueError, "padding: pad should be at most half of kernel size"),
    ("MaxPool2d", {"dilation": (1, 0)}, ValueError, r"dilation: expected a positive int, got \(1, 0\)"),
    ("MaxPool2d", {"ceil_mode": 1}, TypeError, "ceil_mode: expected True or False, got int 1"),
    ("AvgPool2d", {"padding": (0, 2)}, ValueError, "padding: pad should be at most half of kernel size"),
    ("AvgPool2d", {"count_include_pad": "no"}, TypeError, "count_include_pad: expected True or False"),
    ("AvgPool2d", {"divisor_override": 0}, ValueError, "divisor_override: divisor must be not zero"),
    ("AvgPool2d", {"divisor_override": 2.0}, TypeError, "divisor_override: expected None or a non-zero int"),
])
def test_pools_refuse_bad_arguments_alike_everywhere(subject, layer, kwargs, error, words):
    with pytest.raises(error, match=words):
        getattr(subject, layer)(**{"kernel_size": 2, **kwargs})

"""The convolution family's arguments and inputs (engine_core/conv_checks.py: Conv2d, MaxPool2d,
AvgPool2d, Flatten), refused alike by numpy_net, torch_net and the oracle, shown with torch's
arguments. The numbers are the parity harness's."""

from __future__ import annotations

import re

import numpy as np
import pytest
from torch import nn

from engine_core.specs import LayerSpec, build
from parity_tests.engines import Engine
from tests.layer_stacks import EVERY_ENGINE, EVERY_ID, HAND_IDS, HAND_WRITTEN, outcome


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
    for engine in HAND_WRITTEN:
        instance = {"Conv2d": lambda e: _conv(e), "MaxPool2d": lambda e: e.MaxPool2d(2),
                    "AvgPool2d": lambda e: e.AvgPool2d(2), "Flatten": lambda e: e.Flatten()}[layer](engine)
        x = engine.asarray(np.zeros(shape), dtype)
        outcomes.append(outcome(lambda: instance.forward(x)))  # noqa: B023
    assert outcomes[0] == outcomes[1], outcomes
    kind, message = outcomes[0]
    assert kind in ("ValueError", "TypeError") and layer in message, message
    assert re.search(words, message), message


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
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


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
@pytest.mark.parametrize("kwargs, text", CONV_REPRS)
def test_a_conv_shows_torchs_arguments_alike_everywhere_with_torchs_weight_shape(subject, kwargs, text):
    net = build(subject.module, [LayerSpec("conv2d", kwargs)], "float64")
    assert repr(net.layers[0]) == text
    theirs = nn.Conv2d(**kwargs).state_dict()
    ours = net.state_dict()
    assert [(k, tuple(v.shape)) for k, v in ours.items()] == [(f"0.{k}", tuple(v.shape)) for k, v in theirs.items()]


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
def test_a_dilated_kernel_larger_than_the_input_is_refused_naming_its_extent(subject):
    conv = _conv(subject, dilation=(2, 1))
    with pytest.raises(ValueError, match=r"Conv2d\(.*dilation=\(2, 1\)\): x: the input's 4x4 pixels are smaller than "
                                         r"the kernel \(dilated\) 5x3"):
        conv.forward(subject.asarray(np.zeros((1, 2, 4, 4)), "float64"))
    assert tuple(conv.forward(subject.asarray(np.zeros((1, 2, 5, 4)), "float64")).shape) == (1, 3, 1, 2)


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
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


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
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


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
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


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
def test_a_refused_max_pool_input_leaves_the_layer_as_it_was(subject):
    layer = subject.MaxPool2d(2, 1, padding=1, dilation=3)
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    out = layer.forward(subject.asarray(x, "float64"))
    delta = subject.asarray(np.arange(1.0, 5.0).reshape(tuple(out.shape)), "float64")  # (1, 1, 2, 2)
    before = subject.to_numpy(layer.backward(delta))
    with pytest.raises(ValueError, match="would hold only padding"):
        layer.forward(subject.asarray(np.ones((1, 1, 5, 2)), "float64"))
    assert np.array_equal(subject.to_numpy(layer.backward(delta)), before)


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_pools_show_torchs_arguments_alike_everywhere(subject):
    assert repr(subject.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2)"
    assert (repr(subject.MaxPool2d(3, 2, 1, 2, ceil_mode=True))
            == "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)")
    assert (repr(subject.AvgPool2d((2, 3), 1, (1, 0), count_include_pad=False, divisor_override=-2))
            == "AvgPool2d(kernel_size=(2, 3), stride=1, padding=(1, 0), count_include_pad=False, divisor_override=-2)")


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
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


# -- Flatten(start_dim, end_dim) ---------------------------------------------------------------------
@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
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


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
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

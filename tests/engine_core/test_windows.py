"""Sliding-window geometry (engine_core/windows.py) in every engine: torch's padding, output sizes and
divisors, inputs whose size changes, windows of padding only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from engine_core.specs import LayerSpec, build
from tests.layer_stacks import EVERY_ENGINE, EVERY_ID, HAND_IDS, HAND_WRITTEN, ORACLE
from torch_net import autograd


# -- padding="same", dilation, groups -------------------------------------------------------------------
@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
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


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
def test_inputs_whose_height_and_width_change_between_calls_give_the_oracles_results(subject):
    specs = [LayerSpec("conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": (3, 2), "stride": (2, 1),
                                  "padding": (1, 0)}),
             LayerSpec("maxpool2d", {"kernel_size": 2, "stride": 1}), LayerSpec("avgpool2d", {"kernel_size": (1, 2)})]
    net, ref = build(subject.module, specs, "float64", seed=3), build(autograd, specs, "float64", seed=3)
    rng = np.random.default_rng(1)
    for shape in [(2, 2, 7, 6), (1, 2, 9, 9), (2, 2, 7, 6), (3, 2, 4, 4)]:
        x = rng.standard_normal(shape)
        outs = [e.to_numpy(n.forward(e.asarray(x, "float64"))) for e, n in ((subject, net), (ORACLE, ref))]
        np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-12)
        delta = rng.standard_normal(outs[0].shape)
        pairs = ((subject, net), (ORACLE, ref))
        dxs = [e.to_numpy(n.backward(e.asarray(delta, "float64"))) for e, n in pairs]
        np.testing.assert_allclose(dxs[0], dxs[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
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


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
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

"""Convolution and pooling (numpy_net/conv.py, and its twin torch_net/conv.py where a test runs in
both): max-pool ties and NaN as torch handles them, buffers reused across steps, big-endian images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import numpy_net
from engine_core.specs import build
from parity_tests.engines import Engine
from tests.layer_stacks import HAND_IDS, HAND_WRITTEN, LENET_LIKE


# -- max-pool ties -------------------------------------------------------------------------------------
@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
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


def test_big_endian_images_give_the_native_results():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    results = []
    for xs in (x, x.astype(">f4")):
        net = build(numpy_net, LENET_LIKE[:3], "float32", seed=0)
        out = net.forward(xs).copy()
        results.append((out, net.backward(np.ones_like(out)).copy()))
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])


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


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
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


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
@pytest.mark.parametrize("case", list(NON_FINITE_POOLS))
def test_max_pool_over_nan_and_infinities_gives_torchs_output_and_gradient(subject, case):
    kwargs, x = NON_FINITE_POOLS[case]
    (y, dx), (y_torch, dx_torch) = _max_pool_against_torch(subject, kwargs, x)
    assert np.array_equal(y, y_torch, equal_nan=True), (y, y_torch)
    assert np.array_equal(dx, dx_torch), (dx, dx_torch)


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
def test_a_window_of_minus_infinity_sends_its_gradient_to_its_first_pixel_not_to_the_padding(subject):
    """Padding is never picked: kernel 3, padding 1 over 2x2 pixels of -inf gives four windows
    whose maximum is -inf, and all four send their gradient to pixel (0, 0), as torch does."""
    x = np.full((1, 1, 2, 2), -INF)
    (y, dx), (_, dx_torch) = _max_pool_against_torch(subject, {"kernel_size": 3, "stride": 1, "padding": 1}, x)
    assert np.array_equal(y, x) and np.array_equal(dx_torch, _grid([[10, 0], [0, 0]]))
    assert np.array_equal(dx, dx_torch)


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
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

"""Layers and small stacks the engine tests build in every engine: the hand-written engines and the
oracle, the in-place cases (issue 21) with their reference out-of-place twins, and an attention
layer with random parameters."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import torch

import numpy_net
import torch_net
from engine_core.specs import LayerSpec, build
from parity_tests.engines import Engine
from torch_net import autograd

HAND_WRITTEN = [Engine(numpy_net), Engine(torch_net)]
HAND_IDS = ["numpy_net", "torch_net"]
ORACLE = Engine(autograd)
EVERY_ENGINE = [*HAND_WRITTEN, ORACLE]
EVERY_ID = [*HAND_IDS, "autograd"]


def outcome(call: Callable[[], object]) -> tuple[str, str]:
    """("ok", "") when ``call()`` returns, else its error's type name and message, with the engines'
    array types written ARRAY, so that the engines' messages compare equal."""
    try:
        call()
    except (ValueError, TypeError, RuntimeError) as error:
        return type(error).__name__, re.sub(r"numpy\.ndarray|torch\.Tensor", "ARRAY", str(error))
    return "ok", ""


def one_layer(engine: Engine, spec: LayerSpec, dtype: str = "float64", state: dict | None = None):
    """A network of the one layer ``spec`` in ``engine`` (seed 0), ``state``'s entries loaded over its own."""
    net = build(engine.module, [spec], dtype, seed=0)
    if state:
        net.load_state_dict({**net.state_dict(), **state})
    return net


# A LeNet's kinds on a 10x10 image, small: a padded convolution, max pool, strided convolution,
# overlapping average pool, flatten and linear (to 3 classes).
LENET_LIKE = [
    LayerSpec("conv2d", {"in_channels": 1, "out_channels": 3, "kernel_size": 3, "padding": 1}),
    LayerSpec("relu"), LayerSpec("maxpool2d", {"kernel_size": 2}),
    LayerSpec("conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2}),
    LayerSpec("avgpool2d", {"kernel_size": 2, "stride": 1}), LayerSpec("flatten"),
    LayerSpec("linear", {"in_features": 4, "out_features": 3}),
]

# Batch norms with running statistics to check: 3 features, and 2 channels at momentum 0.3.
BN1 = LayerSpec("batchnorm1d", {"num_features": 3})
BN2 = LayerSpec("batchnorm2d", {"num_features": 2, "momentum": 0.3})


def linear(fan_in: int, fan_out: int) -> LayerSpec:
    """A Linear(fan_in, fan_out) with a bias."""
    return LayerSpec("linear", {"in_features": fan_in, "out_features": fan_out})


def with_inplace(kind: str, inplace: bool, **args: object) -> LayerSpec:
    """A layer of ``kind`` with torch's inplace= argument."""
    return LayerSpec(kind, {**args, "inplace": inplace})


# Each stack puts an in-place layer next to layers that keep their output (Tanh, Sigmoid, ReLU) or
# their input (GELU, Linear, BatchNorm1d, Dropout's mask) for backward, first (the caller's x) and
# last (the caller's delta); inplace=False gives the reference network.
INPLACE_STACKS = {
    "issue 21: Linear, Tanh, LeakyReLU(0.1, inplace), Linear": (lambda i: [
        linear(5, 4), LayerSpec("tanh"), with_inplace("leakyrelu", i, negative_slope=0.1), linear(4, 3)],
        (6, 5)),
    "Sigmoid then ReLU(inplace)": (lambda i: [
        linear(5, 4), LayerSpec("sigmoid"), with_inplace("relu", i), linear(4, 3)], (6, 5)),
    "GELU then ReLU(inplace), tanh form": (lambda i: [
        linear(5, 4), LayerSpec("gelu", {"approximate": "tanh"}), with_inplace("relu", i), linear(4, 3)],
        (6, 5)),
    "ReLU(inplace) before Tanh": (lambda i: [
        linear(5, 4), with_inplace("relu", i), LayerSpec("tanh"), linear(4, 3)], (6, 5)),
    "BatchNorm1d then ReLU(inplace)": (lambda i: [
        linear(5, 4), LayerSpec("batchnorm1d", {"num_features": 4}), with_inplace("relu", i), linear(4, 3)], (6, 5)),
    "Tanh then Dropout(inplace) then LeakyReLU(inplace)": (lambda i: [
        linear(5, 4), LayerSpec("tanh"), with_inplace("dropout", i, p=0.3, seed=4), with_inplace("leakyrelu", i),
        linear(4, 3)], (6, 5)),
    "in place between two Linears, twice": (lambda i: [
        linear(5, 4), with_inplace("relu", i), linear(4, 4), with_inplace("leakyrelu", i, negative_slope=-0.5),
        linear(4, 3)], (6, 5)),
    "first: the caller's x": (lambda i: [with_inplace("relu", i), with_inplace("leakyrelu", i), linear(5, 3)], (6, 5)),
    "last: the caller's delta": (lambda i: [
        linear(5, 4), LayerSpec("sigmoid"), with_inplace("dropout", i, p=0.5), with_inplace("relu", i)], (6, 5)),
    "alone": (lambda i: [with_inplace("leakyrelu", i, negative_slope=2.0)], (3, 4, 2)),
    "(*, in) inputs": (lambda i: [
        linear(5, 4), LayerSpec("tanh"), with_inplace("leakyrelu", i, negative_slope=0.1), linear(4, 3)], (2, 3, 5)),
    "images: Sigmoid then ReLU(inplace) before pooling": (lambda i: [
        LayerSpec("conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1}),
        LayerSpec("sigmoid"), with_inplace("relu", i), LayerSpec("maxpool2d", {"kernel_size": 2}), LayerSpec("flatten"),
        linear(12, 3)], (2, 2, 4, 4)),
}


def run_stack(engine: Engine, specs: list[LayerSpec], x: np.ndarray, delta: np.ndarray) -> dict:
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


def inplace_problem(name: str) -> tuple[list[LayerSpec], list[LayerSpec], np.ndarray, np.ndarray]:
    """INPLACE_STACKS[name]: (the in-place stack, its out-of-place twin, an x, a delta of the output's shape)."""
    make, shape = INPLACE_STACKS[name]
    rng = np.random.default_rng(21)
    x = rng.standard_normal(shape) * 2
    out_shape = ORACLE.to_numpy(build(autograd, make(False), "float64", seed=3).forward(ORACLE.asarray(x, "float64")))
    return make(True), make(False), x, rng.standard_normal(out_shape.shape)


def attention_layer(module, batch_first: bool, seed: int = 0):
    """A MultiheadAttention(6, 2) of ``module`` in float64, its parameters drawn from U(-1, 1)."""
    layer = module.MultiheadAttention(6, 2, batch_first=batch_first, dtype="float64")
    rng = np.random.default_rng(seed)
    for value in layer.parameters().values():
        drawn = rng.uniform(-1, 1, tuple(value.shape))
        if isinstance(value, np.ndarray):
            value[...] = drawn
        else:
            value.copy_(torch.from_numpy(drawn))
    return layer

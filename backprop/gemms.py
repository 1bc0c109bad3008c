"""The matrix products of one training step, read off a network's tree: what the trainer's
thread rule sizes (backprop.threads) and what the benchmark's GEMM floor times (backprop.floor).

Per layer with a weight (rows = batch B for Linear, B*Ho*Wo for Conv2d's im2col): forward
z = x W, (rows, in)@(in, out); weight gradient x^T delta, (in, rows)@(rows, out); input gradient
delta W^T, (rows, out)@(out, in), except for the first such layer, whose input gradient a
training step never needs. A Conv2d's in is in_channels*kH*kW, its out out_channels; with
groups g it is g products of in_channels/g*kH*kW by out_channels/g (each group sees its own
channels only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine_core.specs import LayerSpec, leaf_shapes, mlp, pair

from .architecture import input_shape

ROLES = ("forward", "grad_weight", "grad_input")


@dataclass(frozen=True)
class Gemm:
    """out (m, n) = a (m, k) @ b (k, n); ``what`` names its role in backprop, ``role`` is one of
    ROLES (forward: m rows, k in, n out; grad_weight: m in, k rows, n out; grad_input: m rows,
    k out, n in)."""

    what: str
    m: int
    k: int
    n: int
    role: str = "forward"

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    @property
    def dims(self) -> tuple[int, int, int]:
        """(rows, fan_in, fan_out) of the layer this product belongs to."""
        if self.role == "forward":
            return self.m, self.k, self.n
        if self.role == "grad_weight":
            return self.k, self.m, self.n
        return self.m, self.n, self.k


def _layer_gemms(name: str, rows: int, fan_in: int, fan_out: int) -> tuple[Gemm, Gemm, Gemm]:
    return (Gemm(f"{name} forward x@W", rows, fan_in, fan_out, "forward"),
            Gemm(f"{name} grad_weight x^T@delta", fan_in, rows, fan_out, "grad_weight"),
            Gemm(f"{name} input grad delta@W^T", rows, fan_out, fan_in, "grad_input"))


def network_gemms(network: LayerSpec | Sequence[LayerSpec], batch: int,
                  sample_shape: tuple[int, ...] | None = None) -> list[Gemm]:
    """The products of one training step of ``network`` at ``batch`` on inputs of ``sample_shape``
    (default: architecture.input_shape, MNIST's): forward in layer order, then backward from the
    last layer (named ``"{path}.{kind}"``). Layers without a weight do no GEMM. ValueError when it
    does not type-check."""
    layers: list[list[tuple[Gemm, Gemm, Gemm]]] = []  # per layer, per group
    shape = input_shape(network) if sample_shape is None else tuple(sample_shape)
    for path, spec, _, out in leaf_shapes(network, (batch, *shape)):
        if spec.kind == "linear":
            rows = int(np.prod(out[:-1], dtype=np.int64))
            layers.append([_layer_gemms(f"{path}.linear", rows, spec.args["in_features"],
                                        spec.args["out_features"])])
        elif spec.kind == "conv2d":
            (kh, kw), groups = pair(spec.args["kernel_size"]), spec.args["groups"]
            name = f"{path}.conv2d" if groups == 1 else f"{path}.conv2d group {{}}"
            layers.append([_layer_gemms(name.format(group), batch * out[2] * out[3],
                                        spec.args["in_channels"] // groups * kh * kw, out[1] // groups)
                           for group in range(groups)])
    gemms = [forward for layer in layers for forward, _, _ in layer]
    for index in reversed(range(len(layers))):
        gemms.extend(grad_weight for _, grad_weight, _ in layers[index])
        if index:
            gemms.extend(grad_input for _, _, grad_input in layers[index])
    return gemms


def training_gemms(sizes: list[int], batch: int) -> list[Gemm]:
    """network_gemms of the MLP of widths ``sizes`` ([in, hidden..., out])."""
    return network_gemms(mlp(sizes), batch, (sizes[0],))


def gemm_flops(gemms: Sequence[Gemm]) -> int:
    """Sum of 2 m k n over ``gemms``."""
    return sum(g.flops for g in gemms)


def step_flops(sizes: list[int], batch: int) -> int:
    """Floating-point operations of one training step's GEMMs (2 m k n each) of an MLP."""
    return gemm_flops(training_gemms(sizes, batch))


def gemm_library(engine: Any) -> str:
    """Which library runs an engine's GEMMs (backprop.engines.Engine): "numpy" for engines whose
    arrays are NumPy arrays, "torch" otherwise (judged by the array the engine makes, not by its
    name): the library whose thread pool `train` sizes and whose floor `bench` measures."""
    return "numpy" if isinstance(engine.asarray(np.zeros((1, 1)), "float32"), np.ndarray) else "torch"

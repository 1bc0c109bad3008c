"""The matrix products of one training step, read off a network's tree: what the trainer's
thread rule sizes (backprop.threads) and what the benchmark's GEMM floor times (backprop.floor).

Per layer with a weight (rows = batch B for Linear, B*Ho*Wo for Conv2d's im2col): forward
z = x W, (rows, in)@(in, out); weight gradient x^T delta, (in, rows)@(rows, out); input gradient
delta W^T, (rows, out)@(out, in), except for the first such layer, whose input gradient a
training step never needs. A Conv2d's in is in_channels*kH*kW, its out out_channels; with
groups g it is g products of in_channels/g*kH*kW by out_channels/g (each group sees its own
channels only).

A recurrent layer (RNN, LSTM, GRU: G = 1, 4, 3 gate blocks of H, over T steps of a batch B) does,
per stacked layer: forward, the input projection of every step at once, (T B, in)@(in, G H), and
per step h_{t-1} W_hh^T, (B, H)@(H, G H); backward, per step dgates W_hh, (B, G H)@(G H, H), the
gradient carried to h_{t-1}; the weight gradients over all steps at once, dgates^T x, (G H, T B)@(T B,
in), and dgates^T h, (G H, (T-1) B)@((T-1) B, H); and dL/dx = dgates W_ih, (T B, G H)@(G H, in),
except for the network's first layer. h_0 = 0, so step 1's h_0 W_hh^T, its part of the W_hh
gradient and the gradient carried to h_0 need no product: T - 1 of each per-step one.

Self-attention (MultiheadAttention, and the one inside a TransformerEncoderLayer; E = embed_dim,
h heads of d = E / h, T steps, B sequences, rows = B T): the in- and out-projections are a
Linear's triples, (rows, E)@(E, 3E) and (rows, E)@(E, E); per head and sequence, the scores
Q K^T, (T, d)@(d, T), and P V, (T, T)@(T, d), forward, and backward dV = P^T dO, dP = dO V^T,
dQ = dS K and dK = dS^T Q. Those B h small products are counted as one GEMM of the same FLOPs,
their rows stacked ((B h T, d)@(d, T)): the floor is then the rate of one large product, a
lower bound on the batched ones. An encoder layer adds its feed-forward Linears' triples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine_core.specs import LayerSpec, leaf_shapes, mlp, pair

from .architecture import RECURRENT, input_shape

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


@dataclass(frozen=True)
class _LayerProducts:
    """One layer's products: ``forward`` (in forward order), ``backward`` (in backward order: the
    weight gradients and any input gradient the layer needs itself, a recurrent layer's per-step
    ones) and ``grad_input`` (dL/d(the layer's input), left out for the network's first layer)."""

    forward: list[Gemm]
    backward: list[Gemm]
    grad_input: list[Gemm]


def _plain(groups: list[tuple[Gemm, Gemm, Gemm]]) -> _LayerProducts:
    """A Linear's or Conv2d's products (one triple per group)."""
    return _LayerProducts([f for f, _, _ in groups], [w for _, w, _ in groups], [i for _, _, i in groups])


def recurrent_gemms(name: str, spec: LayerSpec, steps: int, batch: int) -> tuple[list[Gemm], list[Gemm], list[Gemm]]:
    """(forward, backward, grad_input) products of an rnn, lstm or gru spec over ``steps`` steps of
    ``batch`` sequences (the module docstring's list), named ``"{name} l{k} ..."`` per stacked
    layer k; grad_input is dL/dx of the bottom layer, the upper layers' being in backward."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[spec.kind]
    hidden, layers = spec.args["hidden_size"], spec.args["num_layers"]
    rows, recurrences = steps * batch, steps - 1  # h_0 = 0: step 1 needs no W_hh product
    forward: list[Gemm] = []
    backward: list[Gemm] = []
    grad_input: list[Gemm] = []
    for k in range(layers):
        fan_in = spec.args["input_size"] if k == 0 else hidden
        forward.append(Gemm(f"{name} l{k} forward x@W_ih^T", rows, fan_in, gates * hidden, "forward"))
        forward.extend(Gemm(f"{name} l{k} step {t} forward h@W_hh^T", batch, hidden, gates * hidden, "forward")
                       for t in range(1, recurrences + 1))
    for k in reversed(range(layers)):
        fan_in = spec.args["input_size"] if k == 0 else hidden
        backward.extend(Gemm(f"{name} l{k} step {t} grad_h dgates@W_hh", batch, gates * hidden, hidden,
                             "grad_input") for t in reversed(range(1, recurrences + 1)))
        backward.append(Gemm(f"{name} l{k} grad_weight_ih dgates^T@x", fan_in, rows, gates * hidden, "grad_weight"))
        if recurrences:
            backward.append(Gemm(f"{name} l{k} grad_weight_hh dgates^T@h", hidden, recurrences * batch,
                                 gates * hidden, "grad_weight"))
        dx = Gemm(f"{name} l{k} input grad dgates@W_ih", rows, gates * hidden, fan_in, "grad_input")
        (backward if k else grad_input).append(dx)
    return forward, backward, grad_input


def attention_gemms(name: str, embed: int, heads: int, steps: int, batch: int,
                    first: bool = False) -> _LayerProducts:
    """A self-attention's products (the module docstring's list), named ``"{name} ..."``; its
    input gradient is left out for the network's first layer (``first``)."""
    rows, width, stacked = batch * steps, embed // heads, batch * heads * steps
    in_proj = _layer_gemms(f"{name} in_proj", rows, embed, 3 * embed)
    out_proj = _layer_gemms(f"{name} out_proj", rows, embed, embed)
    forward = [in_proj[0], Gemm(f"{name} scores Q@K^T", stacked, width, steps, "forward"),
               Gemm(f"{name} P@V", stacked, steps, width, "forward"), out_proj[0]]
    backward = [out_proj[1], out_proj[2],
                Gemm(f"{name} dV = P^T@dO", stacked, steps, width, "grad_input"),
                Gemm(f"{name} dP = dO@V^T", stacked, width, steps, "grad_input"),
                Gemm(f"{name} dQ = dS@K", stacked, steps, width, "grad_input"),
                Gemm(f"{name} dK = dS^T@Q", stacked, steps, width, "grad_input"), in_proj[1]]
    return _LayerProducts(forward, backward, [] if first else [in_proj[2]])


def _encoder_gemms(name: str, spec: LayerSpec, steps: int, batch: int) -> _LayerProducts:
    """A TransformerEncoderLayer's products: its self-attention's, then its feed-forward
    Linears' (backward in reverse); every input gradient inside it is needed (the residual
    paths), the layer's own dL/dx included."""
    a = spec.args
    attention = attention_gemms(f"{name} self_attn", a["d_model"], a["nhead"], steps, batch)
    rows = batch * steps
    linear1 = _layer_gemms(f"{name} linear1", rows, a["d_model"], a["dim_feedforward"])
    linear2 = _layer_gemms(f"{name} linear2", rows, a["dim_feedforward"], a["d_model"])
    return _LayerProducts([*attention.forward, linear1[0], linear2[0]],
                          [linear2[1], linear2[2], linear1[1], linear1[2], *attention.backward,
                           *attention.grad_input], [])


def network_gemms(network: LayerSpec | Sequence[LayerSpec], batch: int,
                  sample_shape: tuple[int, ...] | None = None) -> list[Gemm]:
    """The products of one training step of ``network`` at ``batch`` on inputs of ``sample_shape``
    (default: architecture.input_shape, MNIST's): forward in layer order, then backward from the
    last layer (named ``"{path}.{kind}"``). Layers without a weight do no GEMM. ValueError when it
    does not type-check."""
    layers: list[_LayerProducts] = []
    shape = input_shape(network) if sample_shape is None else tuple(sample_shape)
    for path, spec, x_shape, out in leaf_shapes(network, (batch, *shape)):
        if spec.kind == "linear":
            rows = int(np.prod(out[:-1], dtype=np.int64))
            layers.append(_plain([_layer_gemms(f"{path}.linear", rows, spec.args["in_features"],
                                               spec.args["out_features"])]))
        elif spec.kind == "conv2d":
            (kh, kw), groups = pair(spec.args["kernel_size"]), spec.args["groups"]
            name = f"{path}.conv2d" if groups == 1 else f"{path}.conv2d group {{}}"
            layers.append(_plain([_layer_gemms(name.format(group), batch * out[2] * out[3],
                                               spec.args["in_channels"] // groups * kh * kw, out[1] // groups)
                                  for group in range(groups)]))
        elif spec.kind in RECURRENT:
            steps, sequences = (x_shape[1], x_shape[0]) if spec.args["batch_first"] else x_shape[:2]
            layers.append(_LayerProducts(*recurrent_gemms(f"{path}.{spec.kind}", spec, steps, sequences)))
        elif spec.kind in ("multiheadattention", "transformerencoderlayer"):
            steps, sequences = (x_shape[1], x_shape[0]) if spec.args["batch_first"] else x_shape[:2]
            if spec.kind == "multiheadattention":
                layers.append(attention_gemms(f"{path}.multiheadattention", spec.args["embed_dim"],
                                              spec.args["num_heads"], steps, sequences))
            else:
                layers.append(_encoder_gemms(f"{path}.transformerencoderlayer", spec, steps, sequences))
    gemms = [forward for layer in layers for forward in layer.forward]
    for index in reversed(range(len(layers))):
        gemms.extend(layers[index].backward)
        if index:
            gemms.extend(layers[index].grad_input)
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

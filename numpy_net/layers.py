"""Layers of the NumPy engine. Each forward caches what its own backward needs.

Convention: a batch is a (B, features) array; ``backward(delta)`` takes dL/d(output) and
returns dL/d(input). Outputs live in buffers owned by the layer and reused while the batch
size stays the same, so a training step allocates nothing: an array a layer returns is
valid until that layer runs again (copy it to keep it). A layer keeps a reference to its
forward's input (or output) until backward: overwrite that array in between and backward
differentiates the new contents.
"""

from __future__ import annotations

import numpy as np

from engine_core.bookkeeping import LayerBase
from engine_core.checks import shape_of
from engine_core.errors import backward_before_forward_message

from .checks import check_delta, check_features


class Layer(LayerBase[np.ndarray]):
    """Base class of the NumPy engine's layers (bookkeeping in engine_core.LayerBase)."""

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A reusable array of this shape, reallocated only when the shape changes."""
        buf = self.__dict__.get(name)
        # Only the batch size varies between calls (a layer's widths and dtype are fixed).
        if buf is None or buf.shape[0] != shape[0] or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            setattr(self, name, buf)
        return buf


class Linear(Layer):
    """z = x @ weight + bias; x (B, in), weight (in, out), bias (out,), z (B, out).

    Backward: grad_weight = x^T delta, grad_bias = sum_b delta, dL/dx = delta weight^T.
    """

    accepts_input_grad = True

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: str = "float32") -> None:
        self.in_features = in_features
        self.out_features = out_features
        self.has_bias = bool(bias)
        self.weight = np.zeros((in_features, out_features), dtype)
        self.bias = np.zeros(out_features, dtype)  # stays 0 and untrained with bias=False
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias)
        self.x: np.ndarray | None = None  # input of the last forward, for grad_weight
        self.delta: np.ndarray | None = None  # dL/dz of the last backward
        self._ones = np.ones(0, dtype)

    def __repr__(self) -> str:
        extra = "" if self.has_bias else ", bias=False"
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}{extra})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """z (B, out) for x (B, in) of the layer's dtype; TypeError/ValueError otherwise."""
        x = check_features(x, self.in_features, self.weight.dtype)
        z = self._buffer("_z", (x.shape[0], self.out_features), self.weight.dtype)
        np.matmul(x, self.weight, out=z)
        if self.has_bias:
            z += self.bias
        self.x = x
        return z

    def backward(self, delta: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """grad_weight = x^T delta (in, out); grad_bias = sum_b delta (out,); returns delta W^T (B, in).

        ``input_grad=False`` skips dL/dx, which a training step never needs for the first layer.
        Raises RuntimeError before any forward, ValueError/TypeError for a delta that is not
        (B, out) of the layer's dtype; a refused call changes no gradient.
        """
        if self.x is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), f"(batch, {self.out_features})"))
        delta = check_delta(self.describe(), delta, (self.x.shape[0], self.out_features), self.weight.dtype)
        self.delta = delta
        np.matmul(self.x.T, delta, out=self.grad_weight)
        if self.has_bias:
            ones = self._ones if len(self._ones) == len(delta) else self._make_ones(delta)
            np.matmul(ones, delta, out=self.grad_bias)  # sum over the batch, as one BLAS gemv
        if not input_grad:
            return None
        dx = self._buffer("_dx", (delta.shape[0], self.in_features), delta.dtype)
        return np.matmul(delta, self.weight.T, out=dx)

    def _make_ones(self, like: np.ndarray) -> np.ndarray:
        self._ones = np.ones(len(like), like.dtype)
        return self._ones

    def parameters(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias} if self.has_bias else {"weight": self.weight}

    def gradients(self) -> dict[str, np.ndarray]:
        return {"weight": self.grad_weight, "bias": self.grad_bias} if self.has_bias else {"weight": self.grad_weight}


class Activation(Layer):
    """Elementwise a = f(z). With ``inplace`` f overwrites z and f'(z) overwrites delta;
    MLP turns it on because it owns the buffers on both sides."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace
        self.a: np.ndarray | None = None  # the last forward's output (what backward needs)

    def _out(self, name: str, like: np.ndarray) -> np.ndarray:
        return like if self.inplace else self._buffer(name, like.shape, like.dtype)

    def _check_delta(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(delta, a): RuntimeError before any forward, ValueError/TypeError for a delta unlike a."""
        a = self.a
        if a is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's input)"))
        return check_delta(self.describe(), delta, a.shape, a.dtype), a


class Identity(Activation):
    """a = z; da/dz = 1."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.a = x
        return x

    def backward(self, delta: np.ndarray) -> np.ndarray:
        delta, _ = self._check_delta(delta)
        return delta


class ReLU(Activation):
    """a = max(z, 0); da/dz = 1 where z > 0 else 0 (torch's convention at 0)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        a = np.maximum(x, 0, out=self._out("_a", x))
        self.a = a  # a > 0 exactly where z > 0, so the output is enough for backward
        return a

    def backward(self, delta: np.ndarray) -> np.ndarray:
        delta, a = self._check_delta(delta)
        dz = self._out("_dz", delta)
        # delta * (a > 0) without a mask array: where a is 0 the product is replaced by 0.
        np.multiply(delta, a > 0, out=dz)
        return dz


class Sigmoid(Activation):
    """a = 1 / (1 + exp(-z)); da/dz = a (1 - a)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        a = self._out("_a", x)
        np.negative(x, out=a)
        # exp(-z) overflows to Inf for z below about -88 (float32) / -745 (float64), and 1/Inf
        # is the 0 that torch.sigmoid gives there too: the overflow is expected, not reported.
        with np.errstate(over="ignore"):
            np.exp(a, out=a)
        a += 1
        np.reciprocal(a, out=a)
        self.a = a
        return a

    def backward(self, delta: np.ndarray) -> np.ndarray:
        delta, a = self._check_delta(delta)
        slope = self._buffer("_slope", a.shape, a.dtype)
        np.subtract(1, a, out=slope)
        slope *= a
        dz = self._out("_dz", delta)
        return np.multiply(delta, slope, out=dz)


class Tanh(Activation):
    """a = tanh(z); da/dz = 1 - a^2."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        a = np.tanh(x, out=self._out("_a", x))
        self.a = a
        return a

    def backward(self, delta: np.ndarray) -> np.ndarray:
        delta, a = self._check_delta(delta)
        slope = self._buffer("_slope", a.shape, a.dtype)
        np.multiply(a, a, out=slope)
        np.subtract(1, slope, out=slope)
        dz = self._out("_dz", delta)
        return np.multiply(delta, slope, out=dz)


ACTIVATIONS: dict[str, type[Activation]] = {
    "identity": Identity,
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}

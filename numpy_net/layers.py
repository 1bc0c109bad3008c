"""Layers of the NumPy engine. Each forward caches what its own backward needs.

Convention: a batch is a (B, features) array; ``backward(delta)`` takes dL/d(output) and
returns dL/d(input). Outputs live in buffers owned by the layer and reused while the batch
size stays the same, so a training step allocates nothing: an array a layer returns is
valid until that layer runs again (copy it to keep it).
"""

from __future__ import annotations

import numpy as np


class Layer:
    """Base class: no parameters."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, delta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def parameters(self) -> dict[str, np.ndarray]:
        """Name -> parameter array (updated in place by optimizers)."""
        return {}

    def gradients(self) -> dict[str, np.ndarray]:
        """Name -> gradient array, same names and shapes as parameters()."""
        return {}

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A reusable array of this shape, reallocated only when the shape changes."""
        buf = self.__dict__.get(name)
        # Only the batch size varies between calls (a layer's widths and dtype are fixed).
        if buf is None or buf.shape[0] != shape[0] or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            setattr(self, name, buf)
        return buf


class Linear(Layer):
    """z = x @ weight + bias; x (B, in), weight (in, out), bias (out,), z (B, out)."""

    def __init__(self, in_features: int, out_features: int, dtype: str = "float32") -> None:
        self.in_features = in_features
        self.out_features = out_features
        self.weight = np.zeros((in_features, out_features), dtype)
        self.bias = np.zeros(out_features, dtype)
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias)
        self.x: np.ndarray | None = None  # input of the last forward, for grad_weight
        self.delta: np.ndarray | None = None  # dL/dz of the last backward
        self._ones = np.ones(0, dtype)

    def _make_ones(self, like: np.ndarray) -> np.ndarray:
        self._ones = np.ones(len(like), like.dtype)
        return self._ones

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = self._buffer("_z", (x.shape[0], self.out_features), self.weight.dtype)
        np.matmul(x, self.weight, out=z)
        z += self.bias
        self.x = x
        return z

    def backward(self, delta: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """grad_weight = x^T delta (in, out); grad_bias = sum_b delta (out,); returns delta W^T (B, in).

        ``input_grad=False`` skips dL/dx, which a training step never needs for the first layer.
        """
        self.delta = delta
        np.matmul(self.x.T, delta, out=self.grad_weight)
        ones = self._ones if len(self._ones) == len(delta) else self._make_ones(delta)
        np.matmul(ones, delta, out=self.grad_bias)  # sum over the batch, as one BLAS gemv
        if not input_grad:
            return None
        dx = self._buffer("_dx", (delta.shape[0], self.in_features), delta.dtype)
        return np.matmul(delta, self.weight.T, out=dx)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def gradients(self) -> dict[str, np.ndarray]:
        return {"weight": self.grad_weight, "bias": self.grad_bias}


class Activation(Layer):
    """Elementwise a = f(z). With ``inplace`` f overwrites z and f'(z) overwrites delta;
    MLP turns it on because it owns the buffers on both sides."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace

    def _out(self, name: str, like: np.ndarray) -> np.ndarray:
        return like if self.inplace else self._buffer(name, like.shape, like.dtype)


class Identity(Activation):
    """a = z; da/dz = 1."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, delta: np.ndarray) -> np.ndarray:
        return delta


class ReLU(Activation):
    """a = max(z, 0); da/dz = 1 where z > 0 else 0 (torch's convention at 0)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        a = np.maximum(x, 0, out=self._out("_a", x))
        self.a = a  # a > 0 exactly where z > 0, so the output is enough for backward
        return a

    def backward(self, delta: np.ndarray) -> np.ndarray:
        dz = self._out("_dz", delta)
        # delta * (a > 0) without a mask array: where a is 0 the product is replaced by 0.
        np.multiply(delta, self.a > 0, out=dz)
        return dz


class Sigmoid(Activation):
    """a = 1 / (1 + exp(-z)); da/dz = a (1 - a)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        a = self._out("_a", x)
        np.negative(x, out=a)
        np.exp(a, out=a)
        a += 1
        np.reciprocal(a, out=a)
        self.a = a
        return a

    def backward(self, delta: np.ndarray) -> np.ndarray:
        slope = self._buffer("_slope", self.a.shape, self.a.dtype)
        np.subtract(1, self.a, out=slope)
        slope *= self.a
        dz = self._out("_dz", delta)
        return np.multiply(delta, slope, out=dz)


class Tanh(Activation):
    """a = tanh(z); da/dz = 1 - a^2."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        a = np.tanh(x, out=self._out("_a", x))
        self.a = a
        return a

    def backward(self, delta: np.ndarray) -> np.ndarray:
        slope = self._buffer("_slope", self.a.shape, self.a.dtype)
        np.multiply(self.a, self.a, out=slope)
        np.subtract(1, slope, out=slope)
        dz = self._out("_dz", delta)
        return np.multiply(delta, slope, out=dz)


ACTIVATIONS: dict[str, type[Activation]] = {
    "identity": Identity,
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}

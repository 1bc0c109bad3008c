"""Layers of the torch engine: numpy_net.layers line for line, on tensors, no autograd.

Nothing here sets requires_grad, so torch records no graph; every derivative is ours.
Outputs live in reused buffers, valid until the layer runs again (clone to keep).
"""

from __future__ import annotations

import torch


class Layer:
    """Base class: no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def parameters(self) -> dict[str, torch.Tensor]:
        """Name -> parameter tensor (updated in place by optimizers)."""
        return {}

    def gradients(self) -> dict[str, torch.Tensor]:
        """Name -> gradient tensor, same names and shapes as parameters()."""
        return {}

    def _buffer(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A reusable tensor of this shape, reallocated only when the shape changes."""
        buf = self.__dict__.get(name)
        # Only the batch size varies between calls (a layer's widths, dtype and device are fixed);
        # comparing one int keeps this off the profile.
        if buf is None or buf.shape[0] != shape[0] or buf.dtype != like.dtype:
            buf = torch.empty(shape, dtype=like.dtype, device=like.device)
            setattr(self, name, buf)
        return buf


class Linear(Layer):
    """z = x @ weight + bias; x (B, in), weight (in, out), bias (out,), z (B, out)."""

    def __init__(
        self, in_features: int, out_features: int, dtype: str = "float32", device: str = "cpu"
    ) -> None:
        self.in_features = in_features
        self.out_features = out_features
        kind = getattr(torch, dtype)
        self.weight = torch.zeros((in_features, out_features), dtype=kind, device=device)
        self.bias = torch.zeros(out_features, dtype=kind, device=device)
        self.grad_weight = torch.zeros_like(self.weight)
        self.grad_bias = torch.zeros_like(self.bias)
        self.x: torch.Tensor | None = None  # input of the last forward, for grad_weight
        self.delta: torch.Tensor | None = None  # dL/dz of the last backward
        self._weight_t: torch.Tensor | None = None  # a view, so it follows in-place updates
        self._weight_t_of: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self._buffer("_z", (x.shape[0], self.out_features), self.weight)
        torch.addmm(self.bias, x, self.weight, out=z)
        self.x = x
        return z

    def backward(self, delta: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        """grad_weight = x^T delta (in, out); grad_bias = sum_b delta (out,); returns delta W^T (B, in).

        ``input_grad=False`` skips dL/dx, which a training step never needs for the first layer.
        """
        self.delta = delta
        torch.mm(self.x.t(), delta, out=self.grad_weight)
        torch.sum(delta, dim=0, out=self.grad_bias)
        if not input_grad:
            return None
        dx = self._buffer("_dx", (delta.shape[0], self.in_features), delta)
        if self._weight_t_of is not self.weight:  # first use, or the weight was rebound (packing)
            self._weight_t, self._weight_t_of = self.weight.t(), self.weight
        return torch.mm(delta, self._weight_t, out=dx)

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "bias": self.bias}

    def gradients(self) -> dict[str, torch.Tensor]:
        return {"weight": self.grad_weight, "bias": self.grad_bias}


class Activation(Layer):
    """Elementwise a = f(z). With ``inplace`` f overwrites z and f'(z) overwrites delta;
    MLP turns it on because it owns the buffers on both sides."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace

    def _out(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return like if self.inplace else self._buffer(name, tuple(like.shape), like)


class Identity(Activation):
    """a = z; da/dz = 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        return delta


class ReLU(Activation):
    """a = max(z, 0); da/dz = 1 where z > 0 else 0 (torch's convention at 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.clamp_min(x, 0, out=self._out("_a", x))
        self.a = a  # a > 0 exactly where z > 0, so the output is enough for backward
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        dz = self._out("_dz", delta)
        torch.mul(delta, self.a > 0, out=dz)
        return dz


class Sigmoid(Activation):
    """a = 1 / (1 + exp(-z)); da/dz = a (1 - a)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(x, out=self._out("_a", x))  # the same formula, as one kernel
        self.a = a
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        slope = self._buffer("_slope", tuple(self.a.shape), self.a)
        torch.mul(self.a, -1, out=slope)
        slope += 1
        slope *= self.a
        dz = self._out("_dz", delta)
        return torch.mul(delta, slope, out=dz)


class Tanh(Activation):
    """a = tanh(z); da/dz = 1 - a^2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(x, out=self._out("_a", x))
        self.a = a
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        slope = self._buffer("_slope", tuple(self.a.shape), self.a)
        torch.mul(self.a, self.a, out=slope)
        slope.neg_().add_(1)
        dz = self._out("_dz", delta)
        return torch.mul(delta, slope, out=dz)


ACTIVATIONS: dict[str, type[Activation]] = {
    "identity": Identity,
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}

"""Layers of the torch engine: numpy_net.layers line for line, on tensors, no autograd.

Nothing here sets requires_grad, so torch records no graph; every derivative is ours.
Outputs live in reused buffers, valid until the layer runs again (clone to keep). A layer
keeps a reference to its forward's input (or output) until backward: overwrite that tensor
in between and backward differentiates the new contents.
"""

from __future__ import annotations

import torch

from engine_core.bookkeeping import LayerBase
from engine_core.checks import shape_of
from engine_core.errors import backward_before_forward_message

from .checks import check_delta, check_features


class Layer(LayerBase[torch.Tensor]):
    """Base class of the torch engine's layers (bookkeeping in engine_core.LayerBase)."""

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
    """z = x @ weight + bias; x (B, in), weight (in, out), bias (out,), z (B, out).

    Backward: grad_weight = x^T delta, grad_bias = sum_b delta, dL/dx = delta weight^T.
    """

    accepts_input_grad = True

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, dtype: str = "float32",
        device: str | torch.device = "cpu",
    ) -> None:
        self.in_features = in_features
        self.out_features = out_features
        self.has_bias = bool(bias)
        kind = getattr(torch, dtype)
        self.weight = torch.zeros((in_features, out_features), dtype=kind, device=device)
        self.bias = torch.zeros(out_features, dtype=kind, device=device)  # stays 0 and untrained with bias=False
        self.grad_weight = torch.zeros_like(self.weight)
        self.grad_bias = torch.zeros_like(self.bias)
        self.x: torch.Tensor | None = None  # input of the last forward, for grad_weight
        self.delta: torch.Tensor | None = None  # dL/dz of the last backward
        self._weight_t = self.weight.t()  # a view, so it follows in-place updates
        self._weight_t_of = self.weight  # the tensor it views (packing rebinds weight)

    def __repr__(self) -> str:
        extra = "" if self.has_bias else ", bias=False"
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}{extra})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """z (B, out) for x (B, in) of the layer's dtype and device; TypeError/ValueError otherwise."""
        x = check_features(x, self.in_features, self.weight.dtype, self.weight.device)
        z = self._buffer("_z", (x.shape[0], self.out_features), self.weight)
        if self.has_bias:
            torch.addmm(self.bias, x, self.weight, out=z)
        else:
            torch.mm(x, self.weight, out=z)
        self.x = x
        return z

    def backward(self, delta: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
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
        torch.mm(self.x.t(), delta, out=self.grad_weight)
        if self.has_bias:
            torch.sum(delta, dim=0, out=self.grad_bias)
        if not input_grad:
            return None
        dx = self._buffer("_dx", (delta.shape[0], self.in_features), delta)
        if self._weight_t_of is not self.weight:  # the weight was rebound (packing)
            self._weight_t, self._weight_t_of = self.weight.t(), self.weight
        return torch.mm(delta, self._weight_t, out=dx)

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "bias": self.bias} if self.has_bias else {"weight": self.weight}

    def gradients(self) -> dict[str, torch.Tensor]:
        return {"weight": self.grad_weight, "bias": self.grad_bias} if self.has_bias else {"weight": self.grad_weight}


class Activation(Layer):
    """Elementwise a = f(z). With ``inplace`` f overwrites z and f'(z) overwrites delta;
    MLP turns it on because it owns the buffers on both sides."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace
        self.a: torch.Tensor | None = None  # the last forward's output (what backward needs)

    def _out(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return like if self.inplace else self._buffer(name, tuple(like.shape), like)

    def _check_delta(self, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(delta, a): RuntimeError before any forward, ValueError/TypeError for a delta unlike a."""
        a = self.a
        if a is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's input)"))
        return check_delta(self.describe(), delta, tuple(a.shape), a.dtype), a


class Identity(Activation):
    """a = z; da/dz = 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.a = x
        return x

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, _ = self._check_delta(delta)
        return delta


class ReLU(Activation):
    """a = max(z, 0); da/dz = 1 where z > 0 else 0 (torch's convention at 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.clamp_min(x, 0, out=self._out("_a", x))
        self.a = a  # a > 0 exactly where z > 0, so the output is enough for backward
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, a = self._check_delta(delta)
        dz = self._out("_dz", delta)
        torch.mul(delta, a > 0, out=dz)
        return dz


class Sigmoid(Activation):
    """a = 1 / (1 + exp(-z)); da/dz = a (1 - a)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(x, out=self._out("_a", x))  # the same formula, as one kernel
        self.a = a
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, a = self._check_delta(delta)
        slope = self._buffer("_slope", tuple(a.shape), a)
        torch.mul(a, -1, out=slope)
        slope += 1
        slope *= a
        dz = self._out("_dz", delta)
        return torch.mul(delta, slope, out=dz)


class Tanh(Activation):
    """a = tanh(z); da/dz = 1 - a^2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(x, out=self._out("_a", x))
        self.a = a
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, a = self._check_delta(delta)
        slope = self._buffer("_slope", tuple(a.shape), a)
        torch.mul(a, a, out=slope)
        slope.neg_().add_(1)
        dz = self._out("_dz", delta)
        return torch.mul(delta, slope, out=dz)


ACTIVATIONS: dict[str, type[Activation]] = {
    "identity": Identity,
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}

"""Layers of the torch engine: numpy_net.layers line for line, on tensors, no autograd.

Nothing here sets requires_grad, so torch records no graph; every derivative is ours.
Outputs live in reused buffers, valid until the layer runs again (clone to keep). A layer
keeps a reference to its forward's input (or output) until backward: overwrite that tensor
in between and backward differentiates the new contents.
"""

from __future__ import annotations

import torch

from engine_core.bookkeeping import LayerBase
from engine_core.checks import check_type, shape_of
from engine_core.errors import backward_before_forward_message
from engine_core.layer_checks import check_approximate, check_negative_slope

from .checks import ARRAY_TYPE, check_delta, check_features


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

    def _exact_buffer(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A reusable tensor of exactly this shape, with like's dtype and device, reallocated when one
        of them changes: for layers whose inputs change in more than the batch size."""
        buf = self.__dict__.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
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
        # A new output tensor each forward instead of a reused buffer: MLP sets it on its last
        # layer, whose output the caller keeps (cheaper than cloning a buffer).
        self.fresh_output = False
        self._weight_t = self.weight.t()  # a view, so it follows in-place updates
        self._weight_t_of = self.weight  # the tensor it views (packing rebinds weight)

    def __repr__(self) -> str:
        extra = "" if self.has_bias else ", bias=False"
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}{extra})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """z (B, out) for x (B, in) of the layer's dtype and device; TypeError/ValueError otherwise."""
        if not self.input_trusted:
            x = check_features(x, self.in_features, self.weight.dtype, self.weight.device, self)
        z = None if self.fresh_output else self._buffer("_z", (x.shape[0], self.out_features), self.weight)
        if self.has_bias:
            z = torch.addmm(self.bias, x, self.weight, out=z)
        else:
            z = torch.mm(x, self.weight, out=z)
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
        if not self.delta_trusted:
            delta = check_delta(self, delta, (self.x.shape[0], self.out_features), self.weight.dtype)
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

    def local_parameters(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "bias": self.bias} if self.has_bias else {"weight": self.weight}

    def local_gradients(self) -> dict[str, torch.Tensor]:
        return {"weight": self.grad_weight, "bias": self.grad_bias} if self.has_bias else {"weight": self.grad_weight}


class Activation(Layer):
    """Elementwise a = f(z). With ``inplace`` f overwrites z and f'(z) overwrites delta;
    MLP turns it on because it owns the buffers on both sides."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace
        self.a: torch.Tensor | None = None  # the last forward's output (what backward needs)

    def _out(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return like if self.inplace else self._buffer(name, tuple(like.shape), like)

    def _input(self, x: object) -> torch.Tensor:
        """x as a float tensor without a graph; TypeError naming the layer otherwise."""
        if self.input_trusted or (x.__class__ is torch.Tensor and x.dtype.is_floating_point and not x.requires_grad):  # type: ignore[attr-defined]
            return x  # type: ignore[return-value]
        check_type(f"{self.describe()}: x", x, torch.Tensor, ARRAY_TYPE)
        tensor: torch.Tensor = x  # type: ignore[assignment]
        if not tensor.dtype.is_floating_point:
            raise TypeError(f"{self.describe()}: x: expected a floating-point array, got dtype {tensor.dtype}")
        return tensor.detach()

    def _check_delta(self, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(delta, a): RuntimeError before any forward, ValueError/TypeError for a delta unlike a."""
        a = self.a
        if a is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's input)"))
        return (delta if self.delta_trusted else check_delta(self, delta, a.shape, a.dtype)), a  # torch.Size: a tuple


class Identity(Activation):
    """a = z; da/dz = 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
        self.a = x
        return x

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, _ = self._check_delta(delta)
        return delta


class ReLU(Activation):
    """a = max(z, 0); da/dz = 1 where z > 0 else 0 (torch's convention at 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
        a = torch.clamp_min(x, 0, out=self._out("_a", x))
        self.a = a  # a > 0 exactly where z > 0, so the output is enough for backward
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, a = self._check_delta(delta)
        dz = self._out("_dz", delta)
        # da/dz = sign(a): 1 where a > 0, 0 where a == 0. A multiply by the mask (a > 0) is a
        # mixed bool/float multiply, 4x slower at batch 32 and 100x at (1024, 256) in this torch.
        slope = torch.sign(a, out=self._buffer("_slope", tuple(a.shape), a))
        return torch.mul(delta, slope, out=dz)


class Sigmoid(Activation):
    """a = 1 / (1 + exp(-z)); da/dz = a (1 - a)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
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
        x = self._input(x)
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


class LeakyReLU(Activation):
    """a = z where z > 0 else negative_slope * z; da/dz = 1 where z > 0 else negative_slope
    (torch's convention at 0). Any finite slope: 0 is ReLU, 1 the identity.

    The derivative is kept from the forward (it cannot be read off the output when the slope
    is <= 0). Raises TypeError/ValueError for a slope that is not a finite number.
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.negative_slope = check_negative_slope(negative_slope)
        self.slope: torch.Tensor | None = None  # da/dz of the last forward

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
        slope = self._buffer("_slope", tuple(x.shape), x)
        torch.le(x, 0, out=slope)
        slope.mul_(self.negative_slope)  # the slope where z <= 0, else 0
        slope.add_(torch.gt(x, 0, out=self._buffer("_pos", tuple(x.shape), x)))  # + 1 where z > 0 (exact: a term is 0)
        a = torch.mul(x, slope, out=self._out("_a", x))  # after the slope: in place, a overwrites x
        self.a, self.slope = a, slope
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, _ = self._check_delta(delta)
        assert self.slope is not None  # _check_delta saw a forward
        return torch.mul(delta, self.slope, out=self._out("_dz", delta))


class GELU(Activation):
    """a = z Phi(z), Phi(z) = (1 + erf(z / sqrt 2)) / 2 the standard normal CDF;
    da/dz = Phi(z) + z phi(z), phi(z) = exp(-z^2 / 2) / sqrt(2 pi).

    approximate="tanh": a = z (1 + t) / 2 with t = tanh(k (z + c z^3)), k = sqrt(2/pi), c = 0.044715;
    da/dz = (1 + t) / 2 + z (1 - t^2) k (1 + 3 c z^2) / 2 (torch.nn.GELU's two forms).
    Raises ValueError for another ``approximate``.
    """

    SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
    INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)
    K = 0.7978845608028654  # sqrt(2 / pi)
    C = 0.044715

    def __init__(self, approximate: str = "none", inplace: bool = False) -> None:
        super().__init__(inplace)
        self.approximate = check_approximate(approximate)
        self.z: torch.Tensor | None = None  # the last forward's input (a copy when in place)
        self.cdf: torch.Tensor | None = None  # Phi(z); for the tanh form, t

    def __repr__(self) -> str:
        return f"GELU(approximate={self.approximate!r})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
        shape = tuple(x.shape)
        if self.inplace:  # a overwrites x: keep z for backward
            z = self._buffer("_z", shape, x).copy_(x)
        else:
            z = x
        cdf = self._buffer("_cdf", shape, x)
        a = self._out("_a", x)
        if self.approximate == "none":  # Phi(z) = (1 + erf(z / sqrt 2)) / 2
            torch.mul(z, self.SQRT_HALF, out=cdf)
            torch.special.erf(cdf, out=cdf)
            cdf.add_(1).mul_(0.5)
            torch.mul(z, cdf, out=a)
        else:  # t = tanh(k z (1 + c z^2)); a = z (1 + t) / 2
            t = cdf  # the tanh form keeps t in this buffer
            torch.mul(z, z, out=t)
            t.mul_(self.C).add_(1).mul_(z).mul_(self.K)
            torch.tanh(t, out=t)
            torch.add(t, 1, out=a)
            a.mul_(z).mul_(0.5)
        self.a, self.z, self.cdf = a, z, cdf
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, _ = self._check_delta(delta)
        z, cdf = self.z, self.cdf
        assert z is not None and cdf is not None  # _check_delta saw a forward
        slope = self._buffer("_slope", tuple(z.shape), z)
        torch.mul(z, z, out=slope)
        if self.approximate == "none":  # Phi(z) + z phi(z)
            slope.mul_(-0.5).exp_().mul_(self.INV_SQRT_2PI).mul_(z).add_(cdf)
        else:  # (1 + t) / 2 + z (1 - t^2) k (1 + 3 c z^2) / 2
            slope.mul_(3 * self.C).add_(1).mul_(z).mul_(0.5 * self.K)
            t, tmp = cdf, self._buffer("_tmp", tuple(z.shape), z)
            torch.mul(t, t, out=tmp)
            tmp.neg_().add_(1)
            slope.mul_(tmp)
            torch.add(t, 1, out=tmp)
            tmp.mul_(0.5)
            slope.add_(tmp)
        return torch.mul(delta, slope, out=self._out("_dz", delta))


ACTIVATIONS: dict[str, type[Activation]] = {
    "identity": Identity,
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}

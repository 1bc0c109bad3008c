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
from engine_core.layer_checks import check_approximate, check_flag, check_negative_slope

from .checks import ARRAY_TYPE, check_delta, check_features, compiling


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

    def _unshared(self, x: torch.Tensor) -> torch.Tensor:
        """x, or a copy of x where its memory overlaps one of this layer's own tensors or its
        parts' (its last output or dL/dx fed back in, perhaps through a NumPy view): the forward
        writes those buffers, and backward must see x as it came."""
        if compiling():  # a traced step's x is its batch, never one of the net's own buffers
            return x
        storage = x.untyped_storage()
        start = storage.data_ptr()
        end = start + storage.nbytes()
        for _, module in self.named_modules():  # its parts' too: an attention's output is out_proj's
            for value in module.__dict__.values():
                if value.__class__ is torch.Tensor and value.device == x.device:
                    other = value.untyped_storage()
                    if other.data_ptr() < end and start < other.data_ptr() + other.nbytes():
                        return x.clone()
        return x

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
    As torch.nn.Linear (its documentation page), x may be (*, in): one row (in,) or any leading
    dimensions; z is then (*, out), computed on the rows of x.reshape(-1, in), and the gradients
    sum over every leading dimension.
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
        """z (B, out) for x (B, in), (*, out) for x (*, in), of the layer's dtype and device;
        TypeError/ValueError otherwise."""
        if not self.input_trusted:
            x = self._unshared(check_features(x, self.in_features, self.weight.dtype, self.weight.device, self))
        if x.ndim != 2:  # (*, in): torch.nn.Linear's other shapes
            return self._forward_rows(x)
        z = None if self.fresh_output else self._buffer("_z", (x.shape[0], self.out_features), self.weight)
        if self.has_bias:
            z = torch.addmm(self.bias, x, self.weight, out=z)
        else:
            z = torch.mm(x, self.weight, out=z)
        self.x = x
        return z

    def backward(self, delta: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        """grad_weight = x^T delta (in, out); grad_bias = sum_b delta (out,); returns delta W^T (B, in).
        For a (*, in) input, delta is (*, out), the sums run over every leading dimension and dL/dx
        is (*, in).

        ``input_grad=False`` skips dL/dx, which a training step never needs for the first layer.
        Raises RuntimeError before any forward, ValueError/TypeError for a delta that is not
        shaped like the last output or not of the layer's dtype; a refused call changes no gradient.
        """
        x = self.x
        if x is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), f"(batch, {self.out_features})"))
        if x.ndim != 2:
            return self._backward_rows(x, delta, input_grad)
        if not self.delta_trusted:
            delta = check_delta(self, delta, (x.shape[0], self.out_features), self.weight.dtype)
        self.delta = delta
        torch.mm(x.t(), delta, out=self.grad_weight)
        if self.has_bias:
            torch.sum(delta, dim=0, out=self.grad_bias)
        if not input_grad:
            return None
        dx = self._buffer("_dx", (delta.shape[0], self.in_features), delta)
        if self._weight_t_of is not self.weight:  # the weight was rebound (packing)
            self._weight_t, self._weight_t_of = self.weight.t(), self.weight
        return torch.mm(delta, self._weight_t, out=dx)

    def _forward_rows(self, x: torch.Tensor) -> torch.Tensor:
        """z (*, out) for x (*, in): forward on the rows x.reshape(-1, in) (a view when x is
        contiguous). self.x keeps x's shape: backward takes its rows again, and the leading
        dimensions from it."""
        z = self.forward(x.reshape(-1, self.in_features))
        self.x = x
        return z.reshape(*x.shape[:-1], self.out_features)

    def _backward_rows(self, x: torch.Tensor, delta: torch.Tensor, input_grad: bool) -> torch.Tensor | None:
        """backward after a (*, in) input: on the rows of x and of delta (*, out), so that the
        gradients sum over every leading dimension; dL/dx (*, in)."""
        if not self.delta_trusted:
            delta = check_delta(self, delta, (*x.shape[:-1], self.out_features), self.weight.dtype)
        self.x = x.reshape(-1, self.in_features)  # the rows forward multiplied
        try:
            dx = self.backward(delta.reshape(-1, self.out_features), input_grad)
        finally:
            self.x = x
        self.delta = delta
        return None if dx is None else dx.reshape(x.shape)

    def local_parameters(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "bias": self.bias} if self.has_bias else {"weight": self.weight}

    def local_gradients(self) -> dict[str, torch.Tensor]:
        return {"weight": self.grad_weight, "bias": self.grad_bias} if self.has_bias else {"weight": self.grad_weight}


class Activation(Layer):
    """Elementwise a = f(z) on an input of any shape.

    ``_overwrite`` (never set by the user): f overwrites z and f'(z) overwrites delta, sparing two
    buffers. A Sequential turns it on only between two Linears, where it owns the tensors on both
    sides (the first Linear's output buffer, the second one's dL/dx buffer); anywhere else z or
    delta may be a tensor the caller, or a layer that differentiates its own output, still reads.
    The public ``inplace=True`` of ReLU, LeakyReLU and Dropout (torch's argument) does not turn it
    on: with it a layer computes exactly what it computes without it.
    """

    _overwrite = False

    def __init__(self) -> None:
        self.a: torch.Tensor | None = None  # the last forward's output (what backward needs)

    def _buffer(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A reusable tensor of exactly this shape, with like's dtype and device: an activation
        follows layers whose outputs change in more than the batch size (a Linear on (*, in), a
        convolution)."""
        buf = self.__dict__.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype:
            buf = torch.empty(shape, dtype=like.dtype, device=like.device)
            setattr(self, name, buf)
        return buf

    def _out(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return like if self._overwrite else self._buffer(name, like.shape, like)

    def _input(self, x: object) -> torch.Tensor:
        """x as a float tensor without a graph; TypeError naming the layer otherwise."""
        if self.input_trusted:
            return x  # type: ignore[return-value]
        if x.__class__ is torch.Tensor and x.dtype.is_floating_point and not x.requires_grad:  # type: ignore[attr-defined]
            return self._unshared(x)  # type: ignore[arg-type]
        check_type(f"{self.describe()}: x", x, torch.Tensor, ARRAY_TYPE)
        tensor: torch.Tensor = x  # type: ignore[assignment]
        if not tensor.dtype.is_floating_point:
            raise TypeError(f"{self.describe()}: x: expected a floating-point array, got dtype {tensor.dtype}")
        return self._unshared(tensor.detach())

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
    """a = max(z, 0); da/dz = 1 where z > 0 else 0 (torch's convention at 0).

    ``inplace`` (torch.nn.ReLU's argument) is accepted and shown, and changes nothing: the output
    and the gradients are those of the out-of-place layer, and the caller's x and delta are never
    written (torch's in-place form can leave a wrong or refused gradient behind a layer that keeps
    its output for backward). Raises TypeError for an inplace that is not True or False.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = check_flag("inplace", inplace)

    def __repr__(self) -> str:
        return "ReLU(inplace=True)" if self.inplace else "ReLU()"

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
        slope = torch.sign(a, out=self._buffer("_slope", a.shape, a))
        return torch.mul(delta, slope, out=dz)


class Sigmoid(Activation):
    """a = 1 / (1 + exp(-z)); da/dz = a (1 - a). At z = -inf, a = 0; at +inf, 1 (torch's values)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
        a = torch.sigmoid(x, out=self._out("_a", x))  # the same formula, as one kernel
        self.a = a
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, a = self._check_delta(delta)
        slope = self._buffer("_slope", a.shape, a)
        torch.mul(a, -1, out=slope)
        slope += 1
        slope *= a
        dz = self._out("_dz", delta)
        return torch.mul(delta, slope, out=dz)


class Tanh(Activation):
    """a = tanh(z); da/dz = 1 - a^2 (a = +-1, da/dz = 0 at z = +-inf)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
        a = torch.tanh(x, out=self._out("_a", x))
        self.a = a
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, a = self._check_delta(delta)
        slope = self._buffer("_slope", a.shape, a)
        torch.mul(a, a, out=slope)
        slope.neg_().add_(1)
        dz = self._out("_dz", delta)
        return torch.mul(delta, slope, out=dz)


class LeakyReLU(Activation):
    """a = z where z > 0 else negative_slope * z; da/dz = 1 where z > 0 else negative_slope
    (torch's convention at 0). Any finite slope: 0 is ReLU, 1 the identity.

    The derivative is kept from the forward (it cannot be read off the output when the slope
    is <= 0). ``inplace`` as ReLU's: accepted, shown, and the results are the out-of-place
    layer's. Raises TypeError/ValueError for a slope that is not a finite number, TypeError for
    an inplace that is not True or False.
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = check_negative_slope(negative_slope)
        self.inplace = check_flag("inplace", inplace)
        self.slope: torch.Tensor | None = None  # da/dz of the last forward

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope}{', inplace=True' if self.inplace else ''})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
        slope = self._buffer("_slope", x.shape, x)
        torch.le(x, 0, out=slope)
        slope.mul_(self.negative_slope)  # the slope where z <= 0, else 0
        slope.add_(torch.gt(x, 0, out=self._buffer("_pos", x.shape, x)))  # + 1 where z > 0 (exact: a term is 0)
        a = torch.mul(x, slope, out=self._out("_a", x))  # after the slope: when overwriting, a replaces x
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

    Huge |z|: z^2 and z^3 overflow (in float32 from |z| ~ 2e13 for the cube, 2e19 for the
    square), and Inf times the 0 that 1 - t^2, exp(-z^2 / 2) or Phi(z) is out there would be NaN.
    Beyond |z| = LIMIT each such term is exactly 0 (exp(-800) underflows in both dtypes, t = +-1
    from |z| ~ 10 on, 1 + erf(z / sqrt 2) = 0 from z ~ -9 on), so it is computed at z clipped to
    +-LIMIT: the same bits wherever the unclipped formula gives a number, and for huge or infinite
    z the limits a = z or -0, da/dz = 1 or 0. torch gives them too until its own z^2 overflows
    (the tanh form's derivative from |z| ~ 2e19 in float32, 1.3e154 in float64) and at +-inf,
    where it gives NaN. Raises ValueError for another ``approximate``.
    """

    SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
    INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)
    K = 0.7978845608028654  # sqrt(2 / pi)
    C = 0.044715
    LIMIT = 40.0  # beyond it, Phi(-z) (= 0 from 1 + erf), phi(z) and 1 - t^2 are exactly 0

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = check_approximate(approximate)
        self.z: torch.Tensor | None = None  # the last forward's input (a copy when overwriting it)
        self.cdf: torch.Tensor | None = None  # Phi(z); for the tanh form, t

    def __repr__(self) -> str:
        return f"GELU(approximate={self.approximate!r})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
        shape = x.shape
        if self._overwrite:  # a overwrites x: keep z for backward
            z = self._buffer("_z", shape, x).copy_(x)
        else:
            z = x
        cdf = self._buffer("_cdf", shape, x)
        a = self._out("_a", x)
        if self.approximate == "none":  # Phi(z) = (1 + erf(z / sqrt 2)) / 2
            torch.mul(z, self.SQRT_HALF, out=cdf)
            torch.special.erf(cdf, out=cdf)
            share = cdf.add_(1).mul_(0.5)
        else:  # t = tanh(k zc (1 + c zc^2)), zc = z within +-LIMIT (t is +-1 beyond); share = (1 + t) / 2
            t = cdf  # the tanh form keeps t in this buffer
            zc = torch.clamp(z, -self.LIMIT, self.LIMIT, out=a)  # a is free until the last step
            torch.mul(zc, zc, out=t)
            t.mul_(self.C).add_(1).mul_(zc).mul_(self.K)
            torch.tanh(t, out=t)
            share = torch.add(t, 1, out=self._buffer("_tmp", shape, x)).mul_(0.5)
        # a = z * share. The share is exactly 0 below -LIMIT, where -inf * 0 would be NaN: z is
        # clipped there (a = -0, as torch gives for any finite z down there).
        torch.clamp_min(z, -self.LIMIT, out=a).mul_(share)
        self.a, self.z, self.cdf = a, z, cdf
        return a

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        delta, _ = self._check_delta(delta)
        z, cdf = self.z, self.cdf
        assert z is not None and cdf is not None  # _check_delta saw a forward
        slope = self._buffer("_slope", z.shape, z)
        tmp = self._buffer("_tmp", z.shape, z)
        zc = torch.clamp(z, -self.LIMIT, self.LIMIT, out=tmp)  # the terms below are 0 beyond it
        torch.mul(zc, zc, out=slope)
        if self.approximate == "none":  # Phi(z) + z phi(z)
            slope.mul_(-0.5).exp_().mul_(self.INV_SQRT_2PI).mul_(zc).add_(cdf)
        else:  # (1 + t) / 2 + z (1 - t^2) k (1 + 3 c z^2) / 2
            slope.mul_(3 * self.C).add_(1).mul_(zc).mul_(0.5 * self.K)
            t = cdf
            torch.mul(t, t, out=tmp)  # zc is used up
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

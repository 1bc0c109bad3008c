"""Layers of the NumPy engine. Each forward caches what its own backward needs.

Convention: a batch is a (B, features) array; ``backward(delta)`` takes dL/d(output) and
returns dL/d(input). Outputs live in buffers owned by the layer and reused while the batch
size stays the same, so a training step allocates nothing: an array a layer returns is
valid until that layer runs again (copy it to keep it). A layer keeps a reference to its
forward's input (or output) until backward: overwrite that array in between and backward
differentiates the new contents.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine_core.bookkeeping import LayerBase
from engine_core.checks import check_type, native, shape_of
from engine_core.errors import backward_before_forward_message
from engine_core.layer_checks import check_approximate, check_flag, check_negative_slope

from .checks import ARRAY_TYPE, check_delta, check_features


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

    def _unshared(self, x: np.ndarray) -> np.ndarray:
        """x, or a copy of x where it lies in one of this layer's own arrays or its parts' (its
        last output or dL/dx fed back in; a MultiheadAttention's output is its out_proj's buffer):
        the forward writes those buffers, and backward must see x as it came."""
        for _, module in self.named_modules():
            for value in module.__dict__.values():
                if value.__class__ is np.ndarray and np.may_share_memory(x, value):
                    return x.copy()
        return x

    def _exact_buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype, zero: bool = False) -> np.ndarray:
        """A reusable array of exactly this shape and dtype, reallocated when either changes (zeros
        when (re)allocated with zero=True): for layers whose inputs change in more than the batch size."""
        buf = self.__dict__.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
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
        # A new output array each forward instead of a reused buffer: MLP sets it on its last layer,
        # whose output the caller keeps (cheaper than copying a buffer).
        self.fresh_output = False
        self._ones = np.ones(0, dtype)

    def __repr__(self) -> str:
        extra = "" if self.has_bias else ", bias=False"
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}{extra})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """z (B, out) for x (B, in), (*, out) for x (*, in), of the layer's dtype; TypeError/ValueError
        otherwise."""
        if not self.input_trusted:
            x = self._unshared(check_features(x, self.in_features, self.weight.dtype, self))
        if x.ndim != 2:  # (*, in): torch.nn.Linear's other shapes
            return self._forward_rows(x)
        if self.fresh_output:
            z = np.dot(x, self.weight)
        else:
            z = np.dot(x, self.weight, out=self._buffer("_z", (x.shape[0], self.out_features), self.weight.dtype))
        if self.has_bias:
            z += self.bias
        self.x = x
        return z

    def backward(self, delta: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
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
        np.dot(x.T, delta, out=self.grad_weight)
        if self.has_bias:
            ones = self._ones if len(self._ones) == len(delta) else self._make_ones(delta)
            np.dot(ones, delta, out=self.grad_bias)  # sum over the batch, as one BLAS gemv
        if not input_grad:
            return None
        dx = self._buffer("_dx", (delta.shape[0], self.in_features), delta.dtype)
        return np.dot(delta, self.weight.T, out=dx)

    def _make_ones(self, like: np.ndarray) -> np.ndarray:
        self._ones = np.ones(len(like), like.dtype)
        return self._ones

    def _forward_rows(self, x: np.ndarray) -> np.ndarray:
        """z (*, out) for x (*, in): forward on the rows x.reshape(-1, in) (a view when x is
        contiguous). self.x keeps x's shape: backward takes its rows again, and the leading
        dimensions from it."""
        z = self.forward(x.reshape(-1, self.in_features))
        self.x = x
        return z.reshape(*x.shape[:-1], self.out_features)

    def _backward_rows(self, x: np.ndarray, delta: np.ndarray, input_grad: bool) -> np.ndarray | None:
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

    def local_parameters(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias} if self.has_bias else {"weight": self.weight}

    def local_gradients(self) -> dict[str, np.ndarray]:
        return {"weight": self.grad_weight, "bias": self.grad_bias} if self.has_bias else {"weight": self.grad_weight}


class Activation(Layer):
    """Elementwise a = f(z) on an input of any shape.

    ``_overwrite`` (never set by the user): f overwrites z and f'(z) overwrites delta, sparing two
    buffers. A Sequential turns it on only between two Linears, where it owns the arrays on both
    sides (the first Linear's output buffer, the second one's dL/dx buffer); anywhere else z or
    delta may be an array the caller, or a layer that differentiates its own output, still reads.
    The public ``inplace=True`` of ReLU, LeakyReLU and Dropout (torch's argument) does not turn it
    on: with it a layer computes exactly what it computes without it.
    """

    _overwrite = False

    def __init__(self) -> None:
        self.a: np.ndarray | None = None  # the last forward's output (what backward needs)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A reusable array of exactly this shape and dtype: an activation follows layers whose
        outputs change in more than the batch size (a Linear on (*, in), a convolution)."""
        buf = self.__dict__.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            setattr(self, name, buf)
        return buf

    def _out(self, name: str, like: np.ndarray) -> np.ndarray:
        return like if self._overwrite else self._buffer(name, like.shape, like.dtype)

    def _input(self, x: object) -> np.ndarray:
        """x as a float np.ndarray in native byte order; TypeError naming the layer otherwise."""
        if self.input_trusted:
            return x  # type: ignore[return-value]
        if x.__class__ is np.ndarray and x.dtype.isnative and x.dtype.kind == "f":  # type: ignore[attr-defined]
            return self._unshared(x)  # type: ignore[arg-type]
        check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
        array = native(x)  # type: ignore[arg-type]
        if array.dtype.kind != "f":
            raise TypeError(f"{self.describe()}: x: expected a floating-point array, got dtype {array.dtype}")
        return self._unshared(array)

    def _check_delta(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(delta, a): RuntimeError before any forward, ValueError/TypeError for a delta unlike a."""
        a = self.a
        if a is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's input)"))
        return (delta if self.delta_trusted else check_delta(self, delta, a.shape, a.dtype)), a


class Identity(Activation):
    """a = z; da/dz = 1."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._input(x)
        self.a = x
        return x

    def backward(self, delta: np.ndarray) -> np.ndarray:
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

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._input(x)
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
    """a = 1 / (1 + exp(-z)); da/dz = a (1 - a). At z = -inf, a = 0; at +inf, 1 (torch's values)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._input(x)
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
    """a = tanh(z); da/dz = 1 - a^2 (a = +-1, da/dz = 0 at z = +-inf)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._input(x)
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
        self._steep = abs(self.negative_slope) > 1
        self.slope: np.ndarray | None = None  # da/dz of the last forward

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope}{', inplace=True' if self.inplace else ''})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._input(x)
        slope = self._buffer("_slope", x.shape, x.dtype)
        np.less_equal(x, 0, out=slope)
        slope *= self.negative_slope  # the slope where z <= 0, else 0
        slope += np.greater(x, 0, out=self._buffer("_pos", x.shape, x.dtype))  # + 1 where z > 0 (exact: a term is 0)
        a = self._times(x, slope, self._out("_a", x))  # after the slope: when overwriting, a replaces x
        self.a, self.slope = a, slope
        return a

    def backward(self, delta: np.ndarray) -> np.ndarray:
        delta, _ = self._check_delta(delta)
        assert self.slope is not None  # _check_delta saw a forward
        return self._times(delta, self.slope, self._out("_dz", delta))

    def _times(self, values: np.ndarray, slope: np.ndarray, out: np.ndarray) -> np.ndarray:
        """values * slope into out. Only a slope steeper than 1 can take a finite number past the
        dtype's largest: the Inf torch gives too, not worth a RuntimeWarning."""
        if self._steep:
            with np.errstate(over="ignore"):
                return np.multiply(values, slope, out=out)
        return np.multiply(values, slope, out=out)


def _erf() -> Callable[..., np.ndarray]:
    """scipy.special.erf (NumPy has none), imported when first needed so that importing numpy_net
    stays fast; accurate to a few ulp in float64."""
    from scipy.special import erf

    return erf  # type: ignore[no-any-return]


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
        self._erf = _erf() if self.approximate == "none" else None
        self.z: np.ndarray | None = None  # the last forward's input (a copy when overwriting it)
        self.cdf: np.ndarray | None = None  # Phi(z); for the tanh form, t

    def __repr__(self) -> str:
        return f"GELU(approximate={self.approximate!r})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._input(x)
        if self._overwrite:  # a overwrites x: keep z for backward
            z = self._buffer("_z", x.shape, x.dtype)
            np.copyto(z, x)
        else:
            z = x
        cdf = self._buffer("_cdf", x.shape, x.dtype)
        a = self._out("_a", x)
        if self._erf is not None:  # Phi(z) = (1 + erf(z / sqrt 2)) / 2
            np.multiply(z, self.SQRT_HALF, out=cdf)
            self._erf(cdf, out=cdf)
            cdf += 1
            cdf *= 0.5
            share = cdf
        else:  # t = tanh(k zc (1 + c zc^2)), zc = z within +-LIMIT (t is +-1 beyond); share = (1 + t) / 2
            t = cdf  # the tanh form keeps t in this buffer
            zc = np.clip(z, -self.LIMIT, self.LIMIT, out=a)  # a is free until the last step
            np.multiply(zc, zc, out=t)
            t *= self.C
            t += 1
            t *= zc
            t *= self.K
            np.tanh(t, out=t)
            share = np.add(t, 1, out=self._buffer("_tmp", x.shape, x.dtype))
            share *= 0.5
        # a = z * share. The share is exactly 0 below -LIMIT, where -inf * 0 would be NaN: z is
        # clipped there (a = -0, as torch gives for any finite z down there).
        np.maximum(z, -self.LIMIT, out=a)
        a *= share
        self.a, self.z, self.cdf = a, z, cdf
        return a

    def backward(self, delta: np.ndarray) -> np.ndarray:
        delta, _ = self._check_delta(delta)
        z, cdf = self.z, self.cdf
        assert z is not None and cdf is not None  # _check_delta saw a forward
        slope = self._buffer("_slope", z.shape, z.dtype)
        tmp = self._buffer("_tmp", z.shape, z.dtype)
        zc = np.clip(z, -self.LIMIT, self.LIMIT, out=tmp)  # the terms below are 0 beyond it
        np.multiply(zc, zc, out=slope)
        if self._erf is not None:  # Phi(z) + z phi(z)
            slope *= -0.5
            np.exp(slope, out=slope)
            slope *= self.INV_SQRT_2PI
            slope *= zc
            slope += cdf
        else:  # (1 + t) / 2 + z (1 - t^2) k (1 + 3 c z^2) / 2
            slope *= 3 * self.C
            slope += 1
            slope *= zc
            slope *= 0.5 * self.K
            t = cdf
            np.multiply(t, t, out=tmp)  # zc is used up
            np.subtract(1, tmp, out=tmp)
            slope *= tmp
            np.add(t, 1, out=tmp)
            tmp *= 0.5
            slope += tmp
        return np.multiply(delta, slope, out=self._out("_dz", delta))


ACTIVATIONS: dict[str, type[Activation]] = {
    "identity": Identity,
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}

"""Convolution, pooling and flattening in NumPy: im2col and GEMMs, every derivative by hand.

Images are (B, C, H, W), as in torch. No Python loop runs over samples, channels or output
pixels; the only loops are over the kh*kw offsets of a kernel. Inside, Conv2d keeps its arrays
batch innermost: the zero-padded input as (C, H + 2 p_h, W + 2 p_w, B) and the im2col matrix as
(C kh kw, H_out W_out B), so the strided copies move runs of B (or W_out B) adjacent numbers and
each product is one GEMM over all samples and output pixels. Buffers are reused while the input
shape stays the same (a training step allocates nothing); an array a layer returns is valid until
that layer runs again. torch_net/conv.py is this file on tensors, class for class.

Notation: x the input, xp x zero-padded by p_h rows and p_w columns on each side, s the stride,
k the kernel size, delta = dL/d(output). Windows start at (s_h h, s_w w) of xp for output pixel
(h, w), h < H_out = floor((H + 2 p_h - k_h) / s_h) + 1 (torch's sizes, no ceil mode).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine_core.checks import check_dtype_name, check_type, native, shape_of
from engine_core.conv_checks import check_conv_args, check_flatten_facts, check_image_facts, check_pool_args
from engine_core.errors import backward_before_forward_message
from engine_core.windows import Pair, size_repr, window_offsets, windows_tile

from .checks import ARRAY_TYPE, check_delta
from .layers import Layer


class Windowed(Layer):
    """Base of the sliding-window layers: their input check. Their buffers are _exact_buffer's
    (an image layer's height and width may change between calls, not only the batch size)."""

    kernel_size: Pair = (1, 1)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    in_shape: tuple[int, ...] | None = None  # (B, C, H, W) of the last forward; None before any
    out_shape: tuple[int, int, int, int] = (0, 0, 0, 0)
    _dtype: np.dtype = np.dtype(np.float64)  # the last forward's dtype

    def _check_input(self, x: object, channels: int | None, dtype: np.dtype | None) -> np.ndarray:
        """x as a native-byte-order (B, C, H, W) array; sets in_shape and out_shape.

        Raises TypeError (not an ndarray, dtype) or ValueError (rank, channels, empty, smaller than
        the kernel), naming the layer (engine_core.conv_checks.check_image_facts).
        """
        if self.input_trusted:
            return x  # type: ignore[return-value]  # a tree validated it (engine_core.SequentialBase)
        if x.__class__ is np.ndarray and x.shape == self.in_shape and x.dtype == self._dtype:  # type: ignore[attr-defined]
            return x  # type: ignore[return-value]  # the shape the last forward validated
        check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
        array = native(x)  # type: ignore[arg-type]
        batch, same, out_h, out_w = check_image_facts(
            self.describe(), array.shape, array.dtype.name, channels, None if dtype is None else np.dtype(dtype).name,
            self.kernel_size, self.stride, self.padding)
        self.out_shape = (batch, getattr(self, "out_channels", same), out_h, out_w)
        self.in_shape, self._dtype = array.shape, array.dtype
        return array

    def _check_delta(self, delta: object) -> np.ndarray:
        """delta as a native array of the last forward output's shape and dtype: RuntimeError
        before any forward, ValueError/TypeError otherwise (no state changes)."""
        if self.in_shape is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's output)"))
        return delta if self.delta_trusted else check_delta(self, delta, self.out_shape, self._dtype)  # type: ignore[return-value]

    def _ones(self, size: int, dtype: np.dtype) -> np.ndarray:
        """A reusable vector of ``size`` ones."""
        ones = self.__dict__.get("_ones_buffer")
        if ones is None or ones.shape != (size,) or ones.dtype != dtype:
            ones = self._ones_buffer = np.ones(size, dtype)
        return ones


class Conv2d(Windowed):
    """z[b,o,h,w] = bias[o] + sum_{c,i,j} weight[o,c,i,j] xp[b,c, s_h h + i, s_w w + j];
    x (B, C_in, H, W), weight (C_out, C_in, kh, kw), bias (C_out,), z (B, C_out, H_out, W_out).

    As matrices: Z = W2 X, W2 = weight as (C_out, C_in kh kw), X[(c,i,j), (h,w,b)] =
    xp[b, c, s_h h + i, s_w w + j] (im2col). Backward, with D[o, (h,w,b)] = delta[b,o,h,w]:
    - dL/dweight = D X^T, i.e. dW[o,c,i,j] = sum_{b,h,w} delta[b,o,h,w] xp[b,c, s_h h + i, s_w w + j];
    - dL/dbias[o] = sum_{b,h,w} delta[b,o,h,w];
    - dL/dx: dX = W2^T D, then col2im: dxp[b,c, s_h h + i, s_w w + j] += dX[(c,i,j), (h,w,b)]
      for every offset (i, j) (overlapping windows add up), and dL/dx = dxp without its padding,
      dxp[:, :, p_h : p_h + H, p_w : p_w + W]. The stride spaces where each offset's gradient
      lands; input pixels that no window covers (stride > kernel, rows past the last window)
      get 0.

    Raises TypeError/ValueError for bad arguments (engine_core.conv_checks.check_conv_args) and,
    naming the layer, for an input that is not (B, C_in, H, W) of the layer's dtype or smaller
    than the kernel. The im2col matrix X is kept from the forward (a copy of x), so overwriting
    x between forward and backward does not change dL/dweight.
    """

    accepts_input_grad = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Pair, stride: int | Pair = 1,
                 padding: int | Pair = 0, bias: bool = True, dtype: str = "float32") -> None:
        (self.in_channels, self.out_channels, self.kernel_size, self.stride,
         self.padding) = check_conv_args(in_channels, out_channels, kernel_size, stride, padding)
        self.has_bias = bool(bias)
        kind = np.dtype(check_dtype_name(dtype))
        self.weight = np.zeros((self.out_channels, self.in_channels, *self.kernel_size), kind)
        self.bias = np.zeros(self.out_channels, kind)  # stays 0 and untrained with bias=False
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias)
        self.delta: np.ndarray | None = None  # dL/dz of the last backward
        self._cols: np.ndarray | None = None  # X of the last forward, (C_in, kh, kw, H_out, W_out, B)

    def __repr__(self) -> str:
        extra = "" if self.has_bias else ", bias=False"
        return (f"Conv2d(in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={size_repr(self.kernel_size)}, stride={size_repr(self.stride)}, "
                f"padding={size_repr(self.padding)}{extra})")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """z (B, C_out, H_out, W_out) for x (B, C_in, H, W) of the layer's dtype."""
        x = self._check_input(x, self.in_channels, self.weight.dtype)
        batch, channels, height, width = x.shape
        _, out_channels, out_h, out_w = self.out_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        dtype = self.weight.dtype
        # xp, batch innermost; its border is zero from the allocation and never written.
        xp = self._exact_buffer("_xp", (channels, height + 2 * ph, width + 2 * pw, batch), dtype, zero=True)
        np.copyto(xp[:, ph : ph + height, pw : pw + width], x.transpose(1, 2, 3, 0))
        # im2col: windows[c, h, w, b, i, j] = xp[c, s_h h + i, s_w w + j, b], copied as X.
        windows = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
        cols = self._exact_buffer("_cols", (channels, kh, kw, out_h, out_w, batch), dtype)
        np.copyto(cols, windows.transpose(0, 4, 5, 1, 2, 3))
        self._cols = cols
        # Z = W2 X: one GEMM, (C_out, C_in kh kw) x (C_in kh kw, H_out W_out B).
        zt = self._exact_buffer("_zt", (out_channels, out_h, out_w, batch), dtype)
        np.matmul(self.weight.reshape(out_channels, -1), cols.reshape(-1, out_h * out_w * batch),
                  out=zt.reshape(out_channels, -1))
        z = self._exact_buffer("_z", (batch, out_channels, out_h, out_w), dtype)
        if self.has_bias:
            np.add(zt.transpose(3, 0, 1, 2), self.bias.reshape(-1, 1, 1), out=z)
        else:
            np.copyto(z, zt.transpose(3, 0, 1, 2))
        return z

    def backward(self, delta: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """grad_weight = D X^T; grad_bias = sum of delta over (b, h, w); returns col2im(W2^T D)
        without the padding, (B, C_in, H, W).

        ``input_grad=False`` skips dL/dx, which a training step never needs for the first layer.
        Raises RuntimeError before any forward, ValueError/TypeError for a delta that is not the
        last output's shape and dtype; a refused call changes no gradient.
        """
        delta = self._check_delta(delta)
        self.delta = delta
        batch, channels, height, width = self.in_shape  # type: ignore[misc]
        _, out_channels, out_h, out_w = self.out_shape
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        dtype = self.weight.dtype
        columns = out_h * out_w * batch
        dt = self._exact_buffer("_dt", (out_channels, out_h, out_w, batch), dtype)
        np.copyto(dt, delta.transpose(1, 2, 3, 0))  # D, batch innermost like X
        d = dt.reshape(out_channels, columns)
        cols = self._cols.reshape(-1, columns)  # type: ignore[union-attr]
        # D X^T, computed as (X D^T)^T: both GEMM operands are then read along their long axis.
        gwt = self._exact_buffer("_gwt", (cols.shape[0], out_channels), dtype)
        np.matmul(cols, d.T, out=gwt)
        np.copyto(self.grad_weight.reshape(out_channels, -1), gwt.T)
        if self.has_bias:
            np.matmul(d, self._ones(columns, dtype), out=self.grad_bias)  # sum over (h, w, b), as one BLAS gemv
        if not input_grad:
            return None
        dcols = self._exact_buffer("_dcols", (channels, kh, kw, out_h, out_w, batch), dtype)
        np.matmul(self.weight.reshape(out_channels, -1).T, d, out=dcols.reshape(-1, columns))
        # col2im: every offset (i, j) adds its (C, H_out, W_out, B) slab at stride s.
        dxp = self._exact_buffer("_dxp", (channels, height + 2 * ph, width + 2 * pw, batch), dtype)
        dxp.fill(0)
        for i, j, rows, cols_ in window_offsets(self.kernel_size, self.stride, (out_h, out_w)):
            target = dxp[:, rows, cols_]
            np.add(target, dcols[:, i, j], out=target)
        dx = self._exact_buffer("_dx", (batch, channels, height, width), dtype)
        np.copyto(dx, dxp[:, ph : ph + height, pw : pw + width].transpose(3, 0, 1, 2))  # crop the padding
        return dx

    def local_parameters(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias} if self.has_bias else {"weight": self.weight}

    def local_gradients(self) -> dict[str, np.ndarray]:
        return {"weight": self.grad_weight, "bias": self.grad_bias} if self.has_bias else {"weight": self.grad_weight}


class MaxPool2d(Windowed):
    """y[b,c,h,w] = max_{i,j} x[b,c, s_h h + i, s_w w + j]; x (B, C, H, W), y (B, C, H_out, W_out);
    stride defaults to the kernel size.

    Backward: dL/dx[b,c,u,v] = sum over the windows (b,c,h,w) whose arg-max is (u, v) of
    delta[b,c,h,w]: each window's gradient goes to one input, its maximum, and overlapping
    windows (stride < kernel) add up. Ties go to the first maximum in the window in row-major
    order (smallest i, then smallest j), the element torch's max_pool2d picks (its kernels keep a
    running maximum replaced only by a strictly greater value). Inputs are expected finite (a
    window holding NaN passes no gradient).

    Raises TypeError/ValueError for bad arguments and, naming the layer, for an input that is not
    a float32/float64 (B, C, H, W) array at least as large as the kernel.
    """

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None) -> None:
        self.kernel_size, self.stride = check_pool_args(kernel_size, stride)
        self.winner: np.ndarray | None = None  # (kh kw, B, C, H_out, W_out): the arg-max of each window

    def __repr__(self) -> str:
        return f"MaxPool2d(kernel_size={size_repr(self.kernel_size)}, stride={size_repr(self.stride)})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y (B, C, H_out, W_out), x's dtype."""
        x = self._check_input(x, None, None)
        batch, channels, _, _ = x.shape
        _, _, out_h, out_w = self.out_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        area = kh * kw
        # cols[o] = the o-th element (row-major) of every window: one strided copy.
        windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        cols = self._exact_buffer("_cols", (kh, kw, batch, channels, out_h, out_w), x.dtype)
        np.copyto(cols, windows.transpose(4, 5, 0, 1, 2, 3))
        cols = cols.reshape(area, batch, channels, out_h, out_w)
        y = self._exact_buffer("_y", self.out_shape, x.dtype)
        np.max(cols, axis=0, out=y)
        # winner[o]: cols[o] is the window's maximum and no earlier element was.
        winner = self._exact_buffer("_winner", (area, batch, channels, out_h, out_w), np.dtype(bool))
        taken = self._exact_buffer("_taken", self.out_shape, np.dtype(bool))
        np.equal(cols[0], y, out=winner[0])
        np.copyto(taken, winner[0])
        for o in range(1, area):
            np.equal(cols[o], y, out=winner[o])
            np.greater(winner[o], taken, out=winner[o])  # a and not b, on booleans
            if o < area - 1:
                np.logical_or(taken, winner[o], out=taken)
        self.winner = winner
        return y

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """dL/dx (B, C, H, W): delta routed to each window's arg-max."""
        delta = self._check_delta(delta)
        winner = self.winner
        assert winner is not None
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        dx = self._exact_buffer("_dx", self.in_shape, delta.dtype)  # type: ignore[arg-type]
        overlapping = sh < kh or sw < kw
        if not windows_tile(self.kernel_size, self.stride, dx.shape[2:], self.out_shape[2:]):
            # Some pixels are in no window (they get 0) or in several (their shares add up).
            dx.fill(0)
        routed = self._exact_buffer("_routed", self.out_shape, delta.dtype) if overlapping else None
        for o, (_, _, rows, cols) in enumerate(window_offsets(self.kernel_size, self.stride, self.out_shape[2:])):
            target = dx[:, :, rows, cols]
            if routed is None:  # windows do not overlap: each input pixel gets at most one value
                np.multiply(delta, winner[o], out=target)
            else:
                np.multiply(delta, winner[o], out=routed)
                np.add(target, routed, out=target)
        return dx


class AvgPool2d(Windowed):
    """y[b,c,h,w] = (1 / (kh kw)) sum_{i,j} x[b,c, s_h h + i, s_w w + j]; x (B, C, H, W),
    y (B, C, H_out, W_out); stride defaults to the kernel size; no padding.

    Backward: dL/dx[b,c,u,v] = (1 / (kh kw)) sum over the windows (b,c,h,w) that contain (u, v)
    of delta[b,c,h,w] (pixels in no window get 0).

    Raises TypeError/ValueError for bad arguments and, naming the layer, for an input that is not
    a float32/float64 (B, C, H, W) array at least as large as the kernel.
    """

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None) -> None:
        self.kernel_size, self.stride = check_pool_args(kernel_size, stride)

    def __repr__(self) -> str:
        return f"AvgPool2d(kernel_size={size_repr(self.kernel_size)}, stride={size_repr(self.stride)})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y (B, C, H_out, W_out), x's dtype: the window sums, offset by offset, over kh kw."""
        x = self._check_input(x, None, None)
        y = self._exact_buffer("_y", self.out_shape, x.dtype)
        offsets = window_offsets(self.kernel_size, self.stride, self.out_shape[2:])
        for o, (_, _, rows, cols) in enumerate(offsets):  # row-major, the order torch sums in
            if o == 0:
                np.copyto(y, x[:, :, rows, cols])
            else:
                np.add(y, x[:, :, rows, cols], out=y)
        np.divide(y, len(offsets), out=y)
        return y

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """dL/dx (B, C, H, W): delta / (kh kw) spread over every window."""
        delta = self._check_delta(delta)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        share = self._exact_buffer("_share", self.out_shape, delta.dtype)
        np.divide(delta, kh * kw, out=share)
        dx = self._exact_buffer("_dx", self.in_shape, delta.dtype)  # type: ignore[arg-type]
        dx.fill(0)
        overlapping = sh < kh or sw < kw
        for _, _, rows, cols in window_offsets(self.kernel_size, self.stride, self.out_shape[2:]):
            target = dx[:, :, rows, cols]
            if overlapping:
                np.add(target, share, out=target)
            else:
                np.copyto(target, share)
        return dx


class Flatten(Layer):
    """y = x.reshape(B, prod(rest)); x (B, ...) with at least 2 dimensions. Backward: dL/dx =
    delta.reshape(x's shape). Both are views when the array is contiguous (no copy).

    Raises TypeError/ValueError, naming the layer, for an input that is not a float32/float64
    array of at least 2 dimensions with a non-empty batch.
    """

    def __init__(self) -> None:
        self.in_shape: tuple[int, ...] | None = None
        self.out_shape: tuple[int, int] = (0, 0)
        self._dtype = np.dtype(np.float64)

    def forward(self, x: np.ndarray) -> np.ndarray:
        known = self.input_trusted or (
            x.__class__ is np.ndarray and x.shape == self.in_shape and x.dtype == self._dtype)
        if not known:
            check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
            x = native(x)
            self.out_shape = check_flatten_facts(self.describe(), x.shape, x.dtype.name)
            self.in_shape, self._dtype = x.shape, x.dtype
        return x.reshape(self.out_shape)

    def backward(self, delta: np.ndarray) -> np.ndarray:
        if self.in_shape is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(batch, features)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, self.out_shape, self._dtype)
        return delta.reshape(self.in_shape)

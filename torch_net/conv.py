"""Convolution, pooling and flattening on tensors: numpy_net/conv.py class for class, no autograd.

Images are (B, C, H, W). Nothing sets requires_grad; every backward is written here from forward
primitives only (conv2d, conv_transpose2d, strided copies and adds), never autograd or
torch.nn.grad. Conv2d runs its sums through torch's convolution kernels (conv2d forward; conv2d
and conv_transpose2d backward): measured on LeNet's shapes (batch 64) they beat numpy_net's im2col
copy plus GEMM on tensors. MaxPool2d is numpy_net's algorithm on tensors, its first-maximum masks
held as 0/1 floats instead of booleans (window copy, masks and routing beat torch's max_pool2d
with indices on the CPU, 2-3x at LeNet's shapes);
AvgPool2d's forward is torch's avg_pool2d (the same row-major window sums), its backward numpy_net's.

Notation as in numpy_net/conv.py: x the input, xp x zero-padded by p_h rows and p_w columns on
each side, s the stride, k the kernel size, delta = dL/d(output); output pixel (h, w) reads the
window at (s_h h, s_w w) of xp, h < H_out = floor((H + 2 p_h - k_h) / s_h) + 1.
"""

from __future__ import annotations

import torch
from torch.nn import functional

from engine_core.checks import check_dtype_name, check_type, shape_of
from engine_core.conv_checks import check_conv_args, check_flatten_facts, check_image_facts, check_pool_args
from engine_core.errors import backward_before_forward_message
from engine_core.windows import Pair, size_repr, window_offsets, windows_tile

from .checks import ARRAY_TYPE, check_delta, check_device, dtype_name
from .layers import Layer


class Windowed(Layer):
    """Base of the sliding-window layers: their input check. Their buffers are _exact_buffer's
    (an image layer's height and width may change between calls, not only the batch size)."""

    kernel_size: Pair = (1, 1)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    in_shape: tuple[int, ...] | None = None  # (B, C, H, W) of the last forward; None before any
    out_shape: tuple[int, int, int, int] = (0, 0, 0, 0)
    _dtype: torch.dtype = torch.float64  # the last forward's dtype

    def _check_input(self, x: object, channels: int | None, dtype: torch.dtype | None,
                     device: torch.device | None = None) -> torch.Tensor:
        """x as a (B, C, H, W) tensor; sets in_shape and out_shape.

        Raises TypeError (not a tensor, dtype) or ValueError (rank, channels, empty, smaller than
        the kernel, device), naming the layer (engine_core.conv_checks.check_image_facts).
        """
        if self.input_trusted:
            return x  # type: ignore[return-value]  # a tree validated it (engine_core.SequentialBase)
        if x.__class__ is torch.Tensor and x.shape == self.in_shape and x.dtype == self._dtype:  # type: ignore[attr-defined]
            if device is None or x.device == device:  # type: ignore[attr-defined]
                return x  # type: ignore[return-value]  # the shape the last forward validated
        check_type(f"{self.describe()}: x", x, torch.Tensor, ARRAY_TYPE)
        tensor: torch.Tensor = x  # type: ignore[assignment]
        batch, same, out_h, out_w = check_image_facts(
            self.describe(), shape_of(tensor), dtype_name(tensor.dtype), channels,
            None if dtype is None else dtype_name(dtype), self.kernel_size, self.stride, self.padding)
        if device is not None:
            check_device(f"{self.describe()}: x", tensor, device)
        self.out_shape = (batch, getattr(self, "out_channels", same), out_h, out_w)
        self.in_shape, self._dtype = shape_of(tensor), tensor.dtype
        return tensor

    def _check_delta(self, delta: object) -> torch.Tensor:
        """delta of the last forward output's shape and dtype: RuntimeError before any forward,
        ValueError/TypeError otherwise (no state changes)."""
        if self.in_shape is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's output)"))
        return delta if self.delta_trusted else check_delta(self, delta, self.out_shape, self._dtype)  # type: ignore[return-value]


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

    Here the same sums run through torch's convolution kernels: dW[o,c,i,j] is, read with c as
    the batch and b as the channel, conv2d(x^T, delta^T, padding=p, dilation=s)[c,o,i,j] (the
    delta is the kernel, its taps s apart; outputs past (kh, kw) are dropped), and col2im(W2^T D)
    cropped is conv_transpose2d(delta, weight, stride=s, padding=p, output_padding=(H + 2p - k)
    mod s), the adjoint of the forward (output_padding restores the rows the forward's floor lost).

    Raises TypeError/ValueError for bad arguments (engine_core.conv_checks.check_conv_args) and,
    naming the layer, for an input that is not (B, C_in, H, W) of the layer's dtype and device or
    smaller than the kernel. The forward's x is kept for dL/dweight (overwrite it before backward
    and dL/dweight follows the new contents).
    """

    accepts_input_grad = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Pair, stride: int | Pair = 1,
                 padding: int | Pair = 0, bias: bool = True, dtype: str = "float32",
                 device: str | torch.device = "cpu") -> None:
        (self.in_channels, self.out_channels, self.kernel_size, self.stride,
         self.padding) = check_conv_args(in_channels, out_channels, kernel_size, stride, padding)
        self.has_bias = bool(bias)
        kind = getattr(torch, check_dtype_name(dtype))
        self.weight = torch.zeros((self.out_channels, self.in_channels, *self.kernel_size), dtype=kind, device=device)
        self.bias = torch.zeros(self.out_channels, dtype=kind, device=device)  # stays 0 and untrained with bias=False
        self.grad_weight = torch.zeros_like(self.weight)
        self.grad_bias = torch.zeros_like(self.bias)
        self.delta: torch.Tensor | None = None  # dL/dz of the last backward
        self.x: torch.Tensor | None = None  # input of the last forward, for grad_weight

    def __repr__(self) -> str:
        extra = "" if self.has_bias else ", bias=False"
        return (f"Conv2d(in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={size_repr(self.kernel_size)}, stride={size_repr(self.stride)}, "
                f"padding={size_repr(self.padding)}{extra})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """z (B, C_out, H_out, W_out) for x (B, C_in, H, W) of the layer's dtype and device."""
        x = self._check_input(x, self.in_channels, self.weight.dtype, self.weight.device)
        self.x = x
        return functional.conv2d(x, self.weight, self.bias if self.has_bias else None, self.stride, self.padding)

    def backward(self, delta: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        """grad_weight = D X^T; grad_bias = sum of delta over (b, h, w); returns col2im(W2^T D)
        without the padding, (B, C_in, H, W).

        ``input_grad=False`` skips dL/dx, which a training step never needs for the first layer.
        Raises RuntimeError before any forward, ValueError/TypeError for a delta that is not the
        last output's shape and dtype; a refused call changes no gradient.
        """
        delta = self._check_delta(delta)
        self.delta = delta
        x = self.x
        assert x is not None
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        # D X^T: the sum over (b, h, w) of delta[b,o,h,w] xp[b,c, s_h h + i, s_w w + j] for all
        # (o, c, i, j) at once, as a convolution of x (batch and channels swapped) by delta.
        sums = functional.conv2d(x.transpose(0, 1), delta.transpose(0, 1), None, 1, self.padding, self.stride)
        self.grad_weight.copy_(sums[:, :, :kh, :kw].transpose(0, 1))
        if self.has_bias:
            torch.sum(delta, dim=(0, 2, 3), out=self.grad_bias)
        if not input_grad:
            return None
        _, _, height, width = x.shape
        lost = ((height + 2 * ph - kh) % sh, (width + 2 * pw - kw) % sw)  # rows/columns no window reached
        return functional.conv_transpose2d(delta, self.weight, None, self.stride, self.padding, lost)

    def local_parameters(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "bias": self.bias} if self.has_bias else {"weight": self.weight}

    def local_gradients(self) -> dict[str, torch.Tensor]:
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
    a float32/float64 (B, C, H, W) tensor at least as large as the kernel.
    """

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None) -> None:
        self.kernel_size, self.stride = check_pool_args(kernel_size, stride)
        self.winner: torch.Tensor | None = None  # (kh kw, B, C, H_out, W_out): 1 at each window's arg-max, else 0

    def __repr__(self) -> str:
        return f"MaxPool2d(kernel_size={size_repr(self.kernel_size)}, stride={size_repr(self.stride)})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y (B, C, H_out, W_out), x's dtype."""
        x = self._check_input(x, None, None)
        batch, channels, _, _ = x.shape
        _, _, out_h, out_w = self.out_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        area = kh * kw
        # cols[o] = the o-th element (row-major) of every window: one strided copy.
        windows = x.unfold(2, kh, sh).unfold(3, kw, sw)
        cols = self._exact_buffer("_cols", (kh, kw, batch, channels, out_h, out_w), x)
        cols.copy_(windows.permute(4, 5, 0, 1, 2, 3))
        cols = cols.view(area, batch, channels, out_h, out_w)
        y = self._exact_buffer("_y", self.out_shape, x)
        torch.amax(cols, dim=0, out=y)
        # winner[o]: cols[o] is the window's maximum and no earlier element was. Kept as 0/1 in
        # x's dtype, not as booleans (numpy_net's masks): this torch's comparisons are 4-5x slower
        # into a bool tensor than into a float one, and its float-by-bool multiply (backward) 2-4x.
        winner = self._exact_buffer("_winner", (area, batch, channels, out_h, out_w), x)
        taken = self._exact_buffer("_taken", self.out_shape, x)
        torch.eq(cols[0], y, out=winner[0])
        taken.copy_(winner[0])
        for o in range(1, area):
            torch.eq(cols[o], y, out=winner[o])
            torch.gt(winner[o], taken, out=winner[o])  # a and not b, on 0/1 values
            if o < area - 1:
                taken += winner[o]  # stays 0/1: winner[o] is 1 only where taken is 0
        self.winner = winner
        return y

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        """dL/dx (B, C, H, W): delta routed to each window's arg-max."""
        delta = self._check_delta(delta)
        winner = self.winner
        assert winner is not None
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        dx = self._exact_buffer("_dx", self.in_shape, delta)  # type: ignore[arg-type]
        overlapping = sh < kh or sw < kw
        if not windows_tile(self.kernel_size, self.stride, dx.shape[2:], self.out_shape[2:]):
            # Some pixels are in no window (they get 0) or in several (their shares add up).
            dx.zero_()
        routed = self._exact_buffer("_routed", self.out_shape, delta) if overlapping else None
        for o, (_, _, rows, cols) in enumerate(window_offsets(self.kernel_size, self.stride, self.out_shape[2:])):
            target = dx[:, :, rows, cols]
            if routed is None:  # windows do not overlap: each input pixel gets at most one value
                torch.mul(delta, winner[o], out=target)
            else:
                torch.mul(delta, winner[o], out=routed)
                target.add_(routed)
        return dx


class AvgPool2d(Windowed):
    """y[b,c,h,w] = (1 / (kh kw)) sum_{i,j} x[b,c, s_h h + i, s_w w + j]; x (B, C, H, W),
    y (B, C, H_out, W_out); stride defaults to the kernel size; no padding.

    Backward: dL/dx[b,c,u,v] = (1 / (kh kw)) sum over the windows (b,c,h,w) that contain (u, v)
    of delta[b,c,h,w] (pixels in no window get 0).

    Raises TypeError/ValueError for bad arguments and, naming the layer, for an input that is not
    a float32/float64 (B, C, H, W) tensor at least as large as the kernel.
    """

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None) -> None:
        self.kernel_size, self.stride = check_pool_args(kernel_size, stride)

    def __repr__(self) -> str:
        return f"AvgPool2d(kernel_size={size_repr(self.kernel_size)}, stride={size_repr(self.stride)})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y (B, C, H_out, W_out), x's dtype: torch's avg_pool2d (window sums over kh kw)."""
        x = self._check_input(x, None, None)
        return functional.avg_pool2d(x, self.kernel_size, self.stride)

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        """dL/dx (B, C, H, W): delta / (kh kw) spread over every window."""
        delta = self._check_delta(delta)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        share = self._exact_buffer("_share", self.out_shape, delta)
        torch.div(delta, kh * kw, out=share)
        dx = self._exact_buffer("_dx", self.in_shape, delta)  # type: ignore[arg-type]
        dx.zero_()
        overlapping = sh < kh or sw < kw
        for _, _, rows, cols in window_offsets(self.kernel_size, self.stride, self.out_shape[2:]):
            target = dx[:, :, rows, cols]
            if overlapping:
                target.add_(share)
            else:
                target.copy_(share)
        return dx


class Flatten(Layer):
    """y = x.reshape(B, prod(rest)); x (B, ...) with at least 2 dimensions. Backward: dL/dx =
    delta.reshape(x's shape). Both are views when the tensor is contiguous (no copy).

    Raises TypeError/ValueError, naming the layer, for an input that is not a float32/float64
    tensor of at least 2 dimensions with a non-empty batch.
    """

    def __init__(self) -> None:
        self.in_shape: tuple[int, ...] | None = None
        self.out_shape: tuple[int, int] = (0, 0)
        self._dtype = torch.float64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        known = self.input_trusted or (
            x.__class__ is torch.Tensor and x.shape == self.in_shape and x.dtype == self._dtype)
        if not known:
            check_type(f"{self.describe()}: x", x, torch.Tensor, ARRAY_TYPE)
            self.out_shape = check_flatten_facts(self.describe(), shape_of(x), dtype_name(x.dtype))
            self.in_shape, self._dtype = shape_of(x), x.dtype
        return x.reshape(self.out_shape)

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        if self.in_shape is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(batch, features)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, self.out_shape, self._dtype)
        return delta.reshape(self.in_shape)

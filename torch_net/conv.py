"""Convolution, pooling and flattening on tensors: numpy_net/conv.py class for class, no autograd.

Images are (B, C, H, W). Nothing sets requires_grad; every backward is written here from forward
primitives only (conv2d, conv_transpose2d, strided copies and adds), never autograd or
torch.nn.grad. Conv2d runs its sums through torch's convolution kernels (conv2d forward; conv2d
and conv_transpose2d backward): measured on LeNet's shapes (batch 64) they beat numpy_net's im2col
copy plus GEMM on tensors. MaxPool2d is numpy_net's algorithm on tensors, its first-maximum masks
held as 0/1 floats instead of booleans (window copy, masks and routing beat torch's max_pool2d
with indices on the CPU, 2-3x at LeNet's shapes), the same padding with -inf, dilation, ceil_mode
and NaN rule (a window holding NaN sends its gradient to its last NaN, as torch's kernels do);
AvgPool2d's forward is torch's avg_pool2d (the same row-major window sums, the same divisors), its
backward numpy_net's.

Notation as in numpy_net/conv.py: x the input; xp x zero-padded by top/bottom rows and left/right
columns; s the stride, d the dilation, k the kernel size, delta = dL/d(output); output pixel
(h, w) reads xp at (s_h h + d_h i, s_w w + d_w j) for the kernel offsets (i, j), h < H_out =
floor((H + top + bottom - d_h (k_h - 1) - 1) / s_h) + 1 (engine_core.windows).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional

from engine_core.checks import check_dtype_name, check_type, shape_of
from engine_core.conv_checks import (
    check_avgpool_args,
    check_conv_args,
    check_flatten_args,
    check_flatten_facts,
    check_image_facts,
    check_maxpool_args,
    check_pool_windows,
)
from engine_core.errors import backward_before_forward_message
from engine_core.windows import Pads, Pair, Windows

from .checks import ARRAY_TYPE, check_delta, check_device, compiling, dtype_name
from .layers import Layer


class Windowed(Layer):
    """Base of the sliding-window layers: their input check. Their buffers are _exact_buffer's
    (an image layer's height and width may change between calls, not only the batch size)."""

    windows: Windows = Windows((1, 1), (1, 1))  # the layer's window geometry (engine_core.windows)
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
            None if dtype is None else dtype_name(dtype), self.windows)
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
    """z[b,o,h,w] = bias[o] + sum_{c,i,j} weight[o,c,i,j] xp[b, g C_g + c, s_h h + d_h i, s_w w + d_w j],
    g = o // (C_out / G) the group of output channel o; x (B, C_in, H, W), weight (C_out, C_g, kh,
    kw) with C_g = C_in / G input channels a group, bias (C_out,), z (B, C_out, H_out, W_out).

    G = groups splits the channels in G blocks: group g's C_out / G outputs see only its C_g inputs
    (G = 1: every output sees every input; G = C_in: a depthwise convolution). d = dilation spaces
    a window's elements. xp is x padded with zeros: p rows/columns on each side for an int or pair
    p, none for "valid", and for "same" (stride 1) d (k - 1) in all per axis, half before (rounded
    down) and the rest after, so an even kernel's extra row goes at the bottom and its extra column
    on the right (torch.nn.Conv2d's documentation page and rule).

    As matrices, one per group: Z_g = W_g X_g, W_g = group g's rows of the weight as (C_out / G,
    C_g kh kw), X_g[(c,i,j), (h,w,b)] = xp[b, g C_g + c, s_h h + d_h i, s_w w + d_w j] (im2col).
    Backward, with D_g[o, (h,w,b)] = delta[b, g C_out / G + o, h, w]:
    - dL/dW_g = D_g X_g^T, i.e. dW[o,c,i,j] = sum_{b,h,w} delta[b,o,h,w] xp[b, g C_g + c, s_h h + d_h i, s_w w + d_w j];
    - dL/dbias[o] = sum_{b,h,w} delta[b,o,h,w];
    - dL/dx: dX_g = W_g^T D_g, then col2im: dxp[b, g C_g + c, s_h h + d_h i, s_w w + d_w j] +=
      dX_g[(c,i,j), (h,w,b)] for every offset (i, j) (overlapping windows add up), and dL/dx = dxp
      without its padding, dxp[:, :, top : top + H, left : left + W]. The stride spaces where each
      offset's gradient lands and the dilation shifts it; input pixels that no window covers
      (stride > dilated kernel, rows past the last window) get 0.

    Here the same sums run through torch's convolution kernels. dW[o,c,i,j] is a convolution of
    xp by delta: read xp with c as the batch and (g, b) as the channels, xg[c, g B + b] = xp[b,
    g C_g + c], and delta with o as the batch and b as the channel; then conv2d(xg, delta^T,
    stride=d, dilation=s, groups=G)[c,o,i,j] = sum_{b,h,w} xg[c, g B + b, d_h i + s_h h, d_w j +
    s_w w] delta[b,o,h,w] (the delta is the kernel, its taps s apart; its groups pair output
    channel o with its own group's inputs; outputs past (kh, kw) are dropped). col2im(W_g^T D_g)
    is conv_transpose2d(delta, weight, stride=s, dilation=d, groups=G), the adjoint of the
    forward, cropped to [top : top + H, left : left + W]; with equal padding on both sides torch
    crops it (padding=p, and output_padding = (H + 2p - d (k - 1) - 1) mod s restores the rows
    the forward's floor lost). torch's conv2d pads both sides alike, so padding="same" with an
    even d (k - 1) pads x explicitly (functional.pad) before the convolutions.

    Raises TypeError/ValueError for bad arguments (engine_core.conv_checks.check_conv_args: groups
    dividing both channel counts, "same" only with stride 1, padding_mode "zeros" only) and,
    naming the layer, for an input that is not (B, C_in, H, W) of the layer's dtype and device or
    smaller than the (dilated) kernel. The forward's x is kept for dL/dweight (overwrite it before
    backward and dL/dweight follows the new contents).
    """

    accepts_input_grad = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Pair, stride: int | Pair = 1,
                 padding: int | Pair | str = 0, dilation: int | Pair = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", dtype: str = "float32", device: str | torch.device = "cpu") -> None:
        args = check_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode)
        self._args = args
        self.in_channels, self.out_channels, self.groups = args.in_channels, args.out_channels, args.groups
        self.kernel_size, self.stride, self.dilation = args.kernel_size, args.stride, args.dilation
        self.padding, self.padding_mode = args.padding, args.padding_mode  # padding as given: a pair, "valid", "same"
        self.windows = args.windows  # padding resolved to ((top, bottom), (left, right))
        self.has_bias = bool(bias)
        kind = getattr(torch, check_dtype_name(dtype))
        self.weight = torch.zeros((self.out_channels, self.in_channels // self.groups, *self.kernel_size), dtype=kind,
                                  device=device)
        self.bias = torch.zeros(self.out_channels, dtype=kind, device=device)  # stays 0 and untrained with bias=False
        self.grad_weight = torch.zeros_like(self.weight)
        self.grad_bias = torch.zeros_like(self.bias)
        self.delta: torch.Tensor | None = None  # dL/dz of the last backward
        self.x: torch.Tensor | None = None  # input of the last forward, for grad_weight

    def __repr__(self) -> str:
        return f"Conv2d({self._args.extra_repr(self.has_bias)})"

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, Pair]:
        """(x, (p_h, p_w)) for torch's conv2d, which pads both sides alike; with unequal padding
        (padding="same", even d (k - 1)) x padded explicitly and (0, 0)."""
        (top, bottom), (left, right) = self.windows.pads
        if top == bottom and left == right:
            return x, (top, left)
        return functional.pad(x, (left, right, top, bottom)), (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """z (B, C_out, H_out, W_out) for x (B, C_in, H, W) of the layer's dtype and device."""
        x = self._check_input(x, self.in_channels, self.weight.dtype, self.weight.device)
        self.x = x
        xp, padding = self._padded(x)
        return functional.conv2d(xp, self.weight, self.bias if self.has_bias else None, self.windows.stride, padding,
                                 self.windows.dilation, self.groups)

    def backward(self, delta: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        """grad_weight = D_g X_g^T per group; grad_bias = sum of delta over (b, h, w); returns
        col2im(W_g^T D_g) without the padding, (B, C_in, H, W).

        ``input_grad=False`` skips dL/dx, which a training step never needs for the first layer.
        Raises RuntimeError before any forward, ValueError/TypeError for a delta that is not the
        last output's shape and dtype; a refused call changes no gradient.
        """
        delta = self._check_delta(delta)
        self.delta = delta
        x = self.x
        assert x is not None
        windows, groups = self.windows, self.groups
        (kh, kw), stride, dilation = windows.kernel, windows.stride, windows.dilation
        batch, channels, height, width = x.shape
        xp, padding = self._padded(x)
        # D_g X_g^T: the sum over (b, h, w) of delta[b,o,h,w] xp[b, g C_g + c, s_h h + d_h i, s_w w + d_w j]
        # for all (o, c, i, j) at once, as a grouped convolution of xg (a view when G = 1) by delta.
        xg = (xp.reshape(batch, groups, channels // groups, *xp.shape[2:]).permute(2, 1, 0, 3, 4)
              .reshape(channels // groups, groups * batch, *xp.shape[2:]))
        sums = functional.conv2d(xg, delta.transpose(0, 1), None, dilation, padding, stride, groups)
        self.grad_weight.copy_(sums[:, :, :kh, :kw].transpose(0, 1))
        if self.has_bias:
            torch.sum(delta, dim=(0, 2, 3), out=self.grad_bias)
        if not input_grad:
            return None
        # The adjoint of the forward: the rows/columns of xp past its last window's end get
        # output_padding (at most s - 1 of them), then the padding is cropped.
        (top, bottom), (left, right) = windows.pads
        _, _, out_h, out_w = delta.shape
        reach = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip((out_h, out_w), stride, dilation, (kh, kw))]
        if xp is x:  # equal padding on both sides: conv_transpose2d crops it (padding=p)
            lost = (height + top + bottom - reach[0], width + left + right - reach[1])
            return functional.conv_transpose2d(delta, self.weight, None, stride, padding, lost, groups, dilation)
        lost = (max(0, top + height - reach[0]), max(0, left + width - reach[1]))  # only rows the crop keeps
        dxp = functional.conv_transpose2d(delta, self.weight, None, stride, 0, lost, groups, dilation)
        return dxp[:, :, top : top + height, left : left + width].contiguous()

    def local_parameters(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "bias": self.bias} if self.has_bias else {"weight": self.weight}

    def local_gradients(self) -> dict[str, torch.Tensor]:
        return {"weight": self.grad_weight, "bias": self.grad_bias} if self.has_bias else {"weight": self.grad_weight}


def _bordered(xp: torch.Tensor | None, x: torch.Tensor, pads: Pads, padded_hw: Pair, fill: float) -> torch.Tensor:
    """x copied into a pooling layer's (B, C, *padded_hw) buffer xp, whose border (the padding, and
    with ceil_mode the pixels past it that the last window reads) holds ``fill``: written when the
    buffer is allocated (xp None, or of another shape, dtype or device), never again (a forward
    writes only the interior). Returns the buffer, for the layer to keep."""
    shape = (*x.shape[:2], *padded_hw)
    if xp is None or tuple(xp.shape) != shape or xp.dtype != x.dtype or xp.device != x.device:
        xp = torch.full(shape, fill, dtype=x.dtype, device=x.device)
    (top, _), (left, _) = pads
    xp[:, :, top : top + x.shape[2], left : left + x.shape[3]].copy_(x)
    return xp


class MaxPool2d(Windowed):
    """y[b,c,h,w] = max_{i,j} xp[b,c, s_h h + d_h i, s_w w + d_w j]; x (B, C, H, W), y (B, C, H_out,
    W_out); xp is x with p_h rows and p_w columns of -inf on each side (padding is never picked),
    s the stride (default: the kernel size), d the dilation. H_out, W_out follow
    torch.nn.MaxPool2d's page; ceil_mode rounds up, dropping a last window that would start in
    the right padding (engine_core.windows).

    Backward: dL/dx[b,c,u,v] = sum over the windows (b,c,h,w) whose arg-max is (u, v) of
    delta[b,c,h,w]: each window's gradient goes to one input pixel, and overlapping windows add
    up. The arg-max is the one torch's max_pool2d picks: its kernels scan a window's pixels in
    row-major order (smallest i, then smallest j), starting from the first pixel with the
    maximum at -inf, and take a pixel when ``value > maximum or isnan(value)``. So:
    - ties go to the first maximum;
    - a window whose pixels are all -inf sends its gradient to its first pixel (not the padding);
    - NaN (pytorch/pytorch#7645): a window holding NaN outputs NaN and its gradient goes to the
      window's LAST NaN in row-major order; windows without NaN keep the rules above. NaN != NaN,
      so the equality masks miss those windows; a second pass, run only when y holds a NaN,
      routes them.

    Raises TypeError/ValueError for bad arguments (engine_core.conv_checks.check_maxpool_args;
    return_indices=True is refused: a layer returns one tensor) and, naming the layer, for an
    input that is not a float32/float64 (B, C, H, W) tensor with at least one window, or on which
    a dilated window would hold only padding (check_pool_windows).
    """

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None, padding: int | Pair = 0,
                 dilation: int | Pair = 1, return_indices: bool = False, ceil_mode: bool = False) -> None:
        self.pool_args = check_maxpool_args(kernel_size, stride, padding, dilation, return_indices, ceil_mode)
        a = self.pool_args
        self.kernel_size, self.stride, self.padding, self.dilation = a.kernel_size, a.stride, a.padding, a.dilation
        self.return_indices, self.ceil_mode = False, a.ceil_mode
        self.windows = a.windows
        self._pads_dilated = a.padding != (0, 0) and a.dilation != (1, 1)  # a window may be all padding
        self.winner: torch.Tensor | None = None  # (kh kw, B, C, H_out, W_out): 1 at each window's arg-max, else 0
        self._inside: tuple[tuple[int, ...], torch.Tensor] | None = None  # (H, W) and Windows.inside, as 0/1
        self._xp: torch.Tensor | None = None  # x padded with -inf (_bordered), when there is padding

    def __repr__(self) -> str:
        return f"MaxPool2d({self.pool_args.extra_repr(False)})"

    def _check_input(self, x: object, channels: int | None, dtype: torch.dtype | None,
                     device: torch.device | None = None) -> torch.Tensor:
        """Windowed's check, then (padded and dilated windows) that no window holds only padding;
        a refused input leaves the layer as it was."""
        known = self.in_shape, self.out_shape, self._dtype
        tensor = super()._check_input(x, channels, dtype, device)
        if self._pads_dilated and (self.in_shape, self.out_shape, self._dtype) != known:
            try:
                check_pool_windows(self.describe(), shape_of(tensor)[2:], self.windows)
            except ValueError:
                self.in_shape, self.out_shape, self._dtype = known
                raise
        return tensor

    def _inside_mask(self, in_hw: tuple[int, ...], out_hw: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Windows.inside for this input size as 0/1 in like's dtype and device, (kh kw, H_out,
        W_out), kept per size."""
        kept = self._inside
        if kept is None or kept[0] != in_hw or kept[1].dtype != like.dtype or kept[1].device != like.device:
            mask = torch.from_numpy(self.windows.inside(in_hw, out_hw)).to(like.dtype).to(like.device)
            kept = self._inside = (in_hw, mask)
        return kept[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y (B, C, H_out, W_out), x's dtype."""
        x = self._check_input(x, None, None)
        batch, channels, height, width = x.shape
        _, _, out_h, out_w = self.out_shape
        w = self.windows
        (kh, kw), (sh, sw), (dh, dw) = w.kernel, w.stride, w.dilation
        area = kh * kw
        padded_hw = w.padded_hw((height, width), (out_h, out_w))
        # Padding (and ceil_mode's overhang) as -inf: a maximum takes it only when the window's
        # pixels are all -inf too, and the masks below then pick the first pixel instead.
        padded = padded_hw != (height, width)
        source = self._xp = _bordered(self._xp, x, w.pads, padded_hw, -torch.inf) if padded else x
        # cols[o] = the o-th element (row-major) of every window: one strided copy.
        extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        view = source.unfold(2, extent[0], sh).unfold(3, extent[1], sw)
        if (dh, dw) != (1, 1) or view.shape[2:4] != (out_h, out_w):  # dilation's gaps, ceil_mode's spare windows
            view = view[:, :, :out_h, :out_w, ::dh, ::dw]
        cols = self._exact_buffer("_cols", (kh, kw, batch, channels, out_h, out_w), x)
        cols.copy_(view.permute(4, 5, 0, 1, 2, 3))
        cols = cols.view(area, batch, channels, out_h, out_w)
        y = self._exact_buffer("_y", self.out_shape, x)
        torch.amax(cols, dim=0, out=y)  # NaN wins a maximum: a window holding one outputs NaN
        # winner[o]: cols[o] is the window's maximum, a pixel, and no earlier element was. Kept as
        # 0/1 in x's dtype, not as booleans (numpy_net's masks): this torch's comparisons are 4-5x
        # slower into a bool tensor than into a float one, and its float-by-bool multiply 2-4x.
        inside = self._inside_mask((height, width), (out_h, out_w), x) if padded else None
        winner = self._exact_buffer("_winner", (area, batch, channels, out_h, out_w), x)
        taken = self._exact_buffer("_taken", self.out_shape, x)
        for o in range(area):
            torch.eq(cols[o], y, out=winner[o])
            if inside is not None:
                winner[o].mul_(inside[o])
            if o == 0:
                taken.copy_(winner[0])
                continue
            torch.gt(winner[o], taken, out=winner[o])  # a and not b, on 0/1 values
            if o < area - 1:
                taken += winner[o]  # stays 0/1: winner[o] is 1 only where taken is 0
        # Only then: the NaN-free path pays one reduction over y (skipped while compiling, which
        # cannot branch on data: torch_net.compiled).
        if not compiling() and math.isnan(torch.amax(y).item()):
            self._route_nans(cols, winner)
        self.winner = winner
        return y

    @staticmethod
    def _route_nans(cols: torch.Tensor, winner: torch.Tensor) -> None:
        """Mark each NaN window's last NaN (row-major) as its arg-max, torch's choice. Its winner
        entries are all 0 (NaN == NaN is false), and windows without NaN hold no NaN element, so
        nothing else changes."""
        nan = torch.isnan(cols)
        later = torch.zeros_like(nan[0])  # a NaN follows, in row-major order
        for o in reversed(range(len(cols))):
            winner[o] += nan[o] & ~later
            later |= nan[o]

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        """dL/dx (B, C, H, W): delta routed to each window's arg-max."""
        delta = self._check_delta(delta)
        winner = self.winner
        assert winner is not None
        w = self.windows
        in_hw, out_hw = self.in_shape[2:], self.out_shape[2:]  # type: ignore[index]
        padded_hw = w.padded_hw(in_hw, out_hw)
        dx = self._exact_buffer("_dx", self.in_shape, delta)  # type: ignore[arg-type]
        # Routed into the padded buffer's layout; the padding's share is 0 (never an arg-max).
        padded = padded_hw != in_hw
        dxp = self._exact_buffer("_dxp", (*dx.shape[:2], *padded_hw), delta) if padded else dx
        extent = [d * (k - 1) + 1 for k, d in zip(w.kernel, w.dilation)]
        overlapping = w.stride[0] < extent[0] or w.stride[1] < extent[1]
        if not w.tiles(in_hw, out_hw):
            # Some pixels are in no window (they get 0) or in several (their shares add up).
            dxp.zero_()
        routed = self._exact_buffer("_routed", self.out_shape, delta) if overlapping else None
        for o, (_, _, rows, cols) in enumerate(w.offsets(out_hw)):
            target = dxp[:, :, rows, cols]
            if routed is None:  # windows do not overlap: each input pixel gets at most one value
                torch.mul(delta, winner[o], out=target)
            else:
                torch.mul(delta, winner[o], out=routed)
                target.add_(routed)
        if padded:
            (top, _), (left, _) = w.pads
            dx.copy_(dxp[:, :, top : top + in_hw[0], left : left + in_hw[1]])
        return dx


class AvgPool2d(Windowed):
    """y[b,c,h,w] = (1 / N[h,w]) sum_{i,j} xp[b,c, s_h h + i, s_w w + j]; x (B, C, H, W), y (B, C,
    H_out, W_out); xp is x with p_h rows and p_w columns of zeros on each side, s the stride
    (default: the kernel size). H_out, W_out and the divisor N follow torch.nn.AvgPool2d's page
    and its kernels (engine_core.windows.Windows.divisors): divisor_override when given; else,
    with count_include_pad (the default), the window's area within the padded input (kh kw,
    less where ceil_mode's last window runs past it); without, the number of input pixels in
    the window. ceil_mode rounds H_out, W_out up, dropping a last window that would start in
    the right padding.

    Backward: dL/dx[b,c,u,v] = sum over the windows (b,c,h,w) that contain the pixel (u, v) of
    delta[b,c,h,w] / N[h,w] (pixels in no window get 0; the padding's share is dropped).

    Raises TypeError/ValueError for bad arguments (engine_core.conv_checks.check_avgpool_args) and,
    naming the layer, for an input that is not a float32/float64 (B, C, H, W) tensor with at
    least one window.
    """

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None, padding: int | Pair = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None) -> None:
        self.pool_args = check_avgpool_args(kernel_size, stride, padding, ceil_mode, count_include_pad,
                                            divisor_override)
        a = self.pool_args
        self.kernel_size, self.stride, self.padding, self.ceil_mode = a.kernel_size, a.stride, a.padding, a.ceil_mode
        self.count_include_pad, self.divisor_override = a.count_include_pad, a.divisor_override
        self.windows = a.windows
        self._divisors: tuple[tuple[int, ...], torch.Tensor] | None = None  # (H, W) and N for it

    def __repr__(self) -> str:
        return f"AvgPool2d({self.pool_args.extra_repr(True)})"

    def _divisor(self, in_hw: tuple[int, ...], out_hw: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """N (H_out, W_out) in like's dtype and device (exact: small integers), kept per input size."""
        kept = self._divisors
        if kept is None or kept[0] != in_hw or kept[1].dtype != like.dtype or kept[1].device != like.device:
            divisors = self.windows.divisors(in_hw, out_hw, self.count_include_pad, self.divisor_override)
            kept = self._divisors = (in_hw, torch.from_numpy(divisors).to(like.dtype).to(like.device))
        return kept[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y (B, C, H_out, W_out), x's dtype: torch's avg_pool2d (window sums over N)."""
        x = self._check_input(x, None, None)
        a = self.pool_args
        return functional.avg_pool2d(x, a.kernel_size, a.stride, a.padding, a.ceil_mode, a.count_include_pad,
                                     a.divisor_override)

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        """dL/dx (B, C, H, W): delta / N spread over every window's pixels."""
        delta = self._check_delta(delta)
        w = self.windows
        in_hw, out_hw = self.in_shape[2:], self.out_shape[2:]  # type: ignore[index]
        share = self._exact_buffer("_share", self.out_shape, delta)
        torch.div(delta, self._divisor(in_hw, out_hw, delta), out=share)
        dx = self._exact_buffer("_dx", self.in_shape, delta)  # type: ignore[arg-type]
        padded_hw = w.padded_hw(in_hw, out_hw)
        padded = padded_hw != in_hw
        dxp = self._exact_buffer("_dxp", (*dx.shape[:2], *padded_hw), delta) if padded else dx
        dxp.zero_()
        overlapping = w.stride[0] < w.kernel[0] or w.stride[1] < w.kernel[1]
        for _, _, rows, cols in w.offsets(out_hw):
            target = dxp[:, :, rows, cols]
            if overlapping:
                target.add_(share)
            else:
                target.copy_(share)
        if padded:  # the padding's share is dropped
            (top, _), (left, _) = w.pads
            dx.copy_(dxp[:, :, top : top + in_hw[0], left : left + in_hw[1]])
        return dx


class Flatten(Layer):
    """y = x with its axes start_dim..end_dim multiplied into one (torch.flatten; negative dims
    count from the last axis), as torch.nn.Flatten (its documentation page): by default (B, ...)
    to (B, prod(...)); Flatten(0) flattens the batch too, Flatten(2) keeps (B, C, H * W).
    Backward: dL/dx = delta.reshape(x's shape). Both are views when the tensor is contiguous.

    Raises TypeError (not ints) or ValueError (start after end, both of one sign) for the dims;
    naming the layer, ValueError for an input whose axes do not hold start_dim and end_dim (or
    with an empty batch) and TypeError for one that is not a float32/float64 tensor.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        self.start_dim, self.end_dim = check_flatten_args(start_dim, end_dim)
        self.in_shape: tuple[int, ...] | None = None
        self.out_shape: tuple[int, ...] = ()
        self._dtype = torch.float64

    def __repr__(self) -> str:
        if (self.start_dim, self.end_dim) == (1, -1):
            return "Flatten()"
        return f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        known = self.input_trusted or (
            x.__class__ is torch.Tensor and x.shape == self.in_shape and x.dtype == self._dtype)
        if not known:
            check_type(f"{self.describe()}: x", x, torch.Tensor, ARRAY_TYPE)
            self.out_shape = check_flatten_facts(self.describe(), shape_of(x), dtype_name(x.dtype), self.start_dim,
                                                   self.end_dim)
            self.in_shape, self._dtype = shape_of(x), x.dtype
        return x.reshape(self.out_shape)

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        if self.in_shape is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the last forward's output)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, self.out_shape, self._dtype)
        return delta.reshape(self.in_shape)

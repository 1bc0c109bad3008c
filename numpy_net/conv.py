"""Convolution, pooling and flattening in NumPy: im2col and GEMMs, every derivative by hand.

Images are (B, C, H, W), as in torch. No Python loop runs over samples, channels or output
pixels; the only loops are over the kh*kw offsets of a kernel. Inside, Conv2d keeps its arrays
batch innermost: the zero-padded input xp as (C, H_p, W_p, B) and the im2col matrix as (C kh kw,
H_out W_out B), so the strided copies move runs of B (or W_out B) adjacent numbers and each
product is one GEMM over all samples and output pixels (one batched GEMM over the groups).
Buffers are reused while the input shape stays the same (a training step allocates nothing); an
array a layer returns is valid until that layer runs again. torch_net/conv.py is this file on
tensors, class for class.

Notation: x the input; xp x zero-padded by top/bottom rows and left/right columns (p on each side
for an int or pair padding p), H_p x W_p; s the stride, d the dilation, k the kernel size, delta =
dL/d(output). Output pixel (h, w) reads xp at (s_h h + d_h i, s_w w + d_w j) for the kernel
offsets 0 <= i < k_h, 0 <= j < k_w: h < H_out = floor((H + top + bottom - d_h (k_h - 1) - 1) / s_h)
+ 1, torch's sizes (engine_core.windows).

Pooling pads with -inf (MaxPool2d: the padding is never a window's maximum) or with zeros
(AvgPool2d), in (B, C, H_p, W_p) buffers laid out like x, so each kernel offset's pixels are one
strided slice. ceil_mode rounds H_out and W_out up, dropping a last window that would start in
the right padding, and the last window may run past the padded input (H_p then covers it, as
padding). On NaN, MaxPool2d does what torch does: a window holding NaN outputs NaN and sends its
gradient to its last NaN (pytorch/pytorch#7645; the class's docstring).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine_core.checks import check_dtype_name, check_type, native, shape_of
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

from .checks import ARRAY_TYPE, check_delta
from .layers import Layer


class Windowed(Layer):
    """Base of the sliding-window layers: their input check. Their buffers are _exact_buffer's
    (an image layer's height and width may change between calls, not only the batch size)."""

    windows: Windows = Windows((1, 1), (1, 1))  # the layer's window geometry (engine_core.windows)
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
            self.windows)
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

    Raises TypeError/ValueError for bad arguments (engine_core.conv_checks.check_conv_args: groups
    dividing both channel counts, "same" only with stride 1, padding_mode "zeros" only) and,
    naming the layer, for an input that is not (B, C_in, H, W) of the layer's dtype or smaller
    than the (dilated) kernel. The im2col matrix X is kept from the forward (a copy of x), so
    overwriting x between forward and backward does not change dL/dweight.
    """

    accepts_input_grad = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Pair, stride: int | Pair = 1,
                 padding: int | Pair | str = 0, dilation: int | Pair = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", dtype: str = "float32") -> None:
        args = check_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode)
        self._args = args
        self.in_channels, self.out_channels, self.groups = args.in_channels, args.out_channels, args.groups
        self.kernel_size, self.stride, self.dilation = args.kernel_size, args.stride, args.dilation
        self.padding, self.padding_mode = args.padding, args.padding_mode  # padding as given: a pair, "valid", "same"
        self.windows = args.windows  # padding resolved to ((top, bottom), (left, right))
        self.has_bias = bool(bias)
        kind = np.dtype(check_dtype_name(dtype))
        self.weight = np.zeros((self.out_channels, self.in_channels // self.groups, *self.kernel_size), kind)
        self.bias = np.zeros(self.out_channels, kind)  # stays 0 and untrained with bias=False
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias)
        self.delta: np.ndarray | None = None  # dL/dz of the last backward
        self._cols: np.ndarray | None = None  # X of the last forward, (C_in, kh, kw, H_out, W_out, B)

    def __repr__(self) -> str:
        return f"Conv2d({self._args.extra_repr(self.has_bias)})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """z (B, C_out, H_out, W_out) for x (B, C_in, H, W) of the layer's dtype."""
        x = self._check_input(x, self.in_channels, self.weight.dtype)
        batch, channels, height, width = x.shape
        _, out_channels, out_h, out_w = self.out_shape
        windows, groups = self.windows, self.groups
        (kh, kw), (sh, sw), (dh, dw), ((top, _), (left, _)) = (windows.kernel, windows.stride, windows.dilation,
                                                                 windows.pads)
        dtype = self.weight.dtype
        # xp, batch innermost; its border is zero from the allocation and never written.
        xp = self._exact_buffer("_xp", (channels, *windows.padded_hw((height, width), (out_h, out_w)), batch), dtype,
                                zero=True)
        np.copyto(xp[:, top : top + height, left : left + width], x.transpose(1, 2, 3, 0))
        # im2col: windows[c, h, w, b, i, j] = xp[c, s_h h + d_h i, s_w w + d_w j, b], copied as X:
        # every window's span d (k - 1) + 1, taking every d-th element of it.
        spans = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(1, 2))
        cols = self._exact_buffer("_cols", (channels, kh, kw, out_h, out_w, batch), dtype)
        np.copyto(cols, spans[:, ::sh, ::sw, :, ::dh, ::dw].transpose(0, 4, 5, 1, 2, 3))
        self._cols = cols
        # Z_g = W_g X_g for every group at once: one batched GEMM, (G, C_out / G, C_g kh kw) x
        # (G, C_g kh kw, H_out W_out B). X's rows are channel-major, so group g's are a block of them.
        zt = self._exact_buffer("_zt", (out_channels, out_h, out_w, batch), dtype)
        np.matmul(self.weight.reshape(groups, out_channels // groups, -1),
                  cols.reshape(groups, -1, out_h * out_w * batch), out=zt.reshape(groups, out_channels // groups, -1))
        # The bias goes onto zt, whose rows are contiguous, before the transposing copy to z: adding
        # it inside that copy (the strided pass) made LeNet's conv1 forward 0.3 ms slower (median
        # 2.7 -> 2.4 ms per step, float32 batch 64, one BLAS thread).
        if self.has_bias:
            zt += self.bias.reshape(-1, 1, 1, 1)
        z = self._exact_buffer("_z", (batch, out_channels, out_h, out_w), dtype)
        np.copyto(z, zt.transpose(3, 0, 1, 2))
        return z

    def backward(self, delta: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """grad_weight = D_g X_g^T per group; grad_bias = sum of delta over (b, h, w); returns
        col2im(W_g^T D_g) without the padding, (B, C_in, H, W).

        ``input_grad=False`` skips dL/dx, which a training step never needs for the first layer.
        Raises RuntimeError before any forward, ValueError/TypeError for a delta that is not the
        last output's shape and dtype; a refused call changes no gradient.
        """
        delta = self._check_delta(delta)
        self.delta = delta
        batch, channels, height, width = self.in_shape  # type: ignore[misc]
        _, out_channels, out_h, out_w = self.out_shape
        windows, groups = self.windows, self.groups
        (kh, kw), ((top, _), (left, _)) = windows.kernel, windows.pads
        dtype = self.weight.dtype
        columns = out_h * out_w * batch
        dt = self._exact_buffer("_dt", (out_channels, out_h, out_w, batch), dtype)
        np.copyto(dt, delta.transpose(1, 2, 3, 0))  # D, batch innermost like X
        d = dt.reshape(groups, out_channels // groups, columns)
        cols = self._cols.reshape(groups, -1, columns)  # type: ignore[union-attr]
        # D_g X_g^T, computed as (X_g D_g^T)^T: both GEMM operands are then read along their long axis.
        gwt = self._exact_buffer("_gwt", (groups, cols.shape[1], out_channels // groups), dtype)
        np.matmul(cols, d.transpose(0, 2, 1), out=gwt)
        np.copyto(self.grad_weight.reshape(groups, out_channels // groups, -1), gwt.transpose(0, 2, 1))
        if self.has_bias:  # sum over (h, w, b), as one BLAS gemv
            np.matmul(dt.reshape(out_channels, columns), self._ones(columns, dtype), out=self.grad_bias)
        if not input_grad:
            return None
        dcols = self._exact_buffer("_dcols", (channels, kh, kw, out_h, out_w, batch), dtype)
        np.matmul(self.weight.reshape(groups, out_channels // groups, -1).transpose(0, 2, 1), d,
                  out=dcols.reshape(groups, -1, columns))
        # col2im: every offset (i, j) adds its (C, H_out, W_out, B) slab at stride s, shifted d (i, j).
        padded = windows.padded_hw((height, width), (out_h, out_w))
        dxp = self._exact_buffer("_dxp", (channels, *padded, batch), dtype)
        dxp.fill(0)
        for i, j, rows, cols_ in windows.offsets((out_h, out_w)):
            target = dxp[:, rows, cols_]
            np.add(target, dcols[:, i, j], out=target)
        dx = self._exact_buffer("_dx", (batch, channels, height, width), dtype)
        np.copyto(dx, dxp[:, top : top + height, left : left + width].transpose(3, 0, 1, 2))  # crop the padding
        return dx

    def local_parameters(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias} if self.has_bias else {"weight": self.weight}

    def local_gradients(self) -> dict[str, np.ndarray]:
        return {"weight": self.grad_weight, "bias": self.grad_bias} if self.has_bias else {"weight": self.grad_weight}


def _bordered(xp: np.ndarray | None, x: np.ndarray, pads: Pads, padded_hw: Pair, fill: float) -> np.ndarray:
    """x copied into a pooling layer's (B, C, *padded_hw) buffer xp, whose border (the padding, and
    with ceil_mode the pixels past it that the last window reads) holds ``fill``: written when the
    buffer is allocated (xp None, or of another shape or dtype), never again (a forward writes
    only the interior). Returns the buffer, for the layer to keep."""
    shape = (*x.shape[:2], *padded_hw)
    if xp is None or xp.shape != shape or xp.dtype != x.dtype:
        xp = np.full(shape, fill, x.dtype)
    (top, _), (left, _) = pads
    np.copyto(xp[:, :, top : top + x.shape[2], left : left + x.shape[3]], x)
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
    return_indices=True is refused: a layer returns one array) and, naming the layer, for an
    input that is not a float32/float64 (B, C, H, W) array with at least one window, or on which
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
        self.winner: np.ndarray | None = None  # (kh kw, B, C, H_out, W_out): the arg-max of each window
        self._inside: tuple[tuple[int, ...], np.ndarray] | None = None  # (H, W) and Windows.inside for it
        self._xp: np.ndarray | None = None  # x padded with -inf (_bordered), when there is padding

    def __repr__(self) -> str:
        return f"MaxPool2d({self.pool_args.extra_repr(False)})"

    def _check_input(self, x: object, channels: int | None, dtype: np.dtype | None) -> np.ndarray:
        """Windowed's check, then (padded and dilated windows) that no window holds only padding;
        a refused input leaves the layer as it was."""
        known = self.in_shape, self.out_shape, self._dtype
        array = super()._check_input(x, channels, dtype)
        if self._pads_dilated and (self.in_shape, self.out_shape, self._dtype) != known:
            try:
                check_pool_windows(self.describe(), array.shape[2:], self.windows)
            except ValueError:
                self.in_shape, self.out_shape, self._dtype = known
                raise
        return array

    def _inside_mask(self, in_hw: tuple[int, ...], out_hw: tuple[int, ...]) -> np.ndarray:
        """Windows.inside for this input size, (kh kw, H_out, W_out) booleans, kept per size."""
        if self._inside is None or self._inside[0] != in_hw:
            self._inside = (in_hw, self.windows.inside(in_hw, out_hw))
        return self._inside[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
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
        source = self._xp = _bordered(self._xp, x, w.pads, padded_hw, -np.inf) if padded else x
        # cols[o] = the o-th element (row-major) of every window: one strided copy.
        extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        view = sliding_window_view(source, extent, axis=(2, 3))[:, :, ::sh, ::sw]
        if (dh, dw) != (1, 1) or view.shape[2:4] != (out_h, out_w):  # dilation's gaps, ceil_mode's spare windows
            view = view[:, :, :out_h, :out_w, ::dh, ::dw]
        cols = self._exact_buffer("_cols", (kh, kw, batch, channels, out_h, out_w), x.dtype)
        np.copyto(cols, view.transpose(4, 5, 0, 1, 2, 3))
        cols = cols.reshape(area, batch, channels, out_h, out_w)
        y = self._exact_buffer("_y", self.out_shape, x.dtype)
        np.max(cols, axis=0, out=y)  # NaN wins a maximum: a window holding one outputs NaN
        # winner[o]: cols[o] is the window's maximum, a pixel, and no earlier element was.
        inside = self._inside_mask((height, width), (out_h, out_w)) if padded else None
        winner = self._exact_buffer("_winner", (area, batch, channels, out_h, out_w), np.dtype(bool))
        taken = self._exact_buffer("_taken", self.out_shape, np.dtype(bool))
        for o in range(area):
            np.equal(cols[o], y, out=winner[o])
            if inside is not None:
                np.logical_and(winner[o], inside[o], out=winner[o])
            if o == 0:
                np.copyto(taken, winner[0])
                continue
            np.greater(winner[o], taken, out=winner[o])  # a and not b, on booleans
            if o < area - 1:
                np.logical_or(taken, winner[o], out=taken)
        if np.isnan(y.max()):  # only then: the NaN-free path pays one reduction over y
            self._route_nans(cols, winner)
        self.winner = winner
        return y

    @staticmethod
    def _route_nans(cols: np.ndarray, winner: np.ndarray) -> None:
        """Mark each NaN window's last NaN (row-major) as its arg-max, torch's choice. Its winner
        entries are all False (NaN == NaN is false), and windows without NaN hold no NaN element,
        so nothing else changes."""
        nan = np.isnan(cols)
        later = np.zeros(cols.shape[1:], bool)  # a NaN follows, in row-major order
        for o in reversed(range(len(cols))):
            np.logical_or(winner[o], nan[o] & ~later, out=winner[o])
            np.logical_or(later, nan[o], out=later)

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """dL/dx (B, C, H, W): delta routed to each window's arg-max."""
        delta = self._check_delta(delta)
        winner = self.winner
        assert winner is not None
        w = self.windows
        in_hw, out_hw = self.in_shape[2:], self.out_shape[2:]  # type: ignore[index]
        padded_hw = w.padded_hw(in_hw, out_hw)
        dx = self._exact_buffer("_dx", self.in_shape, delta.dtype)  # type: ignore[arg-type]
        # Routed into the padded buffer's layout; the padding's share is 0 (never an arg-max).
        padded = padded_hw != in_hw
        dxp = self._exact_buffer("_dxp", (*dx.shape[:2], *padded_hw), delta.dtype) if padded else dx
        extent = [d * (k - 1) + 1 for k, d in zip(w.kernel, w.dilation)]
        overlapping = w.stride[0] < extent[0] or w.stride[1] < extent[1]
        if not w.tiles(in_hw, out_hw):
            # Some pixels are in no window (they get 0) or in several (their shares add up).
            dxp.fill(0)
        routed = self._exact_buffer("_routed", self.out_shape, delta.dtype) if overlapping else None
        for o, (_, _, rows, cols) in enumerate(w.offsets(out_hw)):
            target = dxp[:, :, rows, cols]
            if routed is None:  # windows do not overlap: each input pixel gets at most one value
                np.multiply(delta, winner[o], out=target)
            else:
                np.multiply(delta, winner[o], out=routed)
                np.add(target, routed, out=target)
        if padded:
            (top, _), (left, _) = w.pads
            np.copyto(dx, dxp[:, :, top : top + in_hw[0], left : left + in_hw[1]])
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
    naming the layer, for an input that is not a float32/float64 (B, C, H, W) array with at
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
        self._divisors: tuple[tuple[int, ...], np.ndarray] | None = None  # (H, W) and N for it
        self._xp: np.ndarray | None = None  # x padded with zeros (_bordered), when there is padding

    def __repr__(self) -> str:
        return f"AvgPool2d({self.pool_args.extra_repr(True)})"

    def _divisor(self, in_hw: tuple[int, ...], out_hw: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """N (H_out, W_out) in ``dtype`` (exact: small integers), kept per input size."""
        if self._divisors is None or self._divisors[0] != in_hw or self._divisors[1].dtype != dtype:
            divisors = self.windows.divisors(in_hw, out_hw, self.count_include_pad, self.divisor_override)
            self._divisors = (in_hw, divisors.astype(dtype))
        return self._divisors[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y (B, C, H_out, W_out), x's dtype: the window sums, offset by offset, over N."""
        x = self._check_input(x, None, None)
        in_hw, out_hw = x.shape[2:], self.out_shape[2:]
        padded_hw = self.windows.padded_hw(in_hw, out_hw)
        source = x
        if padded_hw != in_hw:
            source = self._xp = _bordered(self._xp, x, self.windows.pads, padded_hw, 0.0)
        y = self._exact_buffer("_y", self.out_shape, x.dtype)
        for o, (_, _, rows, cols) in enumerate(self.windows.offsets(out_hw)):  # row-major, torch's order
            if o == 0:
                np.copyto(y, source[:, :, rows, cols])
            else:
                np.add(y, source[:, :, rows, cols], out=y)
        np.divide(y, self._divisor(in_hw, out_hw, x.dtype), out=y)
        return y

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """dL/dx (B, C, H, W): delta / N spread over every window's pixels."""
        delta = self._check_delta(delta)
        w = self.windows
        in_hw, out_hw = self.in_shape[2:], self.out_shape[2:]  # type: ignore[index]
        share = self._exact_buffer("_share", self.out_shape, delta.dtype)
        np.divide(delta, self._divisor(in_hw, out_hw, delta.dtype), out=share)
        dx = self._exact_buffer("_dx", self.in_shape, delta.dtype)  # type: ignore[arg-type]
        padded_hw = w.padded_hw(in_hw, out_hw)
        padded = padded_hw != in_hw
        dxp = self._exact_buffer("_dxp", (*dx.shape[:2], *padded_hw), delta.dtype) if padded else dx
        dxp.fill(0)
        overlapping = w.stride[0] < w.kernel[0] or w.stride[1] < w.kernel[1]
        for _, _, rows, cols in w.offsets(out_hw):
            target = dxp[:, :, rows, cols]
            if overlapping:
                np.add(target, share, out=target)
            else:
                np.copyto(target, share)
        if padded:  # the padding's share is dropped
            (top, _), (left, _) = w.pads
            np.copyto(dx, dxp[:, :, top : top + in_hw[0], left : left + in_hw[1]])
        return dx


class Flatten(Layer):
    """y = x with its axes start_dim..end_dim multiplied into one (torch.flatten; negative dims
    count from the last axis), as torch.nn.Flatten (its documentation page): by default (B, ...)
    to (B, prod(...)); Flatten(0) flattens the batch too, Flatten(2) keeps (B, C, H * W).
    Backward: dL/dx = delta.reshape(x's shape). Both are views when the array is contiguous.

    Raises TypeError (not ints) or ValueError (start after end, both of one sign) for the dims;
    naming the layer, ValueError for an input whose axes do not hold start_dim and end_dim (or
    with an empty batch) and TypeError for one that is not a float32/float64 array.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        self.start_dim, self.end_dim = check_flatten_args(start_dim, end_dim)
        self.in_shape: tuple[int, ...] | None = None
        self.out_shape: tuple[int, ...] = ()
        self._dtype = np.dtype(np.float64)

    def __repr__(self) -> str:
        if (self.start_dim, self.end_dim) == (1, -1):
            return "Flatten()"
        return f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        known = self.input_trusted or (
            x.__class__ is np.ndarray and x.shape == self.in_shape and x.dtype == self._dtype)
        if not known:
            check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
            x = native(x)
            self.out_shape = check_flatten_facts(self.describe(), x.shape, x.dtype.name, self.start_dim, self.end_dim)
            self.in_shape, self._dtype = x.shape, x.dtype
        return x.reshape(self.out_shape)

    def backward(self, delta: np.ndarray) -> np.ndarray:
        if self.in_shape is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the last forward's output)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, self.out_shape, self._dtype)
        return delta.reshape(self.in_shape)

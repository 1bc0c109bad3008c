"""Sliding-window geometry of the convolution family (Conv2d, MaxPool2d, AvgPool2d), stated once:
how many windows fit, how large the padded input is, where each kernel offset's pixels lie,
which of them are padding, and average pooling's divisors. numpy_net's and torch_net's layers
and engine_core.specs (output shapes) read it.

Along one axis of size n with ``before``/``after`` padding, kernel k, stride s and dilation d, a
window's extent is e = d (k - 1) + 1 and there are (torch's output size, its conv and pooling
documentation pages)

    out = floor((n + before + after - e) / s) + 1,

or with ceil_mode ceil(...) + 1, less one if the last window would start in the right padding
(start (out - 1) s >= n + before: torch drops that window). Window o covers the padded positions
o s, o s + d, ..., o s + d (k - 1); with ceil_mode the last may run past the right padding, so
the padded buffer an engine fills is max(n + before + after, (out - 1) s + e) long.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Pair = tuple[int, int]
Pads = tuple[Pair, Pair]  # ((top, bottom), (left, right))
NO_PADS: Pads = ((0, 0), (0, 0))


def size_repr(pair: Pair) -> int | Pair:
    """A pair as torch's repr shows an argument given as an int: 5 for (5, 5)."""
    return pair[0] if pair[0] == pair[1] else pair


def symmetric(padding: Pair) -> Pads:
    """(p_h, p_w) rows and columns on both sides, as ((top, bottom), (left, right))."""
    return (padding[0], padding[0]), (padding[1], padding[1])


def same_pads(kernel: Pair, dilation: Pair) -> Pads:
    """Conv2d's padding="same" (stride 1): d (k - 1) in all per axis, half before (rounded down) and
    the rest after: an even kernel puts its extra row at the bottom and its extra column on the
    right (torch.nn.Conv2d's rule, _conv_forward's _reversed_padding_repeated_twice)."""
    out = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        out.append((total // 2, total - total // 2))
    return out[0], out[1]


def window_count(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False,
                 padding_after: int | None = None) -> int:
    """How many windows fit along one axis (module docstring); below 1 when none does."""
    after = padding if padding_after is None else padding_after
    span = size + padding + after - dilation * (kernel - 1) - 1
    # Rounded down (toward -inf) or up even when the window is longer than the padded input, as in
    # torch's pooling_output_shape: with ceil_mode a window running past the end by less than a
    # stride still counts (kernel 2, stride 2 over 1 pixel: one window).
    count = (-(-span // stride) if ceil_mode else span // stride) + 1
    if count < 1:
        return 0
    if ceil_mode and (count - 1) * stride >= size + padding:
        count -= 1  # torch: the last window may not start in the right padding
    return count


@dataclass(frozen=True)
class Windows:
    """The windows of a Conv2d, MaxPool2d or AvgPool2d over (H, W) inputs: kernel, stride,
    padding ((top, bottom), (left, right)), dilation and ceil_mode, each per axis."""

    kernel: Pair
    stride: Pair
    pads: Pads = NO_PADS
    dilation: Pair = (1, 1)
    ceil_mode: bool = False

    def out_hw(self, in_hw: tuple[int, ...]) -> Pair:
        """(H_out, W_out) for an (H, W) input: window_count per axis (0 when none fits)."""
        h, w = (window_count(in_hw[axis], self.kernel[axis], self.stride[axis], self.pads[axis][0],
                             self.dilation[axis], self.ceil_mode, self.pads[axis][1]) for axis in (0, 1))
        return h, w

    def padded_hw(self, in_hw: tuple[int, ...], out_hw: tuple[int, ...]) -> Pair:
        """The padded input's (height, width): the padding on both sides, and (ceil_mode) every
        window's last position."""
        sizes = []
        for axis in (0, 1):
            extent = self.dilation[axis] * (self.kernel[axis] - 1) + 1
            sizes.append(max(in_hw[axis] + sum(self.pads[axis]), (out_hw[axis] - 1) * self.stride[axis] + extent))
        return sizes[0], sizes[1]

    @property
    def padded(self) -> bool:
        """Whether there is any padding (a padded buffer is needed)."""
        return any(self.pads[0]) or any(self.pads[1])

    def offsets(self, out_hw: tuple[int, ...]) -> list[tuple[int, int, slice, slice]]:
        """(i, j, rows, columns) for every kernel offset, row-major (i, then j): xp[..., rows,
        columns] are the (H_out, W_out) padded-input pixels at offset (i, j) of every window,
        rows = d_h i, d_h i + s_h, ..., columns likewise."""
        (kh, kw), (sh, sw), (dh, dw), (ho, wo) = self.kernel, self.stride, self.dilation, out_hw
        return [(i, j, slice(dh * i, dh * i + sh * (ho - 1) + 1, sh), slice(dw * j, dw * j + sw * (wo - 1) + 1, sw))
                for i in range(kh) for j in range(kw)]

    def tiles(self, in_hw: tuple[int, ...], out_hw: tuple[int, ...]) -> bool:
        """Whether the windows cover an unpadded (H, W) input exactly once: no padding, no
        dilation, stride = kernel and H, W multiples of it. Otherwise some pixels are in no
        window or in several."""
        return (not self.padded and self.dilation == (1, 1) and self.stride == self.kernel
                and self.kernel[0] * out_hw[0] == in_hw[0] and self.kernel[1] * out_hw[1] == in_hw[1])

    def _axis_inside(self, axis: int, size: int, count: int) -> np.ndarray:
        """(k, count) booleans: offset i of window o falls on the input, not on padding."""
        k, s, d, before = self.kernel[axis], self.stride[axis], self.dilation[axis], self.pads[axis][0]
        position = np.arange(count)[None, :] * s + d * np.arange(k)[:, None] - before
        return (position >= 0) & (position < size)

    def inside(self, in_hw: tuple[int, ...], out_hw: tuple[int, ...]) -> np.ndarray:
        """(kh kw, H_out, W_out) booleans, offsets row-major: which window elements are input
        pixels rather than padding (max pooling never picks padding)."""
        rows = self._axis_inside(0, in_hw[0], out_hw[0])
        cols = self._axis_inside(1, in_hw[1], out_hw[1])
        both = rows[:, None, :, None] & cols[None, :, None, :]
        return both.reshape(-1, out_hw[0], out_hw[1])

    def divisors(self, in_hw: tuple[int, ...], out_hw: tuple[int, ...], count_include_pad: bool,
                 divisor_override: int | None) -> np.ndarray:
        """AvgPool2d's divisor of every output pixel, (H_out, W_out) float64, torch's rule (its
        avg_pool2d kernel): divisor_override when given; else the window's area clipped to the
        padded input (start o s - p, end min(start + k, n + p)) with count_include_pad, or the
        number of input pixels in it (padding not counted) without."""
        if divisor_override is not None:
            return np.full(out_hw, float(divisor_override))
        lengths = []
        for axis in (0, 1):
            k, s, (before, after), n = self.kernel[axis], self.stride[axis], self.pads[axis], in_hw[axis]
            start = np.arange(out_hw[axis]) * s - before
            end = np.minimum(start + k, n + after)
            if not count_include_pad:
                start, end = np.maximum(start, 0), np.minimum(end, n)
            lengths.append((end - start).astype(np.float64))
        return np.outer(lengths[0], lengths[1])


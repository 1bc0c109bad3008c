"""Sliding-window geometry of the convolution family (Conv2d, MaxPool2d, AvgPool2d), stated once:
how many windows fit, where each kernel offset's pixels lie, whether the windows tile the input.
numpy_net's and torch_net's conv.py and engine_core.specs (output shapes) read it."""

from __future__ import annotations

Pair = tuple[int, int]


def window_count(size: int, kernel: int, stride: int, padding: int) -> int:
    """How many windows of ``kernel`` at ``stride`` fit in ``size`` padded by ``padding`` on both
    sides: floor((size + 2 padding - kernel) / stride) + 1 (torch's output size, no ceil mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def size_repr(pair: Pair) -> int | Pair:
    """A pair as torch's repr shows an argument given as an int: 5 for (5, 5)."""
    return pair[0] if pair[0] == pair[1] else pair


def window_offsets(kernel: Pair, stride: Pair, out_hw: tuple[int, ...]) -> list[tuple[int, int, slice, slice]]:
    """(i, j, rows, columns) for every kernel offset: x[..., rows, columns] are the (H_out, W_out)
    input pixels at offset (i, j) of every window, row-major (i, then j)."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_hw
    return [(i, j, slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))
            for i in range(kh) for j in range(kw)]


def windows_tile(kernel: Pair, stride: Pair, in_hw: tuple[int, ...], out_hw: tuple[int, ...]) -> bool:
    """Whether the (unpadded) windows cover an (H, W) input exactly once: stride = kernel and H, W
    multiples of it. Otherwise some pixels are in no window or in several."""
    return stride == kernel and kernel[0] * out_hw[0] == in_hw[0] and kernel[1] * out_hw[1] == in_hw[1]

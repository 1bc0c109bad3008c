"""Arguments and input facts of the convolution family (Conv2d, MaxPool2d, AvgPool2d, Flatten),
stated once: numpy_net, torch_net and the oracle's engines refuse the same arguments and the same
inputs with the same words. Each function takes plain Python facts (ints, shapes, dtype names).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import type_name
from .layer_checks import check_flag
from .naming import DTYPES
from .windows import NO_PADS, Pair, Windows, same_pads, size_repr, symmetric


def check_pair(name: str, value: object, minimum: int) -> Pair:
    """A kernel size, stride or padding in torch's int-or-(height, width) convention, as a pair.

    Raises TypeError (not an int or a pair of ints; bools refused) or ValueError (below ``minimum``).
    """
    items: Sequence[object]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        items = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        items = value
    else:
        raise TypeError(f"{name}: expected an int or a pair of ints (height, width), got {type_name(value)} {value!r}")
    numbers = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{name}: expected an int or a pair of ints (height, width), got {value!r}")
        if item < minimum:
            raise ValueError(f"{name}: expected {'a positive int' if minimum else 'an int >= 0'}, got {value!r}")
        numbers.append(int(item))
    return numbers[0], numbers[1]


def check_count(name: str, value: object) -> int:
    """in_channels / out_channels: a positive int; TypeError/ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive int, got {type_name(value)} {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


PADDING_MODES: tuple[str, ...] = ("zeros", "reflect", "replicate", "circular")  # torch.nn.Conv2d's


@dataclass(frozen=True)
class ConvArgs:
    """torch.nn.Conv2d's arguments, checked: pairs for kernel, stride and dilation; ``padding`` as
    given (a pair, "valid" or "same") and ``windows`` with it resolved to rows and columns."""

    in_channels: int
    out_channels: int
    kernel_size: Pair
    stride: Pair
    padding: Pair | str
    dilation: Pair
    groups: int
    padding_mode: str
    windows: Windows

    def extra_repr(self, bias: bool) -> str:
        """How every engine shows the layer: Conv2d(in_channels=1, out_channels=6, kernel_size=5,
        stride=1, padding=2), then each argument that is not torch's default."""
        padding = repr(self.padding) if isinstance(self.padding, str) else str(size_repr(self.padding))
        text = (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={size_repr(self.kernel_size)}, stride={size_repr(self.stride)}, padding={padding}")
        if self.dilation != (1, 1):
            text += f", dilation={size_repr(self.dilation)}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if bias else ", bias=False")


def check_conv_args(in_channels: object, out_channels: object, kernel_size: object, stride: object = 1,
                    padding: object = 0, dilation: object = 1, groups: object = 1,
                    padding_mode: object = "zeros") -> ConvArgs:
    """torch.nn.Conv2d's arguments (its documentation page), checked and resolved.

    padding: an int or a pair >= 0, "valid" (none) or "same" (output as large as the input, stride
    1 only; windows.same_pads). groups divides both channel counts (weight (C_out, C_in / groups,
    kh, kw); groups = C_in is a depthwise convolution). padding_mode: "zeros" only ("reflect",
    "replicate" and "circular" are torch's but not implemented here).

    Raises TypeError/ValueError naming the argument, in torch's words where torch has them.
    """
    c_in, c_out = check_count("in_channels", in_channels), check_count("out_channels", out_channels)
    kernel, step = check_pair("kernel_size", kernel_size, 1), check_pair("stride", stride, 1)
    spacing = check_pair("dilation", dilation, 1)
    count = check_count("groups", groups)
    if c_in % count:
        raise ValueError(f"groups: in_channels must be divisible by groups, got in_channels={c_in}, groups={count}")
    if c_out % count:
        raise ValueError(f"groups: out_channels must be divisible by groups, got out_channels={c_out}, "
                         f"groups={count}")
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode: must be one of {', '.join(map(repr, PADDING_MODES))}, got {padding_mode!r}")
    if padding_mode != "zeros":
        raise ValueError(f"padding_mode: {padding_mode!r} is not implemented here; only 'zeros' (torch's default) is")
    pad: Pair | str
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"padding: invalid padding string {padding!r}, should be one of 'same', 'valid' "
                             "(or an int, or a pair of ints)")
        if padding == "same" and step != (1, 1):
            raise ValueError(f"padding: padding='same' is not supported for strided convolutions (stride={stride!r})")
        pad = padding
        pads = same_pads(kernel, spacing) if padding == "same" else NO_PADS
    else:
        pad = check_pair("padding", padding, 0)
        pads = symmetric(pad)
    return ConvArgs(c_in, c_out, kernel, step, pad, spacing, count, padding_mode, Windows(kernel, step, pads, spacing))


@dataclass(frozen=True)
class PoolArgs:
    """torch.nn.MaxPool2d's or AvgPool2d's arguments, checked (absent ones at their defaults)."""

    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    @property
    def windows(self) -> Windows:
        return Windows(self.kernel_size, self.stride, symmetric(self.padding), self.dilation, self.ceil_mode)

    def extra_repr(self, average: bool) -> str:
        """How every engine shows the layer: kernel_size, stride, then each argument that is not
        torch's default."""
        text = f"kernel_size={size_repr(self.kernel_size)}, stride={size_repr(self.stride)}"
        if self.padding != (0, 0):
            text += f", padding={size_repr(self.padding)}"
        if self.dilation != (1, 1):
            text += f", dilation={size_repr(self.dilation)}"
        if self.ceil_mode:
            text += ", ceil_mode=True"
        if average and not self.count_include_pad:
            text += ", count_include_pad=False"
        if average and self.divisor_override is not None:
            text += f", divisor_override={self.divisor_override}"
        return text


def _check_pool_common(kernel_size: object, stride: object, padding: object, dilation: object,
                       ceil_mode: object) -> tuple[Pair, Pair, Pair, Pair, bool]:
    kernel = check_pair("kernel_size", kernel_size, 1)
    step = kernel if stride is None else check_pair("stride", stride, 1)
    pad, spacing = check_pair("padding", padding, 0), check_pair("dilation", dilation, 1)
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(f"padding: pad should be at most half of kernel size, but got padding={padding!r}, "
                         f"kernel_size={kernel_size!r}")
    return kernel, step, pad, spacing, check_flag("ceil_mode", ceil_mode)


def check_maxpool_args(kernel_size: object, stride: object = None, padding: object = 0, dilation: object = 1,
                       return_indices: object = False, ceil_mode: object = False) -> PoolArgs:
    """torch.nn.MaxPool2d's arguments (its documentation page): stride None is the kernel size;
    padding (implicit -inf, never picked) at most half the kernel, as torch requires;
    return_indices=True is refused (a layer here returns one array).

    Raises TypeError/ValueError naming the argument.
    """
    kernel, step, pad, spacing, ceil = _check_pool_common(kernel_size, stride, padding, dilation, ceil_mode)
    if check_flag("return_indices", return_indices):
        raise ValueError("return_indices: True is not supported: a layer here returns one array (the pooled "
                         "values), not (values, indices); leave it False")
    return PoolArgs(kernel, step, pad, spacing, ceil)


def check_avgpool_args(kernel_size: object, stride: object = None, padding: object = 0, ceil_mode: object = False,
                       count_include_pad: object = True, divisor_override: object = None) -> PoolArgs:
    """torch.nn.AvgPool2d's arguments (its documentation page): stride None is the kernel size;
    zero padding at most half the kernel; count_include_pad (whether padded zeros count in the
    divisor); divisor_override a non-zero int (torch: "divisor must be not zero").

    Raises TypeError/ValueError naming the argument.
    """
    kernel, step, pad, spacing, ceil = _check_pool_common(kernel_size, stride, padding, 1, ceil_mode)
    include = check_flag("count_include_pad", count_include_pad)
    divisor: int | None = None
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
            raise TypeError(f"divisor_override: expected None or a non-zero int, got {type_name(divisor_override)} "
                            f"{divisor_override!r}")
        if divisor_override == 0:
            raise ValueError("divisor_override: divisor must be not zero")
        divisor = int(divisor_override)
    return PoolArgs(kernel, step, pad, spacing, ceil, include, divisor)


def check_image_facts(layer: str, shape: tuple[int, ...], dtype: str, channels: int | None, layer_dtype: str | None,
                      windows: Windows) -> tuple[int, int, int, int]:
    """The output shape (batch, channels, H_out, W_out) of a sliding-window layer for an input of
    ``shape`` and dtype ``dtype``: a 4-D (batch, channels, height, width) input, no empty
    dimension, ``channels`` channels when given, the layer's dtype (any of float32/float64 when
    layer_dtype is None) and at least one window in the padded input.

    Raises ValueError (rank, channels, empty, smaller than the kernel) or TypeError (dtype), naming the layer.
    """
    form = f"(batch, {'channels' if channels is None else channels}, height, width)"
    if len(shape) != 4 or (channels is not None and shape[1] != channels):
        raise ValueError(f"{layer}: x: expected a 4-D input {form}, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"{layer}: x: empty input (shape {shape})")
    if layer_dtype is None and dtype not in DTYPES:
        raise TypeError(f"{layer}: x: expected dtype {' or '.join(DTYPES)}, got {dtype}")
    if layer_dtype is not None and dtype != layer_dtype:
        raise TypeError(f"{layer}: x: expected dtype {layer_dtype} (the layer's dtype), got {dtype}; convert it first")
    height, width = windows.out_hw(shape[2:])
    if height < 1 or width < 1:
        (top, bottom), (left, right) = windows.pads
        padded = (f" (padded: {shape[2] + top + bottom}x{shape[3] + left + right})" if windows.padded else "")
        extent = [d * (k - 1) + 1 for k, d in zip(windows.kernel, windows.dilation)]
        dilated = " (dilated)" if windows.dilation != (1, 1) else ""
        raise ValueError(f"{layer}: x: the input's {shape[2]}x{shape[3]} pixels{padded} are smaller than the "
                         f"kernel{dilated} {extent[0]}x{extent[1]}")
    return shape[0], shape[1], height, width


def check_pool_windows(layer: str, in_hw: tuple[int, ...], windows: Windows) -> None:
    """Refuse an (H, W) input on which some max-pooling window holds only padding: with dilation d
    > 1 a window's elements are d apart, and on an input of fewer than d rows (or columns) the
    first or last window's elements can all fall on the padding. Such a window has no pixel to
    take the maximum of; torch's max_pool2d returns -inf there and its backward writes outside
    the input (torch 2.14 on the CPU: "double free or corruption").

    Raises ValueError naming the layer, the input size and the way out.
    """
    if windows.inside(in_hw, windows.out_hw(in_hw)).any(axis=0).all():
        return
    (top, _), (left, _) = windows.pads
    raise ValueError(f"{layer}: x: a window over the input's {in_hw[0]}x{in_hw[1]} pixels would hold only padding "
                     f"(dilation {size_repr(windows.dilation)}, padding {size_repr((top, left))}): no pixel to take "
                     "the maximum of; use an input of at least dilation rows and columns, less padding or a "
                     "smaller dilation")


def flatten_range(start_dim: int, end_dim: int, rank: int) -> tuple[int, int] | None:
    """Flatten's (start, end) axes for a ``rank``-D input, negative ones counted from the end
    (torch.flatten's rule); None when either is out of range or start comes after end."""
    start, end = start_dim + rank if start_dim < 0 else start_dim, end_dim + rank if end_dim < 0 else end_dim
    if not (0 <= start < max(rank, 1) and 0 <= end < max(rank, 1)) or start > end:
        return None
    return start, end


def flatten_shape(shape: tuple[int, ...], start_dim: int, end_dim: int) -> tuple[int, ...] | None:
    """torch.flatten(x, start_dim, end_dim)'s output shape: the axes start..end multiplied into one;
    None when the dims do not fit the input (flatten_range)."""
    span = flatten_range(start_dim, end_dim, len(shape))
    if span is None:
        return None
    start, end = span
    return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])  # Python ints: no overflow


def check_flatten_args(start_dim: object, end_dim: object) -> tuple[int, int]:
    """torch.nn.Flatten's (start_dim, end_dim): ints (negative ones count from the last axis).
    Raises TypeError otherwise, and ValueError when both have the same sign and start > end."""
    dims = []
    for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {type_name(value)} {value!r}")
        dims.append(int(value))
    if (dims[0] < 0) == (dims[1] < 0) and dims[0] > dims[1]:
        raise ValueError(f"start_dim: flatten() has invalid args: start_dim ({dims[0]}) cannot come after "
                         f"end_dim ({dims[1]})")
    return dims[0], dims[1]


def check_flatten_facts(layer: str, shape: tuple[int, ...], dtype: str, start_dim: int = 1,
                        end_dim: int = -1) -> tuple[int, ...]:
    """Flatten's output shape (flatten_shape): start_dim and end_dim within the input's axes, start
    not after end, a non-empty batch, float32 or float64. Raises ValueError (rank, empty batch) or
    TypeError (dtype), naming the layer."""
    out = flatten_shape(shape, start_dim, end_dim)
    if out is None:
        raise ValueError(f"{layer}: x: start_dim={start_dim}, end_dim={end_dim} do not fit a {len(shape)}-D input "
                         f"(shape {shape}): expected axes in -{len(shape)}..{len(shape) - 1}, start before end")
    if shape and shape[0] == 0:
        raise ValueError(f"{layer}: x: empty batch (shape {shape})")
    if dtype not in DTYPES:
        raise TypeError(f"{layer}: x: expected dtype {' or '.join(DTYPES)}, got {dtype}")
    return out

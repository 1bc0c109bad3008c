"""Arguments and input facts of the convolution family (Conv2d, MaxPool2d, AvgPool2d, Flatten),
stated once: numpy_net, torch_net and the oracle's engines refuse the same arguments and the same
inputs with the same words. Each function takes plain Python facts (ints, shapes, dtype names).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import type_name
from .naming import DTYPES
from .windows import Pair, window_count


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


def check_conv_args(in_channels: object, out_channels: object, kernel_size: object, stride: object,
                    padding: object) -> tuple[int, int, Pair, Pair, Pair]:
    """torch.nn.Conv2d's arguments as (in_channels, out_channels, kernel, stride, padding) pairs.

    Raises TypeError/ValueError naming the argument: channels and kernel and stride >= 1, padding >= 0.
    """
    return (check_count("in_channels", in_channels), check_count("out_channels", out_channels),
            check_pair("kernel_size", kernel_size, 1), check_pair("stride", stride, 1),
            check_pair("padding", padding, 0))


def check_pool_args(kernel_size: object, stride: object) -> tuple[Pair, Pair]:
    """torch.nn.MaxPool2d/AvgPool2d's (kernel_size, stride) as pairs; stride None is the kernel size."""
    kernel = check_pair("kernel_size", kernel_size, 1)
    return kernel, kernel if stride is None else check_pair("stride", stride, 1)


def check_image_facts(layer: str, shape: tuple[int, ...], dtype: str, channels: int | None, layer_dtype: str | None,
                      kernel: Pair, stride: Pair, padding: Pair = (0, 0)) -> tuple[int, int, int, int]:
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
    height, width = (window_count(shape[2 + axis], kernel[axis], stride[axis], padding[axis]) for axis in (0, 1))
    if height < 1 or width < 1:
        padded = f" (padded: {shape[2] + 2 * padding[0]}x{shape[3] + 2 * padding[1]})" if any(padding) else ""
        raise ValueError(f"{layer}: x: the input's {shape[2]}x{shape[3]} pixels{padded} are smaller than the "
                         f"kernel {kernel[0]}x{kernel[1]}")
    return shape[0], shape[1], height, width


def check_flatten_facts(layer: str, shape: tuple[int, ...], dtype: str) -> tuple[int, int]:
    """Flatten's output shape (batch, prod(shape[1:])): at least 2 dimensions, a non-empty batch,
    float32 or float64. Raises ValueError (rank, empty batch) or TypeError (dtype), naming the layer."""
    if len(shape) < 2:
        raise ValueError(f"{layer}: x: expected at least 2 dimensions (batch, ...), got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{layer}: x: empty batch (shape {shape})")
    if dtype not in DTYPES:
        raise TypeError(f"{layer}: x: expected dtype {' or '.join(DTYPES)}, got {dtype}")
    return shape[0], int(np.prod(shape[1:], dtype=np.int64))

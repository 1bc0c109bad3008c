"""The torch engine's tensor-typed input checks: numpy_net/checks.py on tensors. They gather a
tensor's facts and hand them to engine_core.checks, so every engine says the same words.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from engine_core.checks import check_batch_facts, check_label_facts, check_logits_facts, check_type, shape_of
from engine_core.errors import (
    LOSS_OVERFLOW_MESSAGE,
    NonFiniteError,
    delta_dtype_message,
    delta_shape_message,
    input_name,
    label_range_message,
    non_finite_message,
)


class Describable(Protocol):
    """Anything with describe() (a layer): named in messages only when a check fails."""

    def describe(self) -> str: ...


ARRAY_TYPE = "torch.Tensor"
INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)

__all__ = [
    "ARRAY_TYPE", "check_delta", "check_device", "check_features", "check_finite_input", "check_label_shape",
    "check_labels", "check_logits", "dtype_name", "raise_non_finite_logits",
]


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32."""
    return str(dtype).replace("torch.", "")


def check_device(name: str, tensor: torch.Tensor, device: torch.device) -> None:
    """ValueError unless the tensor lives on ``device``."""
    if tensor.device != device:
        raise ValueError(f"{name}: expected a tensor on {device} (the network's device), got one on {tensor.device}")


def check_features(x: object, in_features: int, dtype: torch.dtype, device: torch.device,
                   layer: Describable | None = None) -> torch.Tensor:
    """x: a Linear's input, (*, in_features) tensor of ``dtype`` on ``device`` (torch.nn.Linear's
    shapes: a batch (batch, in_features), one row (in_features,) or any leading dimensions, none
    empty). The 2-D case is checked first, on the fast path.

    Raises TypeError (not a tensor, another dtype) or ValueError (0-D, width, empty,
    device), naming ``layer`` unless it is its network's first (input_name). Finiteness is
    checked after the first layer (check_finite_input). A tensor that requires grad is returned
    detached: the hand-written engine records no graph.
    """
    if x.__class__ is torch.Tensor:
        shape = x.shape  # type: ignore[attr-defined]
        if (len(shape) == 2 and shape[1] == in_features and shape[0] > 0 and x.dtype == dtype  # type: ignore[attr-defined]
                and not x.requires_grad):  # type: ignore[attr-defined]
            if x.device != device:  # type: ignore[attr-defined]
                check_device("x", x, device)  # type: ignore[arg-type]
            return x  # type: ignore[return-value]
    name = input_name(layer)
    check_type(name, x, torch.Tensor, ARRAY_TYPE)
    tensor: torch.Tensor = x  # type: ignore[assignment]
    check_batch_facts(name, shape_of(tensor), dtype_name(tensor.dtype), in_features, dtype_name(dtype))
    check_device(name, tensor, device)
    return tensor.detach()


def compiling() -> bool:
    """Whether torch.compile is tracing the call (torch_net.compiled): the checks that read a
    tensor's values or memory addresses on the host are then skipped, as a compiled graph cannot
    branch on them; the compiled step checks its loss after the step instead."""
    return torch.compiler.is_compiling()


def check_finite_input(x: torch.Tensor, first_output: torch.Tensor) -> None:
    """Raise NonFiniteError naming the first NaN or Inf of x by its full index (cheap test on a
    first Linear's output first: a NaN or Inf anywhere in row i of x makes every entry of row i
    of x @ W + b non-finite; any other first layer passes x itself, before it runs). An x that is
    no floating tensor is left to the first layer's type checks."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or compiling():
        return
    if not math.isfinite(first_output.sum()):  # a 0-d tensor converts to a Python float
        bad = torch.nonzero(~torch.isfinite(x))
        if len(bad):
            raise NonFiniteError(non_finite_message("x", *(int(i) for i in bad[0])))


def _label_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    return "float" if dtype.is_floating_point or dtype.is_complex else "int"


def check_label_shape(y: object, batch: int) -> torch.Tensor:
    """y: (batch,) integer tensor, returned as int64 (torch's index type; a copy only if it
    was another integer type). The value range is left to the caller (gather checks it)."""
    check_type("y", y, torch.Tensor, ARRAY_TYPE)
    labels: torch.Tensor = y  # type: ignore[assignment]
    if labels.dim() == 1 and len(labels) == batch and labels.dtype == torch.int64:
        return labels
    check_label_facts(shape_of(labels), _label_kind(labels.dtype), dtype_name(labels.dtype), batch)
    return labels.long()


def check_labels(y: object, batch: int, classes: int) -> torch.Tensor:
    """y: (batch,) integer tensor with values in [0, classes); returned as int64.

    Raises TypeError (not integers) or ValueError (shape, range)."""
    labels = check_label_shape(y, batch)
    low, high = torch.aminmax(labels)
    if low < 0 or high >= classes:
        outside = (labels < 0) | (labels >= classes)
        position = int(torch.nonzero(outside)[0][0])
        raise ValueError(label_range_message(position, int(labels[position]), classes))
    return labels


def check_logits(logits: object) -> torch.Tensor:
    """logits: non-empty (batch, classes) float32/float64 tensor."""
    check_type("logits", logits, torch.Tensor, ARRAY_TYPE)
    tensor: torch.Tensor = logits  # type: ignore[assignment]
    check_logits_facts(shape_of(tensor), dtype_name(tensor.dtype))
    return tensor


def check_delta(layer: str | Describable, delta: object, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """delta: a tensor of the last forward output's shape and dtype.

    Raises TypeError (type, dtype) or ValueError (shape), naming the layer. ``layer`` is its
    name or the layer itself: describe() builds a string, so it runs only on failure.
    """
    if (delta.__class__ is torch.Tensor and delta.shape == shape and delta.dtype == dtype  # type: ignore[attr-defined]
            and not delta.requires_grad):  # type: ignore[attr-defined]
        return delta  # type: ignore[return-value]
    name = layer if isinstance(layer, str) else layer.describe()
    check_type(f"{name}: delta", delta, torch.Tensor, ARRAY_TYPE)
    tensor: torch.Tensor = delta  # type: ignore[assignment]
    if shape_of(tensor) != tuple(shape):
        raise ValueError(delta_shape_message(name, tuple(shape), shape_of(tensor)))
    if tensor.dtype != dtype:
        raise TypeError(delta_dtype_message(name, dtype_name(dtype), dtype_name(tensor.dtype)))
    return tensor.detach()  # a delta is a constant: no graph through it


def raise_non_finite_logits(logits: torch.Tensor) -> None:
    """Raise NonFiniteError naming the first NaN/Inf logit, or the loss's overflow."""
    bad = torch.nonzero(~torch.isfinite(logits))
    if len(bad):
        raise NonFiniteError(non_finite_message("logits", int(bad[0][0]), int(bad[0][1])))
    raise NonFiniteError(LOSS_OVERFLOW_MESSAGE)

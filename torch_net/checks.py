"""Argument checks on torch tensors, worded exactly as numpy_net's (same builders)."""

from __future__ import annotations

import math

import torch

from numpy_net.checks import (
    NonFiniteError,
    check_adam,
    check_batch_facts,
    check_choice,
    check_dtype_name,
    check_label_facts,
    check_sgd,
    check_sizes,
    check_state_dict,
    check_type,
    label_range_message,
    non_finite_message,
    type_name,
)

ARRAY_TYPE = "torch.Tensor"
FLOAT_DTYPES = (torch.float32, torch.float64)
INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)

__all__ = [
    "ARRAY_TYPE", "NonFiniteError", "check_adam", "check_choice", "check_device", "check_dtype_name",
    "check_features", "check_finite_input", "check_label_shape", "dtype_name",
    "check_labels", "check_logits", "check_sgd", "check_sizes", "check_state_dict", "raise_non_finite_logits",
    "type_name",
]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def check_device(name: str, tensor: torch.Tensor, device: torch.device) -> None:
    if tensor.device != device:
        raise ValueError(
            f"{name}: expected a tensor on {device} (the network's device), got one on {tensor.device}"
        )


def check_features(x: object, in_features: int, net_dtype: torch.dtype, device: torch.device) -> None:
    """x: (batch, in_features) tensor of the network's dtype and device (finiteness: check_finite_input)."""
    check_type("x", x, torch.Tensor, ARRAY_TYPE)
    shape = x.shape
    if not (len(shape) == 2 and shape[1] == in_features and shape[0] > 0 and x.dtype == net_dtype):
        check_batch_facts("x", tuple(shape), dtype_name(x.dtype), in_features, dtype_name(net_dtype))
    if x.device != device:
        check_device("x", x, device)


def check_finite_input(x: torch.Tensor, first_output: torch.Tensor) -> None:
    """Raise NonFiniteError if x holds NaN or Inf (cheap test on the first layer's output first:
    a NaN or Inf anywhere in row i of x makes every entry of row i of x @ W + b non-finite)."""
    if not math.isfinite(first_output.sum()):  # a 0-d tensor converts to a Python float
        bad = torch.nonzero(~torch.isfinite(x))
        if len(bad):
            raise NonFiniteError(non_finite_message("x", int(bad[0][0]), int(bad[0][1])))


def _label_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    return "float" if dtype.is_floating_point or dtype.is_complex else "int"


def check_label_shape(y: object, batch: int) -> torch.Tensor:
    """y: (batch,) integer tensor, returned as int64 (torch's index type; a copy only if it
    was another integer type). The value range is left to the caller (gather checks it)."""
    check_type("y", y, torch.Tensor, ARRAY_TYPE)
    if y.dim() == 1 and len(y) == batch and y.dtype == torch.int64:
        return y
    check_label_facts(tuple(y.shape), _label_kind(y.dtype), dtype_name(y.dtype), batch)
    return y.long()


def check_labels(y: object, batch: int, classes: int) -> None:
    """y: (batch,) integer tensor with values in [0, classes)."""
    check_type("y", y, torch.Tensor, ARRAY_TYPE)
    if not (y.dim() == 1 and len(y) == batch and y.dtype in INT_DTYPES):
        check_label_facts(tuple(y.shape), _label_kind(y.dtype), dtype_name(y.dtype), batch)
    low, high = torch.aminmax(y)
    if low < 0 or high >= classes:
        outside = (y < 0) | (y >= classes)
        position = int(torch.nonzero(outside)[0][0])
        raise ValueError(label_range_message(position, int(y[position]), classes))


def check_logits(logits: object) -> None:
    check_type("logits", logits, torch.Tensor, ARRAY_TYPE)
    shape = tuple(logits.shape)
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"logits: expected a non-empty 2-D (batch, classes) array, got shape {shape}")
    if logits.dtype not in FLOAT_DTYPES:
        raise TypeError(f"logits: expected dtype float32 or float64, got {dtype_name(logits.dtype)}")


def raise_non_finite_logits(logits: torch.Tensor) -> None:
    bad = torch.nonzero(~torch.isfinite(logits))
    if len(bad):
        raise NonFiniteError(non_finite_message("logits", int(bad[0][0]), int(bad[0][1])))
    raise NonFiniteError(
        "loss: overflowed to Inf although the logits are finite (logits beyond the dtype's "
        "range after shifting); try a smaller learning rate"
    )


"""The NumPy engine's array-typed input checks: they gather the facts of an np.ndarray and hand
them to engine_core.checks, so the words are those of every engine (torch_net/checks.py is the
same on tensors). Each has a fast path for the valid case, which runs on every training step.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from engine_core.checks import (
    check_batch_facts,
    check_label_facts,
    check_logits_facts,
    check_type,
    native,
)
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


ARRAY_TYPE = "numpy.ndarray"


def check_features(x: object, in_features: int, dtype: np.dtype, layer: Describable | None = None) -> np.ndarray:
    """x: a Linear's input, (*, in_features) np.ndarray of ``dtype`` (torch.nn.Linear's shapes: a
    batch (batch, in_features), one row (in_features,) or any leading dimensions, none empty);
    returned in native byte order. The 2-D case is checked first, on the fast path.

    Raises TypeError (not an ndarray, another dtype) or ValueError (0-D, width, empty),
    naming ``layer`` unless it is its network's first (input_name). Finiteness is checked after
    the first layer (check_finite_input).
    """
    if x.__class__ is np.ndarray:
        shape = x.shape  # type: ignore[attr-defined]
        # Only a failure pays for building a message (dtype.name alone costs microseconds).
        if len(shape) == 2 and shape[1] == in_features and shape[0] > 0 and x.dtype == dtype:  # type: ignore[attr-defined]
            return x  # type: ignore[return-value]
    name = input_name(layer)
    check_type(name, x, np.ndarray, ARRAY_TYPE)
    array = native(x)  # type: ignore[arg-type]
    check_batch_facts(name, array.shape, array.dtype.name, in_features, np.dtype(dtype).name)
    return array


def check_finite_input(x: np.ndarray, first_output: np.ndarray) -> None:
    """Raise NonFiniteError naming the first NaN or Inf of x by its full index.

    Cheap test first: every entry of row i of x @ W + b depends on every x[i, j], and a NaN
    or Inf times any finite weight gives NaN or +-Inf, so a non-finite x always shows up in
    the (much smaller) first Linear's output; any other first layer passes x itself, before it
    runs. Only then is x searched. An x that is no floating ndarray is left to the first layer's
    type checks (an int array holds no NaN).
    """
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        return
    with np.errstate(over="ignore", invalid="ignore"):  # a sum of huge or infinite values is the point
        total = first_output.sum()
    if not np.isfinite(total):
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            raise NonFiniteError(non_finite_message("x", *(int(i) for i in bad[0])))


def _label_kind(dtype: np.dtype) -> str:
    if dtype.kind == "b":
        return "bool"
    return "int" if dtype.kind in "iu" else dtype.kind


def check_labels(y: object, batch: int, classes: int) -> np.ndarray:
    """y: (batch,) integer np.ndarray (any width or byte order) with values in [0, classes).

    Returns y in native byte order. Raises TypeError (not integers) or ValueError (shape, range).
    """
    check_type("y", y, np.ndarray, ARRAY_TYPE)
    labels = native(y)  # type: ignore[arg-type]
    if not (labels.ndim == 1 and len(labels) == batch and labels.dtype.kind in "iu"):
        check_label_facts(labels.shape, _label_kind(labels.dtype), labels.dtype.name, batch)
    # Viewed as unsigned, a negative label is huge: one max() checks both ends of the range.
    unsigned = labels.view(f"u{labels.dtype.itemsize}") if labels.dtype.kind == "i" else labels
    if unsigned.max() >= classes:
        position = int(np.argmax((labels < 0) | (labels >= classes)))
        raise ValueError(label_range_message(position, int(labels[position]), classes))
    return labels


def check_logits(logits: object) -> np.ndarray:
    """logits: non-empty (batch, classes) float32/float64 np.ndarray; returned in native byte order."""
    check_type("logits", logits, np.ndarray, ARRAY_TYPE)
    array = native(logits)  # type: ignore[arg-type]
    check_logits_facts(array.shape, array.dtype.name)
    return array


def check_delta(layer: str | Describable, delta: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """delta: an np.ndarray of the last forward output's shape and dtype; native byte order.

    Raises TypeError (type, dtype) or ValueError (shape), naming the layer. ``layer`` is its
    name or the layer itself: describe() builds a string, so it runs only on failure.
    """
    if delta.__class__ is np.ndarray and delta.shape == shape and delta.dtype == dtype:  # type: ignore[attr-defined]
        return delta  # type: ignore[return-value]
    name = layer if isinstance(layer, str) else layer.describe()
    check_type(f"{name}: delta", delta, np.ndarray, ARRAY_TYPE)
    array = native(delta)  # type: ignore[arg-type]
    if array.shape != shape:
        raise ValueError(delta_shape_message(name, shape, array.shape))
    if array.dtype != dtype:
        raise TypeError(delta_dtype_message(name, np.dtype(dtype).name, array.dtype.name))
    return array


def raise_non_finite_logits(logits: np.ndarray) -> None:
    """Raise NonFiniteError naming the first NaN/Inf logit, or the loss's overflow."""
    bad = np.argwhere(~np.isfinite(logits))
    if len(bad):
        raise NonFiniteError(non_finite_message("logits", int(bad[0][0]), int(bad[0][1])))
    raise NonFiniteError(LOSS_OVERFLOW_MESSAGE)

"""The exception every engine raises for NaN/Inf, and the builders of every message a user can
cause. They take plain Python facts (names, shapes, dtype names), so each engine says exactly
the same words whatever its array type."""

from __future__ import annotations


class NonFiniteError(FloatingPointError):
    """NaN or Inf where a finite number is required (inputs, logits or the loss)."""


def type_name(value: object) -> str:
    """'numpy.ndarray', 'torch.Tensor', 'list', ... for messages."""
    cls = type(value)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module.split('.')[0]}.{cls.__qualname__}"


def clipped(text: str, width: int = 40) -> str:
    """``text`` cut to ``width`` characters, ending in "..." when cut: a huge value in a message."""
    return text if len(text) <= width else text[: width - 3] + "..."


def label_range_message(position: int, value: int, classes: int) -> str:
    """y holds a label outside [0, classes)."""
    return f"y: labels must lie in [0, {classes}), got {value} at position {position}"


def input_name(layer: object) -> str:
    """How a message names a layer's input: "x" for a layer alone or the first of its network
    (whose input is the caller's x: its path is "0", "0.0", ...), else "<layer>: x", e.g.
    "layer 1.0 Linear(in_features=4, out_features=3): x". ``layer`` has label and describe()."""
    label = getattr(layer, "label", "")
    if not label or set(label.split(".")) == {"0"}:
        return "x"
    return f"{layer.describe()}: x"  # type: ignore[attr-defined]


def non_finite_message(name: str, row: int, column: int | None = None, *more: int) -> str:
    """``name`` holds NaN or Inf, first at (row, column), or at index [row, column, ...] of an
    array of more than two dimensions (an image batch)."""
    where = f"row {row}" if column is None else f"row {row}, column {column}"
    if more:
        where = f"index [{', '.join(map(str, (row, column, *more)))}]"
    hint = (
        " (the network's parameters or activations overflowed: did training diverge? "
        "try a smaller learning rate)"
        if name == "logits"
        else ""
    )
    return f"{name}: contains NaN or Inf (first at {where}){hint}"


LOSS_OVERFLOW_MESSAGE = (
    "loss: overflowed to Inf although the logits are finite (logits beyond the dtype's "
    "range after shifting); try a smaller learning rate"
)


def backward_before_forward_message(layer: str, got: tuple[int, ...], expected: str) -> str:
    """A layer's backward() came with no forward() to differentiate; ``expected`` describes the
    delta a forward would have asked for, ``got`` is the shape received."""
    return (
        f"{layer}: backward() called before forward() (got a delta of shape {got}; a delta of "
        f"shape {expected} follows a forward): a forward pass must come first"
    )


def delta_shape_message(layer: str, expected: tuple[int, ...], got: tuple[int, ...]) -> str:
    """A delta whose shape is not the shape of the last forward's output."""
    return (
        f"{layer}: delta: expected shape {expected} (the shape of the last forward's output, "
        f"dL/d(output)), got {got}; run forward on this batch first"
    )


def delta_dtype_message(layer: str, expected: str, got: str) -> str:
    """A delta in another dtype than the layer's output."""
    return f"{layer}: delta: expected dtype {expected} (the dtype of the last forward's output), got {got}"

"""Argument checks shared by both engines: one wording for every error a user can cause.

The message builders here take plain Python facts (shapes, dtype names), so torch_net's
checks reuse them and both engines say exactly the same thing.
"""

from __future__ import annotations

import numpy as np

ARRAY_TYPE = "numpy.ndarray"
DTYPES = ("float32", "float64")
FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))


class NonFiniteError(FloatingPointError):
    """NaN or Inf where a finite number is required (inputs, logits or the loss)."""


def type_name(value: object) -> str:
    """'numpy.ndarray', 'torch.Tensor', 'list', ... for messages."""
    cls = type(value)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module.split('.')[0]}.{cls.__qualname__}"


def check_type(name: str, value: object, expected_cls: type, expected_name: str) -> None:
    if not isinstance(value, expected_cls):
        raise TypeError(f"{name}: expected a {expected_name}, got {type_name(value)}")


def check_dtype_name(dtype: object) -> str:
    """Normalise 'float32' / np.float32 / np.dtype('float32') to 'float32'; reject the rest."""
    try:
        name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    except TypeError:
        name = str(dtype)
    name = str(name).replace("torch.", "")
    if name not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return name


def check_batch_facts(
    name: str, shape: tuple[int, ...], dtype: str, in_features: int, net_dtype: str
) -> None:
    """x must be (batch >= 1, in_features) in the network's dtype."""
    if len(shape) != 2:
        raise ValueError(
            f"{name}: expected a 2-D array of shape (batch, {in_features}), got shape {shape}"
        )
    if shape[1] != in_features:
        raise ValueError(f"{name}: expected shape (batch, {in_features}), got {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name}: empty batch (shape {shape}); pass at least one row")
    if dtype != net_dtype:
        raise TypeError(
            f"{name}: expected dtype {net_dtype} (the network's dtype), got {dtype}; "
            f"convert it first"
        )


def check_label_facts(shape: tuple[int, ...], kind: str, dtype: str, batch: int) -> None:
    """y must be (batch,) integers; kind is 'int', 'bool' or 'float' (or anything else)."""
    if len(shape) != 1:
        raise ValueError(f"y: expected a 1-D array of {batch} labels, got shape {shape}")
    if kind != "int":
        raise TypeError(f"y: expected integer class labels, got dtype {dtype}")
    if shape[0] != batch:
        raise ValueError(
            f"y: expected {batch} labels (one per row of logits), got {shape[0]}"
        )


def label_range_message(position: int, value: int, classes: int) -> str:
    return f"y: labels must lie in [0, {classes}), got {value} at position {position}"


def non_finite_message(name: str, row: int, column: int | None = None) -> str:
    where = f"row {row}" if column is None else f"row {row}, column {column}"
    hint = (
        " (the network's parameters or activations overflowed: did training diverge? "
        "try a smaller learning rate)"
        if name == "logits"
        else ""
    )
    return f"{name}: contains NaN or Inf (first at {where}){hint}"


def check_choice(name: str, value: object, choices) -> None:
    """value must be one of choices (an activation, an init): one wording in every engine."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


def check_sizes(sizes: object) -> list[int]:
    """sizes: at least [in, out], every entry a positive int."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"sizes: expected a list of layer widths, got {type_name(sizes)}")
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes: expected at least [in, out], got {sizes}")
    for i, size in enumerate(sizes):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"sizes[{i}]: expected a positive int, got {size!r}")
        if size <= 0:
            raise ValueError(f"sizes[{i}]: expected a positive width, got {size}")
    return [int(s) for s in sizes]


def check_sgd(lr: float, momentum: float, dampening: float, nesterov: bool, weight_decay: float) -> None:
    """torch.optim.SGD's own rules, with its wording where it has one."""
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if momentum < 0.0:
        raise ValueError(f"Invalid momentum value: {momentum}")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")


def check_adam(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """torch.optim.Adam's own rules, with its wording."""
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if eps < 0.0:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


# ----- NumPy-specific checks (torch_net/checks.py has the tensor versions) -----


def check_features(x: object, in_features: int, net_dtype: np.dtype) -> None:
    """x: (batch, in_features) numpy array of the network's dtype (finiteness: check_finite_input)."""
    check_type("x", x, np.ndarray, ARRAY_TYPE)
    shape = x.shape
    # Fast path on every training step; only a failure pays for building the message
    # (dtype.name alone costs microseconds).
    if len(shape) == 2 and shape[1] == in_features and shape[0] > 0 and x.dtype == net_dtype:
        return
    check_batch_facts("x", shape, x.dtype.name, in_features, np.dtype(net_dtype).name)


def check_finite_input(x: np.ndarray, first_output: np.ndarray) -> None:
    """Raise NonFiniteError if x holds NaN or Inf.

    Cheap test first: every entry of row i of x @ W + b depends on every x[i, j], and a NaN
    or Inf times any finite weight gives NaN or +-Inf, so a non-finite x always shows up in
    the (much smaller) first layer's output. Only then is x itself searched.
    """
    if not np.isfinite(first_output.sum()):
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            raise NonFiniteError(non_finite_message("x", int(bad[0][0]), int(bad[0][1])))


def _label_kind(dtype: np.dtype) -> str:
    if dtype.kind == "b":
        return "bool"
    return "int" if dtype.kind in "iu" else dtype.kind


def check_labels(y: object, batch: int, classes: int) -> None:
    """y: (batch,) integer numpy array with values in [0, classes)."""
    check_type("y", y, np.ndarray, ARRAY_TYPE)
    if not (y.ndim == 1 and len(y) == batch and y.dtype.kind in "iu"):
        check_label_facts(y.shape, _label_kind(y.dtype), y.dtype.name, batch)
    # Viewed as unsigned, a negative label is huge: one max() checks both ends of the range.
    unsigned = y.view(f"u{y.dtype.itemsize}") if y.dtype.kind == "i" else y
    if unsigned.max() >= classes:
        position = int(np.argmax((y < 0) | (y >= classes)))
        raise ValueError(label_range_message(position, int(y[position]), classes))


def check_logits(logits: object, dtype: str | None = None) -> None:
    check_type("logits", logits, np.ndarray, ARRAY_TYPE)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits: expected a non-empty 2-D (batch, classes) array, got shape {logits.shape}")
    if logits.dtype not in FLOAT_DTYPES:
        raise TypeError(f"logits: expected dtype float32 or float64, got {logits.dtype.name}")


def raise_non_finite_logits(logits: np.ndarray) -> None:
    bad = np.argwhere(~np.isfinite(logits))
    if len(bad):
        raise NonFiniteError(non_finite_message("logits", int(bad[0][0]), int(bad[0][1])))
    raise NonFiniteError(
        "loss: overflowed to Inf although the logits are finite (logits beyond the dtype's "
        "range after shifting); try a smaller learning rate"
    )


def as_numpy(value: object, name: str) -> np.ndarray:
    """A NumPy array from a NumPy array or a tensor (anything with .detach().cpu().numpy())."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    raise TypeError(f"{name}: expected an array, got {type_name(value)}")


def check_state_dict(expected: dict[str, tuple[int, ...]], state: object) -> dict[str, np.ndarray]:
    """Every key of ``expected`` present, no other, each a finite float array of that shape.

    Returns the values as NumPy arrays; raises before anything is copied anywhere, so a
    failed load leaves the network untouched.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state_dict: expected a dict, got {type_name(state)}")
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing:
        raise ValueError(f"state_dict: missing key {missing[0]!r} (expected keys {list(expected)})")
    if extra:
        raise ValueError(f"state_dict: unexpected key {extra[0]!r} (expected keys {list(expected)})")
    arrays = {}
    for name, shape in expected.items():
        value = as_numpy(state[name], f"state_dict[{name!r}]")
        if value.dtype.kind != "f":
            raise TypeError(
                f"state_dict[{name!r}]: expected a floating-point array, got dtype {value.dtype}"
            )
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"state_dict[{name!r}]: expected shape {tuple(shape)}, got {tuple(value.shape)}"
            )
        if not np.isfinite(value).all():
            raise ValueError(f"state_dict[{name!r}]: contains NaN or Inf")
        arrays[name] = value
    return arrays

"""Arguments and input facts for the layers beyond Linear (BatchNorm1d,
BatchNorm2d, LayerNorm, Dropout, LeakyReLU, GELU), stated once: numpy_net, torch_net and the oracle
(torch_net.autograd) call the same code, so they refuse the same arguments with the same words
(dropout's masks: engine_core.dropout_masks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checks import check_choice, check_num_batches_tracked
from .errors import type_name

GELU_APPROXIMATIONS: tuple[str, ...] = ("none", "tanh")


def _real(name: str, value: object) -> float:
    """value as a float; TypeError unless it is a real number (bool excluded), ValueError if NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number, got {type_name(value)} {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name}: expected a number, got NaN")
    return number


@dataclass(frozen=True)
class BatchNormArgs:
    """torch.nn.BatchNorm1d/2d's arguments, checked. momentum None: the cumulative average,
    running = running + (batch - running) / num_batches_tracked (torch's documentation page)."""

    num_features: int
    eps: float
    momentum: float | None
    affine: bool
    track_running_stats: bool

    def extra_repr(self) -> str:
        """How every engine shows the layer: BatchNorm2d(6, eps=1e-05, momentum=0.1), then each
        argument that is not torch's default."""
        text = f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
        if not self.affine:
            text += ", affine=False"
        if not self.track_running_stats:
            text += ", track_running_stats=False"
        return text


def check_flag(name: str, value: object) -> bool:
    """A True/False argument (inplace, affine, ...); TypeError otherwise (0 and 1 included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type_name(value)} {value!r}")
    return bool(value)


def check_batchnorm_args(num_features: object, eps: object = 1e-5, momentum: object = 0.1, affine: object = True,
                         track_running_stats: object = True) -> BatchNormArgs:
    """torch.nn.BatchNorm1d/2d's arguments, checked.

    Raises TypeError (not an int / a number / a bool) or ValueError: num_features < 1, eps <= 0
    or infinite, momentum outside [0, 1] (None is torch's cumulative average).

    eps = 0 is refused here by choice, at construction: torch.nn.BatchNorm1d/2d accept it (their
    documentation sets no bound on eps) and F.batch_norm refuses it only at the first train-mode
    forward ("eps must be positive during training"); a feature that is constant over a batch
    (a blank border pixel of every image) has variance 0, and (x - mean) / sqrt(var + eps)
    would divide 0 by 0 there, so a layer with eps <= 0 could never train.
    """
    if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)):
        raise TypeError(f"num_features: expected a positive int, got {type_name(num_features)} {num_features!r}")
    if num_features < 1:
        raise ValueError(f"num_features: expected a positive int, got {num_features}")
    eps_value = _real("eps", eps)
    momentum_value = None if momentum is None else _real("momentum", momentum)
    if not 0.0 < eps_value < math.inf:
        raise ValueError(f"eps: must be > 0 and finite, got {eps_value} (a feature that is constant over a batch "
                         "has variance 0, and x_hat = (x - mean) / sqrt(var + eps) would divide by sqrt(eps); "
                         "torch's default is 1e-5)")
    if momentum_value is not None and not 0.0 <= momentum_value <= 1.0:
        raise ValueError(f"momentum: expected a number in [0, 1] or None (the cumulative average), "
                         f"got {momentum_value}")
    return BatchNormArgs(int(num_features), eps_value, momentum_value, check_flag("affine", affine),
                         check_flag("track_running_stats", track_running_stats))


def check_batches_tracked(layer: str, value: object, track_running_stats: bool) -> int:
    """A batch norm's num_batches_tracked as a caller sets it (a resumed run): an integer in
    [0, 2**63). A layer without running statistics (track_running_stats=False) keeps no counter
    (torch's buffer is None): only 0 is accepted there. TypeError/ValueError naming the layer."""
    count = check_num_batches_tracked(f"{layer}: num_batches_tracked", value)
    if count and not track_running_stats:
        raise ValueError(f"{layer}: num_batches_tracked: a layer with track_running_stats=False keeps no counter "
                         f"(torch's is None), so it stays 0; got {count}")
    return count


def check_dropout_p(p: object) -> float:
    """Dropout's p as a float; ValueError outside [0, 1], in torch.nn.Dropout's words."""
    value = _real("p", p)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return value


def check_negative_slope(negative_slope: object) -> float:
    """LeakyReLU's negative_slope as a float: any finite real number (torch accepts any float;
    0 is ReLU, 1 the identity, a negative slope flips the negative half)."""
    value = _real("negative_slope", negative_slope)
    if math.isinf(value):
        raise ValueError(f"negative_slope: expected a finite number, got {value}")
    return value


def check_approximate(approximate: object) -> str:
    """GELU's approximate: 'none' (the exact erf form) or 'tanh'; ValueError otherwise (torch
    accepts anything at construction and raises RuntimeError at the first forward)."""
    check_choice("approximate", approximate, GELU_APPROXIMATIONS)
    return str(approximate)


def batch_of_one_message(layer: str, shape: tuple[int, ...]) -> str:
    """Train-mode batch norm over a single value per channel: torch.nn.BatchNorm raises
    ``ValueError: Expected more than 1 value per channel when training``; so do the engines."""
    return (f"{layer}: expected more than 1 value per channel when training, got input shape {shape} "
            "(the unbiased running variance divides by n - 1); use a batch of at least 2, or eval()")


def check_channels_facts(layer: str, shape: tuple[int, ...], dtype: str, ranks: tuple[int, ...], channels: int,
                         layer_dtype: str, training: bool) -> None:
    """Batch norm's input: one of ``ranks`` (BatchNorm1d: 2, (batch, C), or 3, (batch, C, length);
    BatchNorm2d: 4, (batch, C, height, width)) with C channels, no empty dimension, the layer's
    dtype, and in train mode more than one value per channel.

    Raises ValueError (rank, channels, empty, one value per channel) or TypeError (dtype), naming the layer.
    """
    forms = {2: f"(batch, {channels})", 3: f"(batch, {channels}, length)", 4: f"(batch, {channels}, height, width)"}
    if len(shape) not in ranks or shape[1] != channels:
        expected = " or ".join(f"{rank}-D {forms[rank]}" for rank in ranks)
        raise ValueError(f"{layer}: x: expected a {expected} input, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"{layer}: x: empty input (shape {shape})")
    if dtype != layer_dtype:
        raise TypeError(f"{layer}: x: expected dtype {layer_dtype} (the layer's dtype), got {dtype}; convert it first")
    if training and math.prod(shape) // channels <= 1:
        raise ValueError(batch_of_one_message(layer, shape))


# numpy.random.PCG64's bit_generator.state: field -> (low, high) bounds of the integer it holds
# (a 128-bit LCG state and increment; a buffered 32-bit half of the last 64-bit draw and its flag).
PCG64_STATE_FIELDS: dict[str, tuple[int, int, str]] = {
    "state.state": (0, 2**128, "an integer in [0, 2**128)"), "state.inc": (0, 2**128, "an integer in [0, 2**128)"),
    "has_uint32": (0, 2, "0 or 1"), "uinteger": (0, 2**32, "an integer in [0, 2**32)")}


def _short(value: object, limit: int = 40) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def check_rng_state(name: str, state: object) -> dict[str, Any]:
    """A dropout generator's state as ``np.random.default_rng(seed).bit_generator.state`` holds it:
    ``{"bit_generator": "PCG64", "state": {"state": s, "inc": i}, "has_uint32": h, "uinteger": u}``,
    exactly these fields, with 0 <= s, i < 2**128, i odd (PCG's increment is always odd: an even
    one shortens the generator's period), h in {0, 1} and 0 <= u < 2**32.

    Returns a fresh copy of it. Raises TypeError (a field of the wrong type) or ValueError (a
    missing or unknown field, a value out of range), naming ``name`` and the field, before NumPy
    sees it (NumPy answers such states with OverflowError or its own TypeError wording).
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"{name}: expected a PCG64 bit generator state dict (from rng_state()), "
                        f"got {type_name(state)} {_short(state)}")
    _exact_fields(name, state, ("bit_generator", "state", "has_uint32", "uinteger"))
    inner = state["state"]
    if state["bit_generator"] != "PCG64":
        raise ValueError(f"{name}: bit_generator: expected 'PCG64' (numpy.random.default_rng's), "
                         f"got {_short(state['bit_generator'])}")
    if not isinstance(inner, Mapping):
        raise TypeError(f"{name}: state: expected an object {{'state': int, 'inc': int}}, got {_short(inner)}")
    _exact_fields(name, inner, ("state", "inc"), prefix="state.")
    values = {"state.state": inner["state"], "state.inc": inner["inc"], "has_uint32": state["has_uint32"],
              "uinteger": state["uinteger"]}
    for field, (low, high, bounds) in PCG64_STATE_FIELDS.items():
        value = values[field]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: {field}: expected {bounds}, got {type_name(value)} {_short(value)}")
        if not low <= int(value) < high:
            raise ValueError(f"{name}: {field}: expected {bounds}, got {_short(int(value))}")
    if int(values["state.inc"]) % 2 == 0:
        raise ValueError(f"{name}: state.inc: expected an odd integer (PCG64's increment is always odd), "
                         f"got {_short(int(values['state.inc']))}")
    return {"bit_generator": "PCG64", "state": {"state": int(values["state.state"]), "inc": int(values["state.inc"])},
            "has_uint32": int(values["has_uint32"]), "uinteger": int(values["uinteger"])}


def _exact_fields(name: str, data: Mapping[Any, Any], expected: tuple[str, ...], prefix: str = "") -> None:
    for key in expected:
        if key not in data:
            raise ValueError(f"{name}: {prefix}{key}: missing (expected the fields {', '.join(expected)})")
    for key in data:
        if key not in expected:
            raise ValueError(f"{name}: {prefix}{key}: unknown field (expected {', '.join(expected)})")


@dataclass(frozen=True)
class LayerNormArgs:
    """torch.nn.LayerNorm's arguments, checked: normalized_shape as a tuple (an int n is (n,))."""

    normalized_shape: tuple[int, ...]
    eps: float
    elementwise_affine: bool
    bias: bool

    def extra_repr(self) -> str:
        """torch's: LayerNorm((64,), eps=1e-05, elementwise_affine=True, bias=True); bias=False
        without elementwise_affine (torch then has no bias)."""
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.elementwise_affine and self.bias}")

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """weight and bias, each normalized_shape; none without elementwise_affine, no bias without bias."""
        if not self.elementwise_affine:
            return {}
        return {"weight": self.normalized_shape, **({"bias": self.normalized_shape} if self.bias else {})}


def check_layernorm_args(normalized_shape: object, eps: object = 1e-5, elementwise_affine: object = True,
                         bias: object = True) -> LayerNormArgs:
    """torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True), checked.

    Raises TypeError (normalized_shape not an int or a sequence of ints, eps not a number, a flag
    not a bool) or ValueError: an empty normalized_shape or a size < 1 (torch would normalise
    nothing, or divide by 0), eps <= 0 or not finite (as BatchNorm's: a row that is constant
    over the normalised dims has variance 0, and x_hat = (x - mean) / sqrt(var + eps) would
    divide 0 by 0; torch accepts eps = 0 and gives NaN there).
    """
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
        sizes: tuple[object, ...] = (normalized_shape,)
    elif isinstance(normalized_shape, (tuple, list)):
        sizes = tuple(normalized_shape)
    else:
        raise TypeError(f"normalized_shape: expected an int or a tuple of ints (the last dimensions to normalise), "
                        f"got {type_name(normalized_shape)} {normalized_shape!r}")
    if not sizes:
        raise ValueError("normalized_shape: expected at least one dimension, got ()")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"normalized_shape: expected ints, got {type_name(size)} {size!r}")
        if size < 1:
            raise ValueError(f"normalized_shape: expected sizes >= 1, got {tuple(sizes)}")
    eps_value = _real("eps", eps)
    if not 0.0 < eps_value < math.inf:
        raise ValueError(f"eps: must be > 0 and finite, got {eps_value} (a row that is constant over the "
                         "normalised dimensions has variance 0, and x_hat = (x - mean) / sqrt(var + eps) would "
                         "divide by sqrt(eps))")
    return LayerNormArgs(tuple(int(s) for s in sizes),  # type: ignore[call-overload]  # checked ints
                         eps_value,
                         check_flag("elementwise_affine", elementwise_affine), check_flag("bias", bias))


def check_layernorm_facts(layer: str, shape: tuple[int, ...], dtype: str, normalized_shape: tuple[int, ...],
                          expected_dtype: str | None) -> None:
    """ValueError unless x's last dimensions are normalized_shape (x may be just that shape, as
    torch takes it) and x is not empty; TypeError for an integer dtype or another floating dtype
    than the layer's. Names the layer."""
    dims = len(normalized_shape)
    if dtype not in ("float16", "bfloat16", "float32", "float64"):
        raise TypeError(f"{layer}: x: expected a floating-point array, got dtype {dtype}")
    if expected_dtype is not None and dtype != expected_dtype:
        raise TypeError(f"{layer}: x: expected dtype {expected_dtype} (the layer's), got {dtype}")
    if tuple(shape[len(shape) - dims:]) != normalized_shape or len(shape) < dims:
        form = f"(*, {', '.join(map(str, normalized_shape))})"
        raise ValueError(f"{layer}: expects an input {form}, whose last dimensions are normalized_shape "
                         f"{normalized_shape}, got {shape}")
    if 0 in shape:
        raise ValueError(f"{layer}: expects a non-empty input, got {shape}")

"""Every validator, stated once. Each takes plain Python facts or NumPy state arrays, so both
engines and the oracle call the same code and refuse the same inputs with the same words.

Array-typed checks (is x a numpy.ndarray / a torch.Tensor?) stay in each engine's checks.py;
they gather the facts and hand them to the functions here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import clipped, type_name
from .formats import OptimizerState
from .naming import DTYPES, OPTIMIZER_BUFFERS, OPTIMIZERS

# Second moments are averages of squares: a negative one would make sqrt(v) NaN.
NON_NEGATIVE_BUFFERS = ("exp_avg_sq", "max_exp_avg_sq")


def check_type(name: str, value: object, expected_cls: type | tuple[type, ...], expected_name: str) -> None:
    """TypeError naming ``name`` unless value is an instance of expected_cls."""
    if not isinstance(value, expected_cls):
        raise TypeError(f"{name}: expected a {expected_name}, got {type_name(value)}")


def check_dtype_name(dtype: object) -> str:
    """'float32' / np.float32 / np.dtype('>f4') / torch.float32 -> 'float32'; ValueError otherwise."""
    if isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name  # type: ignore[call-overload]
        except TypeError:
            name = str(dtype)
    name = str(name).replace("torch.", "")
    if name not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return name


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    """ValueError naming ``name`` unless value is one of choices (an activation, an init, ...)."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


def check_sizes(sizes: object) -> list[int]:
    """sizes: at least [in, out], every entry a positive int. Returns them as a list of ints.

    Raises TypeError for a non-list or a non-int entry, ValueError for fewer than 2 or a width < 1.
    """
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
        raise TypeError(f"sizes: expected a list of layer widths, got {type_name(sizes)}")
    widths = list(sizes)
    if len(widths) < 2:
        raise ValueError(f"sizes: expected at least [in, out], got {widths}")
    for i, size in enumerate(widths):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"sizes[{i}]: expected a positive int, got {size!r}")
        if size <= 0:
            raise ValueError(f"sizes[{i}]: expected a positive width, got {size}")
    return [int(s) for s in widths]


def check_batch_facts(name: str, shape: tuple[int, ...], dtype: str, in_features: int, net_dtype: str) -> None:
    """A Linear's input: x must be (*, in_features) as torch.nn.Linear's documentation page has it
    (a batch (batch, in_features), a single row (in_features,), or any leading dimensions), none
    of them empty, in the network's dtype; ValueError/TypeError otherwise."""
    if len(shape) == 0:
        raise ValueError(f"{name}: expected an array of shape (batch, {in_features}) (or (*, {in_features}): any "
                         f"leading dimensions), got a 0-D array (shape ())")
    if shape[-1] != in_features:
        form = f"(batch, {in_features})" if len(shape) == 2 else f"(*, {in_features}) (its last dimension)"
        raise ValueError(f"{name}: expected shape {form}, got {shape}")
    if 0 in shape:
        what = "empty batch" if len(shape) == 2 else "empty input"
        raise ValueError(f"{name}: {what} (shape {shape}); pass at least one row")
    if dtype != net_dtype:
        raise TypeError(f"{name}: expected dtype {net_dtype} (the network's dtype), got {dtype}; convert it first")


def check_label_facts(shape: tuple[int, ...], kind: str, dtype: str, batch: int) -> None:
    """y must be (batch,) integers; kind is 'int', 'bool', 'float' (or anything else)."""
    if len(shape) != 1:
        raise ValueError(f"y: expected a 1-D array of {batch} labels, got shape {shape}")
    if kind != "int":
        raise TypeError(f"y: expected integer class labels, got dtype {dtype}")
    if shape[0] != batch:
        raise ValueError(f"y: expected {batch} labels (one per row of logits), got {shape[0]}")


def check_logits_facts(shape: tuple[int, ...], dtype: str) -> None:
    """logits must be a non-empty (batch, classes) float32/float64 array."""
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"logits: expected a non-empty 2-D (batch, classes) array, got shape {shape}")
    if dtype not in DTYPES:
        raise TypeError(f"logits: expected dtype float32 or float64, got {dtype}")


def check_sgd(lr: float, momentum: float, dampening: float, nesterov: bool, weight_decay: float) -> None:
    """torch.optim.SGD's own rules, with its wording (torch.optim.SGD documentation)."""
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if momentum < 0.0:
        raise ValueError(f"Invalid momentum value: {momentum}")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")


def check_adam(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """torch.optim.Adam's own rules, with its wording (torch.optim.Adam documentation): written
    as ``not 0.0 <= value``, as torch does, so NaN is refused too."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


def check_max_norm(max_norm: object) -> float:
    """clip_grad_norm_'s max_norm as a float: a number >= 0, where 0 zeroes every gradient and inf
    clips nothing, as in torch.nn.utils.clip_grad_norm_. Stricter than torch, which takes any
    float: a negative max_norm would turn every gradient around (a step up the loss) and NaN
    would make every gradient NaN, so both are refused. Raises TypeError for a non-number (bool
    included), ValueError naming max_norm otherwise."""
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.integer, np.floating)):
        raise TypeError(f"max_norm: expected a number >= 0, got {type_name(max_norm)} {clipped(repr(max_norm))}")
    try:
        value = float(max_norm)
    except OverflowError:  # an integer beyond any float (torch's float() refuses it too)
        raise ValueError(f"max_norm: {clipped(repr(max_norm))} is beyond any float") from None
    if not value >= 0:  # NaN fails this too
        raise ValueError(f"max_norm: expected a number >= 0 (the largest global gradient norm a step keeps; a "
                         f"negative one would reverse every gradient), got {clipped(repr(max_norm))}")
    return value


def check_seed(seed: object) -> int:
    """A seed for np.random.default_rng: an int >= 0 (bool and None refused: a run must be
    reproducible). Raises TypeError or ValueError naming the seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int >= 0, got {type_name(seed)} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed}")
    return int(seed)


def check_label_values(array: object) -> np.ndarray:
    """Class labels as int64 (native byte order), refusing what a cast would hide: non-integer
    dtypes (floats would be truncated, bools and strings are no labels) and values beyond int64.

    Raises TypeError for the dtype, ValueError naming the first value that does not fit.
    """
    labels = native(np.asarray(array))
    if labels.dtype.kind not in "iu":
        raise TypeError(f"y: expected integer class labels, got dtype {labels.dtype}")
    if labels.dtype.kind == "u" and labels.dtype.itemsize == 8 and labels.size:
        too_big = labels > np.iinfo(np.int64).max
        if too_big.any():
            position = int(np.argmax(too_big))
            raise ValueError(f"y: label {int(labels.flat[position])} at position {position} does not fit int64")
    return labels.astype(np.int64, copy=False)


def as_numpy(value: object, name: str) -> np.ndarray:
    """A NumPy array in native byte order from a NumPy array or a tensor (.detach().cpu().numpy()).

    Raises TypeError for anything else, or a tensor NumPy cannot hold (bfloat16, a meta tensor).
    """
    if isinstance(value, np.ndarray):
        array = value
    elif hasattr(value, "detach") and hasattr(value, "cpu"):
        try:
            array = value.detach().cpu().numpy()  # type: ignore[attr-defined]
        except (TypeError, RuntimeError, NotImplementedError) as error:
            dtype = getattr(value, "dtype", "?")
            raise TypeError(f"{name}: a tensor of dtype {dtype} NumPy cannot hold ({type(error).__name__}); "
                            "expected float32 or float64 values") from None
    else:
        raise TypeError(f"{name}: expected an array, got {type_name(value)}")
    return native(array)


def shape_of(array: object) -> tuple[int, ...]:
    """The shape of an array-like as a tuple of ints, for messages (np.shape of a nested list)."""
    shape = getattr(array, "shape", None)
    if shape is None:
        try:
            shape = np.shape(array)  # type: ignore[arg-type,call-overload]
        except (ValueError, TypeError):
            shape = ()
    return tuple(int(n) for n in shape)


def dtype_name_of(array: object) -> str:
    """'float32' for a NumPy array or a tensor of that dtype."""
    return str(getattr(array, "dtype", "")).replace("torch.", "")


def native(array: np.ndarray) -> np.ndarray:
    """The array in this machine's byte order (the same object when it already is).

    np.fromfile and IDX-style readers give big-endian arrays; NumPy computes with them, but
    torch.from_numpy refuses them and a dtype comparison would call '>f4' and '<f4' different.
    """
    if array.dtype.isnative:
        return array
    return array.astype(array.dtype.newbyteorder("="))


STATE_DTYPES = ("float16", "float32", "float64")  # what every engine (NumPy and torch) can hold


def _float_array(value: object, name: str, shape: tuple[int, ...], dtype: str | None = None) -> np.ndarray:
    """A finite float16/32/64 array of ``shape`` whose values also stay finite in ``dtype``
    (the network's, where it is cast), returned as a NumPy array in native byte order."""
    array = as_numpy(value, name)
    if array.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {array.dtype}")
    if array.dtype.name not in STATE_DTYPES:
        raise TypeError(f"{name}: expected dtype {', '.join(STATE_DTYPES)}, got {array.dtype}")
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    if dtype is not None and array.size:
        largest = float(np.abs(array).max())
        if largest > float(np.finfo(dtype).max):
            raise ValueError(f"{name}: holds {largest:g}, beyond {dtype}'s range (the network's dtype)")
    return array


def _check_keys(name: str, expected: Iterable[str], given: Iterable[Any], what: str = "key") -> None:
    expected, given = list(expected), list(given)
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    if missing:
        raise ValueError(f"{name}: missing {what} {missing[0]!r} (expected {what}s {expected})")
    if extra:
        raise ValueError(f"{name}: unexpected {what} {extra[0]!r} (expected {what}s {expected})")


def check_model_state(expected: Mapping[str, tuple[int, ...]], state: object,
                      dtype: str | None = None) -> dict[str, np.ndarray]:
    """A model state dict: exactly the keys of ``expected``, each a finite float16/32/64 array of
    that shape whose values stay finite in ``dtype`` (the network's) when given; buffers checked
    for what they are (check_buffer_values: a batch norm's running_var >= 0).

    Returns the values as NumPy arrays in native byte order. Raises TypeError/ValueError naming
    the key before anything is copied anywhere, so a failed load leaves the network untouched.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state_dict: expected a dict, got {type_name(state)}")
    _check_keys("state_dict", expected, state)
    arrays = {}
    for name, shape in expected.items():
        where = f"state_dict[{name!r}]"
        arrays[name] = check_buffer_values(where, name, _float_array(state[name], where, shape, dtype))
    return arrays


def check_buffer_values(where: str, key: str, array: np.ndarray) -> np.ndarray:
    """A state-dict entry checked for what its name says it is (by its last dotted part, so
    ``running_var`` and ``"3.running_var"`` alike): a batch norm's running_var is an average of
    variances, so every value is >= 0 (a negative one would make sqrt(running_var + eps) NaN in
    eval mode). Other entries pass as they are (their finiteness is _float_array's). Returns
    ``array``; ValueError naming ``where`` otherwise."""
    if key.rsplit(".", 1)[-1] == "running_var" and array.size and (array < 0).any():
        position = int(np.argmin(array))
        raise ValueError(f"{where}: a running variance must be >= 0, got {float(array.flat[position]):g} "
                         f"at position {position}")
    return array


def check_num_batches_tracked(name: str, value: object) -> int:
    """A batch norm's num_batches_tracked: an integer 0 <= n < 2**63 (torch keeps it as a 0-d
    int64). Raises TypeError (not an integer; bool refused) or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer >= 0, got {type_name(value)} {clipped(repr(value))}")
    if not 0 <= int(value) < 2**63:
        raise ValueError(f"{name}: expected an integer in [0, 2**63) (torch's int64 counter), "
                         f"got {clipped(str(int(value)))}")
    return int(value)


def expected_buffers(optimizer: str, hyper: Mapping[str, Any], step: int) -> tuple[str, ...]:
    """The buffers torch.optim holds after ``step`` steps of ``optimizer`` with these settings.

    SGD keeps momentum_buffer once it has stepped with a momentum; Adam/AdamW keep exp_avg and
    exp_avg_sq once they have stepped, and max_exp_avg_sq too with amsgrad. Before the first
    step there are none.
    """
    if step == 0:
        return ()
    if optimizer == "sgd":
        return ("momentum_buffer",) if hyper.get("momentum", 0.0) else ()
    names = ("exp_avg", "exp_avg_sq")
    return (*names, "max_exp_avg_sq") if hyper.get("amsgrad", False) else names


def check_optimizer_state(
    optimizer: str, hyper: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], state: object,
    dtype: str | None = None,
) -> OptimizerState:
    """Validate a whole optimizer state dict before anything is loaded (all-or-nothing).

    ``optimizer`` is "sgd", "adam" or "adamw"; ``hyper`` holds the settings that decide which
    buffers exist ("momentum" for SGD, "amsgrad" for Adam/AdamW); ``shapes`` are the network's
    parameter shapes. The state must be {"step": int >= 0, "lr": float >= 0, "state":
    {buffer: {parameter: array}}} with exactly the buffers that ``step`` steps of this optimizer
    leave (see expected_buffers: a step count that contradicts the buffers is refused), each
    buffer holding every parameter, each a finite float array of the parameter's shape, second
    moments >= 0, values finite in ``dtype`` (the parameters', when given). Loading Adam state
    saved without amsgrad into an amsgrad optimizer is refused
    (torch would accept it and fail at the next step with KeyError 'max_exp_avg_sq').

    Returns the validated state with NumPy arrays in native byte order. Raises TypeError for a
    wrong type and ValueError for a wrong value, naming the buffer and the parameter.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    label = f"optimizer state ({OPTIMIZERS[optimizer]})"
    if not isinstance(state, Mapping):
        raise TypeError(f"{label}: expected a dict, got {type_name(state)}")
    _check_keys(label, ("step", "lr", "state"), state)
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"{label}: 'step' must be an int, got {step!r}")
    if step < 0:
        raise ValueError(f"{label}: 'step' must be >= 0, got {step}")
    lr = state["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise TypeError(f"{label}: 'lr' must be a number, got {lr!r}")
    try:
        finite = math.isfinite(lr) and lr >= 0
    except OverflowError:  # an int beyond any float
        finite = False
    if not finite:
        raise ValueError(f"{label}: 'lr' must be a finite number >= 0, got {clipped(repr(lr))}")
    buffers = state["state"]
    if not isinstance(buffers, Mapping):
        raise TypeError(f"{label}: 'state' must be a dict of buffers, got {type_name(buffers)}")
    known = OPTIMIZER_BUFFERS[optimizer]
    for name in buffers:
        if name not in known:
            raise ValueError(f"{label}: unexpected buffer {name!r} (this optimizer keeps {list(known)})")
    wanted = expected_buffers(optimizer, hyper, int(step))
    for name in wanted:
        if name not in buffers:
            why = (
                "the optimizer has amsgrad=True, and this state was saved without it"
                if name == "max_exp_avg_sq"
                else f"after {int(step)} steps this optimizer holds it"
            )
            raise ValueError(f"{label}: missing buffer {name!r} ({why})")
    for name in buffers:
        if name not in wanted:
            why = (
                "the state says no step was taken yet" if step == 0
                else "this optimizer has amsgrad=False" if name == "max_exp_avg_sq"
                else "this optimizer has momentum=0"
            )
            raise ValueError(f"{label}: unexpected buffer {name!r} at step {int(step)} ({why})")
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in wanted:
        per_param = buffers[name]
        if not isinstance(per_param, Mapping):
            raise TypeError(f"{label}: buffer {name!r} must be a dict of arrays, got {type_name(per_param)}")
        _check_keys(f"{label}: buffer {name!r}", shapes, per_param, what="parameter")
        arrays = {}
        for param, shape in shapes.items():
            where = f"{label}: {name}[{param!r}]"
            array = _float_array(per_param[param], where, shape, dtype)
            if name in NON_NEGATIVE_BUFFERS and (array < 0).any():
                raise ValueError(f"{where}: a second moment must be >= 0, got {float(array.min())}")
            arrays[param] = array
        out[name] = arrays
    return {"step": int(step), "lr": float(lr), "state": out}

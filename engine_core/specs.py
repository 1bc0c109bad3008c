"""Layer specifications: the catalog of layers every engine may provide, described once.

A network beyond the MLP is a list of ``LayerSpec(kind, args)``; ``args`` are torch's argument
names and defaults (torch.nn.Conv2d, MaxPool2d, AvgPool2d, Flatten, Dropout, BatchNorm1d/2d,
Linear, LeakyReLU, GELU documentation pages). From the list alone this module derives what
every engine must agree on: each layer's class name, the state-dict keys and shapes (torch.nn.
Sequential's scheme: ``"{index}.weight"``, ``"{index}.running_mean"``, ...; Linear weights are
laid out (in, out) here and (out, in) in torch), the output shape of every layer (so random
stacks type-check), and the initial parameters, drawn once in NumPy for every engine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from .checks import check_choice, check_seed
from .conv_checks import check_conv_args, check_count, check_pool_args
from .errors import type_name
from .layer_checks import check_approximate, check_batchnorm_args, check_dropout_p, check_negative_slope

# kind -> (class name in an engine module, argument defaults; a name without a default is required)
REQUIRED = object()
KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "linear": ("Linear", {"in_features": REQUIRED, "out_features": REQUIRED, "bias": True}),
    "conv2d": ("Conv2d", {"in_channels": REQUIRED, "out_channels": REQUIRED, "kernel_size": REQUIRED,
                          "stride": 1, "padding": 0, "bias": True}),
    "maxpool2d": ("MaxPool2d", {"kernel_size": REQUIRED, "stride": None}),
    "avgpool2d": ("AvgPool2d", {"kernel_size": REQUIRED, "stride": None}),
    "flatten": ("Flatten", {}),
    "dropout": ("Dropout", {"p": 0.5, "seed": 0}),
    "batchnorm1d": ("BatchNorm1d", {"num_features": REQUIRED, "eps": 1e-5, "momentum": 0.1}),
    "batchnorm2d": ("BatchNorm2d", {"num_features": REQUIRED, "eps": 1e-5, "momentum": 0.1}),
    "identity": ("Identity", {}),
    "relu": ("ReLU", {}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "leakyrelu": ("LeakyReLU", {"negative_slope": 0.01}),
    "gelu": ("GELU", {"approximate": "none"}),
}
# Kinds whose constructor takes dtype= (they own parameters or buffers).
WITH_STATE = ("linear", "conv2d", "batchnorm1d", "batchnorm2d")


def pair(value: int | Sequence[int]) -> tuple[int, int]:
    """A kernel size, stride or padding as (height, width), torch's int-or-pair convention."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    height, width = value
    return int(height), int(width)


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``kind`` (a key of KINDS) and its arguments (torch's names), defaults filled in.

    Raises ValueError for an unknown kind, a missing required argument or an unknown argument,
    and ValueError/TypeError naming the argument for a value the layer's constructor refuses
    (the engine-neutral checks every engine's layers run, see check_args).
    """

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("layer kind", self.kind, KINDS)
        _, defaults = KINDS[self.kind]
        unknown = [name for name in self.args if name not in defaults]
        if unknown:
            raise ValueError(f"{self.kind}: unknown argument {unknown[0]!r} (expected {', '.join(defaults)})")
        full = {}
        for name, default in defaults.items():
            if name in self.args:
                full[name] = self.args[name]
            elif default is REQUIRED:
                raise ValueError(f"{self.kind}: missing argument {name!r}")
            else:
                full[name] = default
        object.__setattr__(self, "args", full)
        try:
            check_args(self.kind, full)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{self.kind}: {error}") from None

    @property
    def class_name(self) -> str:
        return KINDS[self.kind][0]

    def to_json(self) -> dict[str, Any]:
        """{"kind": ..., "args": {...}} with every argument, JSON-ready (tuples as lists)."""
        return {"kind": self.kind, "args": {k: list(v) if isinstance(v, tuple) else v for k, v in self.args.items()}}

    @classmethod
    def from_json(cls, data: object, where: str = "layer spec") -> LayerSpec:
        """The inverse of to_json, as strict as it: exactly the fields "kind" and "args", and
        every argument of the kind in args (to_json writes them all; a stored spec missing one
        was edited, and filling in the default would build another network than the one saved).

        Raises ValueError/TypeError whose message starts with ``where`` and names the field:
        ``<where>.kind``, ``<where>.<argument>`` (missing, unknown, or a value the layer refuses).
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"{where}: expected {{'kind': ..., 'args': {{...}}}}, got {type_name(data)}")
        for name in ("kind", "args"):
            if name not in data:
                raise ValueError(f"{where}.{name}: missing (a stored layer is {{'kind': ..., 'args': {{...}}}})")
        for name in data:
            if name not in ("kind", "args"):
                raise ValueError(f"{where}.{name}: unknown field (expected kind, args)")
        kind, args = data["kind"], data["args"]
        if not isinstance(kind, str) or kind not in KINDS:
            raise ValueError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(args, Mapping):
            raise TypeError(f"{where}.args: expected an object of {kind}'s arguments, got {type_name(args)}")
        names = list(KINDS[kind][1])
        for name in args:
            if name not in names:
                raise ValueError(f"{where}.{name}: unknown argument of {kind} (its arguments: "
                                 f"{', '.join(names) or 'none'})")
        for name in names:
            if name not in args:
                raise ValueError(f"{where}.{name}: missing (a stored {kind} carries every argument: "
                                 f"{', '.join(names)})")
        try:
            return cls(kind, {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
        except (TypeError, ValueError) as error:
            # check_args' messages start with the argument's name: "<kind>: <argument>: ...".
            message = str(error).removeprefix(f"{kind}: ")
            head = message.split(":", 1)[0]
            path = f"{where}.{message}" if head in names else f"{where}: {message}"
            raise type(error)(path) from None

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.class_name}({shown})"


def check_args(kind: str, args: Mapping[str, Any]) -> None:
    """The checks the layers' constructors run on their arguments (engine_core.conv_checks,
    layer_checks), without building a layer. Raises TypeError/ValueError naming the argument."""
    if kind == "linear":
        check_count("in_features", args["in_features"])
        check_count("out_features", args["out_features"])
    elif kind == "conv2d":
        check_conv_args(args["in_channels"], args["out_channels"], args["kernel_size"], args["stride"],
                        args["padding"])
    elif kind in ("maxpool2d", "avgpool2d"):
        check_pool_args(args["kernel_size"], args["stride"])
    elif kind == "dropout":
        check_dropout_p(args["p"])
        check_seed(args["seed"])
    elif kind in ("batchnorm1d", "batchnorm2d"):
        check_batchnorm_args(args["num_features"], args["eps"], args["momentum"])
    elif kind == "leakyrelu":
        check_negative_slope(args["negative_slope"])
    elif kind == "gelu":
        check_approximate(args["approximate"])
    if "bias" in args and not isinstance(args["bias"], bool):
        raise TypeError(f"bias: expected True or False, got {args['bias']!r}")


def specs_to_json(specs: Iterable[LayerSpec]) -> str:
    """A compact JSON string of a spec list (what config.json and checkpoints store)."""
    return json.dumps([s.to_json() for s in specs])


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def output_shape(spec: LayerSpec, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The layer's output shape for an input of ``shape`` (batch first).

    Raises ValueError naming the layer when the input does not fit (rank, channels, features,
    a kernel larger than the padded input).
    """
    a, kind = spec.args, spec.kind
    where = repr(spec)
    if kind == "linear":
        if len(shape) != 2 or shape[1] != a["in_features"]:
            raise ValueError(f"{where}: expects input (batch, {a['in_features']}), got {shape}")
        return (shape[0], a["out_features"])
    if kind in ("conv2d", "maxpool2d", "avgpool2d", "batchnorm2d"):
        if len(shape) != 4:
            raise ValueError(f"{where}: expects a 4-D input (batch, channels, height, width), got {shape}")
    if kind == "conv2d":
        if shape[1] != a["in_channels"]:
            raise ValueError(f"{where}: expects {a['in_channels']} input channels, got {shape[1]}")
        (kh, kw), (sh, sw), (ph, pw) = pair(a["kernel_size"]), pair(a["stride"]), pair(a["padding"])
        height, width = _conv_out(shape[2], kh, sh, ph), _conv_out(shape[3], kw, sw, pw)
        if height < 1 or width < 1:
            raise ValueError(f"{where}: kernel larger than the padded input {shape[2:]}")
        return (shape[0], a["out_channels"], height, width)
    if kind in ("maxpool2d", "avgpool2d"):
        kernel = pair(a["kernel_size"])
        stride = pair(a["stride"] if a["stride"] is not None else a["kernel_size"])
        height, width = _conv_out(shape[2], kernel[0], stride[0], 0), _conv_out(shape[3], kernel[1], stride[1], 0)
        if height < 1 or width < 1:
            raise ValueError(f"{where}: kernel larger than the input {shape[2:]}")
        return (shape[0], shape[1], height, width)
    if kind == "flatten":
        return (shape[0], int(np.prod(shape[1:], dtype=np.int64)))
    if kind in ("batchnorm1d", "batchnorm2d"):
        if kind == "batchnorm1d" and len(shape) != 2:
            raise ValueError(f"{where}: expects a 2-D input (batch, {a['num_features']}), got {shape}")
        if shape[1] != a["num_features"]:
            raise ValueError(f"{where}: expects {a['num_features']} features/channels, got {shape[1]}")
    return shape


def output_shapes(specs: Sequence[LayerSpec], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The output shape after every layer of the stack (ValueError where it does not type-check)."""
    shapes, shape = [], tuple(input_shape)
    for spec in specs:
        shape = output_shape(spec, shape)
        shapes.append(shape)
    return shapes


def parameter_shapes_of(spec: LayerSpec) -> dict[str, tuple[int, ...]]:
    """Trainable parameters of one layer: name -> shape (Linear weight (in, out))."""
    a = spec.args
    shapes: dict[str, tuple[int, ...]]
    if spec.kind == "linear":
        shapes = {"weight": (a["in_features"], a["out_features"])}
        return {**shapes, "bias": (a["out_features"],)} if a["bias"] else shapes
    if spec.kind == "conv2d":
        kh, kw = pair(a["kernel_size"])
        shapes = {"weight": (a["out_channels"], a["in_channels"], kh, kw)}
        return {**shapes, "bias": (a["out_channels"],)} if a["bias"] else shapes
    if spec.kind in ("batchnorm1d", "batchnorm2d"):
        return {"weight": (a["num_features"],), "bias": (a["num_features"],)}
    return {}


def buffer_shapes_of(spec: LayerSpec) -> dict[str, tuple[int, ...]]:
    """State that is not trained but saved (batch norm's running statistics): name -> shape."""
    if spec.kind in ("batchnorm1d", "batchnorm2d"):
        n = spec.args["num_features"]
        return {"running_mean": (n,), "running_var": (n,)}
    return {}


def state_shapes(specs: Sequence[LayerSpec]) -> dict[str, tuple[int, ...]]:
    """{"0.weight": ..., "0.bias": ..., "3.running_mean": ...}: torch.nn.Sequential's keys, in order
    (per layer: parameters, then buffers)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for index, spec in enumerate(specs):
        for name, shape in {**parameter_shapes_of(spec), **buffer_shapes_of(spec)}.items():
            shapes[f"{index}.{name}"] = shape
    return shapes


def initial_state(specs: Sequence[LayerSpec], seed: int) -> dict[str, np.ndarray]:
    """Every parameter and buffer of the stack in float64, from one np.random.default_rng(seed).

    torch's default initialisation (torch.nn.Linear and torch.nn.Conv2d reset_parameters):
    weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_features or
    in_channels * kH * kW, drawn weight then bias, layer after layer; batch norm starts at
    weight 1, bias 0, running_mean 0, running_var 1.
    """
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}
    for index, spec in enumerate(specs):
        params = parameter_shapes_of(spec)
        if spec.kind in ("linear", "conv2d"):
            weight = params["weight"]
            fan_in = weight[0] if spec.kind == "linear" else int(np.prod(weight[1:]))
            bound = 1.0 / math.sqrt(fan_in)
            for name, shape in params.items():
                state[f"{index}.{name}"] = rng.uniform(-bound, bound, shape)
        elif spec.kind in ("batchnorm1d", "batchnorm2d"):
            n = spec.args["num_features"]
            state[f"{index}.weight"], state[f"{index}.bias"] = np.ones(n), np.zeros(n)
            state[f"{index}.running_mean"], state[f"{index}.running_var"] = np.zeros(n), np.ones(n)
    return state


def build(module: ModuleType, specs: Sequence[LayerSpec], dtype: str = "float32", seed: int = 0,
          sequential_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    """``module.Sequential`` of the engine's own layer classes for ``specs``, loaded with
    initial_state(specs, seed). ``kwargs`` (e.g. device=) go to every layer that takes dtype;
    ``sequential_kwargs`` (e.g. the oracle's keep_deltas=False) to the Sequential itself.

    Raises AttributeError naming the class when the engine does not provide a layer.
    """
    layers = []
    for spec in specs:
        cls = getattr(module, spec.class_name, None)
        if cls is None:
            raise AttributeError(f"engine {module.__name__!r} has no {spec.class_name} layer")
        extra = {"dtype": dtype, **kwargs} if spec.kind in WITH_STATE else {}
        layers.append(cls(**spec.args, **extra))
    if not hasattr(module, "Sequential"):
        raise AttributeError(f"engine {module.__name__!r} has no Sequential")
    net = module.Sequential(*layers, **(sequential_kwargs or {}))
    net.load_state_dict(initial_state(specs, seed))
    return net


def torch_state_shapes(specs: Sequence[LayerSpec]) -> dict[str, tuple[int, ...]]:
    """torch.nn.Sequential(*layers).state_dict()'s keys and shapes, in its order: state_shapes
    with Linear weights (out, in) and, after each batch norm's buffers, its
    ``"{index}.num_batches_tracked"`` (a 0-d int64 counter, shape ())."""
    shapes: dict[str, tuple[int, ...]] = {}
    for key, shape in state_shapes(specs).items():
        index, name = key.split(".", 1)
        kind = specs[int(index)].kind
        shapes[key] = shape[::-1] if (kind == "linear" and name == "weight") else shape
        if name == "running_var":
            shapes[f"{index}.num_batches_tracked"] = ()
    return shapes


def to_torch_layout(specs: Sequence[LayerSpec], state: Mapping[str, np.ndarray],
                    num_batches_tracked: Mapping[int, int] | None = None) -> dict[str, np.ndarray]:
    """An engine state dict (Linear weights (in, out)) as torch.nn.Sequential's: Linear weights
    transposed, every batch norm's num_batches_tracked added as a 0-d int64 (default 0). Keys
    and order: torch_state_shapes(specs). KeyError naming a key the state lacks."""
    tracked = num_batches_tracked or {}
    out: dict[str, np.ndarray] = {}
    for key in torch_state_shapes(specs):
        index, name = key.split(".", 1)
        if name == "num_batches_tracked":
            out[key] = np.array(int(tracked.get(int(index), 0)), np.int64)
        elif specs[int(index)].kind == "linear" and name == "weight":
            out[key] = np.ascontiguousarray(np.asarray(state[key]).T)
        else:
            out[key] = np.asarray(state[key])
    return out


def from_torch_layout(specs: Sequence[LayerSpec], state: Mapping[str, Any],
                      dtype: str | None = None) -> tuple[dict[str, np.ndarray], dict[int, int]]:
    """torch.nn.Sequential's state dict (NumPy arrays in torch's layout) as (an engine state dict
    with Linear weights (in, out), every batch norm's num_batches_tracked by layer index).

    The keys must be exactly torch_state_shapes(specs)'s, each of its shape; num_batches_tracked
    an integer >= 0. Raises ValueError/TypeError naming the key (missing, unexpected, wrong
    shape, not floating point, NaN/Inf); floats are cast to ``dtype`` (default: the first one's).
    """
    from .checks import check_model_state

    expected = torch_state_shapes(specs)
    missing = [key for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(map(str, extra))}"] if extra else [])
        raise ValueError(f"state dict does not match the layers: {'; '.join(parts)} (expected the keys "
                         f"{', '.join(expected)})")
    tracked: dict[int, int] = {}
    engine: dict[str, np.ndarray] = {}
    for key, shape in expected.items():
        value = np.asarray(state[key])
        index, name = key.split(".", 1)
        if name == "num_batches_tracked":
            if value.shape != () or value.dtype.kind not in "iu" or int(value) < 0:
                raise ValueError(f"{key}: expected a 0-d integer >= 0, got {value.dtype} {value.shape}")
            tracked[int(index)] = int(value)
            continue
        if value.shape != shape:
            raise ValueError(f"{key}: expected shape {shape} (torch's layout), got {value.shape}")
        engine[key] = value.T if (specs[int(index)].kind == "linear" and name == "weight") else value
    if dtype is None:
        dtype = next((v.dtype.name for v in engine.values() if v.dtype.kind == "f"), "float32")
    checked = check_model_state(state_shapes(specs), engine, dtype)
    return {key: np.ascontiguousarray(value, dtype) for key, value in checked.items()}, tracked

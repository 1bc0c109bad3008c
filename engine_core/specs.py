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

from .checks import check_choice

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

    Raises ValueError for an unknown kind, a missing required argument or an unknown argument.
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

    @property
    def class_name(self) -> str:
        return KINDS[self.kind][0]

    def to_json(self) -> dict[str, Any]:
        """{"kind": ..., "args": {...}} with every argument, JSON-ready (tuples as lists)."""
        return {"kind": self.kind, "args": {k: list(v) if isinstance(v, tuple) else v for k, v in self.args.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LayerSpec:
        """The inverse of to_json; ValueError/TypeError naming what is wrong."""
        if not isinstance(data, Mapping) or "kind" not in data:
            raise ValueError(f"layer spec: expected {{'kind': ..., 'args': {{...}}}}, got {data!r}")
        args = data.get("args", {})
        if not isinstance(args, Mapping):
            raise TypeError(f"layer spec {data['kind']!r}: 'args' must be a dict, got {args!r}")
        return cls(str(data["kind"]), {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.class_name}({shown})"


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
          **kwargs: Any) -> Any:
    """``module.Sequential`` of the engine's own layer classes for ``specs``, loaded with
    initial_state(specs, seed). ``kwargs`` (e.g. device=) go to every layer that takes dtype.

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
    net = module.Sequential(*layers)
    net.load_state_dict(initial_state(specs, seed))
    return net

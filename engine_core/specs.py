"""Layer specifications: the one catalog of layers every engine may provide, and networks as trees.

A network is a tree of ``LayerSpec(kind, args, children)``: a container (``sequential``) holds
named children, as torch.nn.Sequential does, and a leaf is one layer with torch's argument names
and defaults (torch.nn.Linear, Conv2d, MaxPool2d, AvgPool2d, Flatten, Dropout, BatchNorm1d/2d,
LeakyReLU, GELU documentation pages). Each kind is registered once (``register(Kind(...))``)
with everything that is not an engine's math: its class name (the same in every engine and in
torch.nn), its arguments and their checks, its output shape, its parameters and buffers and how
they start. From a tree alone this module derives what every engine must agree on: the
state-dict keys (exactly torch.nn.Module.state_dict()'s dotted paths: ``0.weight``,
``1.0.running_mean``; Linear weights laid out (in, out) here, (out, in) in torch), the shapes,
every layer's output shape, and the initial state, drawn once in NumPy for every engine.

``mlp(sizes, activation)`` is the multi-layer perceptron as such a tree: what ``--layers
'linear(784, 64), relu, linear(64, 10)'`` gives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

from .attention_checks import (
    AttentionArgs,
    EmbeddingArgs,
    EncoderLayerArgs,
    check_attention_args,
    check_embedding_args,
    check_encoder_layer_args,
    encoder_dropout_seed,
)
from .checks import check_choice, check_dtype_name, check_seed, check_sizes
from .conv_checks import (
    ConvArgs,
    PoolArgs,
    check_avgpool_args,
    check_conv_args,
    check_count,
    check_flatten_args,
    check_maxpool_args,
    check_pool_windows,
    flatten_shape,
)
from .errors import type_name
from .layer_checks import (
    LayerNormArgs,
    check_approximate,
    check_batchnorm_args,
    check_dropout_p,
    check_flag,
    check_layernorm_args,
    check_negative_slope,
)
from .naming import ACTIVATION_NAMES, INITS
from .recurrent_checks import RecurrentArgs, check_recurrent_args, sequence_form
from .windows import Windows

Shape = tuple[int, ...]
REQUIRED = object()  # an argument without a default


def _no_check(args: Mapping[str, Any]) -> None:
    return None


def _nothing(args: Mapping[str, Any]) -> dict[str, Shape]:
    return {}


@dataclass(frozen=True)
class Kind:
    """One layer kind of the catalog, registered once with everything engines and tools share.

    ``defaults``: torch's arguments in torch's order (REQUIRED for none); ``check(args)`` raises
    TypeError/ValueError naming the argument; ``output(spec, in_shape)`` gives the output shape
    or raises ValueError naming the layer (None: the shape is unchanged); ``parameters(args)`` and
    ``buffers(args)`` give name -> shape in torch's order (Linear weight (in, out));
    ``initialize(args, rng, init)`` draws them in float64 (None: nothing to draw);
    ``container``: holds the children it is given (``sequential``); ``parts(args)``: the named
    children a composite layer builds for itself from its arguments, as its torch.nn class does
    (a transformer layer's ``self_attn``, ``linear1``, ``norm1``: their state keys follow,
    ``block.norm1.weight``; None for a plain layer); ``takes_dtype``: the engines' constructor
    takes dtype= (and torch_net's device=); ``torch_args(args)``: the arguments of the torch.nn
    class of the same name; ``transposed``: parameters torch stores as the transpose of ours;
    ``added``: arguments added to the catalog after checkpoint format 4, which a network stored
    before them lacks (LayerSpec.from_json fills in their defaults, the only behaviour there was).
    """

    name: str
    class_name: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Mapping[str, Any]], object] = _no_check
    output: Callable[[LayerSpec, Shape], Shape] | None = None
    parameters: Callable[[Mapping[str, Any]], dict[str, Shape]] = _nothing
    buffers: Callable[[Mapping[str, Any]], dict[str, Shape]] = _nothing
    initialize: Callable[[Mapping[str, Any], np.random.Generator, str], dict[str, np.ndarray]] | None = None
    container: bool = False
    parts: Callable[[Mapping[str, Any]], list[tuple[str, LayerSpec]]] | None = None
    takes_dtype: bool = False
    torch_args: Callable[[Mapping[str, Any]], dict[str, Any]] = dict
    transposed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add a kind to the catalog (ValueError if its name is taken); returns it."""
    if kind.name in KINDS:
        raise ValueError(f"layer kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def pair(value: int | Sequence[int]) -> tuple[int, int]:
    """A kernel size, stride or padding as (height, width), torch's int-or-pair convention."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    height, width = value
    return int(height), int(width)


def join(prefix: str, name: str) -> str:
    """A dotted state-dict path, as torch.nn.Module names them: join("1", "weight") = "1.weight"."""
    return f"{prefix}.{name}" if prefix else name


@dataclass(frozen=True)
class LayerSpec:
    """One node of a network: ``kind`` (a key of KINDS), its arguments (torch's names, every
    default filled in) and, for a container, its children (named "0", "1", ... as in
    torch.nn.Sequential).

    Raises ValueError for an unknown kind, a missing required argument or an unknown argument,
    children given to a layer or none to a container, and ValueError/TypeError naming the
    argument for a value the layer's constructor refuses (the engine-neutral checks every
    engine's layers run).
    """

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)
    children: tuple[LayerSpec, ...] = ()

    def __post_init__(self) -> None:
        check_choice("layer kind", self.kind, KINDS)
        info = KINDS[self.kind]
        unknown = [name for name in self.args if name not in info.defaults]
        if unknown:
            expected = ", ".join(info.defaults) or "none"
            raise ValueError(f"{self.kind}: unknown argument {unknown[0]!r} (expected {expected})")
        full = {}
        for name, default in info.defaults.items():
            if name in self.args:
                full[name] = self.args[name]
            elif default is REQUIRED:
                raise ValueError(f"{self.kind}: missing argument {name!r}")
            else:
                full[name] = default
        object.__setattr__(self, "args", full)
        children = tuple(self.children)
        object.__setattr__(self, "children", children)
        if info.container and not children:
            raise ValueError(f"{self.kind}: expected at least one layer inside")
        if not info.container and children:
            raise ValueError(f"{self.kind}: a layer holds no other layers")
        for child in children:
            if not isinstance(child, LayerSpec):
                raise TypeError(f"{self.kind}: expected layer specs inside, got {type_name(child)}")
        try:
            check_args(self.kind, full)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{self.kind}: {error}") from None

    @property
    def info(self) -> Kind:
        return KINDS[self.kind]

    @property
    def class_name(self) -> str:
        return KINDS[self.kind].class_name

    def named_children(self) -> list[tuple[str, LayerSpec]]:
        """(name, child) in order: a container's, named "0", "1", ... as in torch.nn.Sequential;
        a composite layer's parts (Kind.parts), named as its torch.nn class names them."""
        if self.info.parts is not None:
            return self.info.parts(self.args)
        return [(str(index), child) for index, child in enumerate(self.children)]

    def walk(self, prefix: str = "") -> list[tuple[str, LayerSpec]]:
        """(path, spec) of this node and every node below it, depth first, in torch's order of
        named_modules (the root's path is ``prefix``, "" by default)."""
        nodes = [(prefix, self)]
        for name, child in self.named_children():
            nodes.extend(child.walk(join(prefix, name)))
        return nodes

    def leaves(self) -> list[tuple[str, LayerSpec]]:
        """(path, spec) of every layer that is no container, in the order a forward runs them (a
        composite layer is one leaf here: it runs its parts itself)."""
        out: list[tuple[str, LayerSpec]] = []

        def visit(prefix: str, spec: LayerSpec) -> None:
            if not spec.info.container:
                out.append((prefix, spec))
                return
            for name, child in spec.named_children():
                visit(join(prefix, name), child)

        visit("", self)
        return out

    def to_json(self) -> dict[str, Any]:
        """{"kind": ..., "args": {...}} with every argument, JSON-ready (tuples as lists), and
        "children": [...] for a container."""
        out: dict[str, Any] = {"kind": self.kind,
                               "args": {k: list(v) if isinstance(v, tuple) else v for k, v in self.args.items()}}
        if self.info.container:
            out["children"] = [child.to_json() for child in self.children]
        return out

    @classmethod
    def from_json(cls, data: object, where: str = "layer spec") -> LayerSpec:
        """The inverse of to_json, as strict as it: exactly the fields "kind" and "args" (and
        "children" for a container), and every argument of the kind in args (to_json writes them
        all; a stored spec missing one was edited, and filling in the default would build another
        network than the one saved).

        Raises ValueError/TypeError whose message starts with ``where`` and names the field:
        ``<where>.kind``, ``<where>.<argument>`` (missing, unknown, or a value the layer refuses),
        ``<where>.children[i]...`` inside a container.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"{where}: expected {{'kind': ..., 'args': {{...}}}}, got {type_name(data)}")
        if "kind" not in data:
            raise ValueError(f"{where}.kind: missing (a stored layer is {{'kind': ..., 'args': {{...}}}})")
        kind = data["kind"]
        if not isinstance(kind, str) or kind not in KINDS:
            raise ValueError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        container = KINDS[kind].container
        fields = ("kind", "args", "children") if container else ("kind", "args")
        for name in fields:
            if name not in data:
                raise ValueError(f"{where}.{name}: missing (a stored {kind} is {{{', '.join(map(repr, fields))}}})")
        for name in data:
            if name not in fields:
                raise ValueError(f"{where}.{name}: unknown field (expected {', '.join(fields)})")
        args = data["args"]
        if not isinstance(args, Mapping):
            raise TypeError(f"{where}.args: expected an object of {kind}'s arguments, got {type_name(args)}")
        names = list(KINDS[kind].defaults)
        for name in args:
            if name not in names:
                raise ValueError(f"{where}.{name}: unknown argument of {kind} (its arguments: "
                                 f"{', '.join(names) or 'none'})")
        args = {**{name: KINDS[kind].defaults[name] for name in KINDS[kind].added}, **args}
        for name in names:
            if name not in args:
                raise ValueError(f"{where}.{name}: missing (a stored {kind} carries every argument: "
                                 f"{', '.join(names)})")
        children: list[LayerSpec] = []
        if container:
            items = data["children"]
            if not isinstance(items, list) or not items:
                raise TypeError(f"{where}.children: expected a non-empty list of layers, got {type_name(items)}")
            children = [cls.from_json(item, f"{where}.children[{index}]") for index, item in enumerate(items)]
        try:
            return cls(kind, {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}, tuple(children))
        except (TypeError, ValueError) as error:
            # check_args' messages start with the argument's name: "<kind>: <argument>: ...".
            message = str(error).removeprefix(f"{kind}: ")
            head = message.split(":", 1)[0]
            path = f"{where}.{message}" if head in names else f"{where}: {message}"
            raise type(error)(path) from None

    def __repr__(self) -> str:
        if self.info.container:
            inner = "".join(f"\n  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in
                            self.named_children())
            return f"{self.class_name}({inner}\n)"
        shown = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.class_name}({shown})"


def sequential(*children: LayerSpec) -> LayerSpec:
    """The container spec torch.nn.Sequential(*children) is."""
    return LayerSpec("sequential", {}, tuple(children))


def as_network(specs: LayerSpec | Iterable[LayerSpec]) -> LayerSpec:
    """A network's root: a spec as it is, a list of specs as the Sequential of them."""
    if isinstance(specs, LayerSpec):
        return specs
    return sequential(*specs)


def mlp(sizes: Sequence[int], activation: str = "relu") -> LayerSpec:
    """The multi-layer perceptron for widths [in, h1, ..., out] as a tree: Sequential(Linear,
    activation, Linear, ..., Linear), no activation after the last (Linear i sits at index 2i).
    Raises TypeError/ValueError for bad sizes or an unknown activation."""
    sizes = check_sizes(sizes)
    check_choice("activation", activation, ACTIVATION_NAMES)
    layers: list[LayerSpec] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if index:
            layers.append(LayerSpec(activation))
        layers.append(LayerSpec("linear", {"in_features": fan_in, "out_features": fan_out}))
    return sequential(*layers)


def mlp_of(specs: LayerSpec | Sequence[LayerSpec]) -> tuple[list[int], str] | None:
    """(sizes, activation) when the network is exactly what mlp(sizes, activation) gives, else
    None (the inverse of mlp; a network without hidden layers has activation "identity")."""
    children = as_network(specs).children
    linears, activations = children[0::2], children[1::2]
    if not all(spec.kind == "linear" and spec.args["bias"] for spec in linears):
        return None
    kinds = {spec.kind for spec in activations}
    if len(kinds) > 1 or not kinds <= set(ACTIVATION_NAMES) or len(children) % 2 == 0:
        return None
    sizes = [linears[0].args["in_features"]]
    for spec in linears:
        if spec.args["in_features"] != sizes[-1]:
            return None
        sizes.append(spec.args["out_features"])
    return sizes, (kinds.pop() if kinds else "identity")


def check_args(kind: str, args: Mapping[str, Any]) -> None:
    """The checks the layers' constructors run on their arguments, without building a layer.
    Raises TypeError/ValueError naming the argument."""
    KINDS[kind].check(args)
    if "bias" in args and not isinstance(args["bias"], bool):
        raise TypeError(f"bias: expected True or False, got {args['bias']!r}")


def specs_to_json(specs: LayerSpec | Iterable[LayerSpec]) -> str:
    """A compact JSON string of a network's layers (what config.json and checkpoints store: the
    root Sequential's children)."""
    return json.dumps([s.to_json() for s in as_network(specs).children])


# -- shapes -----------------------------------------------------------------------------------
def output_shape(spec: LayerSpec, shape: Shape) -> Shape:
    """The node's output shape for an input of ``shape`` (batch first); a container's is its
    children's in turn. Raises ValueError naming the layer when the input does not fit."""
    if spec.info.container:
        for child in spec.children:
            shape = output_shape(child, shape)
        return shape
    output = spec.info.output
    return tuple(shape) if output is None else output(spec, tuple(shape))


def output_shapes(specs: LayerSpec | Sequence[LayerSpec], input_shape: Shape) -> list[Shape]:
    """The output shape after every child of the network's root (ValueError where it does not
    type-check)."""
    shapes, shape = [], tuple(input_shape)
    for spec in as_network(specs).children:
        shape = output_shape(spec, shape)
        shapes.append(shape)
    return shapes


def leaf_shapes(specs: LayerSpec | Sequence[LayerSpec],
                input_shape: Shape) -> list[tuple[str, LayerSpec, Shape, Shape]]:
    """(path, spec, input shape, output shape) of every leaf layer, in forward order."""
    out = []
    shape = tuple(input_shape)
    for path, spec in as_network(specs).leaves():
        result = output_shape(spec, shape)
        out.append((path, spec, shape, result))
        shape = result
    return out


def parameter_shapes_of(spec: LayerSpec) -> dict[str, Shape]:
    """The node's own trainable parameters (not its children's): name -> shape."""
    return spec.info.parameters(spec.args)


def buffer_shapes_of(spec: LayerSpec) -> dict[str, Shape]:
    """The node's own saved state that is not trained (batch norm's running statistics)."""
    return spec.info.buffers(spec.args)


def state_shapes(specs: LayerSpec | Sequence[LayerSpec]) -> dict[str, Shape]:
    """Every state-dict key -> shape, in torch.nn.Module.state_dict()'s order (each module's own
    parameters, then its own buffers, then its children's, depth first): ``0.weight``,
    ``1.0.running_mean``, ... (Linear weights (in, out))."""
    shapes: dict[str, Shape] = {}
    for path, spec in as_network(specs).walk():
        for name, shape in {**parameter_shapes_of(spec), **buffer_shapes_of(spec)}.items():
            shapes[join(path, name)] = shape
    return shapes


def paths_of(specs: LayerSpec | Sequence[LayerSpec], *kinds: str) -> list[str]:
    """The paths of the nodes of these kinds, in tree order (e.g. every dropout's)."""
    return [path for path, spec in as_network(specs).walk() if spec.kind in kinds]


def find(specs: LayerSpec | Sequence[LayerSpec], path: str) -> LayerSpec:
    """The node at a dotted path ("" is the root); KeyError naming the path otherwise."""
    for node_path, spec in as_network(specs).walk():
        if node_path == path:
            return spec
    raise KeyError(f"no layer at {path!r}")


# -- initial state ----------------------------------------------------------------------------
def draw_weight(rng: np.random.Generator, init: str, shape: Shape, fan_in: int,
                fan_out: int) -> tuple[np.ndarray, bool]:
    """A weight of ``shape`` in float64 by ``init``, and whether the bias is drawn too (torch's
    default) rather than zero.

    xavier_normal N(0, 2/(fan_in+fan_out)) (Glorot & Bengio 2010); xavier_uniform
    U(+-sqrt(6/(fan_in+fan_out))); he_normal N(0, 2/fan_in) (He et al. 2015); torch_default
    U(+-1/sqrt(fan_in)): nn.Linear/nn.Conv2d reset_parameters (kaiming_uniform_(a=sqrt(5))),
    whose bias is U(+-1/sqrt(fan_in)) as well. fan_in/fan_out as torch.nn.init computes them
    (in_features, or in_channels * kH * kW).
    """
    if init == "xavier_normal":
        return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape), False
    if init == "xavier_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, shape), False
    if init == "he_normal":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape), False
    check_choice("init", init, INITS)
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape), True


def _weighted(parameters: Callable[[Mapping[str, Any]], dict[str, Shape]],
              fans: Callable[[Mapping[str, Any]], tuple[int, int]]):
    """initialize() for a layer with a weight and an optional bias (Linear, Conv2d): the weight,
    then the bias (drawn U(+-1/sqrt(fan_in)) under torch_default, else zero)."""

    def initialize(args: Mapping[str, Any], rng: np.random.Generator, init: str) -> dict[str, np.ndarray]:
        shapes = parameters(args)
        fan_in, fan_out = fans(args)
        weight, draw_bias = draw_weight(rng, init, shapes["weight"], fan_in, fan_out)
        state = {"weight": weight}
        if "bias" in shapes:
            bound = 1.0 / math.sqrt(fan_in)
            state["bias"] = rng.uniform(-bound, bound, shapes["bias"]) if draw_bias else np.zeros(shapes["bias"])
        return state

    return initialize


def initial_state(specs: LayerSpec | Sequence[LayerSpec], seed: int = 0,
                  init: str = "torch_default") -> dict[str, np.ndarray]:
    """Every parameter and buffer of the network in float64, from one np.random.default_rng(seed),
    node after node in state-dict order (each Linear/Conv2d: weight, then bias).

    ``init`` applies to every Linear and Conv2d weight (draw_weight); batch norm starts at
    weight 1, bias 0, running_mean 0, running_var 1. Raises ValueError for an unknown init,
    TypeError/ValueError for a seed that is not an int >= 0.
    """
    check_choice("init", init, INITS)
    rng = np.random.default_rng(check_seed(seed))
    state: dict[str, np.ndarray] = {}
    # A composite layer may set its parts' values (a dotted name: MultiheadAttention's
    # "out_proj.bias" = 0, as torch's _reset_parameters does after the Linear drew its own).
    later: dict[str, np.ndarray] = {}
    for path, spec in as_network(specs).walk():
        if spec.info.initialize is not None:
            for name, value in spec.info.initialize(spec.args, rng, init).items():
                (later if "." in name else state)[join(path, name)] = value
    state.update(later)
    return state


def given_args(spec: LayerSpec) -> dict[str, Any]:
    """The arguments a constructor call needs: the required ones and those that differ from
    torch's defaults (so that an engine written before an argument existed still builds every
    layer that leaves it at its default)."""
    defaults = spec.info.defaults
    return {name: value for name, value in spec.args.items()
            if defaults[name] is REQUIRED or type(value) is not type(defaults[name]) or value != defaults[name]}


def build(module: ModuleType, specs: LayerSpec | Sequence[LayerSpec], dtype: str = "float32", seed: int = 0,
          init: str = "torch_default", sequential_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    """The network in an engine: ``module.Sequential`` (nested as the tree is) of the engine's
    own layer classes, loaded with initial_state(specs, seed, init). ``kwargs`` (e.g. device=)
    go to every layer that takes dtype; ``sequential_kwargs`` (e.g. the oracle's
    keep_deltas=False) to the root Sequential.

    Raises AttributeError naming the class when the engine does not provide a layer.
    """

    def make(spec: LayerSpec, root: bool) -> Any:
        cls = getattr(module, spec.class_name, None)
        if cls is None:
            raise AttributeError(f"engine {module.__name__!r} has no {spec.class_name} layer")
        if spec.info.container:
            children = [make(child, False) for child in spec.children]
            return cls(*children, **(sequential_kwargs or {} if root else {}))
        extra = {"dtype": dtype, **kwargs} if spec.info.takes_dtype else {}
        return cls(**given_args(spec), **extra)

    check_dtype_name(dtype)
    root = as_network(specs)
    if not root.info.container:
        raise ValueError(f"build: a network's root is a container, got {root!r}; build sequential({root!r}) "
                         "(engine_core.specs.sequential)")
    net = make(root, True)
    net.load_state_dict(initial_state(specs, seed, init))
    return net


# -- the catalog ----------------------------------------------------------------------------
def _linear_output(spec: LayerSpec, shape: Shape) -> Shape:
    a = spec.args
    if len(shape) < 1 or shape[-1] != a["in_features"]:
        raise ValueError(f"{spec!r}: expects input (*, {a['in_features']}), got {shape}")
    return (*shape[:-1], a["out_features"])


def _linear_parameters(a: Mapping[str, Any]) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {"weight": (a["in_features"], a["out_features"])}
    return {**shapes, "bias": (a["out_features"],)} if a["bias"] else shapes


def _four_d(spec: LayerSpec, shape: Shape) -> None:
    if len(shape) != 4:
        raise ValueError(f"{spec!r}: expects a 4-D input (batch, channels, height, width), got {shape}")


def conv_args(a: Mapping[str, Any]) -> ConvArgs:
    """A conv2d spec's arguments, checked and resolved (engine_core.conv_checks.check_conv_args)."""
    return check_conv_args(a["in_channels"], a["out_channels"], a["kernel_size"], a["stride"], a["padding"],
                           a["dilation"], a["groups"], a["padding_mode"])


def pool_args(kind: str, a: Mapping[str, Any]) -> PoolArgs:
    """A maxpool2d or avgpool2d spec's arguments, checked (engine_core.conv_checks)."""
    if kind == "maxpool2d":
        return check_maxpool_args(a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["return_indices"],
                                  a["ceil_mode"])
    return check_avgpool_args(a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"],
                              a["divisor_override"])


def _windowed_output(spec: LayerSpec, shape: Shape, windows: Windows, channels: int) -> Shape:
    _four_d(spec, shape)
    height, width = windows.out_hw(shape[2:])
    if height < 1 or width < 1:
        raise ValueError(f"{spec!r}: kernel larger than the padded input {shape[2:]}")
    return (shape[0], channels, height, width)


def _conv_output(spec: LayerSpec, shape: Shape) -> Shape:
    a = conv_args(spec.args)
    _four_d(spec, shape)
    if shape[1] != a.in_channels:
        raise ValueError(f"{spec!r}: expects {a.in_channels} input channels, got {shape[1]}")
    return _windowed_output(spec, shape, a.windows, a.out_channels)


def _conv_parameters(a: Mapping[str, Any]) -> dict[str, Shape]:
    kh, kw = pair(a["kernel_size"])
    shapes: dict[str, Shape] = {"weight": (a["out_channels"], a["in_channels"] // a["groups"], kh, kw)}
    return {**shapes, "bias": (a["out_channels"],)} if a["bias"] else shapes


def _pool_output(spec: LayerSpec, shape: Shape) -> Shape:
    _four_d(spec, shape)
    windows = pool_args(spec.kind, spec.args).windows
    out = _windowed_output(spec, shape, windows, shape[1])
    if spec.kind == "maxpool2d":
        check_pool_windows(repr(spec), shape[2:], windows)  # no window of padding only
    return out


def _flatten_output(spec: LayerSpec, shape: Shape) -> Shape:
    out = flatten_shape(shape, spec.args["start_dim"], spec.args["end_dim"])
    if out is None:
        raise ValueError(f"{spec!r}: start_dim and end_dim do not fit a {len(shape)}-D input {shape}")
    return out


def _batchnorm_output(ranks: tuple[int, ...]):
    def output(spec: LayerSpec, shape: Shape) -> Shape:
        n = spec.args["num_features"]
        if len(shape) not in ranks:
            forms = {2: f"(batch, {n})", 3: f"(batch, {n}, length)", 4: f"(batch, {n}, height, width)"}
            raise ValueError(f"{spec!r}: expects a {' or '.join(f'{r}-D input {forms[r]}' for r in ranks)}, "
                             f"got {shape}")
        if shape[1] != n:
            raise ValueError(f"{spec!r}: expects {n} features/channels, got {shape[1]}")
        return shape

    return output


def _batchnorm_parameters(a: Mapping[str, Any]) -> dict[str, Shape]:
    return {"weight": (a["num_features"],), "bias": (a["num_features"],)} if a["affine"] else {}


def _batchnorm_buffers(a: Mapping[str, Any]) -> dict[str, Shape]:
    if not a["track_running_stats"]:
        return {}
    return {"running_mean": (a["num_features"],), "running_var": (a["num_features"],)}


def _batchnorm_initialize(args: Mapping[str, Any], rng: np.random.Generator, init: str) -> dict[str, np.ndarray]:
    n = args["num_features"]
    state = {"weight": np.ones(n), "bias": np.zeros(n)} if args["affine"] else {}
    if args["track_running_stats"]:
        state.update(running_mean=np.zeros(n), running_var=np.ones(n))
    return state


def _linear_fans(a: Mapping[str, Any]) -> tuple[int, int]:
    return a["in_features"], a["out_features"]


def _conv_fans(a: Mapping[str, Any]) -> tuple[int, int]:
    # torch.nn.init's fans of a (C_out, C_in / groups, kh, kw) weight.
    kh, kw = pair(a["kernel_size"])
    return a["in_channels"] // a["groups"] * kh * kw, a["out_channels"] * kh * kw


_linear_init = _weighted(_linear_parameters, _linear_fans)
_conv_init = _weighted(_conv_parameters, _conv_fans)

register(Kind("sequential", "Sequential", container=True))
register(Kind("linear", "Linear", {"in_features": REQUIRED, "out_features": REQUIRED, "bias": True},
              check=lambda a: (check_count("in_features", a["in_features"]),
                               check_count("out_features", a["out_features"])),
              output=_linear_output, parameters=_linear_parameters, initialize=_linear_init, takes_dtype=True,
              transposed=("weight",)))
register(Kind("conv2d", "Conv2d", {"in_channels": REQUIRED, "out_channels": REQUIRED, "kernel_size": REQUIRED,
                                    "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True,
                                    "padding_mode": "zeros"},
              check=conv_args, output=_conv_output, parameters=_conv_parameters, initialize=_conv_init,
              takes_dtype=True, added=("dilation", "groups", "padding_mode")))
register(Kind("maxpool2d", "MaxPool2d", {"kernel_size": REQUIRED, "stride": None, "padding": 0, "dilation": 1,
                                          "return_indices": False, "ceil_mode": False},
              check=lambda a: pool_args("maxpool2d", a), output=_pool_output,
              added=("padding", "dilation", "return_indices", "ceil_mode")))
register(Kind("avgpool2d", "AvgPool2d", {"kernel_size": REQUIRED, "stride": None, "padding": 0, "ceil_mode": False,
                                          "count_include_pad": True, "divisor_override": None},
              check=lambda a: pool_args("avgpool2d", a), output=_pool_output,
              added=("padding", "ceil_mode", "count_include_pad", "divisor_override")))
register(Kind("flatten", "Flatten", {"start_dim": 1, "end_dim": -1},
              check=lambda a: check_flatten_args(a["start_dim"], a["end_dim"]), output=_flatten_output,
              added=("start_dim", "end_dim")))
register(Kind("dropout", "Dropout", {"p": 0.5, "inplace": False, "seed": 0},
              check=lambda a: (check_dropout_p(a["p"]), check_flag("inplace", a["inplace"]), check_seed(a["seed"])),
              # torch.nn.Dropout draws its own masks: it has no seed.
              torch_args=lambda a: {"p": a["p"], "inplace": a["inplace"]}, added=("inplace",)))
for _name, _class, _ranks in (("batchnorm1d", "BatchNorm1d", (2, 3)), ("batchnorm2d", "BatchNorm2d", (4,))):
    register(Kind(_name, _class, {"num_features": REQUIRED, "eps": 1e-5, "momentum": 0.1, "affine": True,
                                  "track_running_stats": True},
                  check=lambda a: check_batchnorm_args(a["num_features"], a["eps"], a["momentum"], a["affine"],
                                                       a["track_running_stats"]),
                  output=_batchnorm_output(_ranks), parameters=_batchnorm_parameters, buffers=_batchnorm_buffers,
                  initialize=_batchnorm_initialize, takes_dtype=True, added=("affine", "track_running_stats")))


def _layernorm_args(a: Mapping[str, Any]) -> LayerNormArgs:
    return check_layernorm_args(a["normalized_shape"], a["eps"], a["elementwise_affine"], a["bias"])


def _layernorm_output(spec: LayerSpec, shape: Shape) -> Shape:
    normalized = _layernorm_args(spec.args).normalized_shape
    if tuple(shape[len(shape) - len(normalized):]) != normalized or len(shape) < len(normalized):
        raise ValueError(f"{spec!r}: expects an input whose last dimensions are {normalized}, got {shape}")
    return shape


def _layernorm_initialize(args: Mapping[str, Any], rng: np.random.Generator, init: str) -> dict[str, np.ndarray]:
    """torch's LayerNorm.reset_parameters: weight 1, bias 0."""
    shapes = _layernorm_args(args).parameter_shapes()
    return {name: (np.ones if name == "weight" else np.zeros)(shape) for name, shape in shapes.items()}


# torch.nn.LayerNorm(normalized_shape, eps=1e-05, elementwise_affine=True, bias=True).
register(Kind("layernorm", "LayerNorm", {"normalized_shape": REQUIRED, "eps": 1e-5, "elementwise_affine": True,
                                         "bias": True},
              check=_layernorm_args, output=_layernorm_output,
              parameters=lambda a: _layernorm_args(a).parameter_shapes(), initialize=_layernorm_initialize,
              takes_dtype=True))
for _name, _class in (("identity", "Identity"), ("sigmoid", "Sigmoid"), ("tanh", "Tanh")):
    register(Kind(_name, _class))
register(Kind("relu", "ReLU", {"inplace": False}, check=lambda a: check_flag("inplace", a["inplace"]),
              added=("inplace",)))
register(Kind("leakyrelu", "LeakyReLU", {"negative_slope": 0.01, "inplace": False},
              check=lambda a: (check_negative_slope(a["negative_slope"]), check_flag("inplace", a["inplace"])),
              added=("inplace",)))
register(Kind("gelu", "GELU", {"approximate": "none"}, check=lambda a: check_approximate(a["approximate"])))


def recurrent_args(kind: str, a: Mapping[str, Any]) -> RecurrentArgs:
    """An rnn, lstm or gru spec's arguments, checked (engine_core.recurrent_checks)."""
    return check_recurrent_args(kind, a["input_size"], a["hidden_size"], a["num_layers"],
                                a.get("nonlinearity", "tanh"), a["bias"], a["batch_first"])


def _recurrent_output(spec: LayerSpec, shape: Shape) -> Shape:
    a = recurrent_args(spec.kind, spec.args)
    if len(shape) != 3 or shape[2] != a.input_size:
        raise ValueError(f"{spec!r}: expects a 3-D input {sequence_form(a.batch_first, a.input_size)}, got {shape}")
    return (shape[0], shape[1], a.hidden_size)


def _recurrent_initialize(kind: str):
    """torch's RNNBase.reset_parameters: every weight and bias U(+-1/sqrt(hidden_size)), drawn
    in named_parameters() order, whatever ``init`` (which applies to Linear and Conv2d)."""

    def initialize(args: Mapping[str, Any], rng: np.random.Generator, init: str) -> dict[str, np.ndarray]:
        a = recurrent_args(kind, args)
        bound = 1.0 / math.sqrt(a.hidden_size)
        return {name: rng.uniform(-bound, bound, shape) for name, shape in a.parameter_shapes().items()}

    return initialize


def _recurrent_parameters(kind: str, args: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return recurrent_args(kind, args).parameter_shapes()


_RECURRENT = {"input_size": REQUIRED, "hidden_size": REQUIRED, "num_layers": 1, "bias": True, "batch_first": False}
for _name, _class in (("rnn", "RNN"), ("lstm", "LSTM"), ("gru", "GRU")):
    _defaults = dict(_RECURRENT)
    if _name == "rnn":  # torch.nn.RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True, ...)
        _defaults = {"input_size": REQUIRED, "hidden_size": REQUIRED, "num_layers": 1, "nonlinearity": "tanh",
                     "bias": True, "batch_first": False}
    register(Kind(_name, _class, _defaults, check=partial(recurrent_args, _name), output=_recurrent_output,
                  parameters=partial(_recurrent_parameters, _name),
                  initialize=_recurrent_initialize(_name), takes_dtype=True))


def _over_time_output(spec: LayerSpec, shape: Shape) -> Shape:
    """A 3-D sequence reduced over its time steps (LastStep, SequenceMean): (batch, features)."""
    if len(shape) != 3:
        raise ValueError(f"{spec!r}: expects a 3-D input {sequence_form(spec.args['batch_first'], 'features')}, "
                         f"got {shape}")
    return (shape[0], shape[2]) if spec.args["batch_first"] else (shape[1], shape[2])


# The output at the last time step: x[:, -1] (batch_first) or x[-1], (batch, features). torch has
# no such module (one writes output[:, -1] in forward); export prints a two-line one.
register(Kind("laststep", "LastStep", {"batch_first": False},
              check=lambda a: check_flag("batch_first", a["batch_first"]), output=_over_time_output))


def _attention_args(a: Mapping[str, Any]) -> AttentionArgs:
    return check_attention_args(a["embed_dim"], a["num_heads"], a["dropout"], a["bias"], a["batch_first"])


def _sequence_output(width: int, batch_first: bool):
    def output(spec: LayerSpec, shape: Shape) -> Shape:
        if len(shape) != 3 or shape[2] != width:
            raise ValueError(f"{spec!r}: expects a 3-D input {sequence_form(batch_first, width)}, got {shape}")
        return shape

    return output


def _attention_output(spec: LayerSpec, shape: Shape) -> Shape:
    a = _attention_args(spec.args)
    return _sequence_output(a.embed_dim, a.batch_first)(spec, shape)


def _attention_initialize(args: Mapping[str, Any], rng: np.random.Generator, init: str) -> dict[str, np.ndarray]:
    """torch's MultiheadAttention._reset_parameters: in_proj_weight xavier_uniform (fan_in E,
    fan_out 3E: bound sqrt(6 / 4E)), in_proj_bias 0 and out_proj.bias 0; out_proj.weight stays
    what its Linear drew."""
    a = _attention_args(args)
    bound = math.sqrt(6.0 / (a.embed_dim + 3 * a.embed_dim))
    state = {"in_proj_weight": rng.uniform(-bound, bound, (3 * a.embed_dim, a.embed_dim))}
    if a.bias:
        state.update({"in_proj_bias": np.zeros(3 * a.embed_dim), "out_proj.bias": np.zeros(a.embed_dim)})
    return state


def _attention_parts(a: Mapping[str, Any]) -> list[tuple[str, LayerSpec]]:
    """out_proj, a Linear(E, E); with dropout > 0, ``attn_dropout``: the Dropout torch applies to
    the attention weights (torch holds only its p; here it is a part with its own masks, seeded
    by the layer's seed, so that every engine drops the same weights and a checkpoint keeps its
    generator)."""
    parts = [("out_proj", LayerSpec("linear", {"in_features": a["embed_dim"], "out_features": a["embed_dim"],
                                               "bias": a["bias"]}))]
    if a["dropout"] > 0:
        parts.append(("attn_dropout", LayerSpec("dropout", {"p": a["dropout"], "seed": a["seed"]})))
    return parts


# torch.nn.MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False)
# used as self-attention, mha(x, x, x)[0]; ``seed`` (not torch's) seeds the attention-weight dropout.
register(Kind("multiheadattention", "MultiheadAttention",
              {"embed_dim": REQUIRED, "num_heads": REQUIRED, "dropout": 0.0, "bias": True, "batch_first": False,
               "seed": 0},
              check=lambda a: (_attention_args(a), check_seed(a["seed"])), output=_attention_output,
              parameters=lambda a: _attention_args(a).parameter_shapes(), initialize=_attention_initialize,
              parts=_attention_parts, takes_dtype=True,
              torch_args=lambda a: {k: v for k, v in a.items() if k != "seed"}, added=("dropout", "seed")))


def encoder_layer_args(a: Mapping[str, Any]) -> EncoderLayerArgs:
    """A transformerencoderlayer spec's arguments, checked (engine_core.attention_checks)."""
    return check_encoder_layer_args(a["d_model"], a["nhead"], a["dim_feedforward"], a["dropout"], a["activation"],
                                    a["layer_norm_eps"], a["batch_first"], a["norm_first"], a["bias"])


def _encoder_parts(args: Mapping[str, Any]) -> list[tuple[str, LayerSpec]]:
    """torch's TransformerEncoderLayer's modules, in its order: self_attn, linear1, dropout,
    linear2, norm1, norm2, dropout1, dropout2 (its activation is a function, not a module)."""
    a = encoder_layer_args(args)
    seed = args["seed"]

    def dropout(name: str) -> LayerSpec:
        return LayerSpec("dropout", {"p": a.dropout, "seed": encoder_dropout_seed(seed, name)})

    def norm() -> LayerSpec:
        return LayerSpec("layernorm", {"normalized_shape": a.d_model, "eps": a.layer_norm_eps, "bias": a.bias})

    return [("self_attn", LayerSpec("multiheadattention", {
                "embed_dim": a.d_model, "num_heads": a.nhead, "dropout": a.dropout, "bias": a.bias,
                "batch_first": a.batch_first, "seed": encoder_dropout_seed(seed, "self_attn")})),
            ("linear1", LayerSpec("linear", {"in_features": a.d_model, "out_features": a.dim_feedforward,
                                             "bias": a.bias})),
            ("dropout", dropout("dropout")),
            ("linear2", LayerSpec("linear", {"in_features": a.dim_feedforward, "out_features": a.d_model,
                                             "bias": a.bias})),
            ("norm1", norm()), ("norm2", norm()), ("dropout1", dropout("dropout1")), ("dropout2", dropout("dropout2"))]


def _encoder_output(spec: LayerSpec, shape: Shape) -> Shape:
    a = encoder_layer_args(spec.args)
    return _sequence_output(a.d_model, a.batch_first)(spec, shape)


# torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
# activation="relu", layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True):
# no parameters of its own, its parts' state keys (self_attn.in_proj_weight, linear1.weight,
# norm1.weight, ...). ``seed`` (not torch's) seeds its dropouts (encoder_dropout_seed).
register(Kind("transformerencoderlayer", "TransformerEncoderLayer",
              {"d_model": REQUIRED, "nhead": REQUIRED, "dim_feedforward": 2048, "dropout": 0.1, "activation": "relu",
               "layer_norm_eps": 1e-5, "batch_first": False, "norm_first": False, "bias": True, "seed": 0},
              check=lambda a: (encoder_layer_args(a), check_seed(a["seed"])), output=_encoder_output,
              parts=_encoder_parts, takes_dtype=True,
              torch_args=lambda a: {k: v for k, v in a.items() if k != "seed"}))


def _patches_output(spec: LayerSpec, shape: Shape) -> Shape:
    _four_d(spec, shape)
    size = spec.args["patch_size"]
    if shape[2] % size or shape[3] % size:
        raise ValueError(f"{spec!r}: the image's height and width must be multiples of patch_size {size}, "
                         f"got {shape[2:]}")
    return (shape[0], (shape[2] // size) * (shape[3] // size), shape[1] * size * size)


# An image as a sequence of patches, a vision transformer's tokens: (B, C, H, W) -> (B, T, C p p),
# T = (H / p) (W / p) patches in row-major order, each patch's values in (C, p, p) order:
# torch's nn.Unfold(p, stride=p)(x).transpose(1, 2). torch has no module for it (export prints one).
register(Kind("patches", "Patches", {"patch_size": REQUIRED},
              check=lambda a: check_count("patch_size", a["patch_size"]), output=_patches_output))


def _positions_output(spec: LayerSpec, shape: Shape) -> Shape:
    a = spec.args
    if len(shape) != 3 or shape[2] != a["embedding_dim"]:
        raise ValueError(f"{spec!r}: expects a 3-D input {sequence_form(a['batch_first'], a['embedding_dim'])}, "
                         f"got {shape}")
    steps = shape[1] if a["batch_first"] else shape[0]
    if steps > a["num_positions"]:
        raise ValueError(f"{spec!r}: a sequence of {steps} steps is longer than num_positions={a['num_positions']}")
    return shape


# A learned positional embedding added to a sequence: y[t] = x[t] + weight[t] for t < T, weight
# (num_positions, embedding_dim) ~ N(0, 0.02^2) (ViT's and GPT-2's initialisation); torch has no
# module for it (one adds an nn.Parameter; export prints one).
register(Kind("positionalembedding", "PositionalEmbedding",
              {"num_positions": REQUIRED, "embedding_dim": REQUIRED, "batch_first": False},
              check=lambda a: (check_count("num_positions", a["num_positions"]),
                               check_count("embedding_dim", a["embedding_dim"]), check_flag("batch_first",
                                                                                              a["batch_first"])),
              output=_positions_output,
              parameters=lambda a: {"weight": (a["num_positions"], a["embedding_dim"])},
              initialize=lambda a, rng, init: {"weight": 0.02 * rng.standard_normal((a["num_positions"],
                                                                                      a["embedding_dim"]))},
              takes_dtype=True))


# The mean over the time steps, a sequence classifier's pooling: x.mean(1) (batch_first) or
# x.mean(0), (batch, features). torch has no such module (export prints one).
register(Kind("sequencemean", "SequenceMean", {"batch_first": False},
              check=lambda a: check_flag("batch_first", a["batch_first"]), output=_over_time_output))


def _embedding_args(a: Mapping[str, Any]) -> EmbeddingArgs:
    return check_embedding_args(a["num_embeddings"], a["embedding_dim"], a["padding_idx"])


def _embedding_initialize(args: Mapping[str, Any], rng: np.random.Generator, init: str) -> dict[str, np.ndarray]:
    """torch's Embedding.reset_parameters: weight ~ N(0, 1), the padding_idx row 0."""
    a = _embedding_args(args)
    weight = rng.standard_normal((a.num_embeddings, a.embedding_dim))
    if a.padding_idx is not None:
        weight[a.padding_idx] = 0.0
    return {"weight": weight}


# torch.nn.Embedding(num_embeddings, embedding_dim, padding_idx=None): integer indices (*) in,
# (*, embedding_dim) out; its weight is not a Linear's (no transpose).
register(Kind("embedding", "Embedding", {"num_embeddings": REQUIRED, "embedding_dim": REQUIRED, "padding_idx": None},
              check=_embedding_args, output=lambda spec, shape: (*shape, spec.args["embedding_dim"]),
              parameters=lambda a: {"weight": (a["num_embeddings"], a["embedding_dim"])},
              initialize=_embedding_initialize, takes_dtype=True))

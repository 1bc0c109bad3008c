"""The layer catalog: one entry per layer kind, each a hypothesis strategy for its
hyper-parameters and its input shape, driving one table of reference-vs-engine checks
(test_layers.py), in the manner of minitorch's operation catalog and thinc's layer cases.

An entry draws a ``LayerCase``: the layer's spec (engine_core.specs.LayerSpec, torch's
argument names), the input shape, the dtype, train or eval mode, the input x and the delta
dL/d(output) to push back. Inputs include saturating and sign-changing values.

Per-entry float32 tolerances (rtol of the normwise scale, see compare.py) are argued where the
entry is defined; float64 is 1e-10 everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine_core.naming import DTYPES
from engine_core.specs import KINDS, LayerSpec, build, output_shape, pair, state_shapes

from . import profile  # noqa: F401  (the harness's hypothesis settings)


@dataclass(frozen=True)
class LayerCase:
    """One layer, one input and one delta; the repr rebuilds it by hand."""

    spec: LayerSpec
    input_shape: tuple[int, ...]
    dtype: str
    training: bool
    seed: int
    x: np.ndarray = field(repr=False, compare=False)
    delta: np.ndarray = field(repr=False, compare=False)
    # The one-layer stack's starting state where the entry draws one (state-dict keys "0.weight", ...);
    # empty: engine_core.specs.initial_state(seed).
    state: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        with np.printoptions(precision=17, threshold=100_000):
            state = "".join(f", {k!r}: np.array({v.tolist()})" for k, v in self.state.items())
            return (f"LayerCase(spec={self.spec!r}, input_shape={self.input_shape}, dtype={self.dtype!r}, "
                    f"training={self.training}, seed={self.seed}, x=np.array({self.x.tolist()}), "
                    f"delta=np.array({self.delta.tolist()})" + (f", state={{{state[2:]}}})" if state else ")"))


@dataclass(frozen=True)
class Entry:
    """A layer kind: a strategy for (spec, input shape) and its float32 rtol (argued where set)."""

    kind: str
    draw: Callable[[st.DrawFn], tuple[LayerSpec, tuple[int, ...]]]
    rtol32: float = 2e-4
    bound: float = 4.0  # inputs drawn from [-bound, bound]
    modes: tuple[bool, ...] = (True,)  # training flags to try (layers that differ get (True, False))
    # Optional: reworks the drawn x (e.g. near-constant channels), and draws a starting state.
    inputs: Callable[[st.DrawFn, LayerSpec, np.ndarray], np.ndarray] | None = None
    state: Callable[[st.DrawFn, LayerSpec], dict[str, np.ndarray]] | None = None


def _elements(bound: float) -> st.SearchStrategy[float]:
    return st.floats(-bound, bound, allow_nan=False, allow_subnormal=False)


@st.composite
def layer_cases(draw: st.DrawFn, entry: Entry, dtype: str | None = None) -> LayerCase:
    """A LayerCase for ``entry``: its spec and input shape, then x and delta of the right shapes."""
    spec, shape = entry.draw(draw)
    out = output_shape(spec, shape)
    x = draw(arrays(np.float64, shape, elements=_elements(entry.bound)))
    return LayerCase(
        spec=spec,
        input_shape=shape,
        dtype=dtype or draw(st.sampled_from(DTYPES)),
        training=draw(st.sampled_from(entry.modes)),
        seed=draw(st.integers(0, 2**32 - 1)),
        x=entry.inputs(draw, spec, x) if entry.inputs else x,
        delta=draw(arrays(np.float64, out, elements=_elements(1.0))),
        state=entry.state(draw, spec) if entry.state else {},
    )


def build_case(module: ModuleType, case: LayerCase) -> Any:
    """The case's one-layer Sequential in ``module``'s engine: engine_core.specs.build, then the
    case's drawn state (if any), in the case's train/eval mode."""
    net = build(module, [case.spec], case.dtype, seed=case.seed)
    if case.state:
        net.load_state_dict({**net.state_dict(), **case.state})
    net.train(case.training)
    return net


# -- the entries ------------------------------------------------------------------------------------
def _linear(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    """Linear on torch's (*, in_features) inputs: a batch (1-8, in) (what shrinking goes to), one
    row (in,), or two or three leading dimensions of 1-4 (up to 64 rows, every gradient a sum
    over all of them)."""
    fan_in, fan_out = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    spec = LayerSpec("linear", {"in_features": fan_in, "out_features": fan_out, "bias": draw(st.booleans())})
    rank = draw(st.sampled_from([2, 1, 3, 4]))
    if rank == 2:
        return spec, (draw(st.integers(1, 8)), fan_in)
    return spec, (*draw(st.lists(st.integers(1, 4), min_size=rank - 1, max_size=rank - 1)), fan_in)


def _elementwise(kind: str, **args_strategies: st.SearchStrategy) -> Callable:
    """An elementwise layer on a 2-D to 4-D input, its arguments drawn by ``args_strategies`` and
    ``inplace`` (torch's argument, where the kind has it: ReLU, LeakyReLU, Dropout) either way,
    shrinking to False: an in-place layer must give the out-of-place results and leave the
    caller's x and delta alone."""
    if "inplace" in KINDS[kind].defaults:
        args_strategies = {**args_strategies, "inplace": st.sampled_from([False, True])}

    def draw_case(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
        args = {name: draw(strategy) for name, strategy in args_strategies.items()}
        rank = draw(st.integers(2, 4))
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
        return LayerSpec(kind, args), shape

    return draw_case


def _batchnorm(kind: str) -> Callable:
    """BatchNorm1d (B, C) or (B, C, L), or BatchNorm2d (B, C, H, W), with more than one value per
    channel (n = B, B*L or B*H*W >= 2: batch statistics refuse n = 1, as torch does); eps from
    torch's 1e-5 up; momentum a number or None (the cumulative average: one forward from a fresh
    layer is f = 1, test_norm_stacks.py follows it over several batches); affine and
    track_running_stats either way (without running statistics eval mode normalises by the batch's
    too). sampled_from shrinks to its first choice, torch's default."""

    def draw_case(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
        channels = draw(st.integers(1, 4))
        args = {"num_features": channels, "eps": draw(st.sampled_from([1e-5, 1e-3, 0.1])),
                "momentum": draw(st.sampled_from([0.1, 0.0, 1.0, None]) | st.floats(0.0, 1.0)),
                "affine": draw(st.sampled_from([True, False])),
                "track_running_stats": draw(st.sampled_from([True, False]))}
        if kind == "batchnorm1d":
            if draw(st.sampled_from(["(B, C)", "(B, C, L)"])) == "(B, C)":
                return LayerSpec(kind, args), (draw(st.integers(2, 8)), channels)
            length = draw(st.integers(1, 5))
            return LayerSpec(kind, args), (draw(st.integers(1 if length > 1 else 2, 4)), channels, length)
        height, width = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        batch = draw(st.integers(1 if height * width > 1 else 2, 3))
        return LayerSpec(kind, args), (batch, channels, height, width)

    return draw_case


def _near_constant_channel(draw: st.DrawFn, spec: LayerSpec, x: np.ndarray) -> np.ndarray:
    """Sometimes one channel becomes level + spread * noise: exactly constant (spread 0, var 0) or
    nearly (var <= 1e-6, below eps), where 1/sqrt(var + eps) amplifies rounding the most."""
    if not draw(st.booleans()):
        return x
    channel = draw(st.integers(0, spec.args["num_features"] - 1))
    level, spread = draw(_elements(4.0)), draw(st.sampled_from([0.0, 1e-6, 1e-3]))
    x = x.copy()
    x[:, channel] = level + spread * x[:, channel] / 4.0
    return x


def _batchnorm_state(draw: st.DrawFn, spec: LayerSpec) -> dict[str, np.ndarray]:
    """weight and bias of either sign (0 included; affine), running statistics away from their
    start (running_var in [0.1, 4]; track_running_stats), so eval mode and the weight's place in
    dL/dx are tested. Each value shrinks to torch's initial one, and all four are drawn whatever
    the arguments: a failing case then shrinks to torch's defaults (affine, running statistics)
    rather than to the arguments that draw the fewest values."""
    shape = (spec.args["num_features"],)

    def vector(start: float, low: float, high: float) -> np.ndarray:
        values = st.just(start) | st.floats(low, high, allow_subnormal=False)
        return draw(arrays(np.float64, shape, elements=values))

    state = {"0.weight": vector(1.0, -2.0, 2.0), "0.bias": vector(0.0, -2.0, 2.0),
             "0.running_mean": vector(0.0, -2.0, 2.0), "0.running_var": vector(1.0, 0.1, 4.0)}
    kept = ("weight", "bias") * spec.args["affine"] + ("running_mean", "running_var") * spec.args["track_running_stats"]
    return {key: value for key, value in state.items() if key[2:] in kept}


def _layernorm(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    """LayerNorm over the last one or two dimensions (normalized_shape an int, or a 1- or
    2-tuple, sizes 1-6: size 1 makes every row constant), eps 1e-5 or others, elementwise_affine
    and bias either way; the input has 0-2 leading dimensions of 1-4 before normalized_shape
    (none: torch takes x of exactly normalized_shape)."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=2))
    normalized: Any = draw(st.sampled_from([sizes[0], tuple(sizes)])) if len(sizes) == 1 \
        else tuple(sizes)
    args = {"normalized_shape": normalized, "eps": draw(st.sampled_from([1e-5, 1e-3, 0.5])),
            "elementwise_affine": draw(st.sampled_from([True, False])), "bias": draw(st.sampled_from([True, False]))}
    leading = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=2)))
    return LayerSpec("layernorm", args), (*leading, *sizes)


def _near_constant_row(draw: st.DrawFn, spec: LayerSpec, x: np.ndarray) -> np.ndarray:
    """Sometimes one row (one leading index, over the normalised dimensions) becomes level +
    spread * noise: exactly constant (var 0) or nearly (var <= 1e-6, below eps), where
    1/sqrt(var + eps) amplifies rounding the most."""
    dims = len(np.atleast_1d(spec.args["normalized_shape"]))
    if not draw(st.booleans()) or x.ndim == dims:
        return x
    rows = x.reshape(-1, *x.shape[x.ndim - dims:])
    row = draw(st.integers(0, len(rows) - 1))
    level, spread = draw(_elements(4.0)), draw(st.sampled_from([0.0, 1e-6, 1e-3]))
    rows = rows.copy()
    rows[row] = level + spread * rows[row] / 4.0
    return rows.reshape(x.shape)


def _layernorm_state(draw: st.DrawFn, spec: LayerSpec) -> dict[str, np.ndarray]:
    """weight and bias U(-2, 2) from a NumPy generator seeded by the draw (torch's 1 and 0 would
    hide a weight applied to the wrong element or a bias left out of dL/dx's scale)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shapes = KINDS["layernorm"].parameters(spec.args)
    return {f"0.{name}": rng.uniform(-2.0, 2.0, shape) for name, shape in shapes.items()}


def _attention(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    """MultiheadAttention as self-attention: 1-3 heads of 1-3 dimensions (embed_dim their
    product), dropout on the attention weights 0 or 0.3 (its masks from the drawn seed), bias and
    batch_first either way; x (T, B, E), or (B, T, E) with batch_first, T 1-5
    (T = 1: every softmax is over one key), B 1-3."""
    heads, head_dim = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    args: dict[str, Any] = {
        "embed_dim": heads * head_dim, "num_heads": heads, "dropout": draw(st.sampled_from([0.0, 0.3])),
        "bias": draw(st.sampled_from([True, False])), "batch_first": draw(st.sampled_from([False, True])),
        "seed": draw(st.integers(0, 2**32 - 1))}
    steps, batch = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    shape = (batch, steps, args["embed_dim"]) if args["batch_first"] else (steps, batch, args["embed_dim"])
    return LayerSpec("multiheadattention", args), shape


def _drawn_state(draw: st.DrawFn, spec: LayerSpec) -> dict[str, np.ndarray]:
    """Every parameter of the layer and of its parts U(-1.5, 1.5), from a NumPy generator seeded
    by the draw: no bias is 0 (torch starts in_proj_bias and out_proj.bias at 0, which would hide
    a bias sliced from the wrong block of Q, K, V), and the Q, K and V blocks differ."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return {key: rng.uniform(-1.5, 1.5, shape) for key, shape in state_shapes([spec]).items()}


def _encoder_layer(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    """TransformerEncoderLayer: 1-3 heads of 1-3 dimensions (d_model their product),
    dim_feedforward 1-6, relu or gelu, post- or pre-LN, bias and batch_first either way,
    layer_norm_eps 1e-5 or 1e-3, dropout 0 or 0.2-0.5 (the four dropouts then draw masks from the
    drawn seed); x (T, B, E), or (B, T, E) with batch_first, T 1-4, B 1-3."""
    heads, head_dim = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    args: dict[str, Any] = {"d_model": heads * head_dim, "nhead": heads, "dim_feedforward": draw(st.integers(1, 6)),
            "dropout": draw(st.sampled_from([0.0, 0.2, 0.5])), "activation": draw(st.sampled_from(["relu", "gelu"])),
            "layer_norm_eps": draw(st.sampled_from([1e-5, 1e-3])), "batch_first": draw(st.booleans()),
            "norm_first": draw(st.booleans()), "bias": draw(st.booleans()), "seed": draw(st.integers(0, 2**32 - 1))}
    steps, batch = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    shape = (batch, steps, args["d_model"]) if args["batch_first"] else (steps, batch, args["d_model"])
    return LayerSpec("transformerencoderlayer", args), shape


def _patches(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    """Patches of 1-3 pixels on (B, C, H, W) images, B and C 1-3, H and W 1-3 patches."""
    size = draw(st.integers(1, 3))
    batch, channels, rows, columns = (draw(st.integers(1, 3)) for _ in range(4))
    return LayerSpec("patches", {"patch_size": size}), (batch, channels, rows * size, columns * size)


def _positional_embedding(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    """PositionalEmbedding of 1-6 positions and 1-4 features, batch_first either way, on sequences
    of 1..num_positions steps (a shorter one leaves rows without gradient), B 1-3."""
    positions, width = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    batch_first = draw(st.booleans())
    steps, batch = draw(st.integers(1, positions)), draw(st.integers(1, 3))
    spec = LayerSpec("positionalembedding", {"num_positions": positions, "embedding_dim": width,
                                             "batch_first": batch_first})
    return spec, (batch, steps, width) if batch_first else (steps, batch, width)


def _sequence_mean(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    """SequenceMean on a 3-D (T, B, F) input, or (B, T, F) with batch_first: every dimension 1-5."""
    spec = LayerSpec("sequencemean", {"batch_first": draw(st.sampled_from([False, True]))})
    return spec, tuple(draw(st.lists(st.integers(1, 5), min_size=3, max_size=3)))


def _ints_or_pairs(low: int, high: int) -> st.SearchStrategy:
    """torch's int-or-(height, width) convention: an int (what shrinking prefers) or a pair."""
    return st.integers(low, high) | st.tuples(st.integers(low, high), st.integers(low, high))


def _conv2d(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    """Conv2d with every argument torch's takes: groups 1-4 dividing both channel counts (C_in <= 4,
    C_out <= 8; depthwise, C_in = groups, whenever groups > 2 and often at 2, with 1 or 2 outputs a
    channel), kernel 1-4 (even half the time, where "same" puts its extra row and column at the
    bottom and right), dilation 1-3 (a window's extent d (k - 1) + 1 stays <= 9), padding an int or
    a pair 0-2, "valid" or "same" (stride 1 only, as torch requires), stride 1-3, with or without
    bias; ints or pairs, so rectangular kernels and unequal strides/dilations/paddings too. Input
    (1-4, C_in, H, W) with H, W <= 9 and at least one window in the padded input. ``st.just(default)
    | ...`` draws torch's defaults often, and shrinking goes to them."""
    groups = draw(st.just(1) | st.sampled_from([2, 3, 4]))
    c_in = groups * draw(st.integers(1, 4 // groups))
    c_out = groups * draw(st.integers(1, max(2, 4 // groups)))
    kernel = draw(_ints_or_pairs(1, 4))
    kh, kw = pair(kernel)
    most = [3 if k == 1 else min(3, 8 // (k - 1)) for k in (kh, kw)]  # extent d (k - 1) + 1 <= 9
    dilation = draw(st.just(1) | st.integers(1, min(most))
                    | st.tuples(st.integers(1, most[0]), st.integers(1, most[1])))
    form = draw(st.sampled_from(["int or pair", "same", "valid"]))  # a third each: "same" is not rare
    padding = draw(st.just(0) | _ints_or_pairs(0, 2)) if form == "int or pair" else form
    stride = 1 if padding == "same" else draw(st.just(1) | _ints_or_pairs(1, 3))
    extent = [d * (k - 1) + 1 for d, k in zip(pair(dilation), (kh, kw))]
    if isinstance(padding, str):  # "same" pads extent - 1 (any input has a window), "valid" nothing
        low = [1, 1] if padding == "same" else extent
    else:
        low = [max(1, e - 2 * p) for e, p in zip(extent, pair(padding))]
    height, width = draw(st.integers(low[0], 9)), draw(st.integers(low[1], 9))
    spec = LayerSpec("conv2d", {"in_channels": c_in, "out_channels": c_out, "kernel_size": kernel,
                                "stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
                                "bias": draw(st.booleans())})
    return spec, (draw(st.integers(1, 4)), c_in, height, width)


def _pool2d(kind: str) -> Callable:
    """MaxPool2d/AvgPool2d with torch's arguments, each at torch's default about half the time
    (and shrinking to it): kernel 1-3, stride None (= the kernel) or 1-3 (overlapping windows,
    gaps between windows), padding up to half the kernel (torch's limit), ceil_mode; MaxPool2d's
    dilation 1-3; AvgPool2d's count_include_pad and divisor_override (1-5 or -2: torch takes any
    non-zero int). A third of the average pools are drawn where count_include_pad=False changes
    a number: padding on at least one axis, no divisor_override (independent draws reach that
    conjunction about once in 15 cases, so 100 examples could miss it). Input (1-4, 1-4, H, W)
    with H, W <= 9 and at least one window: with ceil_mode down to a window that runs past the
    padded input by less than a stride (torch counts it). A padded axis is at least the dilation
    long: on a shorter one a window could hold only padding, which every engine refuses (torch's
    max_pool2d writes out of bounds there)."""

    def draw_case(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
        excluded = kind == "avgpool2d" and draw(st.sampled_from(["any", "any", "padding excluded"])) != "any"
        kernel, stride = draw(_ints_or_pairs(2 if excluded else 1, 3)), draw(st.none() | _ints_or_pairs(1, 3))
        kh, kw = pair(kernel)
        if excluded:  # kernels of 2 or 3 on both axes, so that either may take padding 1
            padding = draw(st.just(1) | st.tuples(st.integers(0, 1), st.integers(0, 1)).filter(any))
        else:
            padding = draw(st.just(0) | st.integers(0, min(kh, kw) // 2)
                           | st.tuples(st.integers(0, kh // 2), st.integers(0, kw // 2)))
        ceil_mode = draw(st.sampled_from([False, True]))
        args = {"kernel_size": kernel, "stride": stride, "padding": padding, "ceil_mode": ceil_mode}
        if kind == "maxpool2d":
            args["dilation"] = draw(st.just(1) | _ints_or_pairs(1, 3))
        elif excluded:
            args["count_include_pad"], args["divisor_override"] = False, None
        else:
            args["count_include_pad"] = draw(st.sampled_from([True, False]))
            args["divisor_override"] = draw(st.none() | st.sampled_from([1, 2, 3, 4, 5, -2]))
        dilation = pair(args.get("dilation", 1))
        step = pair(kernel if stride is None else stride)
        sizes = []
        for k, s, p, d in zip((kh, kw), step, pair(padding), dilation):
            # At least one window: the span n + 2p - d (k - 1) - 1 at least 0, or above -s with ceil_mode.
            low = d * (k - 1) + 1 - 2 * p - (s - 1 if ceil_mode else 0)
            sizes.append(draw(st.integers(max(1, low, d if p else 1), 9)))
        return LayerSpec(kind, args), (draw(st.integers(1, 4)), draw(st.integers(1, 4)), *sizes)

    return draw_case


def _ties(draw: st.DrawFn, spec: LayerSpec, x: np.ndarray) -> np.ndarray:
    """Max-pool inputs with ties: x as drawn, rounded to the five values -2..2, or rounded and
    clipped at 0 (a ReLU's output: whole windows of zeros). A tie's gradient goes to the first
    maximum in row-major order, torch's choice; the finite differences pass over ties (kinks)."""
    form = draw(st.sampled_from(["as drawn", "five values", "after relu"]))
    if form == "as drawn":
        return x
    rounded = np.round(x / 2.0)
    return rounded if form == "five values" else np.maximum(rounded, 0.0)


def _flatten(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    """Flatten on a 2-D to 4-D input, with torch's (1, -1) (what shrinking goes to) or any
    start_dim <= end_dim that fit the drawn rank (1-D inputs too), each counted from the front
    or, negative, from the back: Flatten(0) flattens the batch, Flatten(2) keeps (B, C, H * W),
    start_dim == end_dim changes nothing."""
    custom = draw(st.booleans())
    rank = draw(st.integers(1 if custom else 2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    if not custom:
        return LayerSpec("flatten"), shape
    start = draw(st.integers(0, rank - 1))
    end = draw(st.integers(start, rank - 1))
    start_dim = start - rank if draw(st.booleans()) else start
    end_dim = end - rank if draw(st.booleans()) else end
    return LayerSpec("flatten", {"start_dim": start_dim, "end_dim": end_dim}), shape


def _recurrent(kind: str) -> Callable:
    """RNN, LSTM or GRU with every argument torch's takes: input_size 1-5, hidden_size 1-6,
    num_layers 1-3, the RNN's nonlinearity, bias and batch_first either way (``st.just(default)
    | ...`` and sampled_from's first choice: torch's defaults are drawn often and shrinking goes
    to them). Input (T, B, in), or (B, T, in) with batch_first: B 1-4, T 1-6 or, half the time,
    7-12, where gradients travel back through more steps (and a bug in what one step hands the
    previous one compounds)."""

    def draw_case(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
        width, hidden = draw(st.integers(1, 5)), draw(st.integers(1, 6))
        args: dict[str, Any] = {"input_size": width, "hidden_size": hidden,
                                "num_layers": draw(st.just(1) | st.integers(1, 3))}
        if kind == "rnn":
            args["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
        args["bias"] = draw(st.sampled_from([True, False]))
        args["batch_first"] = draw(st.sampled_from([False, True]))
        steps, batch = draw(st.integers(1, 6) | st.integers(7, 12)), draw(st.integers(1, 4))
        return LayerSpec(kind, args), (batch, steps, width) if args["batch_first"] else (steps, batch, width)

    return draw_case


def _recurrent_state(draw: st.DrawFn, spec: LayerSpec) -> dict[str, np.ndarray]:
    """Every weight and bias U(-1.5, 1.5), from a NumPy generator seeded by the draw: every gate's
    block differs from every other's, and no bias is 0. torch's initialisation, U(+-1/sqrt(H)),
    would do too, but a comparison that starts from all-zero or all-equal biases cannot see a
    bias taken from the wrong gate's block (numpy-ml#42: the forget gate's from the output
    gate's), and weights well above 1/sqrt(H) reach the gates' saturated and sign-changing
    ranges. (hypothesis's own arrays would repeat one fill value across most elements, equal
    blocks included.)"""
    return recurrent_state(spec, draw(st.integers(0, 2**32 - 1)))


def recurrent_state(spec: LayerSpec, seed: int, path: str = "0") -> dict[str, np.ndarray]:
    """_recurrent_state's parameters of the recurrent layer ``spec`` at ``path`` in a network
    (state-dict keys "{path}.weight_ih_l0", ...): U(-1.5, 1.5) from np.random.default_rng(seed)."""
    rng = np.random.default_rng(seed)
    shapes = KINDS[spec.kind].parameters(spec.args)
    return {f"{path}.{name}": rng.uniform(-1.5, 1.5, shape) for name, shape in shapes.items()}


def _last_step(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    """LastStep on a 3-D (T, B, F) input, or (B, T, F) with batch_first: every dimension 1-5."""
    spec = LayerSpec("laststep", {"batch_first": draw(st.sampled_from([False, True]))})
    return spec, tuple(draw(st.lists(st.integers(1, 5), min_size=3, max_size=3)))


CATALOG: dict[str, Entry] = {
    # float32: one dot product of <= 12 terms per output and per input gradient, a weight or bias
    # gradient a sum over <= 64 rows (a (4, 4, 4, in) input), rounded independently by each
    # library (different BLAS kernels, summation orders): <= 64 u = 4e-6 of the scale, far inside
    # 2e-4.
    "linear": Entry("linear", _linear),
    # float32, conv2d: an output is a dot product of C_in / groups * kh kw <= 4 * 16 = 64 products,
    # an input gradient one of <= C_out / groups * kh kw <= 64 (4 * 16 at groups 1; 2 * 16 when
    # grouped), a weight gradient a sum over B H_out W_out <= 4 * 13 * 13 = 676 products (kernel 1,
    # padding 2; dilation and "same" never make H_out larger). torch's kernels and BLAS sum in
    # different orders, so the engines round independently; a sum of n products errs by about
    # sqrt(n) u (u = 6e-8) of the sum of |terms| (at most n u), and for random-sign terms that sum
    # of |terms| is sqrt(n) times the result: n u = 4e-5 of the largest gradient at n = 676; 2e-4
    # leaves a 5x margin (measured: below 2e-6). A padding, stride, dilation or group bug errs by
    # O(1) of the scale.
    "conv2d": Entry("conv2d", _conv2d),
    # Pooling: a max is exact (the same element in every engine; ties as torch breaks them; the
    # padding never picked) and its dL/dx adds <= 9 deltas where windows overlap; an average sums
    # <= 9 values in torch's row-major order (padded zeros add exactly nothing) and divides by its
    # divisor, a small integer: a few u, far inside 2e-4. Flattening is exact.
    "maxpool2d": Entry("maxpool2d", _pool2d("maxpool2d"), inputs=_ties),
    "avgpool2d": Entry("avgpool2d", _pool2d("avgpool2d")),
    "flatten": Entry("flatten", _flatten),
    "identity": Entry("identity", _elementwise("identity")),
    # Saturating inputs (|z| up to 30) are where sigmoid/tanh derivatives underflow; float32's
    # exp/tanh differ between libraries by a few ulp, inside 2e-4 of the scale.
    "relu": Entry("relu", _elementwise("relu"), bound=30.0),
    "sigmoid": Entry("sigmoid", _elementwise("sigmoid"), bound=30.0),
    "tanh": Entry("tanh", _elementwise("tanh"), bound=30.0),
    # Any finite slope (torch accepts any float): 0 is ReLU, 1 the identity, negative ones flip
    # the negative half. One multiplication by 1 or by the slope rounded to the dtype: exact up
    # to that rounding in every engine.
    "leakyrelu": Entry("leakyrelu", _elementwise(
        "leakyrelu", negative_slope=st.sampled_from([0.01, 0.0, 1.0, -0.5, 0.2, 5.0]) | st.floats(-3.0, 3.0)),
        bound=30.0),
    # Both forms; |z| up to 30 saturates erf/tanh (a -> 0 or z, da/dz -> 0 or 1). float32 erf,
    # exp and tanh differ between libraries by a few ulp, inside 2e-4 of the scale.
    "gelu": Entry("gelu", _elementwise("gelu", approximate=st.sampled_from(["none", "tanh"])), bound=30.0),
    # The same NumPy-drawn mask from the same seed in every engine, times the same rounded
    # 1/(1 - p): bit-identical in practice. p = 1 drops everything; eval mode is the identity.
    "dropout": Entry("dropout", _elementwise(
        "dropout", p=st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0]), seed=st.integers(0, 2**32 - 1)),
        modes=(True, False)),
    # float32 rtol 1e-3. The libraries sum the batch mean differently (torch in double or float
    # accumulators, NumPy pairwise in float32): means of a channel at level |c| <= 4 differ by a
    # few ulp, k u |c| with k <= 4. xhat = (x - mean) / sqrt(var + eps) carries that difference
    # times 1/sqrt(var + eps), which for a (near-)constant channel (var <= 1e-6 < eps) is up to
    # 1/sqrt(1e-5) = 316; y = weight xhat + bias, |weight| <= 2, and grads["weight"] =
    # sum(dy xhat) (the shift is common to the channel: sum(dy) times it, and sum(dy) is
    # grads["bias"], inside the scale) inherit it: k u |c| |weight| 316 / |c| <= 4 * 6e-8 * 2 *
    # 316 = 1.5e-4 of the scale (observed: 7.5e-5 over 4,000 drawn cases). 1e-3 leaves a 6x
    # margin; the bug it is there to catch, a term of dL/dx dropped, errs by O(1) of the scale.
    # In float64 the same amplification leaves ~1e-13, far inside 1e-10. The other arguments change
    # none of this: affine=False is weight 1 and bias 0, (B, C, L) averages n = B*L <= 20 values
    # (BatchNorm2d up to 48), and momentum=None or track_running_stats=False only choose which
    # statistics are used and how the running ones move.
    "batchnorm1d": Entry("batchnorm1d", _batchnorm("batchnorm1d"), rtol32=1e-3, modes=(True, False),
                         inputs=_near_constant_channel, state=_batchnorm_state),
    "batchnorm2d": Entry("batchnorm2d", _batchnorm("batchnorm2d"), rtol32=1e-3, modes=(True, False),
                         inputs=_near_constant_channel, state=_batchnorm_state),
    # float32 rtol 1e-3, for RNN, LSTM and GRU alike. Each step's pre-activations are dot products
    # of in + H <= 11 terms plus two biases (a few u each), but the recurrence carries every
    # step's rounding on: h_t's error is multiplied by dh_t/dh_{t-1} = diag(act') W_hh at every
    # later step (and backward, dL/dh_{t-1} = dL/da_t W_hh multiplies its own), so the error grows
    # with T wherever that Jacobian's norm exceeds 1: with weights U(-1.5, 1.5) (the drawn state)
    # ||W_hh|| reaches ~5 at H = 6, and a tanh RNN off saturation is then chaotic (a perturbation
    # grows step after step). Three stacked layers compound it, and a weight gradient sums
    # T B <= 48 products. Measured (largest |got - want| / scale over every quantity, float32):
    # torch vs numpy_net at H 6, 3 layers, B 4, ~150 cases a point: tanh RNN median 1.4e-6 and
    # p90 4e-6 at T = 8, 2.4e-6 and 8e-6 at T = 12, with a heavy tail: max 5.3e-5 at T = 12 (the
    # longest drawn here) and 2.3e-4 at T = 24; LSTM and GRU, whose gates saturate and whose
    # cell/update paths are convex combinations, max 1.5e-5 and 6e-6 at T <= 12. Over 6,000
    # catalog-drawn cases (numpy_net) the largest was 4.7e-6; over 4,200 random ones with T 7-12
    # (numpy_net and torch_net) 3.2e-5, a tanh RNN at T = 10. 1e-3 leaves a 20x margin on the
    # worst seen at T <= 12. The bugs it is there for err by O(1e-2 .. 1) of the scale: a bias
    # from another gate's block changes the output itself, a dropped carry (dc_{t-1} = 0) or a
    # missing sigmoid derivative a whole term of every earlier step's gradient. float64: the same
    # growth leaves <= 1.6e-14 (measured, both engines), far inside 1e-10. Inputs in [-2, 2]:
    # with weights up to 1.5 over 5 inputs the gates already reach saturation.
    "rnn": Entry("rnn", _recurrent("rnn"), rtol32=1e-3, bound=2.0, state=_recurrent_state),
    "lstm": Entry("lstm", _recurrent("lstm"), rtol32=1e-3, bound=2.0, state=_recurrent_state),
    "gru": Entry("gru", _recurrent("gru"), rtol32=1e-3, bound=2.0, state=_recurrent_state),
    # Indexing: exact in every engine; dL/dx is zeros and a copy of the delta.
    "laststep": Entry("laststep", _last_step),
    # float32 rtol 1e-3, batch norm's argument with rows for channels: a row's mean at level
    # |c| <= 4 differs between libraries by a few ulp (k u |c|, k <= 4; n <= 36 values), and
    # xhat carries it times 1/sqrt(var + eps), up to 316 for a (near-)constant row
    # (_near_constant_row; var <= 1e-6 < eps = 1e-5), times |weight| <= 2 in y and dL/dx:
    # <= 4 * 6e-8 * 2 * 316 = 1.5e-4 of the scale, a 6x margin. A dropped term of dL/dx (the
    # mean's -sum(g), the variance's -xhat sum(g xhat)) errs by O(1) of the scale. float64 the
    # same amplification leaves ~1e-13.
    "layernorm": Entry("layernorm", _layernorm, rtol32=1e-3, inputs=_near_constant_row, state=_layernorm_state),
    # float32 rtol 2e-4. Every quantity is a short chain of dot products: projections of E <= 9
    # terms, scores of d <= 3, softmax sums and P V, P^T dO over T <= 5 keys, weight gradients
    # over B T <= 15 rows; exp and the normalising division add a few u each, and a score's
    # rounding error moves its weight by at most |P (1 - P)| times it (the softmax's derivative
    # is below 1/4). With weights and inputs up to 2, scores reach ~30, where exp is still exact
    # to u relative. Measured, numpy_net and torch_net against float64 over 1,500 cases of this
    # entry's shapes: at most 2.6e-6 of the scale, a 75x margin. The bugs it is there for (the
    # 1/sqrt(d) scale forgotten, Q/K/V sliced in the wrong order, a softmax backward without its
    # -sum(dP P) term) err by O(0.1 .. 1) of the scale. float64: <= 1e-14.
    "multiheadattention": Entry("multiheadattention", _attention, bound=2.0, modes=(True, False), state=_drawn_state),
    # float32 rtol 2e-3: its parts' errors, composed. The LayerNorms bring the largest: a
    # (near-)constant row amplifies its mean's rounding by up to 1/sqrt(eps) = 316 (the layernorm
    # entry's argument, 1.5e-4 of the scale with |weight| <= 1.5), and here two norms follow each
    # other through a residual, so the second can inherit the first's amplified rounding (a pair
    # of nearly equal values at d_model = 2 is the worst drawn); attention and the feed-forward
    # Linears add a few u per dot product of <= 9 terms (2.6e-6 measured for attention alone). A
    # constant row is exact in every engine (their LayerNorm corrects its mean in a second pass,
    # as torch's gets it). Measured, numpy_net and torch_net against the float32 oracle over
    # 3,000 cases of this entry: at most 4.0e-4 of the scale, a 5x margin. The bugs it is there
    # for (a residual path dropped in backward, the norms applied in the other order, a dropout
    # mask drawn from another seed) err by O(0.1 .. 1) of the scale. float64: <= 1e-13.
    "transformerencoderlayer": Entry("transformerencoderlayer", _encoder_layer, rtol32=2e-3, bound=2.0,
                                     modes=(True, False), state=_drawn_state),
    # A reshape and a transpose, an addition, a mean over <= 5 steps: exact or a few u.
    "patches": Entry("patches", _patches),
    "positionalembedding": Entry("positionalembedding", _positional_embedding, state=_drawn_state),
    "sequencemean": Entry("sequencemean", _sequence_mean),
}

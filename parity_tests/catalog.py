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

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine_core.naming import DTYPES
from engine_core.specs import LayerSpec, output_shape


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

    def __repr__(self) -> str:
        with np.printoptions(precision=17, threshold=100_000):
            return (f"LayerCase(spec={self.spec!r}, input_shape={self.input_shape}, dtype={self.dtype!r}, "
                    f"training={self.training}, seed={self.seed}, x=np.array({self.x.tolist()}), "
                    f"delta=np.array({self.delta.tolist()}))")


@dataclass(frozen=True)
class Entry:
    """A layer kind: a strategy for (spec, input shape) and its float32 rtol (argued where set)."""

    kind: str
    draw: Callable[[st.DrawFn], tuple[LayerSpec, tuple[int, ...]]]
    rtol32: float = 2e-4
    bound: float = 4.0  # inputs drawn from [-bound, bound]
    modes: tuple[bool, ...] = (True,)  # training flags to try (layers that differ get (True, False))


def _elements(bound: float) -> st.SearchStrategy[float]:
    return st.floats(-bound, bound, allow_nan=False, allow_subnormal=False)


@st.composite
def layer_cases(draw: st.DrawFn, entry: Entry, dtype: str | None = None) -> LayerCase:
    """A LayerCase for ``entry``: its spec and input shape, then x and delta of the right shapes."""
    spec, shape = entry.draw(draw)
    out = output_shape(spec, shape)
    return LayerCase(
        spec=spec,
        input_shape=shape,
        dtype=dtype or draw(st.sampled_from(DTYPES)),
        training=draw(st.sampled_from(entry.modes)),
        seed=draw(st.integers(0, 2**32 - 1)),
        x=draw(arrays(np.float64, shape, elements=_elements(entry.bound))),
        delta=draw(arrays(np.float64, out, elements=_elements(1.0))),
    )


# -- the entries ------------------------------------------------------------------------------------
def _linear(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
    fan_in, fan_out = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    spec = LayerSpec("linear", {"in_features": fan_in, "out_features": fan_out, "bias": draw(st.booleans())})
    return spec, (draw(st.integers(1, 8)), fan_in)


def _elementwise(kind: str, **args_strategies: st.SearchStrategy) -> Callable:
    def draw_case(draw: st.DrawFn) -> tuple[LayerSpec, tuple[int, ...]]:
        args = {name: draw(strategy) for name, strategy in args_strategies.items()}
        rank = draw(st.integers(2, 4))
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
        return LayerSpec(kind, args), shape

    return draw_case


CATALOG: dict[str, Entry] = {
    # float32: one dot product of <= 12 terms per output, rounded independently by each library
    # (different BLAS kernels): <= 12 u of the scale, far inside 2e-4.
    "linear": Entry("linear", _linear),
    "identity": Entry("identity", _elementwise("identity")),
    # Saturating inputs (|z| up to 30) are where sigmoid/tanh derivatives underflow; float32's
    # exp/tanh differ between libraries by a few ulp, inside 2e-4 of the scale.
    "relu": Entry("relu", _elementwise("relu"), bound=30.0),
    "sigmoid": Entry("sigmoid", _elementwise("sigmoid"), bound=30.0),
    "tanh": Entry("tanh", _elementwise("tanh"), bound=30.0),
}

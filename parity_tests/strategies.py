"""Hypothesis strategies: networks, batches, optimizer settings. Each draw has a repr that
is enough to rebuild the failing case by hand."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine_core.naming import ACTIVATION_NAMES, INITS

from . import profile  # noqa: F401  (the harness's hypothesis settings)

DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class NetSpec:
    sizes: tuple[int, ...]
    activation: str
    init: str
    seed: int
    dtype: str

    def build(self, engine):
        return engine.MLP(
            list(self.sizes), activation=self.activation, init=self.init, seed=self.seed,
            dtype=self.dtype,
        )


@dataclass(frozen=True)
class Batch:
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)

    def __repr__(self) -> str:
        with np.printoptions(precision=17, threshold=10_000):
            return f"Batch(x=np.array({self.x.tolist()}), y=np.array({self.y.tolist()}))"


@dataclass(frozen=True)
class SGDSpec:
    lr: float
    momentum: float
    dampening: float
    nesterov: bool
    weight_decay: float

    def build(self, engine, net):
        return engine.SGD(
            net, lr=self.lr, momentum=self.momentum, dampening=self.dampening,
            nesterov=self.nesterov, weight_decay=self.weight_decay,
        )


@dataclass(frozen=True)
class AdamSpec:
    kind: str  # "Adam" or "AdamW"
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    amsgrad: bool

    def build(self, engine, net):
        return getattr(engine, self.kind)(
            net, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay,
            amsgrad=self.amsgrad,
        )


@st.composite
def net_specs(draw, max_layers: int = 4, max_width: int = 32, dtype: str | None = None,
              activations=ACTIVATION_NAMES) -> NetSpec:
    layers = draw(st.integers(1, max_layers))
    sizes = tuple(draw(st.lists(st.integers(1, max_width), min_size=layers + 1, max_size=layers + 1)))
    return NetSpec(
        sizes=sizes,
        activation=draw(st.sampled_from(activations)),
        init=draw(st.sampled_from(INITS)),
        seed=draw(st.integers(0, 2**32 - 1)),
        dtype=dtype or draw(st.sampled_from(DTYPES)),
    )


def batches(in_features: int, classes: int, max_batch: int = 16, bound: float = 4.0, size: int | None = None):
    """Batches of 1 to max_batch rows (exactly ``size`` rows when given) of inputs in [-bound, bound]."""
    return (st.integers(1, max_batch) if size is None else st.just(size)).flatmap(
        lambda b: st.builds(
            Batch,
            x=arrays(np.float64, (b, in_features),
                     elements=st.floats(-bound, bound, allow_nan=False, allow_subnormal=False)),
            y=arrays(np.int64, (b,), elements=st.integers(0, classes - 1)),
        )
    )


@st.composite
def problems(draw, dtype: str | None = None, **net_kwargs) -> tuple[NetSpec, Batch]:
    spec = draw(net_specs(dtype=dtype, **net_kwargs))
    return spec, draw(batches(spec.sizes[0], spec.sizes[-1]))


@st.composite
def sgd_specs(draw) -> SGDSpec:
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.sampled_from([0.0, 0.1, 0.5]))
    return SGDSpec(
        lr=draw(st.sampled_from([0.001, 0.01, 0.1, 0.5])),
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=draw(st.sampled_from([0.0, 1e-4, 0.01, 0.1])),
    )


@st.composite
def adam_specs(draw) -> AdamSpec:
    kind = draw(st.sampled_from(["Adam", "AdamW"]))
    return AdamSpec(
        kind=kind,
        lr=draw(st.sampled_from([1e-4, 1e-3, 1e-2, 0.1])),
        betas=draw(st.sampled_from([(0.9, 0.999), (0.8, 0.99), (0.3, 0.5), (0.0, 0.9)])),
        eps=draw(st.sampled_from([1e-8, 1e-6, 1e-3])),
        weight_decay=draw(st.sampled_from([0.0, 1e-4, 0.01, 0.1])),
        amsgrad=draw(st.booleans()),
    )

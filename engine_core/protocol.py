"""The engine protocol: what a module must provide to be trained by `backprop` and checked by
the parity harness (``pytest --pyargs parity_tests --engine mymodule``).

numpy_net, torch_net and torch_net.autograd all satisfy it; so does any module that re-exports
one of them. Arrays are the engine's own type (``A``); state dicts are always NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from .formats import ModelState, OptimizerState

A = TypeVar("A")

REQUIRED = ("MLP", "SoftmaxCrossEntropy", "SGD")
OPTIONAL = ("Adam", "AdamW", "clip_grad_norm_", "asarray", "labels", "to_numpy")


@runtime_checkable
class Model(Protocol[A]):
    """``MLP(sizes, activation=, init=, seed=, dtype=)``: Linear, activation, ..., Linear (in this
    project's engines a function returning their Sequential; any object with these methods will do)."""

    def forward(self, x: A) -> A:
        """logits (B, sizes[-1]) for x (B, sizes[0])."""
        ...

    def backward(self, delta: A, input_grad: bool = True) -> A | None:
        """Fill every gradient from delta = dL/dlogits (B, C); return dL/dx (B, sizes[0])."""
        ...

    def deltas(self) -> list[A]:
        """dL/dz of every Linear's output z, first layer first."""
        ...

    def grads(self) -> dict[str, A]:
        """dL/dparameter, keys of state_dict(): the arrays the optimizer reads."""
        ...

    def state_dict(self) -> ModelState:
        """NumPy copies of the parameters (and buffers), torch's keys: an MLP's Linear i is at index
        2i, "{2i}.weight" (in, out) / "{2i}.bias" (out,) (engine_core.specs.state_shapes)."""
        ...

    def load_state_dict(self, state: ModelState) -> None:
        """Copy any engine's state dict in; all-or-nothing."""
        ...

    def zero_grad(self) -> None: ...


@runtime_checkable
class Loss(Protocol[A]):
    """``SoftmaxCrossEntropy()``: L = mean_b [logsumexp(z_b) - z_b[y_b]]."""

    def forward(self, logits: A, y: A) -> float:
        """The mean loss over the batch, a Python float."""
        ...

    def backward(self) -> A:
        """dL/dlogits = (softmax(z) - onehot(y)) / B, shape (B, C)."""
        ...


@runtime_checkable
class Optimizer(Protocol):
    """``SGD(net, lr=, momentum=, dampening=, nesterov=, weight_decay=)``; optionally
    ``Adam``/``AdamW(net, lr=, betas=, eps=, weight_decay=, amsgrad=)`` (torch.optim's signatures)."""

    lr: float

    def step(self) -> None: ...

    def zero_grad(self) -> None: ...

    def state_dict(self) -> OptimizerState: ...

    def load_state_dict(self, state: OptimizerState) -> None: ...


@runtime_checkable
class GradientClipper(Protocol):
    """Optional ``clip_grad_norm_(net, max_norm) -> float``: torch.nn.utils.clip_grad_norm_ with
    norm_type 2 over the net's gradients (grads()), in place: n = sqrt(sum_i ||g_i||^2), every g
    times min(max_norm / (n + 1e-6), 1); returns n. What `backprop train --clip-grad-norm` calls
    between backward and the optimizer's step."""

    def __call__(self, net: Any, max_norm: float) -> float: ...


@dataclass(frozen=True)
class Traits:
    """What a trainer must know about an engine, as the engine module declares it.

    accumulates_gradients: backward adds into the gradients (torch autograd) instead of
    overwriting them, so zero_grad() must come first (module attribute ACCUMULATES_GRADIENTS,
    default False). devices: where it can run (DEVICES, default ("cpu",)). training_kwargs:
    extra keyword arguments for MLP when training (TRAINING_KWARGS, default {}).
    """

    name: str
    accumulates_gradients: bool = False
    devices: tuple[str, ...] = ("cpu",)
    training_kwargs: dict[str, Any] = field(default_factory=dict)


def check_engine_module(module: ModuleType) -> None:
    """AttributeError naming what is missing unless ``module`` provides MLP, SoftmaxCrossEntropy, SGD."""
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise AttributeError(
            f"engine {module.__name__!r} has no {', '.join(missing)}: an engine module provides "
            f"{', '.join(REQUIRED)} (optionally {', '.join(OPTIONAL)}); see engine_core.protocol"
        )


def traits(module: ModuleType) -> Traits:
    """The engine's declared traits, with the defaults for a module that declares none. Its name is
    its NAME, or its module path where it has none, or where its NAME is one of this repository's
    engines' (numpy, torch, autograd) that it only re-exported (``from numpy_net import *``): a
    modified copy must not run, and be recorded in checkpoints, as the engine it copied."""
    from .loading import ENGINES

    name = str(getattr(module, "NAME", module.__name__))
    if ENGINES.get(name, module.__name__) != module.__name__:
        name = module.__name__
    return Traits(
        name=name,
        accumulates_gradients=bool(getattr(module, "ACCUMULATES_GRADIENTS", False)),
        devices=tuple(getattr(module, "DEVICES", ("cpu",))),
        training_kwargs=dict(getattr(module, "TRAINING_KWARGS", {})),
    )


def numpy_of(module: ModuleType, array: Any) -> np.ndarray:
    """The module's array as NumPy: its to_numpy() when it has one, np.asarray otherwise."""
    if hasattr(module, "to_numpy"):
        return np.asarray(module.to_numpy(array))
    return np.asarray(array)

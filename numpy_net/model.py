"""Sequential and MLP for the NumPy engine.

Sequential is a container of modules, nestable as torch.nn.Sequential, whose root stores every
parameter (and every gradient) as a view into one flat array, so an optimizer updates the whole
network with a handful of vectorised operations. The bookkeeping (the tree, naming, packing,
state dicts) is engine_core.SequentialBase's; here are its array primitives.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from engine_core.bookkeeping import SequentialBase
from engine_core.specs import build, mlp

from .checks import check_finite_input
from .layers import Layer


class Sequential(SequentialBase[np.ndarray], Layer):
    """layers[-1](...layers[0](x)); backward runs them in reverse. State keys are torch's:
    "0.weight", "1.0.running_mean", ..."""

    def _flat_zeros(self, total: int, like: np.ndarray | None) -> np.ndarray:
        return np.zeros(total, np.float32 if like is None else like.dtype)

    def _flat_view(self, flat: np.ndarray, offset: int, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape, dtype=np.int64))
        return flat[offset : offset + size].reshape(shape)

    def _copy_in(self, target: np.ndarray, value: Any) -> None:
        target[...] = value

    def _numpy_copy(self, value: np.ndarray) -> np.ndarray:
        return value.copy()

    def _zero(self, array: np.ndarray) -> None:
        array[...] = 0

    def _fresh(self, array: np.ndarray) -> np.ndarray:
        return array.copy()

    def _check_finite(self, x: np.ndarray, first_output: np.ndarray) -> None:
        check_finite_input(x, first_output)


def MLP(sizes: list[int], activation: str = "relu", init: str = "xavier_normal", seed: int = 0,
        dtype: str = "float32") -> Sequential:
    """Sequential(Linear, activation, ..., Linear) for sizes [in, h1, ..., out], no activation
    after the last: the tree engine_core.specs.mlp(sizes, activation) describes, as
    ``--layers 'linear(784, 64), relu, linear(64, 10)'`` gives it (Linear i at index 2i: keys
    "0.weight", "0.bias", "2.weight", ...).

    Parameters start from engine_core.specs.initial_state(tree, seed, init), so every engine
    starts from the same bits. Raises TypeError/ValueError for bad sizes, names, seed or dtype.
    """
    return build(sys.modules[__package__], mlp(sizes, activation), dtype=dtype, seed=seed, init=init)

"""Sequential and MLP for the torch engine (numpy_net.model on tensors).

Sequential is a container of modules, nestable as torch.nn.Sequential, whose root stores every
parameter (and every gradient) as a view into one flat tensor, so an optimizer updates the whole
network with a handful of whole-tensor operations. The bookkeeping (the tree, naming, packing,
state dicts) is engine_core.SequentialBase's; here are its tensor primitives.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

from engine_core.bookkeeping import SequentialBase
from engine_core.specs import build, mlp

from .checks import check_finite_input
from .layers import Layer


class Sequential(SequentialBase[torch.Tensor], Layer):
    """layers[-1](...layers[0](x)); backward runs them in reverse. State keys are torch's:
    "0.weight", "1.0.running_mean", ..."""

    def _flat_zeros(self, total: int, like: torch.Tensor | None) -> torch.Tensor:
        if like is None:
            return torch.zeros(total)
        return torch.zeros(total, dtype=like.dtype, device=like.device)

    def _flat_view(self, flat: torch.Tensor, offset: int, shape: tuple[int, ...]) -> torch.Tensor:
        size = int(np.prod(shape, dtype=np.int64))
        return flat[offset : offset + size].view(shape)

    def _copy_in(self, target: torch.Tensor, value: Any) -> None:
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        # float64 -> float32 rounds to nearest, exactly as NumPy's cast does.
        target.copy_(value)

    def _numpy_copy(self, value: torch.Tensor) -> np.ndarray:
        return value.detach().cpu().numpy().copy()

    def _zero(self, array: torch.Tensor) -> None:
        array.zero_()

    def _fresh(self, array: torch.Tensor) -> torch.Tensor:
        return array.clone()

    def _check_finite(self, x: torch.Tensor, first_output: torch.Tensor) -> None:
        check_finite_input(x, first_output)


def MLP(sizes: list[int], activation: str = "relu", init: str = "xavier_normal", seed: int = 0,
        dtype: str = "float32", device: str | torch.device = "cpu") -> Sequential:
    """Sequential(Linear, activation, ..., Linear) for sizes [in, h1, ..., out] on ``device``:
    numpy_net.MLP on tensors (the same tree, keys and initial bits)."""
    return build(sys.modules[__package__], mlp(sizes, activation), dtype=dtype, seed=seed, init=init,
                 device=torch.device(device))

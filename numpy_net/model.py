"""Sequential and MLP for the NumPy engine.

Sequential stores every parameter (and every gradient) as a view into one flat array, so an
optimizer updates the whole network with a handful of vectorised operations. The bookkeeping
(naming, packing, state dicts) is engine_core.SequentialBase's; here are its array primitives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine_core.bookkeeping import FcNaming, SequentialBase
from engine_core.checks import check_choice, check_dtype_name, check_seed, check_sizes
from engine_core.init import initial_parameters
from engine_core.naming import ACTIVATION_NAMES, INITS

from .checks import check_finite_input
from .layers import ACTIVATIONS, Layer, Linear


class Sequential(SequentialBase[np.ndarray], Layer):
    """layers[-1](...layers[0](x)); backward runs them in reverse. Parameters fc0.weight, ..."""

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


class MLP(FcNaming, Sequential):
    """Linear, activation, ..., Linear for sizes [in, h1, ..., out]; no activation after the last.

    Parameters start from engine_core.initial_parameters(sizes, init, seed), so every engine
    starts from the same bits. Raises TypeError/ValueError for bad sizes, names or dtype.
    """

    def __init__(
        self,
        sizes: list[int],
        activation: str = "relu",
        init: str = "xavier_normal",
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        sizes = check_sizes(sizes)
        check_choice("activation", activation, ACTIVATION_NAMES)
        check_choice("init", init, INITS)
        self.sizes = sizes
        self.activation = activation
        self.init = init
        self.seed = check_seed(seed)
        self.dtype = check_dtype_name(dtype)
        layers: list[Layer] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i:
                # In place is safe: the activation only ever sees the Linear's own buffers.
                layers.append(ACTIVATIONS[activation](inplace=True))
            layers.append(Linear(fan_in, fan_out, dtype=self.dtype))
        super().__init__(*layers)
        self.layers[-1].fresh_output = True  # type: ignore[attr-defined]  # forward returns it
        self.load_state_dict(initial_parameters(sizes, init, seed))

    def forward(self, x: np.ndarray) -> np.ndarray:
        """logits (B, out) for x (B, in); a fresh array (internal buffers are reused).

        Raises TypeError/ValueError for a bad x, NonFiniteError for NaN/Inf in x.
        """
        self.forward_done = False
        layers = self.layers
        h = layers[0].forward(x)  # checks x's type, shape and dtype
        check_finite_input(layers[0].x, h)  # type: ignore[attr-defined]
        for layer in layers[1:]:
            h = layer.forward(h)
        self.forward_done = True
        return h  # a fresh array: the last Linear's fresh_output

"""A vision transformer's token layers for the NumPy engine (torch_net/tokens.py is the same on
tensors): images into a sequence of patches, a learned position added to each token, and the
tokens averaged into one vector for the classifier. torch has none of them as a module;
torch_net/autograd.py says what each is in torch's own operations.
"""

from __future__ import annotations

import numpy as np

from engine_core.attention_checks import check_patches_facts, check_positions_facts
from engine_core.checks import check_dtype_name, check_type, native, shape_of
from engine_core.conv_checks import check_count
from engine_core.errors import backward_before_forward_message
from engine_core.layer_checks import check_flag
from engine_core.recurrent_checks import check_sequence_facts, sequence_form

from .checks import ARRAY_TYPE, check_delta
from .layers import Layer


class Patches(Layer):
    """An image cut into non-overlapping p x p patches, one token each: x (B, C, H, W) ->
    y (B, T, C p p), T = (H / p)(W / p) in row-major order of the patches, each token the patch's
    values in (C, p, p) order: torch's ``nn.Unfold(p, stride=p)(x).transpose(1, 2)``.

    A reshape and a transpose: backward puts every delta back where its pixel came from. Raises
    ValueError for a patch_size that is no int >= 1, an input that is not 4-D or whose height or
    width is not a multiple of p; TypeError for an input that is not a floating ndarray.
    """

    def __init__(self, patch_size: int) -> None:
        self.patch_size = check_count("patch_size", patch_size)
        self._x: tuple[tuple[int, ...], np.dtype] | None = None  # the last input's shape and dtype

    def __repr__(self) -> str:
        return f"Patches(patch_size={self.patch_size})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.input_trusted:
            check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
            x = native(x)  # type: ignore[arg-type]
            check_patches_facts(self.describe(), x.shape, x.dtype.name, self.patch_size)
        batch, channels, height, width = x.shape
        p = self.patch_size
        self._x = (x.shape, x.dtype)
        # (B, C, H/p, p, W/p, p) -> (B, H/p, W/p, C, p, p): one row per patch (a copy).
        tiles = x.reshape(batch, channels, height // p, p, width // p, p).transpose(0, 2, 4, 1, 3, 5)
        return tiles.reshape(batch, (height // p) * (width // p), channels * p * p)

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """dL/dx (B, C, H, W): each token's delta back in its patch. RuntimeError before any forward;
        ValueError/TypeError for a delta unlike y."""
        if self._x is None:
            raise RuntimeError(backward_before_forward_message(self.describe(), shape_of(delta),
                                                               "(batch, patches, channels * p * p)"))
        (batch, channels, height, width), dtype = self._x
        p = self.patch_size
        if not self.delta_trusted:
            delta = check_delta(self, delta, (batch, (height // p) * (width // p), channels * p * p), dtype)
        tiles = delta.reshape(batch, height // p, width // p, channels, p, p).transpose(0, 3, 1, 4, 2, 5)
        return np.ascontiguousarray(tiles).reshape(batch, channels, height, width)


class PositionalEmbedding(Layer):
    """A learned position added to each token: y[:, t] = x[:, t] + weight[t] (batch_first; y[t] =
    x[t] + weight[t] otherwise) for t < T, weight (num_positions, embedding_dim) ~ N(0, 0.02^2)
    (ViT's initialisation, engine_core.specs), T <= num_positions.

    Backward: dL/dx = dy (returned as given, never written); grad_weight[t] = sum over the batch of
    dy[:, t] for t < T, 0 for the positions the sequence did not reach. Raises TypeError/ValueError
    for bad arguments or an input that is not (B, T, embedding_dim) (or (T, B, ...)) with
    T <= num_positions, of the layer's dtype.
    """

    def __init__(self, num_positions: int, embedding_dim: int, batch_first: bool = False,
                 dtype: str = "float32") -> None:
        self.num_positions = check_count("num_positions", num_positions)
        self.embedding_dim = check_count("embedding_dim", embedding_dim)
        self.batch_first = check_flag("batch_first", batch_first)
        self.dtype = np.dtype(check_dtype_name(dtype))
        self.weight = np.zeros((self.num_positions, self.embedding_dim), self.dtype)
        self.grad_weight = np.zeros_like(self.weight)
        self._x: tuple[int, ...] | None = None  # the last input's shape

    def __repr__(self) -> str:
        extra = ", batch_first=True" if self.batch_first else ""
        return f"PositionalEmbedding({self.num_positions}, {self.embedding_dim}{extra})"

    def local_parameters(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight}

    def local_gradients(self) -> dict[str, np.ndarray]:
        return {"weight": self.grad_weight}

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.input_trusted:
            check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
            x = native(x)  # type: ignore[arg-type]
            check_positions_facts(self.describe(), x.shape, x.dtype.name, self.num_positions, self.embedding_dim,
                                  self.batch_first, self.dtype.name)
        self._x = x.shape
        if self.batch_first:
            return x + self.weight[:x.shape[1]]
        return x + self.weight[:x.shape[0], None, :]

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """Fills grad_weight (replacing the last call's); returns dL/dx = delta. RuntimeError before
        any forward; ValueError/TypeError for a delta unlike y."""
        if self._x is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), sequence_form(self.batch_first, self.embedding_dim)))
        if not self.delta_trusted:
            delta = check_delta(self, delta, self._x, self.dtype)
        steps = self._x[1] if self.batch_first else self._x[0]
        self.grad_weight[steps:] = 0.0
        np.sum(delta, axis=0 if self.batch_first else 1, out=self.grad_weight[:steps])
        return delta


class SequenceMean(Layer):
    """The mean over the time steps, a sequence classifier's pooling: y = (1/T) sum_t x[:, t]
    (batch_first, x (B, T, F)) or (1/T) sum_t x[t] (x (T, B, F)); y is (B, F).

    Backward: every step gets dy / T. (torch has no such module: one writes ``x.mean(1)``.)
    Raises TypeError for a batch_first that is not True or False and for an input that is no
    floating ndarray; ValueError for one that is not 3-D.
    """

    def __init__(self, batch_first: bool = False) -> None:
        self.batch_first = check_flag("batch_first", batch_first)
        self._x: tuple[tuple[int, ...], np.dtype] | None = None  # the last input's shape and dtype

    def __repr__(self) -> str:
        return "SequenceMean(batch_first=True)" if self.batch_first else "SequenceMean()"

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.input_trusted:
            check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
            x = native(x)  # type: ignore[arg-type]
            check_sequence_facts(self.describe(), x.shape, x.dtype.name, None, self.batch_first, None)
        self._x = (x.shape, x.dtype)
        return x.mean(axis=1 if self.batch_first else 0)

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """dL/dx shaped like x, dy / T at every step. RuntimeError before any forward;
        ValueError/TypeError for a delta that is not (B, F) of x's dtype."""
        if self._x is None:
            raise RuntimeError(backward_before_forward_message(self.describe(), shape_of(delta), "(batch, features)"))
        shape, dtype = self._x
        axis = 1 if self.batch_first else 0
        if not self.delta_trusted:
            delta = check_delta(self, delta, (shape[0], shape[2]) if self.batch_first else (shape[1], shape[2]), dtype)
        dx = np.empty(shape, dtype)
        dx[...] = np.expand_dims(delta / dtype.type(shape[axis]), axis)
        return dx


"""The embedding lookup for the NumPy engine (torch_net/embedding.py is the same on tensors)."""

from __future__ import annotations

import numpy as np

from engine_core.attention_checks import check_embedding_args, check_indices
from engine_core.checks import check_dtype_name, check_type, shape_of
from engine_core.errors import backward_before_forward_message

from .checks import ARRAY_TYPE, check_delta
from .layers import Layer


class Embedding(Layer):
    """torch.nn.Embedding (its documentation page): y[..., :] = weight[indices[...], :], for integer
    indices of any shape (*) in [0, num_embeddings); y is (*, embedding_dim).

    Backward: no input gradient (indices are not differentiable: backward returns None);
    grad_weight[i] = sum of dy over every position where indices == i (a repeated index adds up,
    np.add.at), and the padding_idx row gets none (torch's rule: it stays 0). Parameter weight
    (num_embeddings, embedding_dim) ~ N(0, 1), the padding_idx row 0 (torch's init). Raises
    TypeError/ValueError for bad arguments, non-integer indices or one out of range, naming the layer.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype: str = "float32") -> None:
        self.args = check_embedding_args(num_embeddings, embedding_dim, padding_idx)
        self.num_embeddings, self.embedding_dim = self.args.num_embeddings, self.args.embedding_dim
        self.padding_idx = self.args.padding_idx
        self.dtype = np.dtype(check_dtype_name(dtype))
        self.weight = np.zeros((self.num_embeddings, self.embedding_dim), self.dtype)
        self.grad_weight = np.zeros_like(self.weight)
        self.indices: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Embedding({self.args.extra_repr()})"

    def forward(self, indices: np.ndarray) -> np.ndarray:
        """weight[indices], (*, embedding_dim); the indices are kept (a copy) for backward."""
        check_type(f"{self.describe()}: indices", indices, np.ndarray, ARRAY_TYPE)
        check_indices(self.describe(), indices.dtype.name, self.num_embeddings,
                      int(indices.min()) if indices.size else None, int(indices.max()) if indices.size else None)
        self.indices = np.array(indices, dtype=np.int64)  # a copy: the caller may change theirs
        return self.weight[self.indices]

    def backward(self, delta: np.ndarray) -> None:
        """Fills grad_weight (replacing the last call's); returns None (no gradient for indices).
        RuntimeError before any forward; ValueError/TypeError for a delta unlike the output."""
        if self.indices is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(*indices.shape, embedding_dim)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, (*self.indices.shape, self.embedding_dim), self.dtype)
        self.grad_weight[...] = 0
        np.add.at(self.grad_weight, self.indices.reshape(-1), delta.reshape(-1, self.embedding_dim))
        if self.padding_idx is not None:
            self.grad_weight[self.padding_idx] = 0
        return None

    def local_parameters(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight}

    def local_gradients(self) -> dict[str, np.ndarray]:
        return {"weight": self.grad_weight}

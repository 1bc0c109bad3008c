"""The embedding lookup for the torch engine: numpy_net/embedding.py line for line, on tensors."""

from __future__ import annotations

import torch

from engine_core.attention_checks import check_embedding_args, check_indices
from engine_core.checks import check_dtype_name, check_type, shape_of
from engine_core.errors import backward_before_forward_message

from .checks import ARRAY_TYPE, check_delta, check_device, dtype_name
from .layers import Layer


class Embedding(Layer):
    """torch.nn.Embedding (its documentation page): y[..., :] = weight[indices[...], :], for integer
    indices of any shape (*) in [0, num_embeddings); y is (*, embedding_dim).

    Backward: no input gradient (indices are not differentiable: backward returns None);
    grad_weight[i] = sum of dy over every position where indices == i (a repeated index adds up,
    index_add_), and the padding_idx row gets none (torch's rule: it stays 0). Parameter weight
    (num_embeddings, embedding_dim) ~ N(0, 1), the padding_idx row 0 (torch's init). Raises
    TypeError/ValueError for bad arguments, non-integer indices or one out of range, naming the layer.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype: str = "float32", device: str | torch.device = "cpu") -> None:
        self.args = check_embedding_args(num_embeddings, embedding_dim, padding_idx)
        self.num_embeddings, self.embedding_dim = self.args.num_embeddings, self.args.embedding_dim
        self.padding_idx = self.args.padding_idx
        self.dtype, self.device = getattr(torch, check_dtype_name(dtype)), torch.device(device)
        self.weight = torch.zeros((self.num_embeddings, self.embedding_dim), dtype=self.dtype, device=self.device)
        self.grad_weight = torch.zeros_like(self.weight)
        self.indices: torch.Tensor | None = None

    def __repr__(self) -> str:
        return f"Embedding({self.args.extra_repr()})"

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """weight[indices], (*, embedding_dim); the indices are kept (a copy) for backward."""
        check_type(f"{self.describe()}: indices", indices, torch.Tensor, ARRAY_TYPE)
        check_indices(self.describe(), dtype_name(indices.dtype), self.num_embeddings,
                      int(indices.min()) if indices.numel() else None,
                      int(indices.max()) if indices.numel() else None)
        check_device(f"{self.describe()}: indices", indices, self.device)
        self.indices = indices.to(torch.int64, copy=True)  # a copy: the caller may change theirs
        return self.weight[self.indices]

    def backward(self, delta: torch.Tensor) -> None:
        """Fills grad_weight (replacing the last call's); returns None (no gradient for indices).
        RuntimeError before any forward; ValueError/TypeError for a delta unlike the output."""
        if self.indices is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(*indices.shape, embedding_dim)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, (*self.indices.shape, self.embedding_dim), self.dtype)
        self.grad_weight.zero_()
        self.grad_weight.index_add_(0, self.indices.reshape(-1), delta.reshape(-1, self.embedding_dim))
        if self.padding_idx is not None:
            self.grad_weight[self.padding_idx] = 0
        return None

    def local_parameters(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight}

    def local_gradients(self) -> dict[str, torch.Tensor]:
        return {"weight": self.grad_weight}

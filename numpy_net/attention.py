"""Multi-head self-attention for the NumPy engine (torch_net/attention.py is the same on tensors,
line for line). The forward caches what its own backward needs; no Python loop runs over
samples or heads (every head is one slice of a batched matrix product).
"""

from __future__ import annotations

import math

import numpy as np

from engine_core.attention_checks import additive_mask, check_attention_args
from engine_core.bookkeeping import LayerBase
from engine_core.checks import check_dtype_name, check_type, native, shape_of
from engine_core.errors import backward_before_forward_message
from engine_core.recurrent_checks import check_sequence_facts, sequence_form

from .checks import ARRAY_TYPE, check_delta
from .layers import Layer, Linear
from .normalization import Dropout


class MultiheadAttention(Layer):
    """torch.nn.MultiheadAttention used as self-attention, ``mha(x, x, x)[0]`` (its documentation
    page): E = embed_dim, h = num_heads, d = E / h, x (T, B, E), or (B, T, E) with batch_first.

        [Q K V] = x W_in^T + b_in      (in_proj_weight (3E, E): rows Q, K, V; in_proj_bias (3E,))
        per head: S = Q K^T / sqrt(d) + M,  P = softmax(S) over the keys,  O = dropout(P) V
        y = [O_1 ... O_h] W_out + b_out (out_proj, a Linear(E, E): weight (in, out) here)

    M is the masks as an additive array (engine_core.attention_checks.additive_mask: -inf where a
    boolean mask is True). Backward, dY = dL/dy, per head:
        dO = dY W_out^T (out_proj's backward, which fills its gradients),
        dV = dropout(P)^T dO,  dP = dropout's backward of dO V^T,
        dS = P * (dP - sum_keys(dP * P))  (softmax's Jacobian-vector product, never the Jacobian
        itself; a masked key has P = 0 and so dS = 0),
        dQ = dS K / sqrt(d),  dK = dS^T Q / sqrt(d);
        grad in_proj_weight = [dQ dK dV]^T x, grad in_proj_bias = sum of [dQ dK dV] over B and T,
        dL/dx = [dQ dK dV] W_in (the three projections of one x add up).
    Parameters in_proj_weight ~ xavier_uniform, in_proj_bias = 0, out_proj.bias = 0, out_proj.weight
    as a Linear's (torch's _reset_parameters). With dropout > 0 the attention weights go through a
    Dropout part ``attn_dropout`` (train mode only; its masks from np.random.default_rng(seed), as
    every engine's Dropout draws them). Raises TypeError/ValueError for bad arguments, input
    or masks (engine_core.attention_checks), naming the layer.
    """

    composite = True  # runs its part out_proj itself

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, seed: int = 0, dtype: str = "float32") -> None:
        self.args = check_attention_args(embed_dim, num_heads, dropout, bias, batch_first)
        self.embed_dim, self.num_heads, self.batch_first = self.args.embed_dim, self.args.num_heads, batch_first
        self.head_dim = self.args.head_dim
        self.dtype = np.dtype(check_dtype_name(dtype))
        shapes = self.args.parameter_shapes()
        self.in_proj_weight = np.zeros(shapes["in_proj_weight"], self.dtype)
        self.grad_in_proj_weight = np.zeros_like(self.in_proj_weight)
        self.in_proj_bias: np.ndarray | None = np.zeros(3 * self.embed_dim, self.dtype) if bias else None
        self.grad_in_proj_bias = None if self.in_proj_bias is None else np.zeros_like(self.in_proj_bias)
        self.out_proj = Linear(self.embed_dim, self.embed_dim, bias=bias, dtype=self.dtype.name)
        # torch's dropout on the attention weights, with the engines' masks (seeded by ``seed``).
        self.attn_dropout = Dropout(self.args.dropout, seed=seed) if self.args.dropout > 0 else None
        self._cache: tuple[np.ndarray, ...] | None = None

    def __repr__(self) -> str:
        return f"MultiheadAttention({self.args.extra_repr()})"

    def children(self) -> dict[str, LayerBase[np.ndarray]]:
        parts: dict[str, LayerBase[np.ndarray]] = {"out_proj": self.out_proj}
        return parts if self.attn_dropout is None else {**parts, "attn_dropout": self.attn_dropout}

    def local_parameters(self) -> dict[str, np.ndarray]:
        bias = {} if self.in_proj_bias is None else {"in_proj_bias": self.in_proj_bias}
        return {"in_proj_weight": self.in_proj_weight, **bias}

    def local_gradients(self) -> dict[str, np.ndarray]:
        bias = {} if self.grad_in_proj_bias is None else {"in_proj_bias": self.grad_in_proj_bias}
        return {"in_proj_weight": self.grad_in_proj_weight, **bias}

    def _heads(self, rows: np.ndarray, batch: int, steps: int) -> np.ndarray:
        """(B, T, E) -> (B, h, T, d)."""
        return rows.reshape(batch, steps, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def forward(self, x: np.ndarray, key_padding_mask: np.ndarray | None = None,
                attn_mask: np.ndarray | None = None, is_causal: bool = False) -> np.ndarray:
        """y shaped like x; masks as torch's (engine_core.attention_checks). Never writes x or a mask."""
        if not self.input_trusted:
            check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
            x = native(x)  # type: ignore[arg-type]
            check_sequence_facts(self.describe(), x.shape, x.dtype.name, self.embed_dim, self.batch_first,
                                 self.dtype.name)
            x = self._unshared(x)
        xb = x if self.batch_first else x.transpose(1, 0, 2)  # (B, T, E)
        batch, steps, embed = xb.shape
        mask = additive_mask(self.describe(), batch, steps, self.num_heads, key_padding_mask, attn_mask, is_causal,
                             self.dtype.name)
        rows = xb.reshape(batch * steps, embed)
        qkv = rows @ self.in_proj_weight.T
        if self.in_proj_bias is not None:
            qkv += self.in_proj_bias
        q, k, v = (self._heads(qkv[:, i * embed:(i + 1) * embed], batch, steps) for i in range(3))
        scale = 1.0 / math.sqrt(self.head_dim)
        scores = (q @ k.transpose(0, 1, 3, 2)) * self.dtype.type(scale)  # (B, h, T, T)
        if mask is not None:
            scores = scores + mask.astype(self.dtype)
        scores -= scores.max(axis=-1, keepdims=True)  # softmax is shift-invariant; exp stays <= 1
        p = np.exp(scores)
        p /= p.sum(axis=-1, keepdims=True)
        weights = p if self.attn_dropout is None else self.attn_dropout.forward(p)
        o = (weights @ v).transpose(0, 2, 1, 3).reshape(batch * steps, embed)  # heads side by side
        y = self.out_proj.forward(o).reshape(batch, steps, embed)
        self._cache = (rows, q, k, v, p, weights)
        return y if self.batch_first else y.transpose(1, 0, 2)

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """Fills every gradient (out_proj's too), replacing the last call's; returns dL/dx shaped
        like x. RuntimeError before any forward; ValueError/TypeError for a delta unlike y."""
        if self._cache is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), sequence_form(self.batch_first, self.embed_dim)))
        rows, q, k, v, p, weights = self._cache
        batch, _, steps, _ = q.shape
        embed = self.embed_dim
        shape = (batch, steps, embed) if self.batch_first else (steps, batch, embed)
        if not self.delta_trusted:
            delta = check_delta(self, delta, shape, self.dtype)
        dy = delta if self.batch_first else delta.transpose(1, 0, 2)
        do = self.out_proj.backward(np.ascontiguousarray(dy).reshape(batch * steps, embed))
        assert do is not None  # out_proj's dL/dx, asked for
        do = self._heads(do, batch, steps)  # (B, h, T, d)
        dv = weights.transpose(0, 1, 3, 2) @ do
        dp = do @ v.transpose(0, 1, 3, 2)
        if self.attn_dropout is not None:
            dp = self.attn_dropout.backward(dp)
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        scale = self.dtype.type(1.0 / math.sqrt(self.head_dim))
        dq = (ds @ k) * scale
        dk = (ds.transpose(0, 1, 3, 2) @ q) * scale
        dqkv = np.concatenate([g.transpose(0, 2, 1, 3).reshape(batch * steps, embed) for g in (dq, dk, dv)], axis=1)
        np.matmul(dqkv.T, rows, out=self.grad_in_proj_weight)
        if self.grad_in_proj_bias is not None:
            np.sum(dqkv, axis=0, out=self.grad_in_proj_bias)
        dx = (dqkv @ self.in_proj_weight).reshape(batch, steps, embed)
        return dx if self.batch_first else np.ascontiguousarray(dx.transpose(1, 0, 2))


"""Multi-head self-attention for the torch engine: numpy_net/attention.py line for line, on
tensors, no autograd. The forward caches what its own backward needs; no Python loop runs over
samples or heads (every head is one slice of a batched matrix product).
"""

from __future__ import annotations

import math

import torch

from engine_core.attention_checks import additive_mask, check_attention_args
from engine_core.bookkeeping import LayerBase
from engine_core.checks import check_dtype_name, check_type, shape_of
from engine_core.errors import backward_before_forward_message
from engine_core.recurrent_checks import check_sequence_facts, sequence_form

from .checks import ARRAY_TYPE, check_delta, check_device, dtype_name
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
                 batch_first: bool = False, seed: int = 0, dtype: str = "float32",
                 device: str | torch.device = "cpu") -> None:
        self.args = check_attention_args(embed_dim, num_heads, dropout, bias, batch_first)
        self.embed_dim, self.num_heads, self.batch_first = self.args.embed_dim, self.args.num_heads, batch_first
        self.head_dim = self.args.head_dim
        self.dtype, self.device = getattr(torch, check_dtype_name(dtype)), torch.device(device)
        shapes = self.args.parameter_shapes()
        self.in_proj_weight = torch.zeros(shapes["in_proj_weight"], dtype=self.dtype, device=self.device)
        self.grad_in_proj_weight = torch.zeros_like(self.in_proj_weight)
        self.in_proj_bias: torch.Tensor | None = torch.zeros(3 * self.embed_dim, dtype=self.dtype,
                                                             device=self.device) if bias else None
        self.grad_in_proj_bias = None if self.in_proj_bias is None else torch.zeros_like(self.in_proj_bias)
        self.out_proj = Linear(self.embed_dim, self.embed_dim, bias=bias, dtype=dtype_name(self.dtype),
                               device=self.device)
        # torch's dropout on the attention weights, with the engines' masks (seeded by ``seed``).
        self.attn_dropout = Dropout(self.args.dropout, seed=seed) if self.args.dropout > 0 else None
        self._cache: tuple[torch.Tensor, ...] | None = None

    def __repr__(self) -> str:
        return f"MultiheadAttention({self.args.extra_repr()})"

    def children(self) -> dict[str, LayerBase[torch.Tensor]]:
        parts: dict[str, LayerBase[torch.Tensor]] = {"out_proj": self.out_proj}
        return parts if self.attn_dropout is None else {**parts, "attn_dropout": self.attn_dropout}

    def local_parameters(self) -> dict[str, torch.Tensor]:
        bias = {} if self.in_proj_bias is None else {"in_proj_bias": self.in_proj_bias}
        return {"in_proj_weight": self.in_proj_weight, **bias}

    def local_gradients(self) -> dict[str, torch.Tensor]:
        bias = {} if self.grad_in_proj_bias is None else {"in_proj_bias": self.grad_in_proj_bias}
        return {"in_proj_weight": self.grad_in_proj_weight, **bias}

    def _heads(self, rows: torch.Tensor, batch: int, steps: int) -> torch.Tensor:
        """(B, T, E) -> (B, h, T, d)."""
        return rows.reshape(batch, steps, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """y shaped like x; masks as torch's (engine_core.attention_checks). Never writes x or a mask."""
        if not self.input_trusted:
            check_type(f"{self.describe()}: x", x, torch.Tensor, ARRAY_TYPE)
            check_sequence_facts(self.describe(), shape_of(x), dtype_name(x.dtype), self.embed_dim, self.batch_first,
                                 dtype_name(self.dtype))
            check_device(f"{self.describe()}: x", x, self.device)
            x = self._unshared(x.detach())
        xb = x if self.batch_first else x.transpose(0, 1)  # (B, T, E)
        batch, steps, embed = xb.shape
        found = additive_mask(self.describe(), batch, steps, self.num_heads, mask_as_numpy(key_padding_mask),
                              mask_as_numpy(attn_mask), is_causal, dtype_name(self.dtype))
        mask = None if found is None else torch.from_numpy(found).to(self.dtype).to(self.device)
        rows = xb.reshape(batch * steps, embed)
        qkv = rows @ self.in_proj_weight.t()
        if self.in_proj_bias is not None:
            qkv += self.in_proj_bias
        q, k, v = (self._heads(qkv[:, i * embed:(i + 1) * embed], batch, steps) for i in range(3))
        scale = 1.0 / math.sqrt(self.head_dim)
        scores = (q @ k.transpose(-2, -1)) * scale  # (B, h, T, T)
        if mask is not None:
            scores = scores + mask
        scores -= scores.amax(dim=-1, keepdim=True)  # softmax is shift-invariant; exp stays <= 1
        p = torch.exp(scores)
        p /= p.sum(dim=-1, keepdim=True)
        weights = p if self.attn_dropout is None else self.attn_dropout.forward(p)
        o = (weights @ v).permute(0, 2, 1, 3).reshape(batch * steps, embed)  # heads side by side
        y = self.out_proj.forward(o).reshape(batch, steps, embed)
        self._cache = (rows, q, k, v, p, weights)
        return y if self.batch_first else y.transpose(0, 1)

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
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
        dy = delta if self.batch_first else delta.transpose(0, 1)
        do = self.out_proj.backward(dy.reshape(batch * steps, embed))
        assert do is not None  # out_proj's dL/dx, asked for
        do = self._heads(do, batch, steps)  # (B, h, T, d)
        dv = weights.transpose(-2, -1) @ do
        dp = do @ v.transpose(-2, -1)
        if self.attn_dropout is not None:
            dp = self.attn_dropout.backward(dp)
        ds = p * (dp - (dp * p).sum(dim=-1, keepdim=True))
        scale = 1.0 / math.sqrt(self.head_dim)
        dq = (ds @ k) * scale
        dk = (ds.transpose(-2, -1) @ q) * scale
        dqkv = torch.cat([g.permute(0, 2, 1, 3).reshape(batch * steps, embed) for g in (dq, dk, dv)], dim=1)
        torch.mm(dqkv.t(), rows, out=self.grad_in_proj_weight)
        if self.grad_in_proj_bias is not None:
            torch.sum(dqkv, dim=0, out=self.grad_in_proj_bias)
        dx = (dqkv @ self.in_proj_weight).reshape(batch, steps, embed)
        return dx if self.batch_first else dx.transpose(0, 1).contiguous()


def mask_as_numpy(mask: object) -> object:
    """A tensor mask as NumPy for the engine-neutral checks (engine_core.attention_checks); anything
    else as it is. The oracle converts its masks with it too."""
    return mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask

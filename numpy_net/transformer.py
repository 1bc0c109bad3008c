"""A transformer encoder layer for the NumPy engine (torch_net/transformer.py is the same on
tensors, line for line): self-attention and a feed-forward block, each with a residual
connection and a LayerNorm, composed of the engine's own layers. Its backward is theirs, run in
reverse, plus the residual sums.
"""

from __future__ import annotations

import numpy as np

from engine_core.attention_checks import check_encoder_layer_args, encoder_dropout_seed
from engine_core.bookkeeping import LayerBase
from engine_core.checks import check_dtype_name, check_type, native, shape_of
from engine_core.errors import backward_before_forward_message
from engine_core.recurrent_checks import check_sequence_facts, sequence_form

from .attention import MultiheadAttention
from .checks import ARRAY_TYPE, check_delta
from .layers import GELU, Layer, Linear, ReLU
from .normalization import Dropout, LayerNorm


class TransformerEncoderLayer(Layer):
    """torch.nn.TransformerEncoderLayer (its documentation page), x (T, B, E) or (B, T, E) with
    batch_first, E = d_model:

        sa(h) = dropout1(self_attn(h, h, h, masks)),  ff(h) = dropout2(linear2(dropout(act(linear1(h)))))
        norm_first=False (post-LN): x1 = norm1(x + sa(x)),       y = norm2(x1 + ff(x1))
        norm_first=True  (pre-LN):  x1 = x + sa(norm1(x)),       y = x1 + ff(norm2(x1))

    act is relu or the exact (erf) gelu. Backward, dY = dL/dy, each part's backward in reverse
    and a residual's two paths added:
        post-LN: dh2 = norm2'(dY), dx1 = dh2 + ff'(dh2), dh1 = norm1'(dx1), dx = dh1 + sa'(dh1)
        pre-LN:  dx1 = dY + norm2'(ff'(dY)),             dx = dx1 + norm1'(sa'(dx1))
    Parts named as torch's (self_attn, linear1, dropout, linear2, norm1, norm2, dropout1, dropout2),
    so the state keys are torch's (self_attn.in_proj_weight, linear1.weight (in, out) here, ...);
    bias=False removes every bias, the norms' too. The four dropouts draw the engines' masks, seeded
    4 seed + 0..3 (engine_core.attention_checks.encoder_dropout_seed). Raises TypeError/ValueError for bad
    arguments (engine_core.attention_checks.check_encoder_layer_args), input, delta or masks.
    """

    composite = True  # runs its parts itself

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, seed: int = 0, dtype: str = "float32") -> None:
        a = self.args = check_encoder_layer_args(d_model, nhead, dim_feedforward, dropout, activation,
                                                 layer_norm_eps, batch_first, norm_first, bias)
        self.seed = seed
        self.dtype = np.dtype(check_dtype_name(dtype))
        name = self.dtype.name
        self.self_attn = MultiheadAttention(a.d_model, a.nhead, a.dropout, a.bias, a.batch_first,
                                            seed=encoder_dropout_seed(seed, "self_attn"), dtype=name)
        self.linear1 = Linear(a.d_model, a.dim_feedforward, bias=a.bias, dtype=name)
        self.dropout = Dropout(a.dropout, seed=encoder_dropout_seed(seed, "dropout"))
        self.linear2 = Linear(a.dim_feedforward, a.d_model, bias=a.bias, dtype=name)
        self.norm1 = LayerNorm(a.d_model, a.layer_norm_eps, bias=a.bias, dtype=name)
        self.norm2 = LayerNorm(a.d_model, a.layer_norm_eps, bias=a.bias, dtype=name)
        self.dropout1 = Dropout(a.dropout, seed=encoder_dropout_seed(seed, "dropout1"))
        self.dropout2 = Dropout(a.dropout, seed=encoder_dropout_seed(seed, "dropout2"))
        # torch holds the activation as a function, not a module: no state key, no child.
        self.activation: Layer = ReLU() if a.activation == "relu" else GELU()
        # The parts get arrays this layer made from an input and a delta it checked.
        for part in [*self.children().values(), self.activation]:
            part.input_trusted = part.delta_trusted = True
        self._shape: tuple[int, ...] | None = None  # the last input's shape

    def __repr__(self) -> str:
        return f"TransformerEncoderLayer({self.args.extra_repr()}{f', seed={self.seed}' if self.seed else ''})"

    def children(self) -> dict[str, LayerBase[np.ndarray]]:
        return {"self_attn": self.self_attn, "linear1": self.linear1, "dropout": self.dropout,
                "linear2": self.linear2, "norm1": self.norm1, "norm2": self.norm2, "dropout1": self.dropout1,
                "dropout2": self.dropout2}

    def forward(self, src: np.ndarray, src_mask: np.ndarray | None = None,
                src_key_padding_mask: np.ndarray | None = None, is_causal: bool = False) -> np.ndarray:
        """y shaped like src; masks as MultiheadAttention's (attn_mask = src_mask, key_padding_mask =
        src_key_padding_mask). Never writes src or a mask."""
        x = src
        if not self.input_trusted:
            check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
            x = native(x)  # type: ignore[arg-type]
            check_sequence_facts(self.describe(), x.shape, x.dtype.name, self.args.d_model, self.args.batch_first,
                                 self.dtype.name)
        masks = {"key_padding_mask": src_key_padding_mask, "attn_mask": src_mask, "is_causal": is_causal}
        self._shape = None  # until this forward completes: a refused mask leaves nothing to differentiate
        if self.args.norm_first:
            x1 = x + self._sa_block(self.norm1.forward(x), masks)
            y = x1 + self._ff_block(self.norm2.forward(x1))
        else:
            x1 = self.norm1.forward(x + self._sa_block(x, masks))
            y = self.norm2.forward(x1 + self._ff_block(x1))
        self._shape = x.shape
        return y

    def _sa_block(self, h: np.ndarray, masks: dict) -> np.ndarray:
        return self.dropout1.forward(self.self_attn.forward(h, **masks))

    def _ff_block(self, h: np.ndarray) -> np.ndarray:
        hidden = self.dropout.forward(self.activation.forward(self.linear1.forward(h)))
        return self.dropout2.forward(self.linear2.forward(hidden))

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """Fills every part's gradients (replacing the last call's); returns dL/dx shaped like x.
        RuntimeError before any forward; ValueError/TypeError for a delta unlike y."""
        if self._shape is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), sequence_form(self.args.batch_first, self.args.d_model)))
        if not self.delta_trusted:
            delta = check_delta(self, delta, self._shape, self.dtype)
        if self.args.norm_first:
            dx1 = delta + self.norm2.backward(self._ff_backward(delta))
            return dx1 + self.norm1.backward(self._sa_backward(dx1))
        dh2 = self.norm2.backward(delta)
        dx1 = dh2 + self._ff_backward(dh2)
        dh1 = self.norm1.backward(dx1)
        return dh1 + self._sa_backward(dh1)

    def _sa_backward(self, d: np.ndarray) -> np.ndarray:
        return self.self_attn.backward(self.dropout1.backward(d))

    def _ff_backward(self, d: np.ndarray) -> np.ndarray:
        hidden = self.linear2.backward(self.dropout2.backward(d))
        assert hidden is not None  # dL/dx, asked for (as below)
        da = self.activation.backward(self.dropout.backward(hidden))
        assert da is not None
        dx = self.linear1.backward(da)
        assert dx is not None
        return dx

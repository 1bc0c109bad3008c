"""Arguments and masks of MultiheadAttention used as self-attention, and Embedding's arguments and
indices, stated once: numpy_net, torch_net and the oracle call the same code, so they refuse the
same arguments, masks and indices with the same words (torch.nn.MultiheadAttention's and
torch.nn.Embedding's documentation pages). MultiheadAttention's input is a sequence, checked as
the recurrent layers' (recurrent_checks.check_sequence_facts).

Masks follow torch: ``attn_mask`` (T, T) or (B * num_heads, T, T), ``key_padding_mask`` (B, T);
a boolean True means "this key may not be attended to", a float is added to the scores.
``is_causal=True`` without an attn_mask means the causal mask (query t sees keys <= t); torch
asks for the mask itself and takes is_causal as a hint. A query row whose every key is masked
has no softmax (torch gives NaN there): every engine refuses it with a ValueError naming the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conv_checks import check_count
from .errors import type_name
from .layer_checks import check_dropout_p, check_flag, check_layernorm_args
from .recurrent_checks import check_sequence_facts


@dataclass(frozen=True)
class AttentionArgs:
    """torch.nn.MultiheadAttention's arguments this project takes, checked: head_dim = embed_dim
    / num_heads."""

    embed_dim: int
    num_heads: int
    dropout: float
    bias: bool
    batch_first: bool

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The module's own parameters, torch's: in_proj_weight (3E, E), rows Q, K, V; in_proj_bias
        (3E,) with bias. out_proj is a Linear(E, E) part (its weight (in, out) here)."""
        shapes: dict[str, tuple[int, ...]] = {"in_proj_weight": (3 * self.embed_dim, self.embed_dim)}
        return {**shapes, "in_proj_bias": (3 * self.embed_dim,)} if self.bias else shapes

    def extra_repr(self) -> str:
        text = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if not self.bias:
            text += ", bias=False"
        return text + (", batch_first=True" if self.batch_first else "")


def check_attention_args(embed_dim: object, num_heads: object, dropout: object = 0.0, bias: object = True,
                         batch_first: object = False) -> AttentionArgs:
    """torch.nn.MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True, ...,
    batch_first=False), checked: TypeError/ValueError naming the argument for sizes not ints >= 1,
    a num_heads that does not divide embed_dim (torch's "embed_dim must be divisible by
    num_heads"), a dropout (on the attention weights) outside [0, 1], flags not bools."""
    embed = check_count("embed_dim", embed_dim)
    heads = check_count("num_heads", num_heads)
    if embed % heads:
        raise ValueError(f"num_heads: must divide embed_dim, got embed_dim={embed}, num_heads={heads}")
    return AttentionArgs(embed, heads, check_dropout_p(dropout), check_flag("bias", bias),
                         check_flag("batch_first", batch_first))


ACTIVATIONS = ("relu", "gelu")  # torch.nn.TransformerEncoderLayer's activation strings
# The seeds of a TransformerEncoderLayer's four dropouts (encoder_dropout_seed): torch draws all
# four from its one generator; here each has its own, so that every engine draws the same masks.
ENCODER_DROPOUT_SEEDS = {"dropout": 0, "dropout1": 1, "dropout2": 2, "self_attn": 3}


def encoder_dropout_seed(seed: int, name: str) -> int:
    """The seed of an encoder layer's dropout ``name`` (a key of ENCODER_DROPOUT_SEEDS): 4 seed +
    its offset, so that encoder layers of different seeds never share a generator (with seed +
    offset, layer 0's dropout2 and layer 1's dropout1 drew the same masks)."""
    return 4 * seed + ENCODER_DROPOUT_SEEDS[name]


@dataclass(frozen=True)
class EncoderLayerArgs:
    """torch.nn.TransformerEncoderLayer's arguments, checked (its documentation page)."""

    d_model: int
    nhead: int
    dim_feedforward: int
    dropout: float
    activation: str
    layer_norm_eps: float
    batch_first: bool
    norm_first: bool
    bias: bool

    def extra_repr(self) -> str:
        text = f"d_model={self.d_model}, nhead={self.nhead}, dim_feedforward={self.dim_feedforward}, " \
               f"dropout={self.dropout}"
        if self.activation != "relu":
            text += f", activation={self.activation!r}"
        if self.layer_norm_eps != 1e-5:
            text += f", layer_norm_eps={self.layer_norm_eps}"
        for name, default in (("batch_first", False), ("norm_first", False), ("bias", True)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text


def check_encoder_layer_args(d_model: object, nhead: object, dim_feedforward: object = 2048, dropout: object = 0.1,
                             activation: object = "relu", layer_norm_eps: object = 1e-5, batch_first: object = False,
                             norm_first: object = False, bias: object = True) -> EncoderLayerArgs:
    """torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
    activation="relu", layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True),
    checked: TypeError/ValueError naming the argument (d_model and nhead as MultiheadAttention's
    embed_dim and num_heads, dim_feedforward an int >= 1, dropout in [0, 1], activation "relu"
    or "gelu" (torch's strings; a callable is not taken), layer_norm_eps as LayerNorm's eps)."""
    attention = check_attention_args(d_model, nhead, dropout, bias, batch_first)
    width = check_count("dim_feedforward", dim_feedforward)
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {', '.join(map(repr, ACTIVATIONS))}, got {activation!r}")
    try:
        eps = check_layernorm_args(attention.embed_dim, layer_norm_eps).eps
    except (TypeError, ValueError) as error:  # LayerNorm's words, under the encoder layer's name
        raise type(error)("layer_norm_" + str(error)) from None
    return EncoderLayerArgs(attention.embed_dim, attention.num_heads, width, attention.dropout, activation, eps,
                            attention.batch_first, check_flag("norm_first", norm_first), attention.bias)


def additive_mask(layer: str, batch: int, steps: int, num_heads: int, key_padding_mask: object = None,
                  attn_mask: object = None, is_causal: object = False,
                  dtype: str = "float64") -> np.ndarray | None:
    """The masks as one float64 array added to the scores, (B, num_heads, T, T) (broadcastable:
    (1, 1, T, T) for a (T, T) attn_mask alone), -inf where a boolean mask says True; None for no
    mask. Masks are NumPy arrays (engines convert theirs first) and are never written to.
    ``dtype``: the layer's, in which the scores are computed (a float mask of -1e39 is -inf in
    float32 and masks its key there).

    Raises TypeError (not an array; a dtype neither bool nor floating) or ValueError (a shape
    other than torch's; NaN or +inf in a float mask, or a value +inf in ``dtype``: a score of +inf
    has no softmax; a query row whose every key is masked in ``dtype``, named by its batch, head
    and query index), naming the layer and the mask.
    """
    causal = check_flag("is_causal", is_causal)
    if attn_mask is None and key_padding_mask is None and not causal:
        return None  # the common case: nothing to build or check
    total = np.zeros((1, 1, steps, steps))
    if attn_mask is None and causal:
        total = total + np.triu(np.full((steps, steps), -np.inf), 1)
    if attn_mask is not None:
        mask = _as_additive(layer, "attn_mask", attn_mask)
        if mask.shape == (steps, steps):
            total = total + mask
        elif mask.shape == (batch * num_heads, steps, steps):
            total = total + mask.reshape(batch, num_heads, steps, steps)
        else:
            raise ValueError(f"{layer}: attn_mask: expected shape ({steps}, {steps}) or "
                             f"({batch * num_heads}, {steps}, {steps}) (batch * num_heads, T, T), got {mask.shape}")
    if key_padding_mask is not None:
        mask = _as_additive(layer, "key_padding_mask", key_padding_mask)
        if mask.shape != (batch, steps):
            raise ValueError(f"{layer}: key_padding_mask: expected shape ({batch}, {steps}) (batch, T), "
                             f"got {mask.shape}")
        total = total + mask[:, None, None, :]
    with np.errstate(over="ignore"):
        scored = total.astype(dtype)  # a float mask beyond the dtype's range is +-inf there
    if np.isposinf(scored).any():
        raise ValueError(f"{layer}: a mask adds +inf to a score in {dtype} (values beyond "
                         f"{float(np.finfo(dtype).max):.3g}): its softmax would be NaN; mask with -inf or True instead")
    blocked = np.all(np.isneginf(scored), axis=-1)
    if blocked.any():
        b, h, t = (int(i) for i in np.argwhere(blocked)[0])
        raise ValueError(f"{layer}: every key of query {t} (batch {b}, head {h}) is masked: its attention "
                         "weights would be a softmax over nothing (torch gives NaN); leave at least one key "
                         "per query unmasked")
    return total


def _as_additive(layer: str, name: str, mask: object) -> np.ndarray:
    """A mask as float64: booleans to -inf (True) and 0; floats as they are (no NaN)."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{layer}: {name}: expected an array of bools or floats, got {type_name(mask)}")
    if mask.dtype == np.bool_:
        return np.where(mask, -np.inf, 0.0)
    if mask.dtype.kind != "f":
        raise TypeError(f"{layer}: {name}: expected a bool or floating-point mask, got dtype {mask.dtype}")
    values = mask.astype(np.float64)
    if np.isnan(values).any():
        raise ValueError(f"{layer}: {name}: holds NaN")
    return values


@dataclass(frozen=True)
class EmbeddingArgs:
    """torch.nn.Embedding's arguments, checked; padding_idx made non-negative (torch's rule: a
    negative one counts from the end), None for none."""

    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        return text if self.padding_idx is None else text + f", padding_idx={self.padding_idx}"


def check_embedding_args(num_embeddings: object, embedding_dim: object, padding_idx: object = None) -> EmbeddingArgs:
    """torch.nn.Embedding(num_embeddings, embedding_dim, padding_idx=None), checked: TypeError or
    ValueError naming the argument for sizes that are not ints >= 1 and a padding_idx outside
    [-num_embeddings, num_embeddings) (torch's "Padding_idx must be within num_embeddings")."""
    rows, width = check_count("num_embeddings", num_embeddings), check_count("embedding_dim", embedding_dim)
    if padding_idx is None:
        return EmbeddingArgs(rows, width, None)
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
        raise TypeError(f"padding_idx: expected an int or None, got {type_name(padding_idx)} {padding_idx!r}")
    if not -rows <= padding_idx < rows:
        raise ValueError(f"padding_idx: must be within [-{rows}, {rows}) (num_embeddings={rows}), got {padding_idx}")
    return EmbeddingArgs(rows, width, int(padding_idx) % rows)


def check_indices(layer: str, dtype: str, num_embeddings: int, low: int | None, high: int | None) -> None:
    """An Embedding's input: TypeError unless an integer array (torch takes int64 or int32; a float
    would be truncated), ValueError for an index outside [0, num_embeddings) (``low``/``high``:
    the smallest and largest index; None for an empty input). Names the layer."""
    if not (dtype.startswith("int") or dtype.startswith("uint")):
        raise TypeError(f"{layer}: indices: expected an integer array (the rows to look up), got dtype {dtype}")
    if low is not None and high is not None and (low < 0 or high >= num_embeddings):
        bad = low if low < 0 else high
        raise ValueError(f"{layer}: indices: {bad} is outside [0, {num_embeddings}) (num_embeddings={num_embeddings})")


def check_patches_facts(layer: str, shape: tuple[int, ...], dtype: str, patch_size: int) -> None:
    """Patches' input: a floating 4-D (batch, channels, height, width) batch of images whose height
    and width are multiples of patch_size (nn.Unfold would silently drop the remainder). Raises
    ValueError (rank, size, empty) or TypeError (dtype), naming the layer."""
    if len(shape) != 4:
        raise ValueError(f"{layer}: x: expected a 4-D input (batch, channels, height, width), got shape {shape}")
    if 0 in shape:
        raise ValueError(f"{layer}: x: empty input (shape {shape})")
    if shape[2] % patch_size or shape[3] % patch_size:
        raise ValueError(f"{layer}: x: height and width must be multiples of patch_size {patch_size}, "
                         f"got {shape[2:]}")
    if dtype not in ("float32", "float64"):
        raise TypeError(f"{layer}: x: expected dtype float32 or float64, got {dtype}")


def check_positions_facts(layer: str, shape: tuple[int, ...], dtype: str, num_positions: int, embedding_dim: int,
                          batch_first: bool, layer_dtype: str) -> None:
    """PositionalEmbedding's input: a sequence as check_sequence_facts takes it, embedding_dim
    features, at most num_positions steps, the layer's dtype. Raises ValueError or TypeError
    naming the layer."""
    check_sequence_facts(layer, shape, dtype, embedding_dim, batch_first, layer_dtype)
    steps = shape[1] if batch_first else shape[0]
    if steps > num_positions:
        raise ValueError(f"{layer}: x: {steps} time steps, more than num_positions={num_positions}")

"""The oracle: the same network as torch.nn.Linear layers + torch.optim, differentiated by
autograd. Same interface as numpy_net/torch_net (engine_core.protocol), so tests and the CLI
can swap it in, and the same checks and messages (engine_core.checks).

Nothing here is hand-written math: every derivative comes from autograd's graph. Weights are
(out, in) inside nn.Linear and converted to the engines' (in, out) at the edges.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from engine_core.attention_checks import (
    EncoderLayerArgs,
    additive_mask,
    check_attention_args,
    check_embedding_args,
    check_encoder_layer_args,
    check_patches_facts,
    check_positions_facts,
    encoder_dropout_seed,
)
from engine_core.checks import (
    check_adam,
    check_dtype_name,
    check_max_norm,
    check_model_state,
    check_optimizer_state,
    check_sgd,
    check_type,
)
from engine_core.conv_checks import (
    PoolArgs,
    check_avgpool_args,
    check_conv_args,
    check_count,
    check_flatten_args,
    check_maxpool_args,
    check_pool_windows,
)
from engine_core.dropout_masks import DropoutMasks
from engine_core.errors import NonFiniteError, backward_before_forward_message
from engine_core.formats import ModelState, OptimizerState
from engine_core.layer_checks import (
    check_approximate,
    check_batches_tracked,
    check_batchnorm_args,
    check_dropout_p,
    check_flag,
    check_layernorm_args,
    check_negative_slope,
)
from engine_core.recurrent_checks import RecurrentArgs, check_recurrent_args, check_sequence_facts
from engine_core.specs import build, mlp

from . import asarray, labels, to_numpy  # the same conversions as torch_net
from .attention import mask_as_numpy
from .checks import (
    check_delta,
    check_features,
    check_finite_input,
    check_labels,
    check_logits,
    dtype_name,
    raise_non_finite_logits,
    shape_of,
)

# What a trainer needs to know (engine_core.protocol.Traits): autograd adds into .grad, and
# retaining every pre-activation's gradient (for deltas()) is work a training step never reads.
NAME = "autograd"
ACCUMULATES_GRADIENTS = True
DEVICES: tuple[str, ...] = ("cpu", "cuda")
TRAINING_KWARGS: dict[str, object] = {"keep_deltas": False}

class Layer:
    """An oracle layer: a torch.nn module behind the engines' layer constructor, so that
    engine_core.specs.build(autograd, specs) builds the same stack as in any engine.

    ``transposed`` names the parameters torch stores as the transpose of the engines' layout
    (Linear's weight). Every derivative comes from autograd; nothing here is hand-written math.
    """

    transposed: tuple[str, ...] = ()
    records_delta = False  # whether the engines' layer of this kind records dL/d(output)

    def __init__(self, module: nn.Module, text: str | None = None) -> None:
        self.module = module
        self.text = text  # how the engines show this layer (their __repr__), for messages

    def state(self) -> dict[str, torch.Tensor]:
        """Parameters then buffers (torch's names; num_batches_tracked is not part of the format)."""
        out: dict[str, torch.Tensor] = dict(self.module.named_parameters(recurse=False))
        out.update({k: v for k, v in self.module.named_buffers(recurse=False) if k != "num_batches_tracked"})
        return out

    def __repr__(self) -> str:
        return self.text if self.text is not None else repr(self.module)


def _kind(dtype: str) -> torch.dtype:
    return getattr(torch, check_dtype_name(dtype))



class Linear(Layer):
    """torch.nn.Linear (weight (out, in) inside; (in, out) at the edges)."""

    transposed = ("weight",)
    records_delta = True

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: str = "float32",
                 device: str | torch.device = "cpu") -> None:
        extra = "" if bias else ", bias=False"
        super().__init__(nn.Linear(in_features, out_features, bias=bias, dtype=_kind(dtype), device=device),
                         f"Linear(in_features={in_features}, out_features={out_features}{extra})")


class Identity(Layer):
    """torch.nn.Identity."""

    def __init__(self) -> None:
        super().__init__(nn.Identity())


def _inplace_text(inplace: bool) -> str:
    """", inplace=True" when set: how every engine shows the argument (torch's repr)."""
    return ", inplace=True" if check_flag("inplace", inplace) else ""


class ReLU(Layer):
    """torch.nn.ReLU, always computed out of place; ``inplace=True`` is shown, as in the engines.

    Why out of place: the engines' in-place form gives the out-of-place results (never a wrong
    gradient, never a write into the caller's x), and the oracle must agree with that. torch's
    own in-place ReLU after a layer that keeps its output for backward (Tanh, Sigmoid) makes
    autograd raise "modified by an inplace operation" (pytorch/pytorch#1029, #5687), and as the
    first layer it would overwrite the caller's x.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(nn.ReLU(), "ReLU(inplace=True)" if check_flag("inplace", inplace) else "ReLU()")


class Sigmoid(Layer):
    """torch.nn.Sigmoid."""

    def __init__(self) -> None:
        super().__init__(nn.Sigmoid())


class Tanh(Layer):
    """torch.nn.Tanh."""

    def __init__(self) -> None:
        super().__init__(nn.Tanh())


class _QuietConv2d(nn.Conv2d):
    """torch.nn.Conv2d without its warning, at every forward of padding="same" with an even kernel,
    that it "may require a zero-padded copy of the input": a note on torch's speed, not on its
    numbers, which are the oracle's. Shown as Conv2d."""

    def _get_name(self) -> str:
        return "Conv2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using padding='same' with even kernel", category=UserWarning)
            return super().forward(x)


class Conv2d(Layer):
    """torch.nn.Conv2d with the same arguments (padding an int, a pair, "valid" or "same"; dilation;
    groups), checked as the engines check them; weight (C_out, C_in / groups, kH, kW), bias
    (C_out,): the engines' layout too."""

    records_delta = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 dtype: str = "float32", device: str | torch.device = "cpu") -> None:
        args = check_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode)
        conv = _QuietConv2d if args.padding == "same" else nn.Conv2d
        super().__init__(conv(args.in_channels, args.out_channels, args.kernel_size, stride=args.stride,
                                   padding=args.padding, dilation=args.dilation, groups=args.groups, bias=bool(bias),
                                   padding_mode=cast(Any, args.padding_mode), dtype=_kind(dtype), device=device),
                         f"Conv2d({args.extra_repr(bool(bias))})")


class _CheckedMaxPool2d(nn.MaxPool2d):
    """torch.nn.MaxPool2d that first refuses, in the engines' words, an input on which a dilated
    window would hold only padding (engine_core.conv_checks.check_pool_windows): torch's kernel
    returns -inf there and its backward writes outside the input. Shown as MaxPool2d."""

    def __init__(self, args: PoolArgs, text: str) -> None:
        super().__init__(args.kernel_size, args.stride, args.padding, args.dilation, ceil_mode=args.ceil_mode)
        self.windows, self.text = args.windows, text

    def _get_name(self) -> str:
        return "MaxPool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() >= 2:
            check_pool_windows(self.text, tuple(x.shape[-2:]), self.windows)
        return super().forward(x)


class MaxPool2d(Layer):
    """torch.nn.MaxPool2d (stride None: the kernel size; return_indices=True refused, as in the
    engines)."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        args = check_maxpool_args(kernel_size, stride, padding, dilation, return_indices, ceil_mode)
        text = f"MaxPool2d({args.extra_repr(False)})"
        if args.padding != (0, 0) and args.dilation != (1, 1):  # where a window may hold only padding
            module: nn.Module = _CheckedMaxPool2d(args, text)
        else:
            module = nn.MaxPool2d(args.kernel_size, args.stride, args.padding, args.dilation, ceil_mode=args.ceil_mode)
        super().__init__(module, text)


class AvgPool2d(Layer):
    """torch.nn.AvgPool2d (stride None: the kernel size)."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        args = check_avgpool_args(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        super().__init__(nn.AvgPool2d(args.kernel_size, args.stride, args.padding, args.ceil_mode,
                                      args.count_include_pad, args.divisor_override),
                         f"AvgPool2d({args.extra_repr(True)})")


class Flatten(Layer):
    """torch.nn.Flatten(start_dim, end_dim) (by default (B, ...) to (B, prod(...))), its arguments
    checked as the engines check them."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        start, end = check_flatten_args(start_dim, end_dim)
        text = "Flatten()" if (start, end) == (1, -1) else f"Flatten(start_dim={start}, end_dim={end})"
        super().__init__(nn.Flatten(start, end), text)


class LeakyReLU(Layer):
    """torch.nn.LeakyReLU, always computed out of place (ReLU says why); ``inplace=True`` is shown."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        slope = check_negative_slope(negative_slope)
        super().__init__(nn.LeakyReLU(slope), f"LeakyReLU(negative_slope={slope}{_inplace_text(inplace)})")


class GELU(Layer):
    """torch.nn.GELU (approximate "none": the erf form; "tanh")."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__(nn.GELU(approximate=check_approximate(approximate)))


def _refuse_one_value_per_channel(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    """F.batch_norm's check, made before torch's batch norm counts the batch: batch statistics
    (train mode, or no running ones) need more than one value per channel."""
    size = inputs[0].size()
    if (module.training or module.running_mean is None) and len(size) >= 2 and size[0] * math.prod(size[2:]) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {size}")


class _BatchNorm(Layer):
    """torch.nn.BatchNorm1d/2d itself (``torch_class``): weight, bias (affine); running_mean,
    running_var (track_running_stats). Its num_batches_tracked buffer is outside the state format
    (the Sequential leaves it out of state_dict): read and set it as the int
    ``num_batches_tracked``, as in the engines (momentum=None averages by it)."""

    torch_class: type[nn.modules.batchnorm._BatchNorm] = nn.BatchNorm1d

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype: str = "float32",
                 device: str | torch.device = "cpu") -> None:
        args = check_batchnorm_args(num_features, eps, momentum, affine, track_running_stats)
        self.track_running_stats = args.track_running_stats
        self.norm = self.torch_class(args.num_features, eps=args.eps, momentum=args.momentum, affine=args.affine,
                                     track_running_stats=args.track_running_stats, dtype=_kind(dtype), device=device)
        super().__init__(self.norm, f"{self.torch_class.__name__}({args.extra_repr()})")
        # torch's _BatchNorm.forward counts a batch (num_batches_tracked += 1) before F.batch_norm
        # refuses a single value per channel; the engines refuse first and count nothing, a refused
        # call changing no buffer. So the oracle refuses first too, in torch's words.
        self.norm.register_forward_pre_hook(_refuse_one_value_per_channel)

    @property
    def num_batches_tracked(self) -> int:
        """torch's counter as an int (0 with track_running_stats=False, where torch's is None)."""
        counter = self.norm.num_batches_tracked
        return 0 if counter is None else int(counter)

    @num_batches_tracked.setter
    def num_batches_tracked(self, value: int) -> None:
        count = check_batches_tracked(repr(self), value, self.track_running_stats)
        counter = self.norm.num_batches_tracked
        if counter is not None:
            counter.fill_(count)


class BatchNorm1d(_BatchNorm):
    """torch.nn.BatchNorm1d, on (B, C) and (B, C, L)."""

    torch_class = nn.BatchNorm1d


class BatchNorm2d(_BatchNorm):
    """torch.nn.BatchNorm2d."""

    torch_class = nn.BatchNorm2d


class _SelfAttention(nn.MultiheadAttention):
    """torch.nn.MultiheadAttention called as self-attention, mha(x, x, x)[0], with the masks
    checked and combined by the engines' own rule (engine_core.attention_checks.additive_mask:
    the same errors, a query with every key masked refused) and handed to torch as one float
    attn_mask (B * num_heads, T, T).

    With dropout > 0 in train mode, torch would drop attention weights by its own generator; here
    ``attn_dropout`` drops them with the engines' masks (NumpyMaskDropout), on the weights of the
    same formula written in torch operations (softmax(Q K^T / sqrt(d) + M) V, torch's
    documentation page), differentiated by autograd. Without dropout it is torch's own forward."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(embed_dim, num_heads, **kwargs)  # torch's own dropout stays 0
        self.attn_dropout = NumpyMaskDropout(dropout, seed) if dropout > 0 else None

    def forward(self, x: torch.Tensor, key_padding_mask: Any = None,  # type: ignore[override]
                attn_mask: Any = None, is_causal: bool = False) -> torch.Tensor:
        batch, steps = (x.shape[0], x.shape[1]) if self.batch_first else (x.shape[1], x.shape[0])
        found = additive_mask(repr(self), batch, steps, self.num_heads, mask_as_numpy(key_padding_mask),
                              mask_as_numpy(attn_mask), is_causal, dtype_name(x.dtype))
        mask = None
        if found is not None:
            full = np.broadcast_to(found, (batch, self.num_heads, steps, steps)).reshape(-1, steps, steps)
            mask = torch.from_numpy(np.array(full)).to(x.dtype).to(x.device)  # a copy: broadcast_to is read-only
        if self.attn_dropout is not None and self.training:
            return self.dropped_forward(x, mask)
        return super().forward(x, x, x, attn_mask=mask, need_weights=False)[0]

    def dropped_forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The attention with attn_dropout on its weights (the identity in eval mode), mask the
        (B * num_heads, T, T) float mask or None."""
        xb = x if self.batch_first else x.transpose(0, 1)
        batch, steps, embed = xb.shape
        heads, width = self.num_heads, embed // self.num_heads
        q, k, v = (part.reshape(batch, steps, heads, width).transpose(1, 2)
                   for part in functional.linear(xb, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1))
        scores = q @ k.transpose(-2, -1) / math.sqrt(width)
        if mask is not None:
            scores = scores + mask.reshape(batch, heads, steps, steps)
        weights = torch.softmax(scores, dim=-1)
        if self.attn_dropout is not None:
            weights = self.attn_dropout(weights)
        y = self.out_proj((weights @ v).transpose(1, 2).reshape(batch, steps, embed))
        return y if self.batch_first else y.transpose(0, 1)


class MultiheadAttention(Layer):
    """torch.nn.MultiheadAttention as self-attention: in_proj_weight (3E, E), in_proj_bias,
    out_proj.weight ((in, out) at the edges), out_proj.bias."""

    transposed = ("out_proj.weight",)

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, seed: int = 0, dtype: str = "float32",
                 device: str | torch.device = "cpu") -> None:
        args = check_attention_args(embed_dim, num_heads, dropout, bias, batch_first)
        super().__init__(_SelfAttention(args.embed_dim, args.num_heads, args.dropout, seed, bias=args.bias,
                                        batch_first=args.batch_first, dtype=_kind(dtype), device=device),
                         f"MultiheadAttention({args.extra_repr()})")


class _EncoderLayer(nn.TransformerEncoderLayer):
    """torch.nn.TransformerEncoderLayer itself (its modules, names, activation and LayerNorms),
    with its four dropouts drawing the engines' masks (NumpyMaskDropout, seeded as
    engine_core.attention_checks.encoder_dropout_seed) and its self_attn a _SelfAttention.
    forward is torch's slow path (its documented formula): torch's eval-mode fast path is not the
    reference (it mishandles float masks, pytorch/pytorch#118628)."""

    def __init__(self, a: EncoderLayerArgs, seed: int, dtype: torch.dtype, device: str | torch.device) -> None:
        super().__init__(a.d_model, a.nhead, a.dim_feedforward, a.dropout, a.activation, a.layer_norm_eps,
                         a.batch_first, a.norm_first, a.bias, device=device, dtype=dtype)
        self.self_attn = _SelfAttention(a.d_model, a.nhead, a.dropout, encoder_dropout_seed(seed, "self_attn"),
                                        bias=a.bias, batch_first=a.batch_first, dtype=dtype, device=device)
        for name in ("dropout", "dropout1", "dropout2"):
            setattr(self, name, NumpyMaskDropout(a.dropout, encoder_dropout_seed(seed, name)))
        self.text = f"TransformerEncoderLayer({a.extra_repr()})"  # for messages, as the engines show it

    def forward(self, src: torch.Tensor, src_mask: Any = None,  # type: ignore[override]
                src_key_padding_mask: Any = None, is_causal: bool = False) -> torch.Tensor:
        def sa(h: torch.Tensor) -> torch.Tensor:
            return self.dropout1(self.self_attn(h, key_padding_mask=src_key_padding_mask, attn_mask=src_mask,
                                                is_causal=is_causal))

        check_sequence_facts(self.text, tuple(src.shape), dtype_name(src.dtype), self.linear1.in_features,
                             self.self_attn.batch_first, dtype_name(self.linear1.weight.dtype))
        x = src
        if self.norm_first:
            x = x + sa(self.norm1(x))
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + sa(x))
        return self.norm2(x + self._ff_block(x))


class TransformerEncoderLayer(Layer):
    """torch.nn.TransformerEncoderLayer (_EncoderLayer): its parts' parameters, Linear weights
    ((in, out) at the edges) included."""

    transposed = ("self_attn.out_proj.weight", "linear1.weight", "linear2.weight")

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, seed: int = 0, dtype: str = "float32",
                 device: str | torch.device = "cpu") -> None:
        args = check_encoder_layer_args(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                                        batch_first, norm_first, bias)
        super().__init__(_EncoderLayer(args, seed, _kind(dtype), device),
                         f"TransformerEncoderLayer({args.extra_repr()}{f', seed={seed}' if seed else ''})")


class Embedding(Layer):
    """torch.nn.Embedding itself: weight (num_embeddings, embedding_dim), the padding_idx row's
    gradient 0 (torch's rule)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype: str = "float32", device: str | torch.device = "cpu") -> None:
        args = check_embedding_args(num_embeddings, embedding_dim, padding_idx)
        super().__init__(nn.Embedding(args.num_embeddings, args.embedding_dim, padding_idx=args.padding_idx,
                                      dtype=_kind(dtype), device=device), f"Embedding({args.extra_repr()})")


class LayerNorm(Layer):
    """torch.nn.LayerNorm itself: weight, bias (elementwise_affine; no bias with bias=False)."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype: str = "float32", device: str | torch.device = "cpu") -> None:
        args = check_layernorm_args(normalized_shape, eps, elementwise_affine, bias)
        super().__init__(nn.LayerNorm(list(args.normalized_shape), eps=args.eps,
                                      elementwise_affine=args.elementwise_affine, bias=args.bias, dtype=_kind(dtype),
                                      device=device),
                         f"LayerNorm({args.extra_repr()})")


class _KeepOutput:
    """Mixin for torch.nn.RNN/LSTM/GRU: forward(x) returns torch's first return value, ``output``,
    from zero initial states, and keeps the final states as ``h_n`` (and the LSTM's ``c_n``),
    detached; x is checked first as the engines check it (a 3-D sequence of the layer's width and
    dtype), so the oracle refuses what they refuse, in their words. Shown by its torch.nn name."""

    text = ""
    h_n: torch.Tensor | None = None
    c_n: torch.Tensor | None = None

    def _get_name(self) -> str:
        return type(self).__mro__[2].__name__

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        module = cast(nn.RNNBase, self)
        check_type(f"{self.text}: x", x, torch.Tensor, "torch.Tensor")
        check_sequence_facts(self.text, tuple(x.shape), dtype_name(x.dtype), module.input_size,
                             module.batch_first, dtype_name(cast(torch.Tensor, module.weight_ih_l0).dtype))
        output, finals = super().forward(x)  # type: ignore[misc]  # the torch.nn class after this mixin
        if isinstance(finals, tuple):  # the LSTM's (h_n, c_n)
            self.h_n, self.c_n = finals[0].detach(), finals[1].detach()
        else:
            self.h_n = finals.detach()
        return output


class _RNN(_KeepOutput, nn.RNN):  # type: ignore[misc]  # forward returns output alone
    pass


class _LSTM(_KeepOutput, nn.LSTM):  # type: ignore[misc]  # forward returns output alone
    pass


class _GRU(_KeepOutput, nn.GRU):  # type: ignore[misc]  # forward returns output alone
    pass


class _Recurrent(Layer):
    """torch.nn.RNN/LSTM/GRU themselves, returning ``output`` (_KeepOutput); parameters in torch's
    names and layout (weight_ih_l{k} (G H, in_k), ...), which are the engines' too. ``h_n`` and
    ``c_n`` (LSTM) are the last forward's final states, (num_layers, B, H)."""

    def __init__(self, module: _KeepOutput, args: RecurrentArgs) -> None:
        module.text = f"{args.kind.upper()}({args.extra_repr()})"
        super().__init__(cast(nn.Module, module), module.text)

    @property
    def h_n(self) -> torch.Tensor | None:
        return cast(_KeepOutput, self.module).h_n

    @property
    def c_n(self) -> torch.Tensor | None:
        return cast(_KeepOutput, self.module).c_n


class RNN(_Recurrent):
    """torch.nn.RNN (nonlinearity "tanh" or "relu")."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dtype: str = "float32",
                 device: str | torch.device = "cpu") -> None:
        args = check_recurrent_args("rnn", input_size, hidden_size, num_layers, nonlinearity, bias, batch_first)
        super().__init__(_RNN(args.input_size, args.hidden_size, args.num_layers, nonlinearity=args.nonlinearity,
                              bias=args.bias, batch_first=args.batch_first, dtype=_kind(dtype), device=device), args)


class LSTM(_Recurrent):
    """torch.nn.LSTM."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype: str = "float32", device: str | torch.device = "cpu") -> None:
        args = check_recurrent_args("lstm", input_size, hidden_size, num_layers, "tanh", bias, batch_first)
        super().__init__(_LSTM(args.input_size, args.hidden_size, args.num_layers, bias=args.bias,
                               batch_first=args.batch_first, dtype=_kind(dtype), device=device), args)


class GRU(_Recurrent):
    """torch.nn.GRU."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype: str = "float32", device: str | torch.device = "cpu") -> None:
        args = check_recurrent_args("gru", input_size, hidden_size, num_layers, "tanh", bias, batch_first)
        super().__init__(_GRU(args.input_size, args.hidden_size, args.num_layers, bias=args.bias,
                              batch_first=args.batch_first, dtype=_kind(dtype), device=device), args)


class LastStepModule(nn.Module):
    """output[:, -1] (batch_first) or output[-1]: the last time step of a (B, T, F) or (T, B, F)
    sequence, autograd differentiating the indexing."""

    def __init__(self, batch_first: bool = False) -> None:
        super().__init__()
        self.batch_first = batch_first

    def _get_name(self) -> str:
        return "LastStep"

    def extra_repr(self) -> str:
        return "batch_first=True" if self.batch_first else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1] if self.batch_first else x[-1]


class LastStep(Layer):
    """LastStepModule (torch has no such module)."""

    def __init__(self, batch_first: bool = False) -> None:
        flag = check_flag("batch_first", batch_first)
        super().__init__(LastStepModule(flag), "LastStep(batch_first=True)" if flag else "LastStep()")


class PatchesModule(nn.Module):
    """torch's nn.Unfold(p, stride=p)(x).transpose(1, 2): (B, C, H, W) -> (B, T, C p p), the
    image's p x p patches as tokens (the input checked as the engines check it)."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.unfold = nn.Unfold(patch_size, stride=patch_size)

    def _get_name(self) -> str:
        return "Patches"

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_patches_facts(f"Patches(patch_size={self.patch_size})", tuple(x.shape), dtype_name(x.dtype),
                            self.patch_size)
        return self.unfold(x).transpose(1, 2)


class Patches(Layer):
    """PatchesModule (torch has no such module)."""

    def __init__(self, patch_size: int) -> None:
        size = check_count("patch_size", patch_size)
        super().__init__(PatchesModule(size), f"Patches(patch_size={size})")


class PositionalEmbeddingModule(nn.Module):
    """x + weight[:T], weight an nn.Parameter (num_positions, embedding_dim), broadcast over the
    batch; autograd differentiates the addition."""

    def __init__(self, num_positions: int, embedding_dim: int, batch_first: bool, dtype: torch.dtype,
                 device: str | torch.device) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.weight = nn.Parameter(torch.zeros(num_positions, embedding_dim, dtype=dtype, device=device))

    def _get_name(self) -> str:
        return "PositionalEmbedding"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, width = self.weight.shape
        text = f"PositionalEmbedding({rows}, {width}{', batch_first=True' if self.batch_first else ''})"
        check_positions_facts(text, tuple(x.shape), dtype_name(x.dtype), rows, width, self.batch_first,
                              dtype_name(self.weight.dtype))
        if self.batch_first:
            return x + self.weight[:x.shape[1]]
        return x + self.weight[:x.shape[0]].unsqueeze(1)


class PositionalEmbedding(Layer):
    """PositionalEmbeddingModule (torch has no such module)."""

    def __init__(self, num_positions: int, embedding_dim: int, batch_first: bool = False, dtype: str = "float32",
                 device: str | torch.device = "cpu") -> None:
        rows, width = check_count("num_positions", num_positions), check_count("embedding_dim", embedding_dim)
        flag = check_flag("batch_first", batch_first)
        super().__init__(PositionalEmbeddingModule(rows, width, flag, _kind(dtype), device),
                         f"PositionalEmbedding({rows}, {width}{', batch_first=True' if flag else ''})")


class SequenceMeanModule(nn.Module):
    """x.mean(1) (batch_first) or x.mean(0): the mean over the time steps, autograd
    differentiating it."""

    def __init__(self, batch_first: bool = False) -> None:
        super().__init__()
        self.batch_first = batch_first

    def _get_name(self) -> str:
        return "SequenceMean"

    def extra_repr(self) -> str:
        return "batch_first=True" if self.batch_first else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_sequence_facts(f"SequenceMean({self.extra_repr()})", tuple(x.shape), dtype_name(x.dtype), None,
                             self.batch_first, None)
        return x.mean(1 if self.batch_first else 0)


class SequenceMean(Layer):
    """SequenceMeanModule (torch has no such module)."""

    def __init__(self, batch_first: bool = False) -> None:
        flag = check_flag("batch_first", batch_first)
        super().__init__(SequenceMeanModule(flag), "SequenceMean(batch_first=True)" if flag else "SequenceMean()")


class NumpyMaskDropout(nn.Module):
    """Inverted dropout with the engines' masks: keep = rng.random(x.shape) >= p from
    np.random.default_rng(seed) (engine_core.dropout_masks.DropoutMasks), y = x * keep / (1 - p)
    in train mode (p = 0 draws nothing), y = x in eval mode; autograd differentiates the
    multiplication. ``rng_state()`` / ``set_rng_state(state)`` as the engines' Dropout.
    (torch.nn.Dropout draws from torch's generator, which no NumPy engine can reproduce.)"""

    def __init__(self, p: float, seed: int) -> None:
        super().__init__()
        self.p, self.seed = p, seed
        self.masks = DropoutMasks(seed)

    def extra_repr(self) -> str:
        return f"p={self.p}, seed={self.seed}"

    def rng_state(self) -> dict:
        return self.masks.state()

    def set_rng_state(self, state: dict) -> None:
        self.masks.set_state(f"Dropout(p={self.p}, seed={self.seed})", state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:  # p = 0: no mask drawn, as in the engines
            return x
        keep = torch.from_numpy(self.masks.keep(tuple(x.shape), self.p))
        mask = keep.to(dtype=x.dtype, device=x.device).mul_(0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p))
        return x * mask


class Dropout(Layer):
    """NumpyMaskDropout: the same masks as the engines' Dropout from the same seed, and the same
    rng_state() / set_rng_state(state)."""

    def __init__(self, p: float = 0.5, inplace: bool = False, seed: int = 0) -> None:
        module = NumpyMaskDropout(check_dropout_p(p), seed)
        # inplace=True is shown and computed out of place, as in the engines (ReLU says why).
        super().__init__(module, f"Dropout(p={module.p}{_inplace_text(inplace)}, seed={seed})")
        self.masks = module.masks

    def rng_state(self) -> dict:
        return self.masks.state()

    def set_rng_state(self, state: dict) -> None:
        self.masks.set_state(repr(self), state)


class Sequential(Layer):
    """torch.nn.Sequential of oracle modules (nestable), behind the engines' Sequential interface:
    torch's state-dict keys ("0.weight", "1.0.running_mean") in the engines' layout, train()/eval(),
    deltas() of the layers that record them (keep_deltas), gradients by autograd. The root checks
    x as the engines do (a first Linear: its shape, dtype and device in the engines' words; NaN/Inf
    in x as NonFiniteError); deeper shape errors are torch's own."""

    records_delta = False

    def __init__(self, *layers: Layer, keep_deltas: bool = True) -> None:
        self.layers = list(layers)
        super().__init__(nn.Sequential(*[layer.module for layer in self.layers]))
        self.keep_deltas = keep_deltas
        self._x: torch.Tensor | None = None
        self._out: torch.Tensor | None = None
        self._pre: list[torch.Tensor] = []
        self._recording = False
        self._leaves = self.leaves()
        last_path, last = [(p, m) for p, m in self.named_layers() if not isinstance(m, Sequential)][-1]
        self._last_text = f"layer {last_path} {last!r}"  # named in backward's messages, built once
        self._edges = {path: layer for path, layer in self.named_layers() if layer.transposed}
        # dL/dz of every Linear/Conv2d, in forward order: a hook retains each output's gradient.
        for layer in self._leaves:
            if layer.records_delta:
                layer.module.register_forward_hook(self._record)

    def named_layers(self, prefix: str = "") -> list[tuple[str, Layer]]:
        """(path, oracle layer) of this container and every layer below it, depth first."""
        out: list[tuple[str, Layer]] = [(prefix, self)]
        for index, layer in enumerate(self.layers):
            path = f"{prefix}.{index}" if prefix else str(index)
            out.extend(layer.named_layers(path) if isinstance(layer, Sequential) else [(path, layer)])
        return out

    def leaves(self) -> list[Layer]:
        return [layer for _, layer in self.named_layers() if not isinstance(layer, Sequential)]

    def _record(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if self._recording and output.requires_grad:
            output.retain_grad()
            self._pre.append(output)

    def __repr__(self) -> str:
        return repr(self.module)

    @property
    def training(self) -> bool:
        """Train mode (torch.nn.Module.training of the wrapped Sequential)."""
        return self.module.training

    def train(self, mode: bool = True) -> Sequential:
        self.module.train(mode)
        return self

    def eval(self) -> Sequential:
        return self.train(False)

    def _flipped(self, key: str) -> bool:
        """Whether state key ``key`` is one torch stores transposed: a layer's own ("3.weight" of a
        Linear) or its part's ("0.out_proj.weight" of a MultiheadAttention)."""
        path, _, name = key.rpartition(".")
        while True:
            layer = self._edges.get(path)
            if layer is not None and name in layer.transposed:
                return True
            if not path:
                return False
            path, _, head = path.rpartition(".")
            name = f"{head}.{name}"

    def _entries(self) -> list[tuple[str, bool, torch.Tensor]]:
        """(key, transposed, tensor) in torch's state_dict order (num_batches_tracked is not part
        of the engines' format)."""
        out = []
        for key, value in self.module.state_dict(keep_vars=True).items():
            if key.rpartition(".")[2] == "num_batches_tracked":
                continue
            out.append((key, self._flipped(key), value))
        return out

    @staticmethod
    def _edge(transposed: bool, value: torch.Tensor) -> torch.Tensor:
        return value.t() if transposed else value

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: tuple(self._edge(flip, value).shape) for key, flip, value in self._entries()}

    def state_dict(self) -> ModelState:
        return {key: self._edge(flip, value.detach()).cpu().numpy().copy() for key, flip, value in self._entries()}

    def load_state_dict(self, state: ModelState) -> None:
        entries = self._entries()
        dtype = dtype_name(entries[0][2].dtype) if entries else None
        arrays = check_model_state(self.shapes(), state, dtype)
        with torch.no_grad():
            for key, flip, value in entries:
                tensor = torch.from_numpy(np.ascontiguousarray(arrays[key]))
                value.copy_(self._edge(flip, tensor))

    def to_engine_layout(self, key: str, value: torch.Tensor) -> torch.Tensor:
        """A tensor shaped like parameter ``key`` in torch's layout, as the engines lay it out."""
        return self._edge(self._flipped(key), value)

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """State keys -> nn.Parameter (torch's layout), trainable parameters only."""
        return dict(self.module.named_parameters())

    def parameters(self) -> dict[str, torch.Tensor]:
        """Parameters in the engines' layout (views of the torch parameters)."""
        return {key: self.to_engine_layout(key, value.detach()) for key, value in self.named_parameters().items()}

    def grads(self) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in self.named_parameters().items():
            grad = value.grad if value.grad is not None else torch.zeros_like(value)
            out[key] = self.to_engine_layout(key, grad)
        return out

    def _describe_last(self) -> str:
        return self._last_text

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output; x is checked as the engines check it (see the class).

        Under torch.no_grad() (evaluation) no graph is recorded and nothing is retained; a
        refused forward leaves nothing to differentiate, as in the engines.
        """
        self._out = None  # a refused forward leaves nothing to differentiate
        check_type("x", x, torch.Tensor, "torch.Tensor")
        first = self._leaves[0].module
        if isinstance(first, nn.Linear):
            x = check_features(x, first.in_features, first.weight.dtype, first.weight.device)
        # dL/dx is needed only to report it (keep_deltas); a training step never reads it, and
        # asking autograd for it would add the first layer's input gradient to every step.
        self._recording = self.keep_deltas and torch.is_grad_enabled()
        x = x.detach().requires_grad_(self._recording)
        self._x, self._pre = x, []
        check_finite_input(x.detach(), x.detach())
        h = self.module(x)
        self._out = h
        return h

    def backward(self, delta: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        """Autograd pushes delta = dL/d(output) through the recorded graph; returns dL/dx."""
        out = self._out
        if out is None:
            raise RuntimeError(backward_before_forward_message(
                self._describe_last(), shape_of(delta), "(the shape of the last forward's output)"))
        delta = check_delta(self._describe_last(), delta, tuple(out.shape), out.dtype)
        if not out.requires_grad:
            raise RuntimeError(f"{self._describe_last()}: the last forward recorded no graph (it ran under "
                               "torch.no_grad()); run forward with gradients enabled first")
        if input_grad and not self._recording:
            raise RuntimeError("Sequential(keep_deltas=False) records no graph back to x, so dL/dx is unavailable; "
                               "construct it with keep_deltas=True or call backward(delta, input_grad=False)")
        # The loss's autograd.grad already filled the retained output's .grad once; start clean.
        # retain_graph: the engines allow backward twice on one forward, so the oracle does too.
        out.grad = None
        if self._x is not None:
            self._x.grad = None
        for z in self._pre:
            z.grad = None
        out.backward(delta, retain_graph=True)
        return self._x.grad if input_grad and self._x is not None else None

    def deltas(self) -> list[torch.Tensor]:
        """dL/dz of every Linear and Conv2d in the last backward (needs keep_deltas)."""
        return [z.grad for z in self._pre]  # type: ignore[misc]

    def pre_activations(self) -> list[torch.Tensor]:
        """z = x W + b of every Linear (and Conv2d) in the last forward (needs keep_deltas)."""
        return [z.detach() for z in self._pre]

    def zero_grad(self) -> None:
        self.module.zero_grad(set_to_none=True)
        if self._x is not None:
            self._x.grad = None


def MLP(sizes: list[int], activation: str = "relu", init: str = "xavier_normal", seed: int = 0,
        dtype: str = "float32", device: str | torch.device = "cpu", keep_deltas: bool = True) -> Sequential:
    """nn.Sequential(Linear, act, ..., Linear) behind the engines' interface: the tree
    engine_core.specs.mlp(sizes, activation), initial bits and keys as in every engine;
    ``keep_deltas`` retains dL/dz of every Linear. Raises TypeError/ValueError as the engines do."""
    return build(sys.modules[__name__], mlp(sizes, activation), dtype=dtype, seed=seed, init=init,
                 sequential_kwargs={"keep_deltas": keep_deltas}, device=torch.device(device))


class SoftmaxCrossEntropy:
    """torch.nn.functional.cross_entropy (mean); backward() = autograd's dL/dlogits."""

    def __init__(self) -> None:
        self.logits: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        """The mean loss for logits (B, C) and labels of any integer dtype; errors as the engines."""
        logits = check_logits(logits)
        y = check_labels(y, logits.shape[0], logits.shape[1])  # int64, as cross_entropy wants
        if not logits.requires_grad:  # logits from elsewhere: differentiate the loss w.r.t. them
            logits = logits.detach().requires_grad_(True)
        self.logits = logits
        self.loss = functional.cross_entropy(logits, y)
        value = float(self.loss.detach())
        if not np.isfinite(value):
            raise_non_finite_logits(logits.detach())
        return value

    def backward(self) -> torch.Tensor:
        """dL/dlogits (B, C) by autograd."""
        if self.loss is None or self.logits is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward() called before forward()")
        (delta,) = torch.autograd.grad(self.loss, self.logits, retain_graph=True)
        return delta

    def softmax(self) -> torch.Tensor:
        """softmax(z) of the last forward, (B, C)."""
        if self.logits is None:
            raise RuntimeError("SoftmaxCrossEntropy.softmax() called before forward()")
        return torch.softmax(self.logits.detach(), dim=1)


class _Optimizer:
    """A torch.optim optimizer over MLP's parameters, with the engines' state_dict format and
    the engines' validation of it (engine_core.checks.check_optimizer_state)."""

    kind = ""

    def __init__(self, net: Sequential, optimizer: torch.optim.Optimizer) -> None:
        self.net = net
        self.optimizer = optimizer
        self._steps = 0

    def hyper_parameters(self) -> dict[str, Any]:
        group = self.optimizer.param_groups[0]
        return {"momentum": group.get("momentum", 0.0), "amsgrad": group.get("amsgrad", False)}

    def __repr__(self) -> str:
        return repr(self.optimizer)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(value)

    @property
    def step_count(self) -> int:
        return self._steps

    def step(self) -> None:
        self.optimizer.step()
        self._steps += 1

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> OptimizerState:
        """{"step", "lr", "state": {buffer: {parameter: (in, out)-layout NumPy copy}}}."""
        state: dict[str, dict[str, np.ndarray]] = {}
        for name, param in self.net.named_parameters().items():
            for buffer, value in self.optimizer.state.get(param, {}).items():
                if buffer == "step" or value is None:
                    continue
                engine_layout = self.net.to_engine_layout(name, value.detach())
                state.setdefault(buffer, {})[name] = engine_layout.cpu().numpy().copy()
        return {"step": self._steps, "lr": self.lr, "state": state}

    def load_state_dict(self, state: OptimizerState) -> None:
        """Any engine's optimizer state, validated in full first (all-or-nothing)."""
        params = self.net.named_parameters()
        shapes = {name: tuple(self.net.to_engine_layout(name, p).shape) for name, p in params.items()}
        dtype = dtype_name(next(iter(params.values())).dtype)
        valid = check_optimizer_state(self.kind, self.hyper_parameters(), shapes, state, dtype)
        # Convert everything before touching the optimizer, so nothing can fail half-way; clone,
        # so the caller's arrays are never the optimizer's buffers.
        converted: dict[nn.Parameter, dict[str, torch.Tensor]] = {}
        for buffer, per_param in valid["state"].items():
            for name, param in params.items():
                value = torch.from_numpy(np.ascontiguousarray(per_param[name])).to(param.dtype)
                value = self.net.to_engine_layout(name, value).contiguous().to(param.device).clone()
                converted.setdefault(param, {})[buffer] = value
        self.optimizer.state.clear()
        for param, buffers in converted.items():
            self.optimizer.state[param].update(buffers)
        self._steps = valid["step"]
        self.lr = valid["lr"]
        if valid["step"] and self.kind != "sgd":
            # torch's Adam keeps its step count per parameter, as a float32 tensor.
            for param in params.values():
                self.optimizer.state[param]["step"] = torch.tensor(float(valid["step"]))


class SGD(_Optimizer):
    """torch.optim.SGD itself."""

    kind = "sgd"

    def __init__(self, net: Sequential, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        check_sgd(lr, momentum, dampening, nesterov, weight_decay)
        super().__init__(net, torch.optim.SGD(
            list(net.named_parameters().values()), lr=lr, momentum=momentum, dampening=dampening,
            nesterov=nesterov, weight_decay=weight_decay,
        ))


class Adam(_Optimizer):
    """torch.optim.Adam itself."""

    kind = "adam"
    _torch_class: Any = torch.optim.Adam  # AdamW overrides it

    def __init__(self, net: Sequential, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        check_adam(lr, betas, eps, weight_decay)
        super().__init__(net, self._torch_class(
            list(net.named_parameters().values()), lr=lr, betas=betas, eps=eps,
            weight_decay=weight_decay, amsgrad=amsgrad,
        ))


class AdamW(Adam):
    """torch.optim.AdamW itself (default weight_decay 0.01)."""

    kind = "adamw"
    _torch_class = torch.optim.AdamW

    def __init__(self, net: Sequential, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False) -> None:
        super().__init__(net, lr, betas, eps, weight_decay, amsgrad)


def clip_grad_norm_(net: Sequential, max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_ itself over the network's parameters (norm_type 2,
    error_if_nonfinite False, foreach default): every gradient times min(max_norm / (n + 1e-6), 1),
    n = sqrt(sum_i ||g_i||^2); returns n as a float. max_norm is checked as the engines check
    it (engine_core.checks.check_max_norm), so the oracle refuses what they refuse."""
    max_norm = check_max_norm(max_norm)
    return float(torch.nn.utils.clip_grad_norm_(list(net.named_parameters().values()), max_norm))


__all__ = ["ACCUMULATES_GRADIENTS", "DEVICES", "MLP", "NAME", "SGD", "TRAINING_KWARGS", "Adam", "AdamW",
           "NonFiniteError", "SoftmaxCrossEntropy", "asarray", "clip_grad_norm_", "labels", "to_numpy"]

"""Batch normalisation and dropout for the NumPy engine (torch_net/normalization.py is the same
on tensors, line for line). Each forward caches what its own backward needs.

Batch norm normalises every channel c by statistics over all the other axes: the batch for
BatchNorm1d's (B, C), the batch and both image axes for BatchNorm2d's (B, C, H, W); per-channel
vectors are viewed as (C,) or (C, 1, 1) to broadcast against x. Outputs and gradients live in
buffers owned by the layer, reused while the input's shape stays the same (valid until the
layer runs again); no Python loop runs over samples or channels.
"""

from __future__ import annotations

import numpy as np

from engine_core.checks import check_dtype_name, check_type, native, shape_of
from engine_core.dropout_masks import DropoutMasks
from engine_core.errors import backward_before_forward_message
from engine_core.layer_checks import check_batchnorm_args, check_channels_facts, check_dropout_p

from .checks import ARRAY_TYPE, check_delta
from .layers import Layer


class _BatchNorm(Layer):
    """The math of BatchNorm1d and BatchNorm2d; subclasses fix the input's rank.

    Train mode, per channel over its n values (n = B, or B*H*W):
        mean = sum(x) / n, var = sum((x - mean)^2) / n (biased), xhat = (x - mean) / sqrt(var + eps),
        y = weight * xhat + bias;
        running_mean = (1 - momentum) running_mean + momentum mean,
        running_var = (1 - momentum) running_var + momentum var n / (n - 1) (unbiased),
        momentum rounded to the layer's dtype first (as torch's kernel uses it).
    Eval mode: the same with running_mean and running_var in place of mean and var, no update.

    Backward, per channel, dy = dL/dy:
        grad_bias = sum(dy), grad_weight = sum(dy xhat);
        train: dx = (1/n) weight / sqrt(var + eps) (n dy - sum(dy) - xhat sum(dy xhat)),
        the direct path through xhat plus the paths through the batch mean (-sum(dy)) and the
        batch variance (-xhat sum(dy xhat));
        eval: dx = weight / sqrt(running_var + eps) dy (the statistics are constants).
    """

    rank = 2  # the input's number of axes: 2 for (B, C), 4 for (B, C, H, W)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, dtype: str = "float32") -> None:
        self.num_features, self.eps, self.momentum = check_batchnorm_args(num_features, eps, momentum)
        channels, kind = self.num_features, check_dtype_name(dtype)
        self.weight = np.ones(channels, kind)
        self.bias = np.zeros(channels, kind)
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias)
        self.running_mean = np.zeros(channels, kind)
        self.running_var = np.ones(channels, kind)
        self._momentum = float(self.running_var.dtype.type(self.momentum))  # in the dtype, as torch uses it
        self.xhat: np.ndarray | None = None  # the last forward's normalised input
        self.invstd = np.zeros(channels, kind)  # the last forward's 1 / sqrt(var + eps)
        self.batch_statistics = True  # whether the last forward normalised by the batch's statistics
        self._mean = np.zeros(channels, kind)
        self._var = np.zeros(channels, kind)
        self._axes = (0,) if self.rank == 2 else (0, 2, 3)  # every axis but the channels'
        self._view = (channels,) if self.rank == 2 else (channels, 1, 1)  # per-channel vectors against x

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_features}, eps={self.eps}, momentum={self.momentum})"

    def _check_input(self, x: object) -> np.ndarray:
        if self.input_trusted:
            return x  # type: ignore[return-value]  # a tree validated it (engine_core.SequentialBase)
        dtype = self.weight.dtype
        if x.__class__ is np.ndarray:  # the valid case, cheaply: more than one value per channel when training
            if x.ndim == self.rank and x.shape[1] == self.num_features and x.dtype == dtype:  # type: ignore[attr-defined]
                if x.size > (self.num_features if self.training else 0):  # type: ignore[attr-defined]
                    return x  # type: ignore[return-value]
        check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
        array = native(x)  # type: ignore[arg-type]
        check_channels_facts(self.describe(), array.shape, array.dtype.name, self.rank, self.num_features,
                             dtype.name, self.training)
        return array

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y, shaped like x, for x of the layer's rank, channels and dtype.

        Raises TypeError (not an ndarray, another dtype) or ValueError (rank, channels, an empty
        input, or in train mode a single value per channel, as torch does).
        """
        x = self._check_input(x)
        view = self._view
        xhat = self._exact_buffer("_xhat", x.shape, x.dtype)
        y = self._exact_buffer("_y", x.shape, x.dtype)
        if self.training:
            n = x.size // self.num_features
            mean = np.mean(x, axis=self._axes, out=self._mean)
            np.subtract(x, mean.reshape(view), out=xhat)
            np.multiply(xhat, xhat, out=y)  # (x - mean)^2, in y's buffer until y is computed
            var = np.mean(y, axis=self._axes, out=self._var)
            momentum = self._momentum
            self.running_mean *= 1 - momentum
            self.running_mean += momentum * mean
            self.running_var *= 1 - momentum
            self.running_var += (momentum * n / (n - 1)) * var
        else:
            mean, var = self.running_mean, self.running_var
            np.subtract(x, mean.reshape(view), out=xhat)
        invstd = np.add(var, self.eps, out=self.invstd)
        np.sqrt(invstd, out=invstd)
        np.reciprocal(invstd, out=invstd)
        xhat *= invstd.reshape(view)
        np.multiply(xhat, self.weight.reshape(view), out=y)
        y += self.bias.reshape(view)
        self.xhat, self.batch_statistics = xhat, self.training
        return y

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """grad_weight = sum(dy xhat), grad_bias = sum(dy) (C,); returns dL/dx, shaped like x.

        Differentiates the last forward as it ran (batch or running statistics). Raises
        RuntimeError before any forward, ValueError/TypeError for a delta not shaped like the
        last output or of another dtype; a refused call changes no gradient.
        """
        xhat = self.xhat
        if xhat is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's input)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, xhat.shape, xhat.dtype)
        view, axes = self._view, self._axes
        dx = self._exact_buffer("_dx", delta.shape, delta.dtype)
        np.sum(delta, axis=axes, out=self.grad_bias)
        np.multiply(delta, xhat, out=dx)
        np.sum(dx, axis=axes, out=self.grad_weight)
        scale = (self.weight * self.invstd).reshape(view)  # weight / sqrt(var + eps), (C,)
        if self.batch_statistics:
            n = delta.size // self.num_features
            np.multiply(xhat, (self.grad_weight / n).reshape(view), out=dx)  # xhat sum(dy xhat) / n
            np.subtract(delta, dx, out=dx)
            dx -= (self.grad_bias / n).reshape(view)  # sum(dy) / n: the path through the batch mean
            dx *= scale
        else:
            np.multiply(delta, scale, out=dx)
        return dx

    def local_parameters(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def local_gradients(self) -> dict[str, np.ndarray]:
        return {"weight": self.grad_weight, "bias": self.grad_bias}

    def local_buffers(self) -> dict[str, np.ndarray]:
        """The running statistics themselves (updated in place by every train-mode forward)."""
        return {"running_mean": self.running_mean, "running_var": self.running_var}


class BatchNorm1d(_BatchNorm):
    """torch.nn.BatchNorm1d on (B, C): y = weight (x - mean) / sqrt(var + eps) + bias per channel,
    batch statistics (biased variance) in train mode, running ones in eval mode.

    Parameters weight (C,) = 1, bias (C,) = 0; buffers running_mean (C,) = 0, running_var (C,) = 1.
    Train backward: dx = (1/B) weight / sqrt(var + eps) (B dy - sum_b dy - xhat sum_b(dy xhat)).
    Raises TypeError/ValueError for bad arguments or input (see _BatchNorm.forward), including a
    batch of one in train mode.
    """

    rank = 2


class BatchNorm2d(_BatchNorm):
    """torch.nn.BatchNorm2d on (B, C, H, W): BatchNorm1d's math with the statistics of channel c
    taken over the n = B*H*W values x[:, c, :, :].

    Parameters weight (C,) = 1, bias (C,) = 0; buffers running_mean (C,) = 0, running_var (C,) = 1.
    Train backward: dx = (1/n) weight / sqrt(var + eps) (n dy - sum(dy) - xhat sum(dy xhat)).
    Raises TypeError/ValueError for bad arguments or input, including B*H*W == 1 in train mode.
    """

    rank = 4


class Dropout(Layer):
    """Inverted dropout: y = x * keep / (1 - p) in train mode, keep ~ Bernoulli(1 - p) elementwise;
    y = x in eval mode. Any input shape; y and dL/dx have x's shape and dtype.

    keep = rng.random(x.shape) >= p from the layer's own np.random.default_rng(seed), one draw per
    train-mode forward (engine_core.dropout_masks.DropoutMasks), so every engine with the same
    seed drops the same elements. p == 1 drops everything (y = 0, no division by zero).
    Backward: dL/dx = dy * keep / (1 - p) (the last forward's mask), dy in eval mode.
    ``rng_state()`` / ``set_rng_state(state)`` save and restore the generator (a JSON-ready
    dict) for exact resumption. Raises ValueError for p outside [0, 1] or a bad seed.
    """

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        self.p = check_dropout_p(p)
        self.seed = seed
        self.masks = DropoutMasks(seed)
        self.scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        self.mask: np.ndarray | None = None  # keep / (1 - p) of the last forward in train mode, else None
        self._out: tuple[tuple[int, ...], np.dtype] | None = None  # the last output's shape and dtype

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}, seed={self.seed})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x * mask (train) or x itself (eval); TypeError unless x is a floating-point ndarray."""
        if not self.input_trusted:
            check_type(f"{self.describe()}: x", x, np.ndarray, ARRAY_TYPE)
            x = native(x)
            if x.dtype.kind != "f":
                raise TypeError(f"{self.describe()}: x: expected a floating-point array, got dtype {x.dtype}")
        self._out = (x.shape, x.dtype)
        if not self.training:
            self.mask = None
            return x
        keep = self.masks.keep(x.shape, self.p)
        mask = np.multiply(keep, self.scale, out=self._exact_buffer("_mask", x.shape, x.dtype))
        self.mask = mask
        return np.multiply(x, mask, out=self._exact_buffer("_y", x.shape, x.dtype))

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """dy * mask (train) or dy (eval). RuntimeError before any forward; ValueError/TypeError
        for a delta not shaped like the last output or of another dtype."""
        if self._out is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's input)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, *self._out)
        if self.mask is None:
            return delta
        return np.multiply(delta, self.mask, out=self._exact_buffer("_dx", delta.shape, delta.dtype))

    def rng_state(self) -> dict:
        """The mask generator's state: a JSON-ready dict (numpy's bit_generator.state)."""
        return self.masks.state()

    def set_rng_state(self, state: dict) -> None:
        """Restore rng_state() (from any engine); ValueError naming the layer for anything else."""
        self.masks.set_state(self.describe(), state)

"""Batch normalisation and dropout for the torch engine: numpy_net/normalization.py line for line,
on tensors, no autograd (nothing here sets requires_grad; every derivative is ours).

Batch norm normalises every channel c by statistics over all the other axes: the batch for
BatchNorm1d's (B, C), the batch and the length for its (B, C, L), the batch and both image axes
for BatchNorm2d's (B, C, H, W); per-channel vectors are viewed as (C,), (C, 1) or (C, 1, 1) to
broadcast against x. Outputs and gradients live in buffers owned by the layer, reused while the
input's shape stays the same (valid until the layer runs again); no Python loop runs over
samples or channels.
"""

from __future__ import annotations

import math

import torch

from engine_core.checks import check_dtype_name, check_type, shape_of
from engine_core.dropout_masks import DropoutMasks
from engine_core.errors import backward_before_forward_message
from engine_core.layer_checks import (
    check_batches_tracked,
    check_batchnorm_args,
    check_channels_facts,
    check_dropout_p,
    check_flag,
    check_layernorm_args,
    check_layernorm_facts,
)

from .checks import ARRAY_TYPE, check_delta, check_device, dtype_name
from .layers import Layer


class _BatchNorm(Layer):
    """The math of BatchNorm1d and BatchNorm2d (torch.nn.BatchNorm1d's documentation page);
    subclasses fix the input's ranks.

    Per channel c over its n values (n = B, B*L or B*H*W), with batch statistics (train mode;
    eval mode too when track_running_stats=False, as torch):
        mean = sum(x) / n, var = sum((x - mean)^2) / n (biased), xhat = (x - mean) / sqrt(var + eps),
        y = weight * xhat + bias (affine=False: y = xhat, no parameters).
    Running statistics (track_running_stats=True), moved by every train-mode forward as torch's
    _BatchNorm.forward moves them:
        num_batches_tracked += 1, f = momentum, or f = 1 / num_batches_tracked for momentum=None
        (the cumulative average of every batch so far),
        running_mean = (1 - f) running_mean + f mean,
        running_var = (1 - f) running_var + f var n / (n - 1) (unbiased),
        f rounded to the layer's dtype first (as torch's kernel uses it).
    Eval mode with running statistics: the same xhat and y with running_mean and running_var in
    place of mean and var, no update.

    Backward, per channel, dy = dL/dy, a = weight (1 with affine=False):
        grad_bias = sum(dy), grad_weight = sum(dy xhat);
        batch statistics: dx = (1/n) a / sqrt(var + eps) (n dy - sum(dy) - xhat sum(dy xhat)),
        the direct path through xhat plus the paths through the batch mean (-sum(dy)) and the
        batch variance (-xhat sum(dy xhat));
        running statistics: dx = a / sqrt(running_var + eps) dy (the statistics are constants).
    """

    ranks: tuple[int, ...] = (2, 3)  # the input's numbers of axes: (B, C) or (B, C, L); (B, C, H, W)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype: str = "float32",
                 device: str | torch.device = "cpu") -> None:
        self.args = check_batchnorm_args(num_features, eps, momentum, affine, track_running_stats)
        self.num_features, self.eps, self.momentum = self.args.num_features, self.args.eps, self.args.momentum
        self.affine, self.track_running_stats = self.args.affine, self.args.track_running_stats
        channels, kind = self.num_features, getattr(torch, check_dtype_name(dtype))

        def vector(value: float) -> torch.Tensor:
            return torch.full((channels,), value, dtype=kind, device=device)

        # affine=False: no weight or bias at all (torch's are None), so none in parameters()/state_dict.
        self.weight: torch.Tensor | None = vector(1.0) if self.affine else None
        self.bias: torch.Tensor | None = vector(0.0) if self.affine else None
        self.grad_weight: torch.Tensor | None = vector(0.0) if self.affine else None
        self.grad_bias: torch.Tensor | None = vector(0.0) if self.affine else None
        # track_running_stats=False: no buffers and no counter (torch's are None).
        self.running_mean: torch.Tensor | None = vector(0.0) if self.track_running_stats else None
        self.running_var: torch.Tensor | None = vector(1.0) if self.track_running_stats else None
        self._num_batches_tracked = 0
        # in the dtype, as torch's kernel uses it (momentum=None: 1 / num_batches_tracked, per update)
        self._momentum = 0.0 if self.momentum is None else torch.tensor(self.momentum, dtype=kind).item()
        self.xhat: torch.Tensor | None = None  # the last forward's normalised input
        self.invstd = vector(0.0)  # the last forward's 1 / sqrt(var + eps)
        self.batch_statistics = True  # whether the last forward normalised by the batch's statistics
        self._mean = vector(0.0)
        self._var = vector(0.0)
        # sum(dy) and sum(dy xhat) when there are no grad_bias and grad_weight to hold them
        self._sum_dy = vector(0.0)
        self._sum_dy_xhat = vector(0.0)
        self._axes: tuple[int, ...] = (0,)  # the last input's axes but the channels'
        self._view: tuple[int, ...] = (channels,)  # per-channel vectors against the last input

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args.extra_repr()})"

    @property
    def num_batches_tracked(self) -> int:
        """torch's counter: the train-mode forwards so far (with track_running_stats=False there
        is none: it stays 0). Set it to resume a run (momentum=None reads it); TypeError or
        ValueError for anything but an integer in [0, 2**63), or a nonzero count without one."""
        return self._num_batches_tracked

    @num_batches_tracked.setter
    def num_batches_tracked(self, value: int) -> None:
        self._num_batches_tracked = check_batches_tracked(self.describe(), value, self.track_running_stats)

    def _uses_batch_statistics(self) -> bool:
        """torch's rule: batch statistics in train mode, and always without running ones."""
        return self.training or not self.track_running_stats

    def _check_input(self, x: object) -> torch.Tensor:
        if self.input_trusted:
            return x  # type: ignore[return-value]  # a tree validated it (engine_core.SequentialBase)
        like = self._mean  # the layer's dtype and device
        batch = self._uses_batch_statistics()
        if x.__class__ is torch.Tensor and not x.requires_grad:  # type: ignore[attr-defined]
            # the valid case, cheaply: more than one value per channel for batch statistics
            if x.dim() in self.ranks and x.shape[1] == self.num_features and x.dtype == like.dtype:  # type: ignore[attr-defined]
                if x.numel() > (self.num_features if batch else 0):  # type: ignore[attr-defined]
                    if x.device != like.device:  # type: ignore[attr-defined]
                        check_device(f"{self.describe()}: x", x, like.device)  # type: ignore[arg-type]
                    return x  # type: ignore[return-value]
        check_type(f"{self.describe()}: x", x, torch.Tensor, ARRAY_TYPE)
        tensor: torch.Tensor = x  # type: ignore[assignment]
        check_channels_facts(self.describe(), shape_of(tensor), dtype_name(tensor.dtype), self.ranks,
                             self.num_features, dtype_name(like.dtype), batch)
        check_device(f"{self.describe()}: x", tensor, like.device)
        return tensor.detach()  # a tensor that requires grad: no graph is recorded here

    def _momentum_now(self) -> float:
        """This update's factor f: momentum, or 1 / num_batches_tracked (momentum=None), in the
        layer's dtype."""
        if self.momentum is not None:
            return self._momentum
        return torch.tensor(1.0 / self._num_batches_tracked, dtype=self._mean.dtype).item()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y, shaped like x, for x of one of the layer's ranks, its channels, dtype and device.

        Raises TypeError (not a tensor, another dtype) or ValueError (rank, channels, an empty
        input, another device, or a single value per channel where batch statistics are taken,
        as torch does).
        """
        x = self._check_input(x)
        axes = (0, *range(2, x.dim()))  # every axis but the channels'
        view = (self.num_features,) + (1,) * (x.dim() - 2)  # per-channel vectors against x
        shape = tuple(x.shape)
        xhat = self._exact_buffer("_xhat", shape, x)
        y = self._exact_buffer("_y", shape, x)
        batch = self._uses_batch_statistics()
        if batch:
            mean = torch.mean(x, dim=axes, out=self._mean)
            torch.sub(x, mean.view(view), out=xhat)
            torch.mul(xhat, xhat, out=y)  # (x - mean)^2, in y's buffer until y is computed
            var = torch.mean(y, dim=axes, out=self._var)
            if self.training and self.running_mean is not None and self.running_var is not None:
                self._num_batches_tracked += 1
                f, n = self._momentum_now(), x.numel() // self.num_features
                self.running_mean.mul_(1 - f).add_(f * mean)
                self.running_var.mul_(1 - f).add_((f * n / (n - 1)) * var)
        else:
            mean, var = self.running_mean, self.running_var  # type: ignore[assignment]  # eval mode: they exist
            torch.sub(x, mean.view(view), out=xhat)
        invstd = torch.add(var, self.eps, out=self.invstd)
        invstd.sqrt_().reciprocal_()
        xhat.mul_(invstd.view(view))
        if self.weight is not None and self.bias is not None:
            torch.mul(xhat, self.weight.view(view), out=y)
            y.add_(self.bias.view(view))
        else:
            y.copy_(xhat)  # y = xhat; a copy, so that whoever gets y cannot change the cached xhat
        self.xhat, self.batch_statistics, self._axes, self._view = xhat, batch, axes, view
        return y

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        """grad_weight = sum(dy xhat), grad_bias = sum(dy) (C,) (affine); returns dL/dx, shaped like x.

        Differentiates the last forward as it ran (batch or running statistics). Raises
        RuntimeError before any forward, ValueError/TypeError for a delta not shaped like the
        last output or of another dtype; a refused call changes no gradient.
        """
        xhat = self.xhat
        if xhat is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's input)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, tuple(xhat.shape), xhat.dtype)
        view, axes = self._view, self._axes
        dx = self._exact_buffer("_dx", tuple(delta.shape), delta)
        sum_dy = self.grad_bias if self.grad_bias is not None else self._sum_dy
        sum_dy_xhat = self.grad_weight if self.grad_weight is not None else self._sum_dy_xhat
        scale = (self.invstd if self.weight is None else self.weight * self.invstd).view(view)  # a / sqrt(var + eps)
        if self.affine or self.batch_statistics:
            torch.sum(delta, dim=axes, out=sum_dy)
            torch.mul(delta, xhat, out=dx)
            torch.sum(dx, dim=axes, out=sum_dy_xhat)
        if self.batch_statistics:
            n = delta.numel() // self.num_features
            torch.mul(xhat, (sum_dy_xhat / n).view(view), out=dx)  # xhat sum(dy xhat) / n
            torch.sub(delta, dx, out=dx)
            dx.sub_((sum_dy / n).view(view))  # sum(dy) / n: the path through the batch mean
            dx.mul_(scale)
        else:
            torch.mul(delta, scale, out=dx)
        return dx

    def local_parameters(self) -> dict[str, torch.Tensor]:
        if self.weight is None or self.bias is None:
            return {}
        return {"weight": self.weight, "bias": self.bias}

    def local_gradients(self) -> dict[str, torch.Tensor]:
        if self.grad_weight is None or self.grad_bias is None:
            return {}
        return {"weight": self.grad_weight, "bias": self.grad_bias}

    def local_buffers(self) -> dict[str, torch.Tensor]:
        """The running statistics themselves (updated in place by every train-mode forward); none
        with track_running_stats=False. num_batches_tracked is an int outside the state dict."""
        if self.running_mean is None or self.running_var is None:
            return {}
        return {"running_mean": self.running_mean, "running_var": self.running_var}


class BatchNorm1d(_BatchNorm):
    """torch.nn.BatchNorm1d on (B, C) or (B, C, L): y = weight (x - mean) / sqrt(var + eps) + bias per
    channel, statistics over B (and L), batch ones (biased variance) in train mode, running ones in
    eval mode (see _BatchNorm for affine, track_running_stats and momentum=None).

    Parameters weight (C,) = 1, bias (C,) = 0 (affine); buffers running_mean (C,) = 0,
    running_var (C,) = 1 (track_running_stats), and the int num_batches_tracked.
    Train backward: dx = (1/n) weight / sqrt(var + eps) (n dy - sum(dy) - xhat sum(dy xhat)), n = B or B*L.
    Raises TypeError/ValueError for bad arguments or input (see _BatchNorm.forward), including a
    single value per channel (a batch of one on (B, C)) in train mode.
    """

    ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """torch.nn.BatchNorm2d on (B, C, H, W): BatchNorm1d's math with the statistics of channel c
    taken over the n = B*H*W values x[:, c, :, :].

    Parameters weight (C,) = 1, bias (C,) = 0 (affine); buffers running_mean (C,) = 0,
    running_var (C,) = 1 (track_running_stats), and the int num_batches_tracked.
    Train backward: dx = (1/n) weight / sqrt(var + eps) (n dy - sum(dy) - xhat sum(dy xhat)).
    Raises TypeError/ValueError for bad arguments or input, including B*H*W == 1 in train mode.
    """

    ranks = (4,)


class Dropout(Layer):
    """Inverted dropout: y = x * keep / (1 - p) in train mode, keep ~ Bernoulli(1 - p) elementwise;
    y = x in eval mode. Any input shape; y and dL/dx have x's shape, dtype and device.

    keep = rng.random(x.shape) >= p from the layer's own np.random.default_rng(seed), one draw per
    train-mode forward (engine_core.dropout_masks.DropoutMasks), so every engine with the same
    seed drops the same elements. p == 1 drops everything (y = 0, no division by zero); p == 0
    keeps everything and draws nothing.
    Backward: dL/dx = dy * keep / (1 - p) (the last forward's mask), dy in eval mode.
    ``rng_state()`` / ``set_rng_state(state)`` save and restore the generator (a JSON-ready
    dict) for exact resumption. ``inplace`` (torch.nn.Dropout's argument) is accepted and shown,
    and changes nothing: y and dL/dx are the out-of-place layer's, and the caller's x and delta
    are never written. Raises ValueError for p outside [0, 1] or a bad seed, TypeError for an
    inplace that is not True or False.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, seed: int = 0) -> None:
        self.p = check_dropout_p(p)
        self.inplace = check_flag("inplace", inplace)
        self.seed = seed
        self.masks = DropoutMasks(seed)
        self.scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        self.mask: torch.Tensor | None = None  # keep / (1 - p) of the last forward in train mode, else None
        self._out: tuple[tuple[int, ...], torch.dtype] | None = None  # the last output's shape and dtype

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}{', inplace=True' if self.inplace else ''}, seed={self.seed})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x * mask (train) or x itself (eval); TypeError unless x is a floating-point tensor."""
        if not self.input_trusted:
            check_type(f"{self.describe()}: x", x, torch.Tensor, ARRAY_TYPE)
            if not x.dtype.is_floating_point:
                raise TypeError(f"{self.describe()}: x: expected a floating-point tensor, got dtype "
                                f"{dtype_name(x.dtype)}")
            x = x.detach()  # a tensor that requires grad: no graph is recorded here
        shape = tuple(x.shape)
        self._out = (shape, x.dtype)
        if not self.training or self.p == 0.0:  # p = 0 keeps everything: no mask to draw
            self.mask = None
            return x
        keep = self.masks.keep(shape, self.p)  # drawn by NumPy on the CPU, copied to x's device
        mask = self._exact_buffer("_mask", shape, x).copy_(torch.from_numpy(keep)).mul_(self.scale)
        self.mask = mask
        return torch.mul(x, mask, out=self._exact_buffer("_y", shape, x))

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        """dy * mask (train) or dy (eval). RuntimeError before any forward; ValueError/TypeError
        for a delta not shaped like the last output or of another dtype."""
        if self._out is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's input)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, *self._out)
        if self.mask is None:
            return delta
        return torch.mul(delta, self.mask, out=self._exact_buffer("_dx", tuple(delta.shape), delta))

    def rng_state(self) -> dict:
        """The mask generator's state: a JSON-ready dict (numpy's bit_generator.state)."""
        return self.masks.state()

    def set_rng_state(self, state: dict) -> None:
        """Restore rng_state() (from any engine); ValueError naming the layer for anything else."""
        self.masks.set_state(self.describe(), state)



class LayerNorm(Layer):
    """torch.nn.LayerNorm (its documentation page): every sample normalised over its last
    D = len(normalized_shape) dimensions, n = prod(normalized_shape) values per row,

        mean = sum(x) / n, var = sum((x - mean)^2) / n (biased), xhat = (x - mean) / sqrt(var + eps),
        y = weight * xhat + bias (weight, bias: normalized_shape; elementwise_affine=False: y = xhat).

    x is (*, *normalized_shape); the statistics are per row (every leading index), never over
    the batch, so train and eval mode compute the same. Backward, per row, g = dy * weight:
        grad_weight = sum over rows of dy xhat, grad_bias = sum over rows of dy;
        dx = (1/n) / sqrt(var + eps) (n g - sum(g) - xhat sum(g xhat)),
    the direct path through xhat, the path through the row mean (-sum(g)) and through the row
    variance (-xhat sum(g xhat)) (BatchNorm's formula with the roles of the axes swapped).
    Parameters weight = 1, bias = 0 (torch's init); none without elementwise_affine, no bias with
    bias=False. Raises TypeError/ValueError for bad arguments (engine_core.layer_checks) or an
    input whose last dimensions are not normalized_shape, of another dtype or device, or empty.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype: str = "float32", device: str | torch.device = "cpu") -> None:
        self.args = check_layernorm_args(normalized_shape, eps, elementwise_affine, bias)
        self.normalized_shape, self.eps = self.args.normalized_shape, self.args.eps
        self.elementwise_affine = self.args.elementwise_affine
        self.dtype = getattr(torch, check_dtype_name(dtype))
        self.device = torch.device(device)
        shapes = self.args.parameter_shapes()

        def full(name: str, value: float) -> torch.Tensor | None:
            return torch.full(shapes[name], value, dtype=self.dtype, device=self.device) if name in shapes else None

        self.weight, self.bias = full("weight", 1.0), full("bias", 0.0)
        self.grad_weight, self.grad_bias = full("weight", 0.0), full("bias", 0.0)
        self.xhat: torch.Tensor | None = None  # the last forward's normalised input, as rows (rows, n)
        self.invstd: torch.Tensor | None = None  # its rows' 1 / sqrt(var + eps), (rows, 1)

    def __repr__(self) -> str:
        return f"LayerNorm({self.args.extra_repr()})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y, shaped like x (*, *normalized_shape)."""
        if not self.input_trusted:
            check_type(f"{self.describe()}: x", x, torch.Tensor, ARRAY_TYPE)
            check_layernorm_facts(self.describe(), shape_of(x), dtype_name(x.dtype), self.normalized_shape,
                                  dtype_name(self.dtype))
            check_device(f"{self.describe()}: x", x, self.device)
            x = self._unshared(x.detach())
        n = math.prod(self.normalized_shape)
        rows = x.reshape(-1, n)
        mean = rows.mean(dim=1, keepdim=True)
        xhat = self._exact_buffer("_xhat", tuple(rows.shape), rows)
        torch.sub(rows, mean, out=xhat)
        # A second pass corrects the mean by the mean of the residuals (what rounding left): a
        # constant row then gets its value exactly and xhat = 0, as torch's (numpy_net says why).
        xhat -= xhat.mean(dim=1, keepdim=True)
        var = torch.mean(xhat * xhat, dim=1, keepdim=True)
        invstd = 1.0 / torch.sqrt(var + self.eps)
        xhat *= invstd
        y = xhat * self.weight.reshape(1, n) if self.weight is not None else xhat.clone()
        if self.bias is not None:
            y += self.bias.reshape(1, n)
        self.xhat, self.invstd, self._shape = xhat, invstd, tuple(x.shape)
        return y.reshape(x.shape)

    def backward(self, delta: torch.Tensor) -> torch.Tensor:
        """Fills grad_weight and grad_bias (replacing the last call's); returns dL/dx shaped like x.
        RuntimeError before any forward; ValueError/TypeError for a delta unlike the last output."""
        xhat, invstd = self.xhat, self.invstd
        if xhat is None or invstd is None:
            raise RuntimeError(backward_before_forward_message(
                self.describe(), shape_of(delta), "(the shape of the forward's input)"))
        if not self.delta_trusted:
            delta = check_delta(self, delta, self._shape, xhat.dtype)
        n = xhat.shape[1]
        dy = delta.reshape(-1, n)
        if self.grad_bias is not None:
            torch.sum(dy, dim=0, out=self.grad_bias.view(n))
        if self.grad_weight is not None and self.weight is not None:
            torch.sum(dy * xhat, dim=0, out=self.grad_weight.view(n))
            g = dy * self.weight.reshape(1, n)  # dL/dxhat
        else:
            g = dy
        dx = n * g - g.sum(dim=1, keepdim=True) - xhat * (g * xhat).sum(dim=1, keepdim=True)
        dx *= invstd / n
        return dx.reshape(self._shape)

    def local_parameters(self) -> dict[str, torch.Tensor]:
        return {name: value for name, value in (("weight", self.weight), ("bias", self.bias)) if value is not None}

    def local_gradients(self) -> dict[str, torch.Tensor]:
        return {name: value for name, value in (("weight", self.grad_weight), ("bias", self.grad_bias))
                if value is not None}

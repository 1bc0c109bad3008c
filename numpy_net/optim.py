"""Optimizers of the NumPy engine, following torch.optim's documented update rules
(torch.optim.SGD, torch.optim.Adam and torch.optim.AdamW documentation pages), and global-norm
gradient clipping (torch.nn.utils.clip_grad_norm_).

They update the network's one flat parameter array with a few whole-array operations
(see Sequential), so a step costs the same number of NumPy calls for any depth. State
save/load and its validation are engine_core.OptimizerBase's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine_core.bookkeeping import OptimizerBase
from engine_core.checks import check_adam, check_max_norm, check_sgd

from .model import Sequential


class Optimizer(OptimizerBase[np.ndarray]):
    """Holds the flat parameter/gradient arrays of ``net`` and per-parameter state."""

    def __init__(self, net: Sequential, lr: float) -> None:
        super().__init__(net, lr)
        self._scratch = np.empty_like(self.params)

    def _flat_copy(self, arrays: list[np.ndarray]) -> np.ndarray:
        # float64 state into a float32 optimizer rounds to nearest, as the parameters do.
        return np.concatenate([a.reshape(-1) for a in arrays]).astype(self.params.dtype, copy=False)

    def _numpy_copy(self, value: np.ndarray) -> np.ndarray:
        return value.copy()


class SGD(Optimizer):
    """torch.optim.SGD: g = grad + wd p; b = mu b + (1 - tau) g (b = g at first); g = g + mu b
    (nesterov) or b; p = p - lr g. Raises ValueError for settings torch refuses."""

    kind = "sgd"

    def __init__(
        self,
        net: Sequential,
        lr: float = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        check_sgd(lr, momentum, dampening, nesterov, weight_decay)
        super().__init__(net, lr)
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self._scratch2 = np.empty_like(self.params)

    def hyper_parameters(self) -> dict[str, Any]:
        return {"momentum": self.momentum}

    def step(self) -> None:
        p, g, tmp = self.params, self.grad, self._scratch
        dtype = p.dtype.type
        if self.weight_decay:
            np.multiply(p, dtype(self.weight_decay), out=tmp)
            tmp += g
            g = tmp
        if self.momentum:
            buf = self.buffers.get("momentum_buffer")
            if buf is None:
                self.buffers["momentum_buffer"] = buf = g.copy()
            else:
                buf *= dtype(self.momentum)
                if self.dampening:
                    np.multiply(g, dtype(1 - self.dampening), out=self._scratch2)
                    buf += self._scratch2
                else:
                    buf += g
            if self.nesterov:
                np.multiply(buf, dtype(self.momentum), out=self._scratch2)
                np.add(g, self._scratch2, out=tmp)
                g = tmp
            else:
                g = buf
        np.multiply(g, dtype(self.lr), out=tmp)
        p -= tmp
        self.step_count += 1


class Adam(Optimizer):
    """torch.optim.Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr m/(1-b1^t) /
    (sqrt(v/(1-b2^t)) + eps); weight decay added to g (coupled); amsgrad keeps max v.
    Raises ValueError for settings torch refuses."""

    kind = "adam"
    decoupled = False

    def __init__(
        self,
        net: Sequential,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        check_adam(lr, betas, eps, weight_decay)
        super().__init__(net, lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.amsgrad = bool(amsgrad)
        self._scratch2 = np.empty_like(self.params)

    def hyper_parameters(self) -> dict[str, Any]:
        return {"amsgrad": self.amsgrad}

    def step(self) -> None:
        p, g, tmp, tmp2 = self.params, self.grad, self._scratch, self._scratch2
        dtype = p.dtype.type
        beta1, beta2 = self.betas
        if not self.buffers:
            self.buffers = {"exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
            if self.amsgrad:
                self.buffers["max_exp_avg_sq"] = np.zeros_like(p)
        self.step_count += 1
        t = self.step_count
        if self.weight_decay:
            if self.decoupled:  # AdamW: p = p (1 - lr wd), before the Adam update
                p *= dtype(1 - self.lr * self.weight_decay)
            else:  # Adam: g = g + wd p
                np.multiply(p, dtype(self.weight_decay), out=tmp)
                tmp += g
                g = tmp
        m, v = self.buffers["exp_avg"], self.buffers["exp_avg_sq"]
        # m = lerp(m, g, 1 - b1), computed from the side torch's lerp_ computes it from
        weight = 1 - beta1
        if weight < 0.5:
            np.subtract(g, m, out=tmp2)
            tmp2 *= dtype(weight)
            m += tmp2
        else:
            np.subtract(g, m, out=tmp2)
            tmp2 *= dtype(1 - weight)
            np.subtract(g, tmp2, out=m)
        # v = b2 v + (1 - b2) g g
        v *= dtype(beta2)
        np.multiply(g, g, out=tmp2)
        tmp2 *= dtype(1 - beta2)
        v += tmp2
        step_size = self.lr / (1 - beta1**t)
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        if self.amsgrad:
            vmax = self.buffers["max_exp_avg_sq"]
            np.maximum(vmax, v, out=vmax)
            v = vmax
        # p = p - step_size m / (sqrt(v) / sqrt(bc2) + eps)
        np.sqrt(v, out=tmp2)
        tmp2 /= dtype(bias_correction2_sqrt)
        tmp2 += dtype(self.eps)
        np.divide(m, tmp2, out=tmp2)
        tmp2 *= dtype(step_size)
        p -= tmp2


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay p = p (1 - lr wd) (default wd 0.01)."""

    kind = "adamw"
    decoupled = True

    def __init__(
        self,
        net: Sequential,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(net, lr, betas, eps, weight_decay, amsgrad)


def clip_grad_norm_(net: Sequential, max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_(parameters, max_norm) (norm_type 2, error_if_nonfinite
    False): n = sqrt(sum_i ||g_i||^2), the 2-norm of every gradient's own 2-norm; every gradient
    becomes g * min(max_norm / (n + 1e-6), 1), in place; returns n (before clipping) as a float.

    ``net``: the root Sequential after backward (its gradients(): the arrays SGD/Adam read).
    As torch, the norm is taken per gradient array and then over those norms, everything in
    the gradients' dtype, max_norm / (n + 1e-6) is reciprocal times max_norm (torch's scalar
    division), and the gradients are multiplied even when the factor is 1 (a no-op then). NaN or
    Inf in a gradient gives n NaN/Inf and NaN gradients, as torch gives. A network without
    parameters returns 0. Raises TypeError/ValueError for a max_norm that is no number >= 0
    (engine_core.checks.check_max_norm: 0 zeroes every gradient, inf clips nothing).
    """
    max_norm = check_max_norm(max_norm)
    grads = [g.reshape(-1) for g in net.gradients().values()]
    if not grads:
        return 0.0
    dtype = grads[0].dtype.type
    # Overflow to Inf and Inf * 0 = NaN are torch's results too, which it gives without a warning.
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.array([np.sqrt(np.dot(g, g)) for g in grads], dtype=dtype)  # ||g_i||
        total = np.sqrt(np.dot(norms, norms))  # n
        coef = dtype(1) / (total + dtype(1e-6)) * dtype(max_norm)
        coef = np.minimum(coef, dtype(1))  # NaN stays NaN, as torch.clamp keeps it
        net.flat_gradients *= coef  # every gradient at once: they are views of this array
    return float(total)

"""Optimizers of the torch engine, following torch.optim's documented update rules
(torch.optim.SGD, Adam and AdamW documentation pages), and global-norm gradient clipping
(torch.nn.utils.clip_grad_norm_): numpy_net.optim on tensors, one flat tensor, a few
whole-tensor operations per step. State save/load is engine_core.OptimizerBase's."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine_core.bookkeeping import OptimizerBase
from engine_core.checks import check_adam, check_max_norm, check_sgd

from .model import Sequential


class Optimizer(OptimizerBase[torch.Tensor]):
    """Holds the flat parameter/gradient tensors of ``net`` and per-parameter state."""

    def __init__(self, net: Sequential, lr: float) -> None:
        super().__init__(net, lr)
        self._scratch = torch.empty_like(self.params)

    def _flat_copy(self, arrays: list[np.ndarray]) -> torch.Tensor:
        flat = np.concatenate([a.reshape(-1) for a in arrays])
        # float64 state into a float32 optimizer rounds to nearest, as the parameters do.
        return torch.from_numpy(flat).to(dtype=self.params.dtype, device=self.params.device)

    def _numpy_copy(self, value: torch.Tensor) -> np.ndarray:
        return value.detach().cpu().numpy().copy()


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

    def hyper_parameters(self) -> dict[str, Any]:
        return {"momentum": self.momentum}

    # No torch.no_grad(): no tensor here requires grad (the engine records no graph), and the
    # context costs ~3 us a step.
    def step(self) -> None:
        p, g, tmp = self.params, self.grad, self._scratch
        if self.weight_decay:
            torch.add(g, p, alpha=self.weight_decay, out=tmp)
            g = tmp
        if self.momentum:
            buf = self.buffers.get("momentum_buffer")
            if buf is None:
                self.buffers["momentum_buffer"] = buf = g.clone()
            else:
                buf.mul_(self.momentum).add_(g, alpha=1 - self.dampening)
            if self.nesterov:
                torch.add(g, buf, alpha=self.momentum, out=tmp)
                g = tmp
            else:
                g = buf
        p.add_(g, alpha=-self.lr)
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
        self._scratch2 = torch.empty_like(self.params)

    def hyper_parameters(self) -> dict[str, Any]:
        return {"amsgrad": self.amsgrad}

    # No torch.no_grad(): no tensor here requires grad (the engine records no graph), and the
    # context costs ~3 us a step.
    def step(self) -> None:
        p, g, tmp, tmp2 = self.params, self.grad, self._scratch, self._scratch2
        beta1, beta2 = self.betas
        if not self.buffers:
            self.buffers = {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            if self.amsgrad:
                self.buffers["max_exp_avg_sq"] = torch.zeros_like(p)
        self.step_count += 1
        t = self.step_count
        if self.weight_decay:
            if self.decoupled:  # AdamW: p = p (1 - lr wd), before the Adam update
                p.mul_(1 - self.lr * self.weight_decay)
            else:  # Adam: g = g + wd p
                torch.add(g, p, alpha=self.weight_decay, out=tmp)
                g = tmp
        m, v = self.buffers["exp_avg"], self.buffers["exp_avg_sq"]
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = self.lr / (1 - beta1**t)
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        if self.amsgrad:
            vmax = self.buffers["max_exp_avg_sq"]
            torch.maximum(vmax, v, out=vmax)
            v = vmax
        torch.sqrt(v, out=tmp2)
        tmp2.div_(bias_correction2_sqrt).add_(self.eps)
        p.addcdiv_(m, tmp2, value=-step_size)


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

    numpy_net.optim.clip_grad_norm_ on tensors (see there). Each ||g_i|| is
    torch.linalg.vector_norm, the very kernel torch's clip_grad_norm_ uses; the float return
    waits for the device (torch's returns a tensor and does not).
    """
    max_norm = check_max_norm(max_norm)
    grads = [g.reshape(-1) for g in net.gradients().values()]
    if not grads:
        return 0.0
    norms = torch.stack([torch.linalg.vector_norm(g) for g in grads])  # ||g_i||
    total = torch.linalg.vector_norm(norms)  # n
    coef = torch.reciprocal(total + 1e-6) * max_norm
    coef = torch.clamp(coef, max=1.0)  # NaN stays NaN
    net.flat_gradients.mul_(coef)  # every gradient at once: they are views of this tensor
    return float(total)

"""Optimizers of the torch engine, following torch.optim's documented update rules
(numpy_net.optim on tensors: one flat tensor, a few whole-tensor operations per step)."""

from __future__ import annotations

import numpy as np
import torch

from .checks import check_adam, check_sgd
from .model import Sequential


class Optimizer:
    """Holds the flat parameter/gradient tensors of ``net`` and per-parameter state."""

    state_names: tuple[str, ...] = ()

    def __init__(self, net: Sequential, lr: float) -> None:
        self.net = net
        self.lr = float(lr)
        self.params = net.flat_parameters
        self.grad = net.flat_gradients
        self._scratch = torch.empty_like(self.params)
        self.step_count = 0
        self.buffers: dict[str, torch.Tensor] = {}  # state name -> flat tensor like params

    def zero_grad(self) -> None:
        self.grad.zero_()

    def _split(self, flat: torch.Tensor) -> dict[str, np.ndarray]:
        """Copies of a flat tensor cut into the network's named parameter shapes, as NumPy."""
        out, offset = {}, 0
        for name, value in self.net.parameters().items():
            size = value.numel()
            out[name] = flat[offset : offset + size].view(value.shape).cpu().numpy().copy()
            offset += size
        return out

    def state_dict(self) -> dict:
        """{"step": int, "lr": float, "state": {state_name: {param_name: array}}}."""
        return {
            "step": self.step_count,
            "lr": self.lr,
            "state": {name: self._split(buf) for name, buf in self.buffers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore buffers from any engine's optimizer state_dict (all-or-nothing)."""
        params = self.net.parameters()
        buffers = {}
        for buf_name, per_param in state.get("state", {}).items():
            if buf_name not in self.state_names:
                raise ValueError(
                    f"optimizer state: unexpected buffer {buf_name!r} for {type(self).__name__} "
                    f"(expected {list(self.state_names)})"
                )
            flat = torch.empty_like(self.params)
            offset = 0
            for name, value in params.items():
                if name not in per_param:
                    raise ValueError(f"optimizer state {buf_name!r}: missing key {name!r}")
                got = per_param[name]
                got = got.detach() if isinstance(got, torch.Tensor) else torch.as_tensor(np.asarray(got))
                if tuple(got.shape) != tuple(value.shape):
                    raise ValueError(
                        f"optimizer state {buf_name}[{name!r}]: expected shape {tuple(value.shape)}, "
                        f"got {tuple(got.shape)}"
                    )
                size = value.numel()
                flat[offset : offset + size].copy_(got.reshape(-1))
                offset += size
            buffers[buf_name] = flat
        self.buffers = buffers
        self.step_count = int(state.get("step", 0))
        self.lr = float(state.get("lr", self.lr))


class SGD(Optimizer):
    """torch.optim.SGD: g = grad + wd p; b = mu b + (1 - tau) g (b = g at first); g = g + mu b
    (nesterov) or b; p = p - lr g."""

    state_names = ("momentum_buffer",)

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

    @torch.no_grad()
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
    (sqrt(v/(1-b2^t)) + eps); weight decay added to g (coupled); amsgrad keeps max v."""

    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
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

    @torch.no_grad()
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

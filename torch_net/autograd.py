"""The oracle: the same network as torch.nn.Linear layers + torch.optim, differentiated by
autograd. Same interface as numpy_net/torch_net, so tests and the CLI can swap it in.

Nothing here is hand-written math: every derivative comes from loss.backward()'s graph.
Weights are (out, in) inside nn.Linear and converted to the engines' (in, out) at the edges.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from . import asarray, labels, to_numpy  # the same conversions as torch_net
from .checks import (
    NonFiniteError,
    check_choice,
    check_dtype_name,
    check_features,
    check_finite_input,
    check_labels,
    check_logits,
    check_sizes,
    check_state_dict,
    raise_non_finite_logits,
)
from .init import initial_parameters

NAME = "autograd"

_MODULES = {"identity": nn.Identity, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class MLP:
    """nn.Sequential(Linear, act, ..., Linear); ``keep_deltas`` retains dL/dz of every Linear."""

    def __init__(
        self,
        sizes: list[int],
        activation: str = "relu",
        init: str = "xavier_normal",
        seed: int = 0,
        dtype: str = "float32",
        device: str = "cpu",
        keep_deltas: bool = True,
    ) -> None:
        sizes = check_sizes(sizes)
        check_choice("activation", activation, _MODULES)
        self.sizes, self.activation, self.init, self.seed = sizes, activation, init, seed
        self.dtype = check_dtype_name(dtype)
        self.device = torch.device(device)
        self.keep_deltas = keep_deltas
        modules: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i:
                modules.append(_MODULES[activation]())
            modules.append(nn.Linear(fan_in, fan_out))
        self.module = nn.Sequential(*modules).to(dtype=getattr(torch, self.dtype), device=self.device)
        self.linears = [m for m in self.module if isinstance(m, nn.Linear)]
        self._pre: list[torch.Tensor] = []
        self._x: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None
        self.load_state_dict(initial_parameters(sizes, init, seed))

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """Engine names -> nn.Parameter (weights in torch's (out, in) layout)."""
        return {
            f"fc{i}.{attr}": getattr(linear, attr)
            for i, linear in enumerate(self.linears)
            for attr in ("weight", "bias")
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.sizes[0], getattr(torch, self.dtype), self.device)
        self._pre = []
        if self.keep_deltas:
            x = x.detach().requires_grad_(True)
        self._x = x
        h = x
        for index, module in enumerate(self.module):
            h = module(h)
            if index == 0:
                check_finite_input(x, h.detach())
            if self.keep_deltas and isinstance(module, nn.Linear):
                h.retain_grad()  # dL/dz of this Linear, the engines' delta
                self._pre.append(h)
        self._logits = h
        return h

    def backward(self, delta: torch.Tensor, input_grad: bool = True) -> torch.Tensor | None:
        """Autograd pushes delta = dL/dlogits through the recorded graph."""
        # The loss's autograd.grad already filled the retained logits.grad once; start clean.
        self._logits.grad = None
        self._logits.backward(delta)
        if input_grad and self._x is not None and self._x.requires_grad:
            return self._x.grad
        return None

    def deltas(self) -> list[torch.Tensor]:
        return [z.grad for z in self._pre]

    def pre_activations(self) -> list[torch.Tensor]:
        """z = x W + b of every Linear in the last forward (needs keep_deltas)."""
        return [z.detach() for z in self._pre]

    def grads(self) -> dict[str, torch.Tensor]:
        """Gradients in the engines' layout ((in, out) weights)."""
        out = {}
        for name, param in self.named_parameters().items():
            grad = param.grad if param.grad is not None else torch.zeros_like(param)
            out[name] = grad.t() if name.endswith("weight") else grad
        return out

    def parameters(self) -> dict[str, torch.Tensor]:
        return {
            name: (p.detach().t() if name.endswith("weight") else p.detach())
            for name, p in self.named_parameters().items()
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: value.cpu().numpy().copy() for name, value in self.parameters().items()}

    def load_state_dict(self, state: dict) -> None:
        params = self.named_parameters()
        expected = {
            name: (tuple(p.shape[::-1]) if name.endswith("weight") else tuple(p.shape))
            for name, p in params.items()
        }
        arrays = check_state_dict(expected, state)
        with torch.no_grad():
            for name, value in arrays.items():
                value = torch.from_numpy(np.ascontiguousarray(value))
                params[name].copy_(value.t() if name.endswith("weight") else value)

    def zero_grad(self) -> None:
        self.module.zero_grad(set_to_none=True)



class SoftmaxCrossEntropy:
    """torch.nn.functional.cross_entropy (mean); backward() = autograd's dL/dlogits."""

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        check_logits(logits)
        check_labels(y, logits.shape[0], logits.shape[1])
        self.logits = logits
        self.loss = functional.cross_entropy(logits, y)
        value = float(self.loss.detach())
        if not np.isfinite(value):
            raise_non_finite_logits(logits.detach())
        return value

    def backward(self) -> torch.Tensor:
        (delta,) = torch.autograd.grad(self.loss, self.logits, retain_graph=True)
        return delta

    def softmax(self) -> torch.Tensor:
        return torch.softmax(self.logits.detach(), dim=1)


class _Optimizer:
    """A torch.optim optimizer over MLP's parameters, with the engines' state_dict format."""

    state_names: tuple[str, ...] = ()

    def __init__(self, net: MLP, optimizer: torch.optim.Optimizer) -> None:
        self.net = net
        self.optimizer = optimizer

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

    def state_dict(self) -> dict:
        state: dict[str, dict[str, np.ndarray]] = {}
        for name, param in self.net.named_parameters().items():
            for buf_name, value in self.optimizer.state.get(param, {}).items():
                if buf_name not in self.state_names or value is None:
                    continue
                value = value.detach()
                state.setdefault(buf_name, {})[name] = (
                    value.t() if name.endswith("weight") else value
                ).cpu().numpy().copy()
        return {"step": self._steps, "lr": self.lr, "state": state}

    def load_state_dict(self, state: dict) -> None:
        params = self.net.named_parameters()
        for buf_name in state.get("state", {}):
            if buf_name not in self.state_names:
                raise ValueError(
                    f"optimizer state: unexpected buffer {buf_name!r} for {type(self).__name__} "
                    f"(expected {list(self.state_names)})"
                )
        self._steps = int(state.get("step", 0))
        self.lr = float(state.get("lr", self.lr))
        for buf_name, per_param in state.get("state", {}).items():
            for name, param in params.items():
                value = torch.as_tensor(np.asarray(per_param[name]), device=param.device).to(param.dtype)
                value = value.t().contiguous() if name.endswith("weight") else value
                self.optimizer.state[param][buf_name] = value
        self._after_load()

    def _after_load(self) -> None:
        pass


class SGD(_Optimizer):
    state_names = ("momentum_buffer",)

    def __init__(self, net: MLP, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(net, torch.optim.SGD(
            list(net.named_parameters().values()), lr=lr, momentum=momentum, dampening=dampening,
            nesterov=nesterov, weight_decay=weight_decay,
        ))
        self._steps = 0


class Adam(_Optimizer):
    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _torch_class = torch.optim.Adam

    def __init__(self, net: MLP, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(net, self._torch_class(
            list(net.named_parameters().values()), lr=lr, betas=betas, eps=eps,
            weight_decay=weight_decay, amsgrad=amsgrad,
        ))
        self._steps = 0

    def _after_load(self) -> None:
        # torch's Adam keeps its step count per parameter, as a float32 tensor.
        for param in self.net.named_parameters().values():
            if param in self.optimizer.state:
                self.optimizer.state[param]["step"] = torch.tensor(float(self._steps))


class AdamW(Adam):
    _torch_class = torch.optim.AdamW

    def __init__(self, net: MLP, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False) -> None:
        super().__init__(net, lr, betas, eps, weight_decay, amsgrad)


__all__ = ["MLP", "NAME", "SGD", "Adam", "AdamW", "NonFiniteError", "SoftmaxCrossEntropy",
           "asarray", "labels", "to_numpy"]

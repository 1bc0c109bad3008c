"""The engine registry: what `--engine numpy|torch|autograd` means, imported lazily so that
the numpy engine never imports torch itself."""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np

ENGINES = {"numpy": "numpy_net", "torch": "torch_net", "autograd": "torch_net.autograd"}
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


@dataclass
class Engine:
    """One engine module and how the trainer talks to it."""

    name: str
    module: ModuleType
    device: str = "cpu"

    @property
    def uses_torch(self) -> bool:
        return self.name != "numpy"

    def build_net(self, sizes: list[int], activation: str, init: str, seed: int, dtype: str):
        kwargs = {"activation": activation, "init": init, "seed": seed, "dtype": dtype}
        if self.uses_torch:
            kwargs["device"] = self.device
        if self.name == "autograd":
            kwargs["keep_deltas"] = False  # the trainer never reads them; retaining costs time
        return self.module.MLP(sizes, **kwargs)

    def build_optimizer(self, net, name: str, lr: float, momentum: float = 0.0,
                        nesterov: bool = False, weight_decay: float = 0.0,
                        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        cls = getattr(self.module, OPTIMIZERS[name])
        if name == "sgd":
            return cls(net, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        return cls(net, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def loss(self):
        return self.module.SoftmaxCrossEntropy()

    # -- arrays -----------------------------------------------------------------------------
    def convert(self, array: np.ndarray):
        """A NumPy array as the engine's array, sharing memory on the CPU (no copy)."""
        if not self.uses_torch:
            return array
        import torch

        return torch.from_numpy(array)

    def to_device(self):
        """None on the CPU; on a GPU, the per-batch host-to-device copy."""
        if not self.uses_torch or self.device == "cpu":
            return None
        device = self.device
        return lambda t: t.to(device, non_blocking=True)

    def to_numpy(self, array) -> np.ndarray:
        return self.module.to_numpy(array)

    def argmax_hits(self, logits, y) -> int:
        """How many rows' largest logit is the label."""
        if self.uses_torch:
            if self.device != "cpu":
                return int((logits.argmax(1) == y).sum())
            # A CPU tensor is a NumPy array without a copy, and NumPy's small-array calls
            # cost a fraction of torch's dispatch.
            logits, y = logits.detach().numpy(), y.numpy()
        return int(np.count_nonzero(logits.argmax(1) == y))

    def synchronize(self) -> None:
        if self.uses_torch and self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()


@contextlib.contextmanager
def denormals_flushed():
    """Inside: floats below 1.2e-38 (float32) count as zero on this thread, for every engine alike.

    x86 handles such denormal numbers in microcode, ~100x slower; Adam's moments of units that
    stopped receiving gradient decay through that range and slowed a NumPy epoch 2x. torch's
    switch sets the CPU flags (FTZ/DAZ) of the calling thread, which NumPy's loops share. Values
    that small are below every tolerance in the parity suite. The default (off) is restored after.
    """
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def load_engine(name: str, device: str = "cpu") -> Engine:
    if name not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {name!r}")
    return Engine(name, importlib.import_module(ENGINES[name]), device)

"""The engine protocol, and the adapter the properties drive every engine through.

An engine is a Python module that provides:

- ``MLP(sizes, activation=, init=, seed=, dtype=)`` with ``forward(x)``, ``backward(delta)``,
  ``deltas()``, ``grads()`` (the arrays the optimizer reads: the optimizer-only property writes
  gradients into them), ``state_dict()`` / ``load_state_dict(sd)`` (NumPy arrays, weights
  (in, out), keys ``fc{i}.weight`` / ``fc{i}.bias``) and ``zero_grad()``;
- ``SoftmaxCrossEntropy()`` with ``forward(logits, y) -> float`` and ``backward() -> dL/dlogits``;
- ``SGD(net, lr=, momentum=, dampening=, nesterov=, weight_decay=)`` with ``step()``,
  ``zero_grad()`` and ``state_dict()`` ({"state": {"momentum_buffer": {name: array}}});
- optionally ``Adam`` and ``AdamW`` (torch.optim signatures);
- optionally ``asarray(np_array, dtype)``, ``labels(np_int_array)`` and ``to_numpy(array)``
  to move arrays in and out; without them NumPy arrays are passed as they are.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np


class Engine:
    """A loaded engine module plus its array conversions."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.name = module.__name__
        for required in ("MLP", "SoftmaxCrossEntropy", "SGD"):
            if not hasattr(module, required):
                raise AttributeError(
                    f"engine {self.name!r} has no {required}: see parity_tests/engines.py for the protocol"
                )

    def __repr__(self) -> str:
        return f"Engine({self.name})"

    def __getattr__(self, item: str):
        return getattr(self.module, item)

    def asarray(self, array: np.ndarray, dtype: str):
        if hasattr(self.module, "asarray"):
            return self.module.asarray(array, dtype)
        return np.asarray(array, dtype=dtype)

    def labels(self, array: np.ndarray):
        if hasattr(self.module, "labels"):
            return self.module.labels(array)
        return np.asarray(array, dtype=np.int64)

    def to_numpy(self, array) -> np.ndarray:
        if array is None:
            return None
        if hasattr(self.module, "to_numpy"):
            return np.array(self.module.to_numpy(array), copy=True)
        return np.array(array, copy=True)


def load_engine(name: str) -> Engine:
    return Engine(importlib.import_module(name))


def oracle() -> Engine:
    return load_engine("torch_net.autograd")

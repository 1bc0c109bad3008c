"""torch_net: numpy_net's backprop on torch tensors, every gradient still written by hand.

    import torch_net as E
    net = E.MLP([784, 64, 10], activation="relu", seed=0)
    loss = E.SoftmaxCrossEntropy().forward(net.forward(x), y)

torch_net.autograd holds the independent oracle: the same network as torch.nn + torch.optim.
"""

from __future__ import annotations

import numpy as np
import torch

from .checks import NonFiniteError
from .init import INITS, initial_parameters
from .layers import ACTIVATIONS, Identity, Layer, Linear, ReLU, Sigmoid, Tanh
from .losses import SoftmaxCrossEntropy
from .model import MLP, Sequential
from .optim import SGD, Adam, AdamW, Optimizer

NAME = "torch"


def asarray(array: np.ndarray, dtype: str = "float32", device: str = "cpu") -> torch.Tensor:
    """A NumPy array as this engine's tensor, in ``dtype``; shares memory when no cast is needed."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)).to(device)


def to_numpy(array: torch.Tensor) -> np.ndarray:
    """This engine's tensor as a NumPy array (no copy on the CPU)."""
    return array.detach().cpu().numpy()


def labels(array: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """Integer class labels as this engine wants them (int64)."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)


__all__ = [
    "ACTIVATIONS", "INITS", "MLP", "NAME", "SGD", "Adam", "AdamW", "Identity", "Layer",
    "Linear", "NonFiniteError", "Optimizer", "ReLU", "Sequential", "Sigmoid",
    "SoftmaxCrossEntropy", "Tanh", "asarray", "initial_parameters", "labels", "to_numpy",
]

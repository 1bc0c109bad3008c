"""numpy_net: backpropagation for multi-layer perceptrons, written out by hand in NumPy.

    import numpy_net as E
    net = E.MLP([784, 64, 10], activation="relu", seed=0)
    loss = E.SoftmaxCrossEntropy().forward(net.forward(x), y)
"""

from __future__ import annotations

import numpy as np

from .checks import NonFiniteError
from .init import INITS, initial_parameters
from .layers import ACTIVATIONS, Identity, Layer, Linear, ReLU, Sigmoid, Tanh
from .losses import SoftmaxCrossEntropy
from .model import MLP, Sequential
from .optim import SGD, Adam, AdamW, Optimizer

NAME = "numpy"


def asarray(array: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """A NumPy array (any array-like) as this engine's array type, in ``dtype``."""
    return np.asarray(array, dtype=dtype)


def to_numpy(array: np.ndarray) -> np.ndarray:
    """This engine's array as a NumPy array (no copy)."""
    return np.asarray(array)


def labels(array: np.ndarray) -> np.ndarray:
    """Integer class labels as this engine wants them (int64)."""
    return np.asarray(array, dtype=np.int64)


__all__ = [
    "ACTIVATIONS", "INITS", "MLP", "NAME", "SGD", "Adam", "AdamW", "Identity", "Layer",
    "Linear", "NonFiniteError", "Optimizer", "ReLU", "Sequential", "Sigmoid",
    "SoftmaxCrossEntropy", "Tanh", "asarray", "initial_parameters", "labels", "to_numpy",
]

"""numpy_net: backpropagation for multi-layer perceptrons, written out by hand in NumPy.

    import numpy_net as E
    net = E.MLP([784, 64, 10], activation="relu", seed=0)
    loss = E.SoftmaxCrossEntropy().forward(net.forward(x), y)

The contract it shares with torch_net (names, checks, state formats) is engine_core's.
"""

from __future__ import annotations

import numpy as np

from engine_core.checks import check_label_values
from engine_core.errors import NonFiniteError
from engine_core.naming import INITS
from engine_core.specs import initial_state

from .attention import MultiheadAttention
from .conv import AvgPool2d, Conv2d, Flatten, MaxPool2d
from .embedding import Embedding
from .layers import ACTIVATIONS, GELU, Identity, Layer, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .losses import SoftmaxCrossEntropy
from .model import MLP, Sequential
from .normalization import BatchNorm1d, BatchNorm2d, Dropout, LayerNorm
from .optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm_
from .recurrent import GRU, LSTM, RNN, LastStep
from .tokens import Patches, PositionalEmbedding, SequenceMean
from .transformer import TransformerEncoderLayer

# What a trainer needs to know (engine_core.protocol.Traits).
NAME = "numpy"
ACCUMULATES_GRADIENTS = False
DEVICES: tuple[str, ...] = ("cpu",)
TRAINING_KWARGS: dict[str, object] = {}


def asarray(array: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """A NumPy array (any array-like) as this engine's array type, in ``dtype`` (no copy if it already is)."""
    return np.asarray(array, dtype=dtype)


def to_numpy(array: np.ndarray) -> np.ndarray:
    """This engine's array as a NumPy array (no copy)."""
    return np.asarray(array)


def labels(array: np.ndarray) -> np.ndarray:
    """Integer class labels as this engine wants them (int64; no copy if they already are).

    Raises TypeError for non-integer labels (a cast would truncate floats) and ValueError for a
    value beyond int64 (engine_core.checks.check_label_values)."""
    return check_label_values(array)


__all__ = [
    "ACCUMULATES_GRADIENTS", "ACTIVATIONS", "DEVICES", "INITS", "MLP", "NAME", "SGD", "TRAINING_KWARGS", "Adam",
    "AdamW", "BatchNorm1d", "BatchNorm2d", "Dropout", "GELU", "Identity", "Layer", "LayerNorm", "LeakyReLU", "Linear",
    "NonFiniteError", "Optimizer", "ReLU", "Sequential", "Sigmoid",
    "SoftmaxCrossEntropy", "Tanh", "asarray", "clip_grad_norm_", "initial_state", "labels", "to_numpy",
    "AvgPool2d", "Conv2d", "Flatten", "MaxPool2d", "GRU", "LSTM", "LastStep", "RNN", "MultiheadAttention", "Embedding",
    "TransformerEncoderLayer", "Patches", "PositionalEmbedding", "SequenceMean",
]

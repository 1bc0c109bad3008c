"""torch_net: numpy_net's backprop on torch tensors, every gradient still written by hand.

    import torch_net as E
    net = E.MLP([784, 64, 10], activation="relu", seed=0)
    loss = E.SoftmaxCrossEntropy().forward(net.forward(x), y)

torch_net.autograd holds the independent oracle: the same network as torch.nn + torch.optim.
The contract it shares with numpy_net (names, checks, state formats) is engine_core's.
"""

from __future__ import annotations

import numpy as np
import torch

from engine_core.checks import check_label_values, native
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
NAME = "torch"
ACCUMULATES_GRADIENTS = False
DEVICES: tuple[str, ...] = ("cpu", "cuda")
TRAINING_KWARGS: dict[str, object] = {}


def asarray(array: np.ndarray, dtype: str = "float32", device: str | torch.device = "cpu") -> torch.Tensor:
    """A NumPy array as this engine's tensor, in ``dtype``; shares memory when no cast or copy
    is needed (a C-contiguous, writeable, native-byte-order array of that dtype, on the CPU)."""
    # np.require, not ascontiguousarray: that one turns a 0-d array (one index) into shape (1,).
    return _tensor(np.require(native(np.asarray(array)), dtype=dtype, requirements="C"), device)


def to_numpy(array: torch.Tensor) -> np.ndarray:
    """This engine's tensor as a NumPy array (no copy on the CPU)."""
    return array.detach().cpu().numpy()


def labels(array: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """Integer class labels as this engine wants them (int64; shares memory when they already are).

    Raises TypeError for non-integer labels (a cast would truncate floats) and ValueError for a
    value beyond int64 (engine_core.checks.check_label_values)."""
    return _tensor(np.ascontiguousarray(check_label_values(array)), device)


def _tensor(array: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """A C-contiguous array as a tensor on ``device``, sharing its memory on the CPU unless it is
    read-only (torch tensors are writeable: read-only memory is copied, never aliased)."""
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array).to(device)


__all__ = [
    "ACCUMULATES_GRADIENTS", "ACTIVATIONS", "DEVICES", "INITS", "MLP", "NAME", "SGD", "TRAINING_KWARGS", "Adam",
    "AdamW", "BatchNorm1d", "BatchNorm2d", "Dropout", "GELU", "Identity", "Layer", "LayerNorm", "LeakyReLU", "Linear",
    "NonFiniteError", "Optimizer", "ReLU", "Sequential", "Sigmoid",
    "SoftmaxCrossEntropy", "Tanh", "asarray", "clip_grad_norm_", "initial_state", "labels", "to_numpy",
    "AvgPool2d", "Conv2d", "Flatten", "MaxPool2d", "GRU", "LSTM", "LastStep", "RNN", "MultiheadAttention", "Embedding",
    "TransformerEncoderLayer", "Patches", "PositionalEmbedding", "SequenceMean",
]

"""The names every engine shares: activations, inits, dtypes and optimizers.

Parameter keys are torch.nn.Module.state_dict()'s dotted paths, derived from a network's tree
by engine_core.specs (``0.weight``, ``1.0.running_mean``).
"""

from __future__ import annotations

ACTIVATION_NAMES: tuple[str, ...] = ("identity", "relu", "sigmoid", "tanh")
INITS: tuple[str, ...] = ("xavier_normal", "xavier_uniform", "he_normal", "torch_default")
DTYPES: tuple[str, ...] = ("float32", "float64")
# Optimizer name (as on the command line and in checkpoints) -> class name in an engine module.
OPTIMIZERS: dict[str, str] = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
# Buffers each optimizer keeps per parameter, in torch.optim's names.
OPTIMIZER_BUFFERS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum_buffer",),
    "adam": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
}


def is_layer_weight(key: str, ndim: int) -> bool:
    """Whether a state-dict entry of ``ndim`` dimensions is a Linear or Conv2d weight: a
    ``*.weight`` with two or more (batch norm's weight is 1-D)."""
    return key.endswith(".weight") and ndim >= 2

"""The names every engine shares: activations, inits, dtypes, optimizers, and parameter keys.

A network of sizes [in, h1, ..., out] has one Linear per consecutive pair; Linear i owns the
parameters ``fc{i}.weight`` (shape (fan_in, fan_out): z = x @ W + b) and ``fc{i}.bias``
(shape (fan_out,)). This is the one place that spells that scheme out.
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


def linear_name(index: int) -> str:
    """'fc{index}': the name of the index-th Linear layer (0-based)."""
    return f"fc{index}"


def parameter_shapes(sizes: list[int]) -> dict[str, tuple[int, ...]]:
    """{"fc0.weight": (sizes[0], sizes[1]), "fc0.bias": (sizes[1],), "fc1.weight": ...}, in order.

    Weights are laid out (in, out), so z = x @ W + b; torch.nn.Linear holds the transpose.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"{linear_name(i)}.weight"] = (int(fan_in), int(fan_out))
        shapes[f"{linear_name(i)}.bias"] = (int(fan_out),)
    return shapes


def is_layer_weight(key: str, ndim: int) -> bool:
    """Whether a state-dict entry of ``ndim`` dimensions is a Linear or Conv2d weight: a
    ``*.weight`` with two or more (batch norm's weight is 1-D)."""
    return key.endswith(".weight") and ndim >= 2

"""Small networks the application's tests train, resume, export and import, as --layers text (and
the configuration of a run of the first)."""

from __future__ import annotations

from typing import Any

from backprop.architecture import parse_layers
from backprop.config import TrainConfig, new_config

# A small stack with every kind of state: parameters, batch norm buffers, a dropout generator.
STACK_TEXT = "conv2d(1, 3, 3, stride=2), batchnorm2d(3), relu, maxpool2d(2), dropout(0.25, seed=5), flatten, " \
             "linear(108, 16), batchnorm1d(16), relu, dropout(0.5, seed=7), linear(16, 10)"
STACK = parse_layers(STACK_TEXT)

# A Sequential inside the stack: torch's nested keys (1.0.weight).
NESTED_TEXT = "flatten, sequential(linear(784, 16), relu), linear(16, 10)"

# Networks that read an image as 28 rows of 28 pixels, small: an LSTM of 4 and self-attention.
TINY_LSTM = "lstm(28, 4, batch_first=True), laststep(batch_first=True), linear(4, 10)"
TINY_ATTENTION = ("multiheadattention(28, 4, batch_first=True), layernorm(28), laststep(batch_first=True), "
                  "layernorm(28, elementwise_affine=False), linear(28, 10)")

# The vit preset's shape, small: 16 patches of 7x7 to 8 features, one pre-LN layer with dropout.
TINY_VIT = ("patches(7), linear(49, 8), positionalembedding(16, 8, batch_first=True), "
            "transformerencoderlayer(8, 2, 16, 0.25, 'gelu', batch_first=True, norm_first=True, seed=3), "
            "layernorm(8), sequencemean(batch_first=True), linear(8, 10)")


def stack_config(**overrides: Any) -> TrainConfig:
    """A float64 Fashion-MNIST run of STACK (batch 24, 2 epochs), ``overrides`` given as flags."""
    flags: dict[str, Any] = dict(layers=STACK, dataset="fashion-mnist", batch_size=24, epochs=2, seed=3,
                                 dtype="float64")
    return new_config("default", **{**flags, **overrides})

# Every recurrent kind, with and without biases, stacked, reading the image's rows.
RECURRENT_STACKS = [
    "gru(28, 3, num_layers=2, batch_first=True), laststep(batch_first=True), linear(3, 10)",
    "rnn(28, 5, nonlinearity='relu', bias=False, batch_first=True), tanh, laststep(batch_first=True), "
    "linear(5, 10)",
    "lstm(28, 4, batch_first=True), lstm(4, 3, batch_first=True), laststep(batch_first=True), linear(3, 10)",
]

"""Arguments and input facts of the recurrent layers (RNN, LSTM, GRU) and of LastStep, stated
once: numpy_net, torch_net and the oracle call the same code, so they refuse the same arguments
with the same words and show a layer the same way (torch.nn.RNN/LSTM/GRU documentation pages).
"""

from __future__ import annotations

from dataclasses import dataclass

from .conv_checks import check_count
from .errors import type_name
from .layer_checks import check_flag

# Gates stacked in the rows of weight_ih_l{k} / weight_hh_l{k}, in torch's order.
GATES: dict[str, tuple[str, ...]] = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
NONLINEARITIES: tuple[str, ...] = ("tanh", "relu")  # torch.nn.RNN's


@dataclass(frozen=True)
class RecurrentArgs:
    """torch.nn.RNN/LSTM/GRU's arguments, checked. ``kind`` is "rnn", "lstm" or "gru"; ``gates``
    the number G of gate blocks stacked in each weight's G*H rows (1, 4 or 3)."""

    kind: str
    input_size: int
    hidden_size: int
    num_layers: int
    nonlinearity: str
    bias: bool
    batch_first: bool

    @property
    def gates(self) -> int:
        return len(GATES[self.kind])

    def layer_input_size(self, layer: int) -> int:
        """The width layer k reads: input_size for the first, hidden_size above it."""
        return self.input_size if layer == 0 else self.hidden_size

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """torch's named_parameters() of the module, in its order: per layer k, weight_ih_l{k}
        (G*H, in_k), weight_hh_l{k} (G*H, H), then (bias=True) bias_ih_l{k}, bias_hh_l{k} (G*H,)."""
        rows = self.gates * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        for k in range(self.num_layers):
            shapes[f"weight_ih_l{k}"] = (rows, self.layer_input_size(k))
            shapes[f"weight_hh_l{k}"] = (rows, self.hidden_size)
            if self.bias:
                shapes[f"bias_ih_l{k}"] = (rows,)
                shapes[f"bias_hh_l{k}"] = (rows,)
        return shapes

    def extra_repr(self) -> str:
        """How every engine shows the layer, as torch does: LSTM(28, 128, batch_first=True), each
        argument that is not torch's default after the two sizes."""
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.nonlinearity != "tanh":
            text += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        return text


def check_recurrent_args(kind: str, input_size: object, hidden_size: object, num_layers: object = 1,
                         nonlinearity: object = "tanh", bias: object = True,
                         batch_first: object = False) -> RecurrentArgs:
    """The arguments of an RNN ("rnn"), LSTM or GRU; TypeError/ValueError naming the argument:
    sizes and num_layers positive ints, nonlinearity "tanh" or "relu" (an RNN's only), bias and
    batch_first True or False."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {type_name(nonlinearity)} {nonlinearity!r}")
    if kind != "rnn" and nonlinearity != "tanh":
        raise ValueError(f"nonlinearity: only RNN takes one ({kind.upper()}'s gates are fixed)")
    return RecurrentArgs(kind, check_count("input_size", input_size), check_count("hidden_size", hidden_size),
                         check_count("num_layers", num_layers), str(nonlinearity), check_flag("bias", bias),
                         check_flag("batch_first", batch_first))


def sequence_form(batch_first: bool, width: int | str) -> str:
    """'(seq_len, batch, 28)' or '(batch, seq_len, 28)': the 3-D input a layer takes."""
    return f"(batch, seq_len, {width})" if batch_first else f"(seq_len, batch, {width})"


def check_sequence_facts(layer: str, shape: tuple[int, ...], dtype: str, width: int | None, batch_first: bool,
                         layer_dtype: str | None) -> None:
    """A recurrent layer's (or LastStep's) input: 3-D, (seq_len, batch, width) or with batch_first
    (batch, seq_len, width), ``width`` features when given, no empty dimension, the layer's dtype.
    torch also takes an unbatched 2-D (seq_len, width) sequence; the engines ask for a batch of one.

    Raises ValueError (rank, width, empty) or TypeError (dtype), naming the layer.
    """
    form = sequence_form(batch_first, "features" if width is None else width)
    if len(shape) != 3 or (width is not None and shape[2] != width):
        hint = " (one sequence: add a batch axis of 1)" if len(shape) == 2 else ""
        raise ValueError(f"{layer}: x: expected a 3-D input {form}, got shape {shape}{hint}")
    if 0 in shape:
        raise ValueError(f"{layer}: x: empty input (shape {shape})")
    if layer_dtype is not None and dtype != layer_dtype:
        raise TypeError(f"{layer}: x: expected dtype {layer_dtype} (the layer's dtype), got {dtype}; convert it first")
    if layer_dtype is None and dtype not in ("float32", "float64"):
        raise TypeError(f"{layer}: x: expected dtype float32 or float64, got {dtype}")

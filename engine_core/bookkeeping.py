"""Bookkeeping base classes: what a model and an optimizer do that is not their math.

An engine's Sequential packs every parameter (and every gradient) into views of one flat
array, names them, moves them in and out as NumPy state dicts and runs layers in order; an
engine's optimizer saves and restores its flat buffers as per-parameter NumPy arrays. All of
that is written here once. The engines supply a handful of array primitives (the ``_``-prefixed
hooks) and their math: the layers' forward/backward and the optimizers' step().
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import numpy as np

from .checks import check_model_state, check_optimizer_state, dtype_name_of, shape_of
from .errors import backward_before_forward_message
from .formats import ModelState, OptimizerState
from .naming import linear_name

A = TypeVar("A")  # the engine's array type (numpy.ndarray, torch.Tensor)


class LayerBase(Generic[A]):
    """A layer: ``forward(x)`` caches what ``backward(delta)`` needs and returns the output;
    ``backward(delta)`` takes dL/d(output) and returns dL/d(input).

    A layer keeps a reference to its forward's input (or output) until the next forward:
    a caller that overwrites that array in between gets the gradient of the new contents.
    ``label`` names the layer in error messages (a Sequential sets it to the layer's place).
    ``training`` selects train-mode behaviour (batch statistics, dropout masks) as in torch;
    ``accepts_input_grad`` marks layers whose backward can skip dL/dx (``input_grad=False``).
    """

    label: str = ""
    training: bool = True
    accepts_input_grad: bool = False

    def forward(self, x: A) -> A:
        raise NotImplementedError

    def backward(self, delta: A) -> A | None:
        raise NotImplementedError

    def parameters(self) -> dict[str, A]:
        """Name -> parameter array (updated in place by optimizers)."""
        return {}

    def gradients(self) -> dict[str, A]:
        """Name -> gradient array, same names and shapes as parameters()."""
        return {}

    def buffers(self) -> dict[str, A]:
        """Name -> saved state that is not trained (batch norm's running statistics)."""
        return {}

    def train(self, mode: bool = True) -> LayerBase[A]:
        """Train mode (mode=True) or eval mode, as torch.nn.Module.train; returns self."""
        self.training = mode
        return self

    def eval(self) -> LayerBase[A]:
        """Eval mode: running statistics instead of batch statistics, no dropout; returns self."""
        return self.train(False)

    def describe(self) -> str:
        """'fc1 Linear(in_features=64, out_features=10)': the label and the layer, for messages."""
        return f"{self.label} {self!r}".strip()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SequentialBase(LayerBase[A]):
    """layers[-1](...layers[0](x)); backward runs them in reverse.

    State-dict keys follow torch.nn.Sequential: ``"{index}.weight"``, ``"{index}.running_mean"``
    (index: the layer's position), parameters then buffers, layer after layer; MLP overrides
    the prefix to ``fc{i}`` (engine_core.naming). Parameters and gradients are packed into views
    of two flat arrays; buffers stay the layers' own. Engines implement the array hooks below.
    """

    def __init__(self, *layers: LayerBase[A]) -> None:
        self.layers = list(layers)
        self.training = True
        # False until a forward completes, and again after a refused one: backward then has
        # nothing consistent to differentiate (layers may hold parts of the refused batch).
        self.forward_done = False
        stateful = [(index, layer) for index, layer in enumerate(self.layers) if layer.parameters() or layer.buffers()]
        self._stateful = [(self._prefix(index, order), layer) for order, (index, layer) in enumerate(stateful)]
        for index, layer in enumerate(self.layers):
            layer.label = f"layers[{index}]"
        for prefix, layer in self._stateful:
            layer.label = self._label(prefix, layer)
        # Layers that record dL/d(their output): Linear (and Conv2d), whose deltas() are the backprop deltas.
        self.linears = [layer for layer in self.layers if hasattr(layer, "delta")]
        self._pack()

    def _prefix(self, index: int, order: int) -> str:
        """The state-dict prefix of the order-th layer with state, at position index: torch's index."""
        return str(index)

    def _label(self, prefix: str, layer: LayerBase[A]) -> str:
        return layer.label

    # -- hooks: the engine's array primitives ------------------------------------------------
    def _flat_zeros(self, total: int, like: A | None) -> A:
        """A zero 1-D array of ``total`` elements, with like's dtype (and device); float32 without one."""
        raise NotImplementedError

    def _flat_view(self, flat: A, offset: int, shape: tuple[int, ...]) -> A:
        """flat[offset : offset + prod(shape)] viewed as ``shape`` (no copy)."""
        raise NotImplementedError

    def _copy_in(self, target: A, value: Any) -> None:
        """target[...] = value (value: an engine array or a NumPy array); casts to target's dtype."""
        raise NotImplementedError

    def _numpy_copy(self, value: A) -> np.ndarray:
        """A NumPy copy of an engine array."""
        raise NotImplementedError

    def _zero(self, array: A) -> None:
        raise NotImplementedError

    # -- bookkeeping ----------------------------------------------------------------------------
    def _named(self) -> list[tuple[str, LayerBase[A], str]]:
        return [(f"{prefix}.{attr}", layer, attr) for prefix, layer in self._stateful for attr in layer.parameters()]

    def _pack(self) -> None:
        """Move every parameter and gradient into views of two flat arrays."""
        named = self._named()
        first = getattr(named[0][1], named[0][2]) if named else None  # None: no parameters at all
        shapes = [tuple(getattr(layer, attr).shape) for _, layer, attr in named]
        total = sum(int(np.prod(shape, dtype=np.int64)) for shape in shapes)
        self.flat_parameters = self._flat_zeros(total, first)
        self.flat_gradients = self._flat_zeros(total, first)
        offset = 0
        for (_, layer, attr), shape in zip(named, shapes):
            view = self._flat_view(self.flat_parameters, offset, shape)
            self._copy_in(view, getattr(layer, attr))
            setattr(layer, attr, view)
            setattr(layer, "grad_" + attr, self._flat_view(self.flat_gradients, offset, shape))
            offset += int(np.prod(shape, dtype=np.int64))

    def parameters(self) -> dict[str, A]:
        """{"fc0.weight": (in, out), "fc0.bias": (out,), ...}: the live arrays."""
        return {name: getattr(layer, attr) for name, layer, attr in self._named()}

    def gradients(self) -> dict[str, A]:
        """dL/dparameter of the last backward, same keys and shapes as parameters()."""
        return {name: getattr(layer, "grad_" + attr) for name, layer, attr in self._named()}

    def buffers(self) -> dict[str, A]:
        """{"1.running_mean": ..., ...}: the live buffers of every layer."""
        return {
            f"{prefix}.{name}": value for prefix, layer in self._stateful for name, value in layer.buffers().items()
        }

    def grads(self) -> dict[str, A]:
        """dL/dparameter of the last backward: the very arrays the optimizer reads."""
        return self.gradients()

    def deltas(self) -> list[A]:
        """dL/dz for each Linear's output z (its pre-activation), first layer first."""
        return [layer.delta for layer in self.linears]  # type: ignore[attr-defined]

    def _state(self) -> dict[str, A]:
        """Parameters then buffers, layer after layer (torch's state_dict order)."""
        state: dict[str, A] = {}
        for prefix, layer in self._stateful:
            for name, value in {**layer.parameters(), **layer.buffers()}.items():
                state[f"{prefix}.{name}"] = value
        return state

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """State-dict key -> shape, in state-dict order."""
        return {name: tuple(value.shape) for name, value in self._state().items()}  # type: ignore[attr-defined]

    def state_dict(self) -> ModelState:
        """Copies of the parameters and buffers as NumPy arrays (Linear weights (in, out))."""
        return {name: self._numpy_copy(value) for name, value in self._state().items()}

    def load_state_dict(self, state: ModelState) -> None:
        """Copy values in (any engine's arrays); all-or-nothing: everything is checked first.

        Raises TypeError/ValueError naming the key (missing, extra, wrong shape, not floating
        point, NaN/Inf). A float64 value loaded into float32 rounds to nearest.
        """
        targets = self._state()
        dtype = dtype_name_of(next(iter(targets.values()))) if targets else None
        arrays = check_model_state(self.shapes(), state, dtype)
        for name, value in arrays.items():
            self._copy_in(targets[name], value)

    def zero_grad(self) -> None:
        """Set every gradient to 0 (the engines overwrite gradients anyway; for the protocol)."""
        self._zero(self.flat_gradients)

    def train(self, mode: bool = True) -> SequentialBase[A]:
        """Train (or eval) mode for every layer, as torch.nn.Module.train; returns self."""
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    # -- computation ----------------------------------------------------------------------------
    def forward(self, x: A) -> A:
        self.forward_done = False
        for layer in self.layers:
            x = layer.forward(x)
        self.forward_done = True
        return x

    def check_forward_done(self, delta: object) -> None:
        """RuntimeError unless the last forward completed (none ran, or it was refused)."""
        if not self.forward_done:
            last = self.layers[-1]
            raise RuntimeError(backward_before_forward_message(
                last.describe(), shape_of(delta), "(the shape of the last forward's output)"))

    def backward(self, delta: A, input_grad: bool = True) -> A | None:
        """Fills every gradient; returns dL/dx (None with input_grad=False, which spares the
        first layer's input gradient that a training step never needs). RuntimeError when no
        forward completed since the last refused one."""
        self.check_forward_done(delta)
        first = self.layers[0]
        for layer in reversed(self.layers[1:]):
            delta = layer.backward(delta)  # type: ignore[assignment]
        if first.accepts_input_grad:
            return first.backward(delta, input_grad=input_grad)  # type: ignore[call-arg]
        return first.backward(delta)

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"{type(self).__name__}(\n{inner}\n)"


class FcNaming:
    """Mixin for MLPs: the k-th layer with parameters is ``fc{k}`` (engine_core.naming), in the
    state dict and in messages, as the original notebook's model named them."""

    def _prefix(self, index: int, order: int) -> str:
        return linear_name(order)

    def _label(self, prefix: str, layer: LayerBase[Any]) -> str:
        return prefix


class OptimizerBase(Generic[A]):
    """An optimizer over a SequentialBase's flat parameter and gradient arrays.

    ``buffers`` maps torch.optim's buffer names to flat arrays like the parameters; state_dict
    cuts them into per-parameter NumPy arrays and load_state_dict validates (see
    engine_core.checks.check_optimizer_state) and joins them back, all-or-nothing. Subclasses
    set ``kind`` ("sgd", "adam", "adamw"), implement step() and the two array hooks.
    """

    kind: str = ""

    def __init__(self, net: SequentialBase[A], lr: float) -> None:
        self.net = net
        self.lr = float(lr)
        self.params: A = net.flat_parameters
        self.grad: A = net.flat_gradients
        self.step_count = 0
        self.buffers: dict[str, A] = {}  # buffer name -> flat array like params

    # -- hooks --------------------------------------------------------------------------------
    def _flat_copy(self, arrays: list[np.ndarray]) -> A:
        """One flat engine array (params' dtype and device) holding the arrays one after another."""
        raise NotImplementedError

    def _numpy_copy(self, value: A) -> np.ndarray:
        raise NotImplementedError

    def hyper_parameters(self) -> dict[str, Any]:
        """The settings that decide which buffers exist (momentum; amsgrad)."""
        return {}

    # -- bookkeeping ----------------------------------------------------------------------------
    def step(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        """torch.optim's arguments, e.g. SGD(lr=0.01, momentum=0.9, dampening=0.0, ...)."""
        settings = ("lr", "momentum", "dampening", "nesterov", "betas", "eps", "weight_decay", "amsgrad")
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in settings if hasattr(self, name))
        return f"{type(self).__name__}({shown})"

    def zero_grad(self) -> None:
        """Set every gradient to 0."""
        self.net.zero_grad()

    def state_dict(self) -> OptimizerState:
        """{"step": int, "lr": float, "state": {buffer: {parameter: NumPy array}}} (copies)."""
        views = self.net.parameters()
        state: dict[str, dict[str, np.ndarray]] = {}
        for buffer, flat in self.buffers.items():
            state[buffer] = {}
            offset = 0
            for name, value in views.items():
                shape = tuple(value.shape)  # type: ignore[attr-defined]
                # The same views the parameters are, cut from the buffer.
                state[buffer][name] = self._numpy_copy(self.net._flat_view(flat, offset, shape))
                offset += int(np.prod(shape, dtype=np.int64))
        return {"step": self.step_count, "lr": self.lr, "state": state}

    def load_state_dict(self, state: OptimizerState) -> None:
        """Restore step, lr and buffers from any engine's optimizer state_dict.

        Everything is validated first (engine_core.checks.check_optimizer_state); on any
        TypeError/ValueError nothing is modified.
        """
        shapes = {name: tuple(value.shape) for name, value in self.net.parameters().items()}  # type: ignore[attr-defined]
        valid = check_optimizer_state(self.kind, self.hyper_parameters(), shapes, state, dtype_name_of(self.params))
        buffers = {name: self._flat_copy(list(per.values())) for name, per in valid["state"].items()}
        self.buffers = buffers
        self.step_count = valid["step"]
        self.lr = valid["lr"]

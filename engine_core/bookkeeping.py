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

A = TypeVar("A")  # the engine's array type (numpy.ndarray, torch.Tensor)
# Counts every train()/eval() call on any module: a tree's trusted kind of input is tied to the
# count, so switching any module's mode makes the next forward check everything once.
_MODE_CHANGES = [0]


class LayerBase(Generic[A]):
    """A module of a network, as torch.nn.Module: ``forward(x)`` caches what ``backward(delta)``
    needs and returns the output; ``backward(delta)`` takes dL/d(output) and returns dL/d(input).

    Modules form a tree: ``children()`` names the modules inside (a container's, a composite
    layer's), and ``parameters()``, ``gradients()``, ``buffers()``, ``state_dict()``-style keys
    and ``train()``/``eval()`` walk it, with torch's dotted paths (``1.0.weight``). A leaf layer
    declares only its own arrays (``local_parameters()``, ``local_gradients()``,
    ``local_buffers()``: {"weight": ..., "bias": ...}); a parameter ``name`` is the attribute of
    that name and its gradient the attribute ``grad_<name>``.

    A layer keeps a reference to its forward's input (or output) until the next forward:
    a caller that overwrites that array in between gets the gradient of the new contents. An
    input that lies in the layer's own buffers (its last output or dL/dx fed back in) is copied
    first, since the forward writes those buffers.
    ``label`` is the module's path in its tree, named in error messages (describe()).
    ``training`` selects train-mode behaviour (batch statistics, dropout masks) as in torch;
    ``accepts_input_grad`` marks modules whose backward can skip dL/dx (``input_grad=False``).
    ``input_trusted`` / ``delta_trusted``: see SequentialBase (validation once, at the boundary).
    """

    label: str = ""
    training: bool = True
    accepts_input_grad: bool = False
    # Set by the tree a layer is in (SequentialBase): its input, or the delta its backward gets,
    # was produced by the layer next to it for inputs the tree's first layer validated, so the
    # layer's own checks would only repeat what is known; used alone, a layer checks everything.
    input_trusted: bool = False
    delta_trusted: bool = False
    # A layer with parts of its own (children it runs itself, named as torch names them: a
    # MultiheadAttention's out_proj): one leaf of its container, whose parts still show in
    # named_modules() and so in parameters(), state keys and train()/eval().
    composite: bool = False

    def forward(self, x: A) -> A:
        raise NotImplementedError

    def backward(self, delta: A) -> A | None:
        raise NotImplementedError

    # -- the tree ----------------------------------------------------------------------------
    def children(self) -> dict[str, LayerBase[A]]:
        """Name -> module directly inside this one, in order (none for a leaf layer)."""
        return {}

    def local_parameters(self) -> dict[str, A]:
        """This module's own parameters (not its children's): name -> array."""
        return {}

    def local_gradients(self) -> dict[str, A]:
        """dL/d(own parameter), same names and shapes as local_parameters()."""
        return {}

    def local_buffers(self) -> dict[str, A]:
        """This module's own saved state that is not trained (batch norm's running statistics)."""
        return {}

    def named_modules(self, prefix: str = "") -> list[tuple[str, LayerBase[A]]]:
        """(path, module) of this module and every one below it, depth first (torch's order)."""
        modules: list[tuple[str, LayerBase[A]]] = [(prefix, self)]
        for name, child in self.children().items():
            modules.extend(child.named_modules(f"{prefix}.{name}" if prefix else name))
        return modules

    def leaves(self) -> list[LayerBase[A]]:
        """Every layer a container runs, in forward order: the modules without children, and the
        composite layers (``composite``: a MultiheadAttention, which runs its out_proj itself),
        not what is inside them."""
        if self.composite or not self.children():
            return [self]
        return [leaf for child in self.children().values() for leaf in child.leaves()]

    def _walk(self, local: str) -> dict[str, A]:
        out: dict[str, A] = {}
        for path, module in self.named_modules():
            for name, value in getattr(module, local)().items():
                out[f"{path}.{name}" if path else name] = value
        return out

    def parameters(self) -> dict[str, A]:
        """Dotted path -> parameter array, every module's (updated in place by optimizers)."""
        return self._walk("local_parameters")

    def gradients(self) -> dict[str, A]:
        """Dotted path -> gradient array, same names and shapes as parameters()."""
        return self._walk("local_gradients")

    def buffers(self) -> dict[str, A]:
        """Dotted path -> buffer (batch norm's running statistics), every module's."""
        return self._walk("local_buffers")

    def state(self) -> dict[str, A]:
        """Parameters then buffers, module after module: torch.nn.Module.state_dict()'s keys and
        order (the live arrays)."""
        out: dict[str, A] = {}
        for path, module in self.named_modules():
            for name, value in {**module.local_parameters(), **module.local_buffers()}.items():
                out[f"{path}.{name}" if path else name] = value
        return out

    def train(self, mode: bool = True) -> LayerBase[A]:
        """Train mode (mode=True) or eval mode for this module and every one inside, as
        torch.nn.Module.train; returns self."""
        self.training = mode
        _MODE_CHANGES[0] += 1
        for child in self.children().values():
            child.train(mode)
        return self

    def eval(self) -> LayerBase[A]:
        """Eval mode: running statistics instead of batch statistics, no dropout; returns self."""
        return self.train(False)

    def describe(self) -> str:
        """'layer 2 Linear(in_features=64, out_features=10)': the path and the layer, for messages."""
        return f"layer {self.label} {self!r}" if self.label else repr(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _is_linear(module: object) -> bool:
    return type(module).__name__ == "Linear"


class SequentialBase(LayerBase[A]):
    """layers[-1](...layers[0](x)); backward runs them in reverse. A container: its children are
    named "0", "1", ... as in torch.nn.Sequential, and may be containers themselves.

    The outermost Sequential (the root) owns the network: it names every module by its path
    (``label``), packs every parameter (and every gradient) into views of two flat arrays
    (``flat_parameters``, ``flat_gradients``; a nested Sequential's are slices of the root's), so
    an optimizer updates the whole tree with a few whole-array operations, checks the input for
    NaN/Inf and returns a fresh output. Engines implement the array hooks below.

    Validation once, at the boundary: the root's first layer checks x and its last layer checks
    the delta backward() is given; the layers in between receive arrays their neighbours made.
    After a forward with an input of some type, shape, dtype and device (every layer in the same
    mode) has passed every layer's checks, later forwards with the same kind of input run the
    inner layers with their input checks off, and a backward after a completed forward runs them
    with their delta checks off (``input_trusted``, ``delta_trusted``: on only for the duration of
    the root's call, so a layer taken out of the tree checks everything).
    """

    accepts_input_grad = True

    def __init__(self, *layers: LayerBase[A]) -> None:
        self.layers = list(layers)
        self.training = True
        # False until a forward completes, and again after a refused one: backward then has
        # nothing consistent to differentiate (layers may hold parts of the refused batch).
        self.forward_done = False
        self.is_root = True
        for layer in self.layers:
            if isinstance(layer, SequentialBase):
                layer.is_root = False
        self._adopt()

    def children(self) -> dict[str, LayerBase[A]]:
        return {str(index): layer for index, layer in enumerate(self.layers)}

    def _adopt(self) -> None:
        """Name every module by its path, choose in-place activations and the fresh output, and
        pack the parameters: what a tree needs once it is complete (a parent redoes it)."""
        seen: dict[int, str] = {}
        for path, module in self.named_modules():
            if id(module) in seen:
                # One module object holds one forward's cache and one set of gradients: used twice,
                # its backward would differentiate only its last use.
                raise ValueError(f"{type(module).__name__} at {seen[id(module)] or 'the root'} is used again at "
                                 f"{path}: each place in a network needs its own layer object")
            seen[id(module)] = path
            module.label = path
        leaves = self.leaves()
        self._leaves = leaves
        self._inner_inputs, self._inner_deltas = leaves[1:], leaves[:-1]
        self._trusted_for: tuple[Any, ...] | None = None
        self._trust(False)
        self._trust_deltas(False)
        # An activation between two Linears may overwrite the first one's output buffer and the
        # delta the second one returns (its own dL/dx buffer): both are private to the trio, so
        # no extra buffers. Elsewhere its input or its delta may be an array the caller holds, or
        # one a layer differentiates itself from (a Tanh's output). The engines' private flag
        # ``_overwrite``, never the user's ``inplace=`` (torch's argument, which changes no result).
        for before, activation, after in zip(self.layers, self.layers[1:], self.layers[2:]):
            if hasattr(activation, "_overwrite") and _is_linear(before) and _is_linear(after):
                activation._overwrite = True  # type: ignore[attr-defined]
        for leaf in leaves:
            if hasattr(leaf, "fresh_output"):
                leaf.fresh_output = False  # type: ignore[attr-defined]
        # The root's output goes to the caller: a last Linear writes it into a new array (cheaper
        # than copying a buffer); any other last layer's output is copied in forward.
        self._fresh_last = hasattr(leaves[-1], "fresh_output") if leaves else False
        if self._fresh_last:
            leaves[-1].fresh_output = True  # type: ignore[attr-defined]
        # A first Linear mixes every feature of a row: a NaN/Inf in x shows in its (smaller)
        # output. Anything else (a nested block whose tanh may squash an Inf) gets x itself tested.
        self._first_records_input = _is_linear(self.layers[0]) if self.layers else False
        # Layers that record dL/d(their output): Linear (and Conv2d), whose deltas() are the backprop deltas.
        self.linears = [layer for layer in leaves if hasattr(layer, "delta")]
        self._pack()

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

    def _fresh(self, array: A) -> A:
        """A copy of an engine array (the root's output, when its last layer reuses a buffer)."""
        raise NotImplementedError

    def _check_finite(self, x: A, first_output: A) -> None:
        """NonFiniteError naming the first NaN/Inf entry of x (its full index). ``first_output``
        is the first layer's output when that layer mixes every feature of a row (a Linear: a NaN
        in x shows in its output, a much smaller array to test first), else x itself, tested
        before any layer runs; an x that is no floating array of the engine's type is left to the
        first layer's own checks."""
        raise NotImplementedError

    # -- bookkeeping ----------------------------------------------------------------------------
    def _named(self) -> list[tuple[str, LayerBase[A], str]]:
        return [(f"{path}.{attr}" if path else attr, module, attr)
                for path, module in self.named_modules() for attr in module.local_parameters()]

    def _pack(self) -> None:
        """Move every parameter and gradient into views of two flat arrays; a nested Sequential's
        flat arrays become the slices of them that hold its own parameters."""
        named = self._named()
        first = getattr(named[0][1], named[0][2]) if named else None  # None: no parameters at all
        shapes = [tuple(getattr(layer, attr).shape) for _, layer, attr in named]
        sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
        self.flat_parameters = self._flat_zeros(sum(sizes), first)
        self.flat_gradients = self._flat_zeros(sum(sizes), first)
        offset = 0
        offsets: dict[str, int] = {}
        for (key, layer, attr), shape, size in zip(named, shapes, sizes):
            offsets[key] = offset
            view = self._flat_view(self.flat_parameters, offset, shape)
            self._copy_in(view, getattr(layer, attr))
            setattr(layer, attr, view)
            setattr(layer, "grad_" + attr, self._flat_view(self.flat_gradients, offset, shape))
            offset += size
        for path, module in self.named_modules()[1:]:
            if isinstance(module, SequentialBase):
                inside = [(offsets[key], size) for (key, _, _), size in zip(named, sizes) if key.startswith(path + ".")]
                start = inside[0][0] if inside else 0
                total = sum(size for _, size in inside)
                module.flat_parameters = self._flat_view(self.flat_parameters, start, (total,))
                module.flat_gradients = self._flat_view(self.flat_gradients, start, (total,))

    def grads(self) -> dict[str, A]:
        """dL/dparameter of the last backward: the very arrays the optimizer reads."""
        return self.gradients()

    def deltas(self) -> list[A]:
        """dL/dz for each Linear's (and Conv2d's) output z (its pre-activation), first layer first."""
        return [layer.delta for layer in self.linears]  # type: ignore[attr-defined]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """State-dict key -> shape, in state-dict order."""
        return {name: tuple(value.shape) for name, value in self.state().items()}  # type: ignore[attr-defined]

    def state_dict(self) -> ModelState:
        """Copies of the parameters and buffers as NumPy arrays, torch's keys (Linear weights (in, out))."""
        return {name: self._numpy_copy(value) for name, value in self.state().items()}

    def load_state_dict(self, state: ModelState) -> None:
        """Copy values in (any engine's arrays); all-or-nothing: everything is checked first.

        Raises TypeError/ValueError naming the key (missing, extra, wrong shape, not floating
        point, NaN/Inf). A float64 value loaded into float32 rounds to nearest.
        """
        targets = self.state()
        dtype = dtype_name_of(next(iter(targets.values()))) if targets else None
        arrays = check_model_state(self.shapes(), state, dtype)
        for name, value in arrays.items():
            self._copy_in(targets[name], value)

    def zero_grad(self) -> None:
        """Set every gradient to 0 (the engines overwrite gradients anyway; for the protocol)."""
        self._zero(self.flat_gradients)

    # -- computation ----------------------------------------------------------------------------
    def _trust(self, on: bool) -> None:
        for leaf in self._inner_inputs:
            leaf.input_trusted = on

    def _trust_deltas(self, on: bool) -> None:
        for leaf in self._inner_deltas:
            leaf.delta_trusted = on

    def forward(self, x: A) -> A:
        """The last layer's output for x; the root's is a fresh array (internal buffers are
        reused). Raises what the layers raise for a bad x (naming the layer), and at the root
        NonFiniteError for NaN/Inf in x, whatever the first layer is, leaving every parameter and
        buffer (running statistics, dropout generators) as it was."""
        self.forward_done = False
        if not self.is_root:
            h = self._forward(x)
            self.forward_done = True
            return h
        # The kind of input, and every layer's mode (a child may be switched alone).
        signature = (x.__class__, getattr(x, "shape", None), getattr(x, "dtype", None),
                     getattr(x, "device", None), _MODE_CHANGES[0])
        trusted = signature == self._trusted_for
        self._trusted_for = None
        if trusted:
            self._trust(True)  # every layer has checked this kind of input before
        try:
            h = self._forward(x)
        finally:
            if trusted:
                self._trust(False)  # a layer taken out of the tree checks everything again
        if not self._fresh_last:
            h = self._fresh(h)
        self._trusted_for = signature
        self.forward_done = True
        return h

    def _forward(self, x: A) -> A:
        layers = self.layers
        if self.is_root and not self._first_records_input:
            # Before the first layer runs: it may keep state from its input (batch norm's running
            # statistics and counter, a dropout generator, a nested block's), and a refused call
            # leaves every parameter and buffer as it was. One pass over x, as the MLP's test.
            self._check_finite(x, x)
        h = layers[0].forward(x)
        if self.is_root and self._first_records_input:
            # A first Linear keeps no state: its (smaller) output is tested, x only when that fails.
            self._check_finite(x, h)
        for layer in layers[1:]:
            h = layer.forward(h)
        return h

    def check_forward_done(self, delta: object) -> None:
        """RuntimeError unless the last forward completed (none ran, or it was refused)."""
        if not self.forward_done:
            last = self.leaves()[-1]
            raise RuntimeError(backward_before_forward_message(
                last.describe(), shape_of(delta), "(the shape of the last forward's output)"))

    def backward(self, delta: A, input_grad: bool = True) -> A | None:
        """Fills every gradient; returns dL/dx (None with input_grad=False, which spares the
        first layer's input gradient that a training step never needs). RuntimeError when no
        forward completed since the last refused one."""
        self.check_forward_done(delta)
        if not self.is_root:
            return self._backward(delta, input_grad)
        # The last layer checks the caller's delta; the others get deltas their neighbours made
        # for the shapes the completed forward had.
        self._trust_deltas(True)
        try:
            return self._backward(delta, input_grad)
        finally:
            self._trust_deltas(False)

    def _backward(self, delta: A, input_grad: bool) -> A | None:
        first = self.layers[0]
        for layer in reversed(self.layers[1:]):
            delta = layer.backward(delta)  # type: ignore[assignment]
        if first.accepts_input_grad:
            return first.backward(delta, input_grad=input_grad)  # type: ignore[call-arg]
        return first.backward(delta)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({name}): " + repr(layer).replace("\n", "\n  ")
                        for name, layer in self.children().items())
        return f"{type(self).__name__}({inner}\n)"


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

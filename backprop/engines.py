"""Engines for the application: `--engine numpy|torch|autograd` or any module path (found by
engine_core.loading, the rule the parity harness's --engine shares: sys.path, then the current
directory), loaded and wrapped in one adapter, so that training, evaluation, bench and compare
never ask which engine they drive. What an engine needs from the trainer it declares itself (engine_core.traits:
ACCUMULATES_GRADIENTS, DEVICES, TRAINING_KWARGS); arrays move through its asarray / labels /
to_numpy, or stay NumPy when it has none.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

import engine_core
from engine_core import specs as layer_specs
from engine_core.bookkeeping import LayerBase
from engine_core.loading import ENGINES as ENGINES  # the short names, shared with the parity harness
from engine_core.loading import EngineNameError, EngineNotFoundError, import_engine, module_name
from engine_core.specs import LayerSpec, mlp_of

from .datasets import BatchFeeder


class EngineError(ValueError):
    """An engine that cannot be used (unknown, failing to import, incomplete, wrong device);
    the message is one line naming it."""


@dataclass
class Engine:
    """One engine module, its declared traits, the device it runs on, and how to talk to it.

    spec: what the user named it (``numpy`` or ``mypkg.my_engine``: what --engine takes to
    get it back); name: the engine's own NAME (stored in checkpoints).
    """

    spec: str
    module: ModuleType
    traits: engine_core.Traits
    device: str = "cpu"

    @property
    def name(self) -> str:
        return self.traits.name

    @property
    def on_cpu(self) -> bool:
        """Its arrays live in host memory (NumPy can see them without a copy)."""
        return self.device == "cpu"

    def _device_kwargs(self) -> dict[str, str]:
        # On the CPU nothing is passed, so modules that know no devices work unchanged.
        return {} if self.on_cpu else {"device": self.device}

    # -- building ---------------------------------------------------------------------------
    def build_net(self, network: LayerSpec, init: str, seed: int, dtype: str, training: bool = False) -> Any:
        """The network (a tree, engine_core.specs) in this engine on its device, its initial state
        drawn from ``seed`` by ``init``; ``training`` passes the engine's TRAINING_KWARGS to its
        Sequential.

        An engine without a Sequential (the protocol requires only MLP) gets an MLP tree through
        its own MLP(sizes, activation, init, seed, dtype), which draws the same initial state.
        Raises EngineError naming the layer (or the Sequential) the engine does not provide.
        """
        extra = dict(self.traits.training_kwargs) if training else {}
        found = mlp_of(network)
        if not hasattr(self.module, "Sequential") and found is not None:
            sizes, activation = found
            return self.module.MLP(sizes, activation=activation, init=init, seed=seed, dtype=dtype,
                                   **self._device_kwargs(), **extra)
        try:
            return layer_specs.build(self.module, network, dtype, seed, init, sequential_kwargs=extra,
                                     **self._device_kwargs())
        except AttributeError as error:
            if not str(error).startswith("engine "):
                raise
            kinds = sorted({spec.class_name for _, spec in network.walk()})
            raise EngineError(f"engine {self.spec!r} cannot build this network: {error} (the layers "
                              f"need {', '.join(kinds)})") from None

    def has_optimizer(self, name: str) -> bool:
        """Whether the module provides optimizer ``name`` (a key of engine_core.OPTIMIZERS)."""
        return hasattr(self.module, engine_core.OPTIMIZERS[name])

    def build_optimizer(self, net: Any, name: str, lr: float, momentum: float = 0.0, nesterov: bool = False,
                        weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                        eps: float = 1e-8) -> Any:
        """``SGD(net, lr, momentum, nesterov, weight_decay)`` or ``Adam``/``AdamW(net, lr, betas,
        eps, weight_decay)`` of this engine; EngineError when the module lacks that optimizer."""
        if not self.has_optimizer(name):
            raise EngineError(f"engine {self.spec!r} has no {engine_core.OPTIMIZERS[name]} (needed for "
                              f"--optimizer {name})")
        cls = getattr(self.module, engine_core.OPTIMIZERS[name])
        if name == "sgd":
            return cls(net, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        return cls(net, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def loss(self) -> Any:
        """A new SoftmaxCrossEntropy of this engine."""
        return self.module.SoftmaxCrossEntropy()

    # -- arrays -----------------------------------------------------------------------------
    def asarray(self, array: np.ndarray, dtype: str) -> Any:
        """A NumPy float array as the engine's array on its device (shares memory on the CPU when
        the engine's asarray does)."""
        if hasattr(self.module, "asarray"):
            return self.module.asarray(array, dtype, **self._device_kwargs())
        return np.asarray(array, dtype=dtype)

    def labels(self, array: np.ndarray) -> Any:
        """NumPy integer labels as the engine's array on its device."""
        if hasattr(self.module, "labels"):
            return self.module.labels(array, **self._device_kwargs())
        return np.asarray(array, dtype=np.int64)

    def to_numpy(self, array: Any) -> np.ndarray:
        """The engine's array as NumPy (no copy on the CPU for the engines here)."""
        if hasattr(self.module, "to_numpy"):
            return np.asarray(self.module.to_numpy(array))
        return np.asarray(array)

    def _conversion_shares_memory(self, dtype: str) -> bool:
        x, y = np.zeros((2, 3), dtype), np.zeros(2, np.int64)
        return bool(np.shares_memory(self.to_numpy(self.asarray(x, dtype)), x)
                    and np.shares_memory(self.to_numpy(self.labels(y)), y))

    def feeder(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> BatchFeeder:
        """A BatchFeeder handing out this engine's arrays, batches shaped like x's rows ((B, 784),
        or (B, 1, 28, 28) for x of images): views of its one buffer when the
        engine's conversion shares memory (the CPU engines here), a conversion per batch otherwise
        (a GPU, or an engine whose asarray copies)."""
        dtype = x.dtype.name
        return BatchFeeder(x, y, batch_size, seed, convert=lambda a: self.asarray(a, dtype), convert_labels=self.labels,
                           per_batch=not self._conversion_shares_memory(dtype))

    def argmax_hits(self, logits: Any, y: Any) -> int:
        """How many rows' largest logit is the label."""
        if self.on_cpu:
            # A CPU array is a NumPy array without a copy, and NumPy's small-array calls cost a
            # fraction of torch's dispatch.
            return int(np.count_nonzero(self.to_numpy(logits).argmax(1) == self.to_numpy(y)))
        return int((logits.argmax(1) == y).sum())

    def synchronize(self) -> None:
        """Wait for the device's queued work (timing); a no-op on the CPU."""
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()


def load_engine(spec: str, device: str = "cpu") -> Engine:
    """The engine ``spec`` names (numpy, torch, autograd, or a module path) on ``device``.

    The module is found by engine_core.loading.import_engine (sys.path, then the current directory).
    Raises EngineError naming ``spec`` when it is no known name and no importable module (saying
    where it was looked for), when importing it fails, when it lacks MLP, SoftmaxCrossEntropy or
    SGD, or when ``device`` is not among the DEVICES it declares.
    """
    try:
        module = import_engine(spec)
    except (EngineNameError, EngineNotFoundError) as error:
        raise EngineError(f"unknown engine {spec!r}: {error}") from None
    except Exception as error:  # the module's own code failed: report it, whatever it was
        raise EngineError(f"engine {spec!r}: importing {module_name(spec)} failed "
                          f"({type(error).__name__}: {' '.join(str(error).split())})") from None
    try:
        engine_core.check_engine_module(module)
    except AttributeError as error:
        raise EngineError(str(error)) from None
    traits = engine_core.traits(module)
    if device.split(":")[0] not in traits.devices:
        raise EngineError(f"engine {spec!r} runs on {', '.join(traits.devices)} (its DEVICES), not {device}")
    engine = Engine(spec, module, traits, device)
    _check_takes_batches(engine)
    return engine


def _check_takes_batches(engine: Engine) -> None:
    """EngineError unless the engine's MLP takes a batch converted by its asarray (NumPy arrays
    as they are when it has none): an engine of another array type needs asarray/labels/to_numpy."""
    if engine.device != "cpu":
        return  # nothing runs on a device before training; its own errors will name the problem
    try:
        net = engine.module.MLP([2, 2], seed=0, dtype="float32")
        net.forward(engine.asarray(np.zeros((1, 2), np.float32), "float32"))
    except (TypeError, ValueError) as error:
        missing = [name for name in ("asarray", "labels", "to_numpy") if not hasattr(engine.module, name)]
        hint = (f"; it provides no {', '.join(missing)} to convert NumPy batches (see engine_core.protocol)"
                if missing else "")
        raise EngineError(f"engine {engine.spec!r}: its MLP refuses a converted batch ({error}){hint}") from None


@contextlib.contextmanager
def training_numerics() -> Iterator[None]:
    """Inside: NumPy's overflow/invalid warnings off, and denormal floats flushed to zero.

    Warnings: the engines check for NaN/Inf themselves and raise NonFiniteError saying where,
    so NumPy's RuntimeWarnings about the same values would only be noise before that; outside
    training loops they stay on. Denormals (below 1.2e-38 in float32): x86 handles them in
    microcode, ~100x slower; Adam's moments of units that stopped receiving gradient decay
    through that range and slowed a NumPy epoch 2x. torch's switch sets the CPU flags (FTZ/DAZ)
    of the calling thread, which NumPy's loops share; values that small are below every
    tolerance in the parity suite. Both are restored on exit.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            import torch
        except ImportError:
            yield
            return
        torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_flush_denormal(False)


def set_mode(net: Any, training: bool) -> None:
    """net.train() or net.eval(), as torch.nn.Module's, when the net has them (an external
    engine's MLP may not: it has no layer whose behaviour depends on the mode)."""
    method = getattr(net, "train" if training else "eval", None)
    if callable(method):
        method()


def inference_mode() -> contextlib.AbstractContextManager[Any]:
    """A context for forward-only passes: torch's no_grad when torch is loaded (so autograd
    engines record no graph), nothing otherwise (it changes nothing for other engines)."""
    torch = sys.modules.get("torch")
    return torch.no_grad() if torch is not None else contextlib.nullcontext()


def layer_at(net: Any, path: str) -> Any:
    """The module at a dotted path of a tree ("4", "1.0", "2.self_attn.attn_dropout"), any
    engine's: a Sequential's children by index (each keeps them in ``layers``), a composite
    layer's parts by name (an engine layer's children(); the oracle's torch modules' attributes)."""
    module = net
    for part in path.split("."):
        if hasattr(module, "layers"):
            module = module.layers[int(part)]
        elif isinstance(module, LayerBase):
            module = module.children()[part]
        else:
            module = getattr(getattr(module, "module", module), part)
    return module

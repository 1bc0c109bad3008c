"""The adapter the properties drive every engine through.

An engine is a Python module that speaks engine_core.protocol (docs/harness.md, "Test your own
engine", lists it): MLP, SoftmaxCrossEntropy, SGD; optionally Adam, AdamW and the array
conversions asarray, labels and to_numpy (without them NumPy arrays are passed as they are).
--engine takes what `backprop --engine` takes, found by the same rule (engine_core.loading):
numpy, torch, autograd, or a module path looked for on sys.path, then in the current directory.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any, overload

import numpy as np
import pytest

from engine_core.loading import ENGINES, import_engine
from engine_core.protocol import check_engine_module

ORACLE = ENGINES["autograd"]


class Engine:
    """A loaded engine module plus its array conversions."""

    def __init__(self, module: ModuleType) -> None:
        check_engine_module(module)
        self.module = module
        self.name = module.__name__

    def __repr__(self) -> str:
        return f"Engine({self.name})"

    def __getattr__(self, item: str) -> Any:
        return getattr(self.module, item)

    def has(self, item: str) -> bool:
        """Whether the engine provides an optional part of the protocol (Adam, AdamW, ...)."""
        return hasattr(self.module, item)

    def require(self, *items: str, why: str = "optional in the engine protocol") -> None:
        """Skip the calling test, naming what is missing and ``why`` it may be, unless the engine
        provides every one of ``items``: a part the engine lacks is reported, not failed."""
        missing = [item for item in items if not self.has(item)]
        if missing:
            pytest.skip(f"{self.name} has no {', '.join(missing)} ({why})")

    def require_layers(self, *kinds: str, why: str) -> None:
        """require() for the layer classes of ``kinds`` (engine_core.specs kind names, e.g.
        "conv2d") and a Sequential to hold them."""
        from engine_core.specs import KINDS

        self.require(*(KINDS[kind].class_name for kind in kinds), "Sequential", why=why)

    def missing_arguments(self, kind: str) -> list[str]:
        """The arguments of a catalog kind (engine_core.specs.KINDS, torch's names) that the
        engine's layer class does not take: absent from its constructor's signature (none when
        the constructor takes **kwargs, or when the engine lacks the class altogether)."""
        from engine_core.specs import KINDS

        cls = getattr(self.module, KINDS[kind].class_name, None)
        if cls is None:
            return []
        try:
            parameters = inspect.signature(cls).parameters
        except (TypeError, ValueError):  # a builtin or C class without a readable signature: trust it
            return []
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return []
        return [name for name in KINDS[kind].defaults if name not in parameters]

    def unsupported(self, spec: Any) -> list[str]:
        """The arguments a drawn LayerSpec sets away from torch's default that the engine's layer
        class does not take (missing_arguments): such a case cannot be built in this engine."""
        from engine_core.specs import given_args

        missing = self.missing_arguments(spec.kind)
        return [name for name in given_args(spec) if name in missing]

    def asarray(self, array: np.ndarray, dtype: str) -> Any:
        if hasattr(self.module, "asarray"):
            return self.module.asarray(array, dtype)
        return np.asarray(array, dtype=dtype)

    def labels(self, array: np.ndarray) -> Any:
        if hasattr(self.module, "labels"):
            return self.module.labels(array)
        return np.asarray(array, dtype=np.int64)

    @overload
    def to_numpy(self, array: None) -> None: ...

    @overload
    def to_numpy(self, array: Any) -> np.ndarray: ...

    def to_numpy(self, array: Any) -> np.ndarray | None:
        """A copy of the engine's array as a NumPy array (None stays None: a backward that returns
        no dL/dx)."""
        if array is None:
            return None
        if hasattr(self.module, "to_numpy"):
            return np.array(self.module.to_numpy(array), copy=True)
        return np.array(array, copy=True)


def load_engine(name: str) -> Engine:
    """The engine ``name`` names (numpy, torch, autograd or a module path: engine_core.loading's
    import_engine), wrapped; EngineNameError, EngineNotFoundError (saying where it looked), the
    module's own error while importing, or AttributeError if it lacks what the protocol requires."""
    return Engine(import_engine(name))


def oracle() -> Engine:
    """torch autograd behind the same interface."""
    return load_engine(ORACLE)

"""engine_core: the contract every engine builds on, stated once (imports NumPy only).

- naming: activation/init/dtype/optimizer names
- specs: the layer catalog and networks as trees (state keys, shapes, initial state, build)
- errors: NonFiniteError and the builder of every message a user can cause
- checks: every validator (sizes, choices, dtypes, hyper-parameters, model and optimizer state)
- formats: the state formats (TypedDicts)
- bookkeeping: base classes for parameter packing and optimizer state save/load
- protocol: the engine protocol (typing.Protocol) and an engine's declared traits
- loading: engine names (numpy, torch, autograd) and how a module path is found, one rule for
  `backprop --engine` and the harness's --engine (import_engine)

numpy_net and torch_net hold only what is worth reading side by side: the layers', the loss's
and the optimizers' math, buffer allocation and the array-typed input checks.
"""

from .bookkeeping import LayerBase, OptimizerBase, SequentialBase
from .checks import (
    check_adam,
    check_choice,
    check_dtype_name,
    check_model_state,
    check_optimizer_state,
    check_sgd,
    check_sizes,
    expected_buffers,
    native,
)
from .errors import NonFiniteError
from .formats import ModelState, OptimizerState
from .naming import ACTIVATION_NAMES, DTYPES, INITS, OPTIMIZER_BUFFERS, OPTIMIZERS
from .protocol import Loss, Model, Optimizer, Traits, check_engine_module, traits

__all__ = [
    "ACTIVATION_NAMES", "DTYPES", "INITS", "OPTIMIZERS", "OPTIMIZER_BUFFERS", "LayerBase", "Loss", "Model",
    "ModelState", "NonFiniteError", "Optimizer", "OptimizerBase", "OptimizerState", "SequentialBase", "Traits",
    "check_adam", "check_choice", "check_dtype_name", "check_engine_module", "check_model_state",
    "check_optimizer_state", "check_sgd", "check_sizes", "expected_buffers",
    "native", "traits",
]

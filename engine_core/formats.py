"""The state formats every engine reads and writes (NumPy arrays, whatever the engine)."""

from __future__ import annotations

from typing import TypedDict

import numpy as np

# A model state dict: parameter name (engine_core.naming.parameter_shapes) -> array, weights (in, out).
ModelState = dict[str, np.ndarray]


class OptimizerState(TypedDict):
    """What ``optimizer.state_dict()`` returns and ``load_state_dict`` takes, in every engine.

    step: optimizer steps taken (int >= 0); lr: the current learning rate;
    state: buffer name (torch.optim's: momentum_buffer, exp_avg, exp_avg_sq, max_exp_avg_sq)
    -> parameter name -> array of that parameter's shape.
    """

    step: int
    lr: float
    state: dict[str, dict[str, np.ndarray]]

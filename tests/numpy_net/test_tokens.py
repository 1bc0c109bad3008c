"""A vision transformer's token layers (numpy_net/tokens.py and its twin torch_net/tokens.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("engine", ["numpy_net", "torch_net"])
def test_a_shorter_sequence_leaves_no_gradient_on_the_positions_it_did_not_reach(engine):
    """backward replaces the gradient: after a sequence of 5 steps, one of 2 gives the positions 2-4
    exactly 0 (a backward that only writes the first T rows keeps the longer call's there)."""
    import importlib

    module = importlib.import_module(engine)
    layer = module.PositionalEmbedding(5, 3, batch_first=True, dtype="float64")
    rng = np.random.default_rng(0)
    for steps in (5, 2):
        layer.forward(module.asarray(rng.standard_normal((2, steps, 3)), "float64"))
        layer.backward(module.asarray(rng.standard_normal((2, steps, 3)), "float64"))
    grad = np.asarray(module.to_numpy(layer.grad_weight))
    assert not grad[2:].any() and grad[:2].all()

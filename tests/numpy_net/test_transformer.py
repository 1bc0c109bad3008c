"""The transformer encoder layer (numpy_net/transformer.py and its twin torch_net/transformer.py)."""

from __future__ import annotations

import numpy as np
import pytest

from engine_core.specs import LayerSpec, build, paths_of


@pytest.mark.parametrize("engine", ["numpy_net", "torch_net"])
def test_without_dropout_train_and_eval_mode_give_the_same_encoder_layer(engine):
    """dropout=0.0: no mask is drawn, so train() and eval() compute the same output and dL/dx (torch's
    own eval fast path is not the reference; the oracle's forward is its documented formula)."""
    import importlib

    module = importlib.import_module(engine)
    spec = LayerSpec("transformerencoderlayer", {"d_model": 6, "nhead": 3, "dim_feedforward": 7, "dropout": 0.0,
                                                 "batch_first": True})
    net = build(module, [spec], "float64", seed=2)
    x = module.asarray(np.random.default_rng(0).standard_normal((2, 4, 6)), "float64")
    delta = module.asarray(np.random.default_rng(1).standard_normal((2, 4, 6)), "float64")
    results = []
    for training in (True, False):
        net.train(training)
        out = np.array(module.to_numpy(net.forward(x)))
        results.append((out, np.array(module.to_numpy(net.backward(delta)))))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert paths_of([spec], "dropout") == ["0.dropout", "0.dropout1", "0.dropout2"]  # no attn_dropout at p = 0

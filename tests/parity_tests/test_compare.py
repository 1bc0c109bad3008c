"""The harness's comparison of passes (parity_tests/compare.py): what a report names."""

from __future__ import annotations

import numpy as np
import pytest

from parity_tests.compare import Mismatch, check_close, compare_passes, run_pass
from parity_tests.engines import load_engine, oracle
from parity_tests.strategies import Batch, NetSpec

NOTEBOOK = "parity_tests.fixtures.notebook_engine"


def test_the_harness_finds_the_activation_derivative_taken_from_the_next_layer():
    """With the bias bug out of the way (batch of one), the deltas give the second bug away."""
    spec = NetSpec(sizes=(3, 4, 4, 2), activation="tanh", init="xavier_normal", seed=1, dtype="float64")
    batch = Batch(x=np.array([[0.5, -1.0, 2.0]]), y=np.array([1]))
    ref_engine, engine = oracle(), load_engine(NOTEBOOK)
    ref_net = spec.build(ref_engine)
    ref = run_pass(ref_engine, ref_net, spec, batch)
    pre = [ref_engine.to_numpy(z) for z in ref_net.pre_activations()]
    with pytest.raises(Mismatch, match=r"deltas\[0\] \(dL/dz of the Linear or Conv2d number 0\) differs"):
        compare_passes(run_pass(engine, spec.build(engine), spec, batch), ref, spec, pre, NOTEBOOK)


def test_a_mismatch_summarises_a_large_array_instead_of_printing_it():
    want = np.zeros((16, 32))
    got = want.copy()
    got[3, 4], got[5, 6] = 0.5, 0.25
    with pytest.raises(Mismatch) as info:
        check_close("engine: grads['0.weight']", got, want, 1.0, "float64")
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message
    assert "differs at index (3, 4): expected 0.0, got 0.5" in message
    assert "2 of 512 elements (shape (16, 32)) out of tolerance" in message

    got[7, 8] = np.nan
    with pytest.raises(Mismatch) as info:
        check_close("engine: dL/dx", got, want, 1.0, "float64")
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message
    assert "1 non-finite value(s) of 512 (shape (16, 32)), the first at index (7, 8): nan, expected 0.0" in message

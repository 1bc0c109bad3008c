"""The suite as a harness for any engine: it rejects the original notebook's backprop with a
report a person can act on, and accepts numpy_net and torch_net."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from .compare import Mismatch, compare_passes, run_pass
from .engines import load_engine, oracle
from .strategies import Batch, NetSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = "parity_tests.fixtures.notebook_engine"


def _pytest(*args):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "HYPOTHESIS_PROFILE": "ci"})


def test_the_harness_rejects_the_notebook_engine_naming_the_bias_gradient():
    result = _pytest("parity_tests/test_gradients.py::test_logits_loss_deltas_and_gradients_equal_autograds",
                     "--engine", NOTEBOOK)
    assert result.returncode == 1, result.stdout[-3000:]
    out = result.stdout
    # Which property, which parameter, expected vs got, and the smallest network that shows it.
    assert "test_logits_loss_deltas_and_gradients_equal_autograds" in out
    assert "grads['fc0.bias'] differs" in out and "expected" in out and "got" in out
    assert "NetSpec(sizes=(1, " in out and "Batch(" in out


def test_the_harness_reports_the_first_step_a_trajectory_left_tolerance():
    result = _pytest("parity_tests/test_optimizers.py::test_sgd_trajectories_and_momentum_buffers_stay_in_agreement",
                     "--engine", NOTEBOOK)
    assert result.returncode == 1
    assert "first step out of tolerance: " in result.stdout and "SGDSpec(" in result.stdout


def test_the_harness_finds_the_activation_derivative_taken_from_the_next_layer():
    """With the bias bug out of the way (batch of one), the deltas give the second bug away."""
    spec = NetSpec(sizes=(3, 4, 4, 2), activation="tanh", init="xavier_normal", seed=1, dtype="float64")
    batch = Batch(x=np.array([[0.5, -1.0, 2.0]]), y=np.array([1]))
    ref_engine, engine = oracle(), load_engine(NOTEBOOK)
    ref_net = spec.build(ref_engine)
    ref = run_pass(ref_engine, ref_net, spec, batch)
    pre = [ref_engine.to_numpy(z) for z in ref_net.pre_activations()]
    with pytest.raises(Mismatch, match=r"deltas\[0\] \(dL/dz of fc0\) differs"):
        compare_passes(run_pass(engine, spec.build(engine), spec, batch), ref, spec, pre, NOTEBOOK)


def test_the_harness_accepts_numpy_net_and_torch_net_named_on_the_command_line():
    result = _pytest("parity_tests/test_gradients.py", "parity_tests/test_optimizers.py",
                     "--engine", "numpy_net", "--engine", "torch_net")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "[numpy_net]" not in result.stdout or "passed" in result.stdout

"""Engines trained in lockstep (backprop/lockstep.py, what `backprop compare` measures): divergence,
the first step past the tolerance, float64 agreement, clipping in every engine."""

from __future__ import annotations

import math

import numpy as np

from backprop.cli import main
from backprop.engines import load_engine
from backprop.lockstep import LockstepSettings, divergence, first_exceeding, run_lockstep, summary
from engine_core.specs import mlp


def test_divergence_is_max_abs_and_normwise_relative_difference():
    reference = {"w": np.array([[1.0, -4.0], [2.0, 0.0]]), "b": np.zeros(2)}
    other = {"w": np.array([[1.0, -4.5], [2.0, 1e-3]]), "b": np.zeros(2)}
    result = divergence(reference, other)
    assert result["w"] == (0.5, 0.5 / 4.0)
    assert result["b"] == (0.0, 0.0)
    assert divergence({"b": np.zeros(1)}, {"b": np.ones(1)})["b"] == (1.0, math.inf)


def test_first_exceeding_finds_the_first_step_over_tolerance():
    rows = [{"step": s, "max_rel_diff": d} for s, d in [(1, 0.0), (2, 1e-9), (3, 2e-6), (4, 1e-7)]]
    assert first_exceeding(rows, 1e-6)["step"] == 3
    assert first_exceeding(rows, 1e-5) is None


def test_lockstep_engines_in_float64_stay_together_and_the_summary_says_so():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 784)), rng.integers(0, 10, 40)
    settings = LockstepSettings(network=mlp([784, 6, 10], "tanh"), init="xavier_normal", dtype="float64",
                                batch_size=16, seed=2, optimizer="sgd", lr=0.05, momentum=0.9, steps=5)
    engines = [load_engine("numpy"), load_engine("torch"), load_engine("autograd")]
    rows = run_lockstep(engines, x, y, settings)
    assert [(r["step"], r["engine"]) for r in rows[:4]] == [(1, "torch"), (1, "autograd"),
                                                             (2, "torch"), (2, "autograd")]
    assert len(rows) == 10 and max(r["max_rel_diff"] for r in rows) < 1e-12
    lines, exceeded = summary(rows, "torch", "numpy", 1e-9)
    assert not exceeded and lines[1] == "  within --tol 1e-09 for all 5 steps"


def test_compare_clips_in_every_engine_and_they_stay_in_lockstep(tmp_path, capsys):
    """float64 lockstep with clipping: every engine within 1e-10 of numpy's parameters at every
    step, on a trajectory that clipping really changed (its losses differ from the unclipped run's)."""
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 784)), rng.integers(0, 10, 64)
    engines = [load_engine(name) for name in ("numpy", "torch", "autograd")]
    settings = dict(network=mlp([784, 8, 10], "tanh"), init="xavier_normal", dtype="float64", batch_size=16,
                    seed=0, optimizer="sgd", lr=0.5, momentum=0.9, steps=6)
    clipped = run_lockstep(engines, x, y, LockstepSettings(**settings, clip_grad_norm=0.01))
    plain = run_lockstep(engines, x, y, LockstepSettings(**settings))
    assert max(row["max_rel_diff"] for row in clipped) <= 1e-10
    assert all(abs(a["loss"] - b["loss"]) > 1e-6 for a, b in zip(clipped[2:], plain[2:]))  # step 2 on
    assert main(["compare", "--engines", "numpy,torch", "--hidden", "8", "--limit", "64", "--batch-size", "16",
                 "--steps", "4", "--clip-grad-norm", "0.01", "--tol", "1e-10", "--quiet", "--out",
                 str(tmp_path / "cmp")]) == 0
    assert ", clip grad norm 0.01, 4 steps" in capsys.readouterr().out

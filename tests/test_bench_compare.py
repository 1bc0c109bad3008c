"""Measurement logic of `backprop bench` and `backprop compare` (no wall-clock asserts)."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from backprop.benchmark import BenchSettings, bench_case, format_table
from backprop.engines import load_engine
from backprop.floor import make_floor
from backprop.gemms import gemm_library, step_flops, training_gemms
from backprop.lockstep import LockstepSettings, divergence, first_exceeding, run_lockstep, summary
from engine_core.specs import mlp

from .helpers import run_cli


def test_the_floor_counts_three_gemms_per_layer_but_the_first_layers_input_gradient():
    gemms = training_gemms([784, 64, 10], batch=32)
    shapes = [(g.m, g.k, g.n) for g in gemms]
    assert shapes == [
        (32, 784, 64),  # layer 0 forward x@W
        (32, 64, 10),  # layer 2 forward
        (64, 32, 10),  # layer 2 grad_weight = a^T delta
        (32, 10, 64),  # layer 2 input grad = delta W^T
        (784, 32, 64),  # layer 0 grad_weight; layer 0's input grad is never needed
    ]
    assert [g.what for g in gemms] == ["0.linear forward x@W", "2.linear forward x@W",
                                       "2.linear grad_weight x^T@delta", "2.linear input grad delta@W^T",
                                       "0.linear grad_weight x^T@delta"]  # named by the layer's path
    assert len(training_gemms([784, 64, 64, 64, 64, 64, 10], 32)) == 3 * 6 - 1


def test_the_floor_flops_are_two_m_k_n_summed():
    sizes, batch = [784, 64, 64, 64, 64, 64, 10], 32
    forward = sum(2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    backward_weights = forward
    backward_inputs = forward - 2 * batch * 784 * 64
    assert step_flops(sizes, batch) == forward + backward_weights + backward_inputs


def test_the_floor_runs_the_gemms_it_counts():
    for library in ("numpy", "torch"):
        run = make_floor(library, [5, 4, 3], 2, "float64")
        run()  # no error: every operand has the shape its Gemm says


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


def _cli(*args):
    return run_cli(*args)


def test_bench_case_measures_every_engine_from_plain_settings():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 784)).astype(np.float32), rng.integers(0, 10, 64)
    engines = [load_engine("numpy"), load_engine("autograd")]
    assert [gemm_library(e) for e in engines] == ["numpy", "torch"]
    rows = bench_case(engines, "notebook", 16, BenchSettings(steps=2, repeats=1, warmup=1, blas_threads=1,
                                                                             floor_min_time=1e-4), x, y)
    assert [r["engine"] for r in rows] == ["numpy", "autograd"]
    assert all(r["steps_timed"] == 2 and r["s_per_epoch"] > 0 and 0 < r["feed_fraction"] for r in rows)
    table = format_table(rows).splitlines()
    assert table[0].split()[:3] == ["workload", "batch", "engine"] and len(table) == 4
    assert len(format_table(rows, header=False).splitlines()) == 2


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


def test_compare_exits_non_zero_when_the_tolerance_is_exceeded(data_root, tmp_path):
    common = ["compare", "--engines", "numpy,torch", "--dataset", "fashion-mnist", "--data-dir", data_root,
              "--hidden", "16", "--batch-size", "16", "--steps", "12", "--quiet"]
    tight = _cli(*common, "--dtype", "float32", "--tol", "0", "--out", str(tmp_path / "a"))
    assert tight.returncode == 1, tight.stdout + tight.stderr
    assert "exceeds --tol 0 first at step" in tight.stdout
    loose = _cli(*common, "--dtype", "float64", "--tol", "1e-9", "--out", str(tmp_path / "b"))
    assert loose.returncode == 0, loose.stdout + loose.stderr
    assert "within --tol 1e-09 for all 12 steps" in loose.stdout
    with open(tmp_path / "b" / "compare.csv") as f:
        header = f.readline().strip().split(",")
    assert header[:9] == ["step", "engine", "reference", "loss", "loss_diff", "max_abs_diff", "max_rel_diff",
                          "worst_param", "abs:0.weight"]
    assert os.path.getsize(tmp_path / "b" / "compare.png") > 0


def test_bench_writes_rows_for_every_engine_workload_and_batch_size(tmp_path):
    out = tmp_path / "bench"
    result = _cli("bench", "--engines", "numpy,torch,autograd", "--workloads", "notebook", "--batch-sizes",
                  "8,16", "--steps", "3", "--repeats", "2", "--warmup", "1", "--no-compile", "--blas-threads", "1",
                  "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.load(open(out / "bench.json"))
    rows = report["rows"]
    assert {(r["engine"], r["batch_size"]) for r in rows} == {
        (e, b) for e in ("numpy", "torch", "autograd") for b in (8, 16)}
    for row in rows:
        assert row["workload"] == "notebook" and row["dtype"] == "float32"
        # the median over the repeats of each repeat's engine time over its floor time
        assert row["ratio_min"] <= row["ratio_to_floor"] <= row["ratio_max"]
        assert row["s_per_epoch_min"] <= row["s_per_epoch"] <= row["s_per_epoch_max"]
        assert row["samples_per_s"] > 0
        assert row["below_floor"] == (row["ratio_to_floor"] < 1) and row["floor_formulations"]
        assert row["threads"] >= 1 and set(row["phases_s"]) >= {"feed", "forward", "loss", "backward", "update"}
    assert report["below_floor"] == [line for line in report["below_floor"] if "ran below its" in line]
    assert report["compiled"] == {"requested": False, "available": False, "reason": "--no-compile"}
    assert report["isolation"] == "process" and len({r["pid"] for r in rows}) == 2  # a process per batch size
    assert report["machine"]["cpu_count"] and "numpy" in report["machine"]
    assert os.path.getsize(out / "bench.png") > 0


def test_the_compiled_rows_probe_drops_only_torchs_cpu_only_cuda_notice(monkeypatch):
    # torch.compile logs "No CUDA runtime is found" on every CPU-only machine, which printed a
    # line of noise above bench's table; other records of that logger must still come through.
    import logging

    import torch

    from backprop.benchmark import CompiledReference

    monkeypatch.setattr(torch, "compile", lambda model: model)  # the probe, without compiling
    logger = logging.getLogger("torch.utils.cpp_extension")
    monkeypatch.setattr(logger, "filters", [])
    for _ in range(2):  # a second probe adds no second filter
        assert CompiledReference(load_engine("autograd")).available()
    assert len(logger.filters) == 1

    def passes(message: str) -> bool:
        return bool(logger.filter(logging.LogRecord(logger.name, logging.WARNING, __file__, 1, message, None, None)))

    assert not passes("No CUDA runtime is found, using CUDA_HOME='/usr/local'")
    assert passes("Error building extension 'x'")

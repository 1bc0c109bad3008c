"""The measurement of `backprop bench` (backprop/benchmark.py): bench cases per engine with phases,
floor formulations and threads, spread and unstable rows, a process per case, the compiled rows
(fake timers where possible; no wall-clock assertions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backprop import threads
from backprop.benchmark import (
    PHASES,
    WORKLOADS,
    BenchSettings,
    CompiledReference,
    below_floor,
    bench_case,
    default_steps,
    floor_warnings,
    format_table,
    formulation_summary,
    noise_warning,
    spread,
    unstable,
    unstable_warnings,
    workload_gemms,
)
from backprop.engines import load_engine
from backprop.gemms import gemm_library


def test_bench_case_measures_every_engine_from_plain_settings():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 784)).astype(np.float32), rng.integers(0, 10, 64)
    engines = [load_engine("numpy"), load_engine("autograd")]
    assert [gemm_library(e) for e in engines] == ["numpy", "torch"]
    rows = bench_case(engines, "notebook", 16, BenchSettings(settle_s=0.0, steps=2, repeats=1, warmup=1, blas_threads=1,
                                                                             floor_min_time=1e-4), x, y)
    assert [r["engine"] for r in rows] == ["numpy", "autograd"]
    assert all(r["steps_timed"] == 2 and r["s_per_epoch"] > 0 and 0 < r["feed_fraction"] for r in rows)
    table = format_table(rows).splitlines()
    assert table[0].split()[:3] == ["workload", "batch", "engine"] and len(table) == 4
    assert len(format_table(rows, header=False).splitlines()) == 2


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


def test_the_summary_gives_trains_rule_beside_the_measured_count():
    assert formulation_summary([_row("numpy", threads_rule=2)])[0].startswith(
        "notebook 32 numpy floor, 1 thread (train's auto: 2): ")


# -- bench bookkeeping --------------------------------------------------------------------------
def test_default_steps_is_a_quarter_epoch_bounded_by_the_time_budget():
    assert default_steps(1875, 1e-4, budget_s=1.0) == 468  # fast steps: a quarter epoch
    assert default_steps(938, 0.05, budget_s=1.0) == 20  # slow steps: what fits in a second
    assert default_steps(938, 0.5, budget_s=1.0) == 10  # but never fewer than 10
    assert default_steps(8, 0.0, budget_s=1.0) == 50  # short epochs: enough steps for a median
    assert default_steps(59, 3e-3, budget_s=1.0) == 50  # batch 1024: not a quarter epoch's 14 steps


def _row(engine="numpy", ratio=1.5, **extra):
    row = {"engine": engine, "workload": "notebook", "batch_size": 32, "dtype": "float32", "s_per_epoch": ratio,
           "samples_per_s": 1000.0, "floor_s_per_epoch": 1.0, "floor_samples_per_s": 1.0, "ratio_to_floor": ratio,
           "below_floor": below_floor(ratio), "floor_library": "numpy", "threads": 1, "feed_fraction": 0.1,
           "gflops": 1.0, "steps_timed": 100, "repeats": 5, "seconds_per_repeat": 1.0,
           "floor_formulations": [{"formulation": "dot out= W(in,out) batch-major"},
                                  {"formulation": "matmul W(out,in) feature-major"},
                                  {"formulation": "dot out= W(in,out) batch-major"}]}
    return {**row, **extra}


def test_a_row_below_its_floor_is_flagged_warned_and_marked():
    assert below_floor(0.99) and not below_floor(1.0)
    rows = [_row("numpy", 1.2), _row("torch", 0.9)]
    warnings = floor_warnings(rows)
    assert len(warnings) == 1 and warnings[0].startswith("torch on notebook at batch 32 ran below its numpy floor "
                                                         "(0.90x)")
    table = format_table(rows).splitlines()
    assert table[2].split()[6] == "1.20" and table[3].split()[6] == "0.90!"


def test_spread_reports_the_interquartile_range_over_the_median():
    assert spread([1.0, 2.0, 4.0]) == {"min": 1.0, "median": 2.0, "max": 4.0, "q1": 1.5, "q3": 3.0, "spread": 0.75}
    # One repeat in five three times slower moves the range, not the quartiles (2nd and 4th values).
    assert spread([1.0, 1.1, 1.0, 3.0, 0.9]) == pytest.approx(
        {"min": 0.9, "median": 1.0, "max": 3.0, "q1": 1.0, "q3": 1.1, "spread": 0.1})
    assert spread([3.0])["spread"] == 0.0
    assert spread([0.0, 0.0])["spread"] == 0.0 and math.isinf(spread([0.0, 0.0, 0.0, 1.0])["spread"])
    with pytest.raises(ValueError):
        spread([])


def test_a_row_is_unstable_when_its_ratio_or_its_floor_moved_past_the_threshold():
    assert not unstable(0.10, 0.10) and unstable(0.11, 0.0) and unstable(0.0, 0.11)
    assert unstable(0.05, 0.0, threshold=0.04)
    rows = [_row("numpy", 1.2, ratio_spread=0.04, unstable=False),
            _row("torch", 1.3, ratio_spread=0.25, unstable=True, ratio_min=1.1, ratio_max=1.4, floor_spread=0.02)]
    table = format_table(rows).splitlines()
    assert table[0].split()[9] == "spread"  # after "floor s/ep" and "x floor"
    assert table[2].split()[7] == "4%" and table[3].split()[7] == "25%?"
    (warning,) = unstable_warnings(rows)
    assert warning.startswith("torch on notebook at batch 32 is unstable") and "1.10-1.40x over 5 repeats" in warning
    assert "(interquartile 25% of the median) and its floor's 2%" in warning


def test_formulation_summary_counts_the_winners_per_case():
    assert formulation_summary([_row("numpy"), _row("other")]) == [
        "notebook 32 numpy floor, 1 thread: dot out= W(in,out) batch-major x2, matmul W(out,in) feature-major x1"]


def test_noise_warning_spares_long_repeats_of_few_steps():
    assert noise_warning([_row(steps_timed=10, seconds_per_repeat=2.0)]) is None
    assert "10 timed steps" in noise_warning([_row(steps_timed=10, seconds_per_repeat=0.1)])
    assert "2 repeats" in noise_warning([_row(repeats=2)])


def test_bench_case_times_lenet_with_phases_floor_formulations_and_threads():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
    engines = [load_engine("numpy"), load_engine("autograd")]
    settings = BenchSettings(settle_s=0.0, steps=2, repeats=1, warmup=1, blas_threads=1, floor_min_time=1e-4)
    rows = bench_case(engines, "lenet", 4, settings, x, y)
    assert [r["engine"] for r in rows] == ["numpy", "autograd"]
    for row in rows:
        assert set(row["phases_s"]) == set(PHASES) and all(v >= 0 for v in row["phases_s"].values())
        assert len(row["floor_formulations"]) == 14 and row["threads"] == 1 and row["blas_threads"] == 1
        assert row["ratio_min"] <= row["ratio_to_floor"] <= row["ratio_max"] and row["ratio_spread"] >= 0
        assert row["below_floor"] == (row["ratio_to_floor"] < 1)
        assert row["threads_rule"] == threads.rule_threads(workload_gemms("lenet", 4))  # beside the measured one
    assert rows[1]["torch_threads"] == 1
    # The hand-written engine's layers, one by one in forward order; autograd's run inside torch.nn.
    layers = rows[0]["layers_ms"]
    assert [entry["layer"].split("(")[0] for entry in layers] == [
        "0 Conv2d", "1 ReLU", "2 MaxPool2d", "3 Conv2d", "4 ReLU", "5 MaxPool2d", "6 Flatten", "7 Linear", "8 ReLU",
        "9 Linear", "10 ReLU", "11 Linear"]
    assert all(entry["forward_ms"] > 0 and entry["backward_ms"] > 0 for entry in layers)
    assert rows[1]["layers_ms"] is None


def test_the_per_layer_pass_leaves_the_layers_methods_as_they_were():
    from backprop.benchmark import engine_runner, layer_profile

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
    runner = engine_runner(load_engine("torch"), "notebook", 4, BenchSettings(), x, y)
    profile = layer_profile(runner, 2)
    assert profile is not None and len(profile) == len(runner.net.layers)
    assert all("forward" not in vars(layer) and "backward" not in vars(layer) for layer in runner.net.layers)


def test_a_case_runs_in_a_fresh_process_and_returns_its_rows():
    import os

    from backprop.benchmark import CaseRequest, run_isolated

    settings = BenchSettings(steps=2, repeats=2, warmup=1, blas_threads=1, phases=False, floor_min_time=1e-4,
                             settle_s=0.0)
    request = CaseRequest(("numpy", "torch"), "cpu", "notebook", 8, settings, None, None, False)
    rows = run_isolated(request)
    assert [r["engine"] for r in rows] == ["numpy", "torch"]
    assert rows[0]["pid"] == rows[1]["pid"] != os.getpid()  # a process for the case (each case one of its own:
    # tests/backprop/cli/test_bench.py::test_bench_runs_each_batch_size_in_a_process_of_its_own, slow)
    with pytest.raises(Exception, match="no_such_engine_module"):  # the child's error comes back as raised
        run_isolated(CaseRequest(("no_such_engine_module",), "cpu", "notebook", 8, settings, None, None, False))


def test_the_compiled_row_is_skipped_with_the_reason_when_torch_compile_fails(monkeypatch, request):
    import torch

    def refuse(*args, **kwargs):
        raise RuntimeError("no C++ compiler\nfound")

    from torch_net.compiled import compile_available

    monkeypatch.setattr(torch, "compile", refuse)
    compile_available.cache_clear()  # its answer is kept for the process: ask again, and forget this one after
    request.addfinalizer(compile_available.cache_clear)
    reference = CompiledReference(load_engine("autograd"), load_engine("torch"))
    assert not reference.available()
    assert reference.reason == "torch.compile failed on a tiny model (RuntimeError: no C++ compiler found)"
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
    settings = BenchSettings(steps=1, repeats=1, warmup=1, blas_threads=1, phases=False, floor_min_time=1e-4,
                             settle_s=0.0)
    rows = bench_case([load_engine("numpy")], "notebook", 4, settings, x, y, reference)
    assert [r["engine"] for r in rows] == ["numpy"] and rows[0]["phases_s"] is None


def test_each_library_is_timed_as_one_group_and_the_first_library_rotates():
    from types import SimpleNamespace

    from backprop.benchmark import library_groups

    runners = [SimpleNamespace(name=n, library=lib) for n, lib in
               [("numpy", "numpy"), ("torch", "torch"), ("autograd", "torch"), ("torch+compile", "torch")]]
    first = library_groups(runners)
    assert [(lib, [r.name for r in group]) for lib, group in first] == [
        ("numpy", ["numpy"]), ("torch", ["torch", "autograd", "torch+compile"])]
    assert [lib for lib, _ in library_groups(runners, first=1)] == ["torch", "numpy"]
    assert [lib for lib, _ in library_groups(runners, first=2)] == ["numpy", "torch"]
    assert library_groups([]) == []


def test_bench_case_settles_before_switching_library(monkeypatch):
    import backprop.benchmark as benchmark

    calls = []
    monkeypatch.setattr(benchmark, "settle", lambda seconds: calls.append(seconds))
    engines = [load_engine("numpy"), load_engine("torch")]
    x = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    y = np.arange(64) % 10
    settings = benchmark.BenchSettings(steps=2, repeats=2, warmup=1, blas_threads=1, phases=True,
                                       floor_min_time=1e-5, settle_s=0.25)
    benchmark.bench_case(engines, "notebook", 16, settings, x, y)
    # Two libraries: before each one's floor choice, each repeat's two groups, the phase pass and
    # the per-layer pass.
    assert calls == [0.25] * (2 + 2 * 2 + 2 + 2)


def test_bench_case_times_the_lstm_workload_with_its_clipping_against_its_per_step_floor():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 784)).astype(np.float32), rng.integers(0, 10, 8)
    engines = [load_engine("numpy"), load_engine("torch")]
    settings = BenchSettings(steps=1, repeats=1, warmup=1, blas_threads=1, floor_min_time=1e-5, settle_s=0.0)
    assert WORKLOADS["lstm"]["clip_grad_norm"] == 1.0 and WORKLOADS["lstm"]["batch_sizes"] == (64,)
    rows = bench_case(engines, "lstm", 4, settings, x, y)
    for row in rows:
        assert len(row["floor_formulations"]) == len(workload_gemms("lstm", 4)) == 2 * 28 + 4
        assert set(row["phases_s"]) == set(PHASES) and row["workload"] == "lstm"


def test_the_compiled_rows_time_autograd_and_the_torch_engines_hand_written_step():
    from torch_net.compiled import compile_available

    if compile_available() is not None:
        pytest.skip(f"torch.compile does not work here: {compile_available()}")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
    reference = CompiledReference(load_engine("autograd"), load_engine("torch"))
    settings = BenchSettings(steps=2, repeats=1, warmup=2, blas_threads=1, floor_min_time=1e-4, settle_s=0.0)
    rows = bench_case([load_engine("torch")], "notebook", 4, settings, x, y, reference)
    assert [r["engine"] for r in rows] == ["torch", "autograd+compile", "torch+compile"]
    assert rows[2]["phases_note"].startswith("one compiled graph") and rows[2]["layers_ms"] is None


def test_a_case_whose_process_dies_is_reported_with_its_exit_code(tmp_path, monkeypatch):
    import sys

    from backprop.benchmark import CaseRequest, run_isolated

    (tmp_path / "dying_engine.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # the spawned process gets this path
    settings = BenchSettings(steps=1, repeats=1, warmup=1, blas_threads=1, phases=False)
    with pytest.raises(RuntimeError, match=r"notebook at batch 8 died \(exit code 3"):
        run_isolated(CaseRequest(("dying_engine",), "cpu", "notebook", 8, settings, None, None, False))


def _bench_rows(batches):
    return [{"workload": "notebook", "engine": engine, "batch_size": b, "dtype": "float32", "samples_per_s": 1e3 * b,
             "floor_library": "numpy", "floor_samples_per_s": 2e3 * b, "ratio_to_floor": 2.0, "steps_timed": 100,
             "repeats": 5}
            for b in batches for engine in ("numpy", "torch")]


def test_bench_warns_when_too_few_steps_or_repeats_make_its_numbers_noise():
    rows = _bench_rows([8])
    assert noise_warning(rows) is None
    few = [{**r, "steps_timed": 3, "repeats": 1} for r in rows]
    warning = noise_warning(few)
    assert warning and "only 3 timed steps per repeat" in warning and "1 repeat (use --repeats 3" in warning

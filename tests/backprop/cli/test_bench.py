"""`backprop bench` (backprop/cli/bench.py): the rows it writes for every engine, workload and batch
size, its table and its warnings. The measurement itself: tests/backprop/test_benchmark.py."""

from __future__ import annotations

import json
import os

import pytest

from backprop.cli import build_parsers
from tests.helpers import run_cli


def _bench_rows(tmp_path, *isolation: str) -> dict:
    """bench.json of `backprop bench` on every engine at two batch sizes of the notebook workload."""
    out = tmp_path / "bench"
    result = run_cli("bench", "--engines", "numpy,torch,autograd", "--workloads", "notebook", "--batch-sizes",
                     "8,16", "--steps", "3", "--repeats", "2", "--warmup", "1", "--no-compile", "--blas-threads", "1",
                     *isolation, "--out", str(out))
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
    assert report["machine"]["cpu_count"] and "numpy" in report["machine"]
    assert os.path.getsize(out / "bench.png") > 0
    return report


@pytest.fixture
def unsettled(monkeypatch):
    """No idle pause when the timing switches library (what keeps measurements apart, not what is tested)."""
    monkeypatch.setattr("backprop.benchmark.settle", lambda seconds: None)


def test_bench_writes_rows_for_every_engine_workload_and_batch_size(tmp_path, unsettled):
    report = _bench_rows(tmp_path, "--isolation", "none")
    assert report["isolation"] == "none" and {r["pid"] for r in report["rows"]} == {os.getpid()}
    _, commands = build_parsers()
    assert commands["bench"].get_default("isolation") == "process"  # what a plain bench runs under: below


@pytest.mark.slow(reason="a bench process per batch size (about 25 s on 2 cores); make test: "
                  "test_bench_writes_rows_for_every_engine_workload_and_batch_size (--isolation none) and "
                  "tests/backprop/test_benchmark.py::test_a_case_runs_in_a_fresh_process_and_returns_its_rows")
def test_bench_runs_each_batch_size_in_a_process_of_its_own(tmp_path):
    report = _bench_rows(tmp_path)
    assert report["isolation"] == "process" and len({r["pid"] for r in report["rows"]}) == 2


def test_bench_prints_its_table_once_and_warns_on_stderr(tmp_path, unsettled):
    result = run_cli("bench", "--engines", "numpy,torch", "--workloads", "notebook", "--batch-sizes", "8",
                     "--steps", "2", "--repeats", "1", "--warmup", "1", "--no-compile", "--isolation", "none",
                     "--out", str(tmp_path / "b"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("workload  batch engine") == 1
    assert sum(line.startswith("notebook ") for line in result.stdout.splitlines()) == 2
    warning = [line for line in result.stderr.splitlines() if line.startswith("bench: warning:")]
    assert len(warning) == 1 and "2 timed steps" in warning[0], result.stderr


@pytest.mark.slow(reason="torch.compile in bench's case process (about 50 s on 2 cores); make test: "
                  "test_bench_prints_its_table_once_and_warns_on_stderr (--no-compile) and "
                  "tests/backprop/test_benchmark.py::test_the_compiled_rows_time_autograd_and_the_torch_engines_"
                  "hand_written_step (the compiled rows, in this process)")
def test_bench_adds_the_compiled_rows_where_torch_compile_works(tmp_path):
    # The one CLI test that lets torch.compile run (the others pass --no-compile).
    # One batch size: torch.compile compiles again for each.
    result = run_cli("bench", "--engines", "numpy,torch", "--workloads", "notebook", "--batch-sizes", "8",
                     "--steps", "2", "--repeats", "1", "--warmup", "1", "--out", str(tmp_path / "b"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("workload  batch engine") == 1
    compiled = json.loads((tmp_path / "b" / "bench.json").read_text())["compiled"]
    # 2 engines, and the two compiled rows (autograd's, the torch engine's) where torch.compile works here.
    rows = 2 + (2 if compiled["available"] else 0)
    assert sum(line.startswith("notebook ") for line in result.stdout.splitlines()) == rows
    if not compiled["available"]:
        assert compiled["reason"] and compiled["reason"] in result.stdout + result.stderr

"""Thread counts for the GEMMs (backprop/threads.py): candidates, the choice, train's auto rule, the
warning past the cores."""

from __future__ import annotations

import numpy as np
import pytest

from backprop import threads
from backprop.checkpoint import load_checkpoint
from backprop.gemms import Gemm, training_gemms
from tests.helpers import run_cli


# -- threads ------------------------------------------------------------------------------------
def test_thread_candidates_are_powers_of_two_and_the_core_count():
    assert threads.thread_candidates(1) == [1]
    assert threads.thread_candidates(2) == [1, 2]
    assert threads.thread_candidates(6) == [1, 2, 4, 6]
    assert threads.thread_candidates(8) == [1, 2, 4, 8]


def test_choose_threads_takes_the_fastest_and_ties_go_to_fewer_threads():
    assert threads.choose_threads({1: 3e-4, 2: 2e-4}) == 2
    assert threads.choose_threads({1: 2e-4, 2: 2e-4, 4: 5e-4}) == 1
    with pytest.raises(ValueError):
        threads.choose_threads({})


def test_parse_threads_takes_counts_and_auto_only():
    assert threads.parse_threads("auto") == "auto" and threads.parse_threads("3") == 3
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="positive number of threads or 'auto'"):
            threads.parse_threads(bad)


def test_trains_auto_rule_is_one_thread_per_mflop_of_the_largest_gemm_within_1_and_the_cores():
    from backprop.benchmark import WORKLOADS, workload_gemms

    small = training_gemms([784, 8, 10], 16)  # largest: 2 * 16 * 784 * 8 = 200,704 FLOPs
    assert threads.rule_threads(small, cores=2) == 1 and threads.rule_threads([], cores=2) == 1
    big = training_gemms([784, 128, 10], 16)  # 2 * 16 * 784 * 128 = 3,211,264 FLOPs
    assert threads.rule_threads(big, cores=2) == 2 and threads.rule_threads(big, cores=64) == 3
    assert threads.rule_threads(big, cores=1) == 1
    # On 2 cores, where bench measured 2 threads fastest for every workload and batch size: 2.
    for workload, spec in WORKLOADS.items():
        for batch in spec["batch_sizes"]:
            assert threads.rule_threads(workload_gemms(workload, batch), cores=2) == 2, (workload, batch)


def test_more_threads_than_cores_is_a_one_line_warning_naming_the_cores():
    assert threads.oversubscription_warning(2, cores=2) is None
    warning = threads.oversubscription_warning(64, cores=2)
    assert warning is not None and "\n" not in warning
    assert warning.startswith("64 threads for the GEMMs are more than the 2 cores") and "--blas-threads 2" in warning


BIG = [Gemm("fc", 64, 784, 256)]  # 25.7 MFLOP: the rule alone gives every core


@pytest.mark.parametrize("cores, load, expected", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 3.7, 1),  # one other process takes a core
    (8, 2.2, 6), (8, 9.0, 1), (1, 0.0, 1), (4, None, 4),  # None: no load average on this OS
])
def test_auto_takes_the_cores_the_load_average_leaves_free(cores, load, expected):
    assert threads.free_cores(cores, load) == expected
    choice = threads.auto_threads(BIG, cores=cores, load=load)
    assert choice.count == expected
    if expected < cores:  # the reason names the load and what it leaves
        assert f"{load:.2f}" in choice.reason and f"{expected} of the {cores} cores free" in choice.reason


CURRENT_LOAD = threads.current_load  # the real one: tests/conftest.py fixes an idle load for every test


@pytest.mark.parametrize("average, line, expected", [
    (2.0, "2.00 1.10 0.50 1/345 999\n", 0.0),  # a run just ended: the average still counts it, nothing runs
    (0.3, "0.30 0.20 0.10 3/345 999\n", 0.3),  # two others run now: the average is lower, it is taken
    (1.9, "1.90 1.50 0.90 2/345 999\n", 1.0),  # one other process runs
    (1.9, "unreadable", 1.9),  # no running count: the average alone
])
def test_the_load_is_the_average_or_what_runs_now_when_fewer(tmp_path, monkeypatch, average, line, expected):
    """current_load forgets an ended process at once: the 1-minute average takes minutes (after a
    2-thread run ends, 2 exp(-t / 60 s) is still 0.5 at 83 s), and a run started then would get
    one thread on an idle 2-core machine."""
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (average, 0.0, 0.0))
    (tmp_path / "loadavg").write_text(line)
    assert CURRENT_LOAD(str(tmp_path / "loadavg")) == expected
    assert threads.running_others(str(tmp_path / "no such file")) is None


def test_auto_never_gives_more_than_the_rule_and_says_which_limit_set_it():
    small = [Gemm("fc", 32, 100, 10)]  # 0.06 MFLOP
    choice = threads.auto_threads(small, cores=8, load=0.0)
    assert choice.count == 1 and "MFLOP" in choice.reason
    assert threads.auto_threads(BIG, cores=2, load=0.0).reason.startswith("auto: one per MFLOP")
    mixed = threads.auto_threads(BIG, cores=2, load=0.0, mixed_pools=True)
    assert mixed.count == 1 and "NumPy's BLAS and torch" in mixed.reason
    assert threads.training_threads(3, None).describe("BLAS") == "3 BLAS threads (--blas-threads 3)"
    assert threads.ThreadChoice(1, "x").describe("torch") == "1 torch thread (x)"  # never "1 threads"


def _float32_run(data_root: str, out: str, count: int, *more: str) -> dict[str, np.ndarray]:
    result = run_cli("train", "--dataset", "fashion-mnist", "--data-dir", data_root, "--hidden", "256",
                     "--batch-size", "64", "--epochs", "1", "--quiet", "--blas-threads", str(count), "--out", out,
                     *more)
    assert result.returncode == 0, result.stderr
    return load_checkpoint(out).params


def test_float32_training_is_bitwise_reproducible_at_an_equal_thread_count(data_root, tmp_path):
    for count in (1, 2):
        a = _float32_run(data_root, str(tmp_path / f"a{count}"), count)
        b = _float32_run(data_root, str(tmp_path / f"b{count}"), count)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{count} threads: {key}")
    threads.apply_threads("numpy", threads.cpu_count())


def test_float32_steps_at_different_thread_counts_differ_only_in_the_last_bits(data_root, tmp_path):
    """docs/cli.md's table: after one step, 1 and 2 threads' parameters are ~1e-7 apart (relative),
    a difference that training then grows."""
    one = _float32_run(data_root, str(tmp_path / "one"), 1, "--limit", "64")
    two = _float32_run(data_root, str(tmp_path / "two"), 2, "--limit", "64")
    threads.apply_threads("numpy", threads.cpu_count())
    for key in one:
        scale = float(np.abs(one[key]).max())
        assert float(np.abs(one[key] - two[key]).max()) <= 1e-6 * scale, key

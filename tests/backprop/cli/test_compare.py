"""`backprop compare` (backprop/cli/compare.py): its exit status past --tol, what it says about its
data, and recurrent networks in float64. The lockstep measurement itself:
tests/backprop/test_lockstep.py."""

from __future__ import annotations

import csv
import os

import pytest

from backprop import threads
from backprop.cli import main
from tests.helpers import cli_out, run_cli
from tests.networks import TINY_LSTM


def test_compare_exits_non_zero_when_the_tolerance_is_exceeded(data_root, tmp_path):
    common = ["compare", "--engines", "numpy,torch", "--dataset", "fashion-mnist", "--data-dir", data_root,
              "--hidden", "16", "--batch-size", "16", "--steps", "12", "--quiet"]
    tight = run_cli(*common, "--dtype", "float32", "--tol", "0", "--out", str(tmp_path / "a"))
    assert tight.returncode == 1, tight.stdout + tight.stderr
    assert "exceeds --tol 0 first at step" in tight.stdout
    loose = run_cli(*common, "--dtype", "float64", "--tol", "1e-9", "--out", str(tmp_path / "b"))
    assert loose.returncode == 0, loose.stdout + loose.stderr
    assert "within --tol 1e-09 for all 12 steps" in loose.stdout
    with open(tmp_path / "b" / "compare.csv") as f:
        header = f.readline().strip().split(",")
    assert header[:9] == ["step", "engine", "reference", "loss", "loss_diff", "max_abs_diff", "max_rel_diff",
                          "worst_param", "abs:0.weight"]
    assert os.path.getsize(tmp_path / "b" / "compare.png") > 0


def test_compare_says_when_it_used_synthetic_data(tmp_path, data_root):
    synthetic = run_cli("compare", "--hidden", "4", "--steps", "2", "--quiet", "--out", str(tmp_path / "s"))
    assert synthetic.returncode == 0, synthetic.stderr
    assert "on synthetic inputs of MNIST shape" in synthetic.stdout.splitlines()[0]
    assert "trained on synthetic inputs" in synthetic.stderr
    real = run_cli("compare", "--hidden", "4", "--steps", "2", "--quiet", "--data-dir", data_root, "--dataset",
                   "fashion-mnist", "--out", str(tmp_path / "r"))
    assert real.returncode == 0, real.stderr
    assert f"on fashion-mnist from {data_root}" in real.stdout and "synthetic" not in real.stdout + real.stderr


# -- compare -----------------------------------------------------------------------------------
def test_compare_of_the_lstm_preset_in_float64_stays_near_machine_precision(data_root, tmp_path, capsys):
    out = str(tmp_path / "compare")
    cli_out(capsys, "compare", "--preset", "lstm", "--layers", TINY_LSTM, "--engines", "numpy,torch,autograd",
            "--dtype", "float64", "--dataset", "fashion-mnist", "--data-dir", data_root, "--limit", "64",
            "--batch-size", "16", "--epochs", "1", "--quiet", "--out", out)
    rows = list(csv.DictReader(open(os.path.join(out, "compare.csv"))))
    assert {row["engine"] for row in rows} == {"torch", "autograd"} and len(rows) == 2 * 4
    assert max(float(row["max_rel_diff"]) for row in rows) < 1e-12
    assert max(float(row["loss_diff"]) for row in rows) < 1e-12


def test_compare_past_its_tolerance_on_a_recurrent_network_says_why_and_what_to_read(data_root, tmp_path, capsys):
    # A tolerance of 0 is exceeded by the first rounding; a recurrent net's message explains the
    # growth (chaos, measured on torch alone) and which steps to read. An MLP's does not.
    common = ["--engines", "numpy,torch", "--dtype", "float64", "--dataset", "fashion-mnist", "--data-dir", data_root,
              "--limit", "64", "--batch-size", "16", "--steps", "2", "--tol", "0", "--quiet"]
    code = main(["compare", "--preset", "lstm", "--layers", TINY_LSTM, *common, "--out", str(tmp_path / "lstm")])
    err = capsys.readouterr().err
    assert code == 1 and "tolerance 0 exceeded" in err
    assert "training a recurrent network is chaotic" in err and "--steps 100 stays within 1e-13" in err
    code = main(["compare", "--hidden", "8", *common, "--out", str(tmp_path / "mlp")])
    err = capsys.readouterr().err
    assert code == 1 and "tolerance 0 exceeded" in err and "chaotic" not in err


@pytest.mark.parametrize("flag, expected", [([], 1), (["--blas-threads", "2"], 2)])
def test_compare_takes_blas_threads_and_reports_them(tmp_path, monkeypatch, flag, expected):
    monkeypatch.setattr(threads, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "current_load", lambda: 0.0)
    result = run_cli("compare", "--steps", "2", "--quiet", "--out", str(tmp_path / "cmp"), *flag)
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    # numpy and torch in one process: auto takes 1 thread and says why; an explicit count is kept
    assert f"{expected} BLAS and torch thread" in header
    assert ("NumPy's BLAS and torch take turns" in header) == (not flag)
    assert threads.current_threads() == {"numpy_blas": expected, "torch": expected}
    threads.apply_threads("numpy", 2), threads.apply_threads("torch", 2)


def test_compare_rejects_a_bad_thread_count(tmp_path):
    result = run_cli("compare", "--steps", "1", "--blas-threads", "0", "--out", str(tmp_path / "cmp"))
    assert result.returncode == 2 and "--blas-threads" in result.stderr and "positive" in result.stderr

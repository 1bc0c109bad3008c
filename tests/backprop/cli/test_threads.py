"""--blas-threads (backprop/cli/threads.py): a resumed run keeps the thread count it recorded unless
told otherwise."""

from __future__ import annotations

from backprop.checkpoint import load_checkpoint
from tests.helpers import run_cli, training_stopped_at


def _header(stdout: str) -> str:
    """The line of a train command's header that says how many BLAS threads it trains on."""
    (line,) = [line for line in stdout.splitlines() if "BLAS thread" in line]
    return line


def test_a_resumed_session_reuses_the_recorded_thread_count_unless_told_otherwise(data_root, tmp_path):
    common = ["--dataset", "fashion-mnist", "--data-dir", data_root, "--hidden", "128", "--batch-size", "16",
              "--epochs", "3", "--quiet", "--limit", "64"]
    out = str(tmp_path / "run")
    with training_stopped_at(epoch=0, step=2):
        first = run_cli("train", *common, "--blas-threads", "1", "--out", out)
    header = _header(first.stdout)
    assert first.returncode == 130 and "1 BLAS thread " in header and "--blas-threads 1" in header, first.stderr
    assert load_checkpoint(out).blas_threads == 1
    with training_stopped_at(epoch=1, step=2):
        again = run_cli("train", "--resume", out, "--quiet")  # the rule would say 2: the run said 1
    header = _header(again.stdout)
    assert again.returncode == 130 and "1 BLAS thread " in header and "recorded" in header, again.stdout
    assert again.stderr.count("\n") == 3, again.stderr  # the interruption's two lines and its hint: no note
    told = run_cli("train", "--resume", out, "--quiet", "--blas-threads", "2")
    header = _header(told.stdout)
    assert told.returncode == 0 and "2 BLAS threads " in header and "--blas-threads 2" in header, told.stderr
    # A note, saying the count changed from the run's 1 and what that means for float32 results.
    note = told.stderr.splitlines()[0]
    assert note.startswith("train: note: --blas-threads") and "2 threads" in note and "trained on 1" in note
    assert "float32" in note and "uninterrupted run" in note
    assert load_checkpoint(out).blas_threads == 2

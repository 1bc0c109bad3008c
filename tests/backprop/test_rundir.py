"""Run directories (backprop/rundir.py): default names are new, a directory is claimed exclusively, and
a second run into a claimed or non-empty directory is refused with nothing overwritten."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from backprop.checkpoint import load_checkpoint
from backprop.rundir import LOCK_NAME, RunDirError, claim, claim_new
from tests.datasets import write_dataset
from tests.helpers import ROOT, run_cli

TRAIN = ["train", "--dataset", "fashion-mnist", "--hidden", "8", "--batch-size", "16", "--epochs", "1", "--quiet"]


def _start(args: list[str], cwd: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "backprop", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT})


@pytest.mark.slow(reason="two processes racing for a default name (about 20 s on 2 cores); make test: "
                  "test_claim_new_gives_a_new_name_when_the_stem_is_taken (the same mkdir-or-next-name claim, "
                  "in one process) and test_a_second_run_into_a_directory_in_use_is_refused_and_changes_nothing")
def test_two_trains_started_together_without_out_get_two_directories(data_root, tmp_path):
    first, second = (_start([*TRAIN, "--data-dir", data_root], str(tmp_path)) for _ in range(2))
    results = [(p.wait(timeout=300), *p.communicate()) for p in (first, second)]
    assert [code for code, _, _ in results] == [0, 0], results
    runs = sorted(os.listdir(tmp_path / "runs"))
    assert len(runs) == 2, runs
    for run in runs:
        folder = tmp_path / "runs" / run
        assert sorted(os.listdir(folder)) == ["checkpoint.npz", "config.json", "curves.png", "metrics.csv"]
        assert len(load_checkpoint(str(folder)).progress.history) == 1
    # Each run printed its own directory.
    printed = {line.rsplit("-> ", 1)[1] for _, out, _ in results for line in out.splitlines() if "-> " in line}
    assert printed == {os.path.join("runs", run) for run in runs}


def test_a_second_run_into_a_directory_in_use_is_refused_and_changes_nothing(data_root, tmp_path):
    out = str(tmp_path / "shared")
    first = claim(out)  # a run in progress holds the directory: its lock names a live process (this one)
    try:
        second = run_cli(*TRAIN, "--data-dir", data_root, "--out", out)
        assert second.returncode == 2, second.stderr
        assert f"{out} is in use by another backprop run (pid {os.getpid()}" in second.stderr
        resumed = run_cli("train", "--resume", out, "--epochs", "3", "--data-dir", data_root)
        assert resumed.returncode in (1, 2), resumed.stderr  # still running: refused (or no checkpoint yet)
        assert os.listdir(out) == [LOCK_NAME]  # neither wrote anything
    finally:
        first.release()
    assert not os.path.exists(out)  # the claim's own empty directory, removed when released


def test_a_run_into_a_directory_holding_other_files_is_refused(data_root, tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("mine")
    result = run_cli(*TRAIN, "--data-dir", data_root, "--out", str(out))
    assert result.returncode == 2 and "already holds files (todo.txt)" in result.stderr, result.stderr
    assert os.listdir(out) == ["todo.txt"] and (out / "todo.txt").read_text() == "mine"
    for command in (["compare", "--steps", "2"], ["bench", "--steps", "1", "--repeats", "1", "--warmup", "1",
                                                  "--workloads", "notebook", "--batch-sizes", "8", "--no-compile"]):
        result = run_cli(*command, "--out", str(out))
        assert result.returncode == 2 and "already holds files" in result.stderr, (command, result.stderr)
    assert os.listdir(out) == ["todo.txt"]


def test_an_empty_existing_directory_is_fine(data_root, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    result = run_cli(*TRAIN, "--data-dir", data_root, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "checkpoint.npz" in os.listdir(out) and LOCK_NAME not in os.listdir(out)


def test_claim_new_gives_a_new_name_when_the_stem_is_taken(tmp_path):
    parent = str(tmp_path / "runs")
    a, b, c = claim_new(parent, "stamp-numpy"), claim_new(parent, "stamp-numpy"), claim_new(parent, "stamp-numpy")
    assert [os.path.basename(r.path) for r in (a, b, c)] == ["stamp-numpy", "stamp-numpy-2", "stamp-numpy-3"]
    for run in (a, b, c):
        run.release()


def test_a_claim_is_exclusive_until_released_and_a_dead_claimants_lock_is_taken_over(tmp_path):
    path = str(tmp_path / "run")
    first = claim(path)
    with pytest.raises(RunDirError, match=rf"in use by another backprop run \(pid {os.getpid()}"):
        claim(path)
    first.release()
    assert not os.path.exists(path)  # created by the claim, left empty: removed again
    held = claim(path)
    (tmp_path / "run" / "checkpoint.npz").write_bytes(b"x")
    held.release()
    assert os.path.exists(path)  # the run wrote into it: kept
    with pytest.raises(RunDirError, match="already holds files"):
        claim(path)
    again = claim(path, own_run=True)  # a resumed run continuing in its own directory
    again.release()
    # A lock left by a process that no longer exists (a run killed with SIGKILL) is stale.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "run" / LOCK_NAME).write_text(f"{int(dead.stdout)} {socket.gethostname()}\n")
    claim(path, own_run=True).release()


def test_a_failed_run_leaves_no_empty_directory_behind(tmp_path):
    """A run that stops before writing anything (here: bad data) removes the directories it created."""
    folder = write_dataset(str(tmp_path / "data"))
    os.remove(os.path.join(folder, "t10k-images-idx3-ubyte"))
    result = run_cli(*TRAIN, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "a" / "b"))
    assert result.returncode == 1 and "but not t10k-images-idx3-ubyte" in result.stderr, result.stderr
    assert not os.path.exists(tmp_path / "a")

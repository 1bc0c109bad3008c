"""Case 7: output behaves in a pipeline: a reader that went away (`| head`) ends the program
quietly, and progress bars go to stderr only when it is a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import pytest

from .helpers import ROOT, run_cli, write_checkpoint

TRAIN = ["train", "--dataset", "fashion-mnist", "--hidden", "8", "--batch-size", "4", "--epochs", "1"]


def _with_closed_stdout(*args: str, cwd: str = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout a pipe whose reader has already gone, as in `backprop ... | head -0`."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "backprop", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, cwd=cwd, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    finally:
        os.close(write)


@pytest.mark.parametrize("which", ["help", "evaluate", "train"])
def test_a_closed_pipe_ends_the_program_quietly(which, data_root, tmp_path):
    if which == "help":
        args = ["train", "--help"]
    elif which == "evaluate":
        checkpoint = str(tmp_path / "c.npz")
        write_checkpoint(checkpoint, train_samples=256)
        args = ["evaluate", checkpoint, "--data-dir", data_root]
    else:
        args = [*TRAIN, "--data-dir", data_root, "--out", str(tmp_path / "run")]
    result = _with_closed_stdout(*args)
    # argparse's help ignores a failed write itself (exit 0); the commands end as `yes | head` does.
    assert result.returncode == (0 if which == "help" else 141), result.stderr
    assert result.stderr == "", result.stderr  # no traceback, no "Exception ignored ... BrokenPipeError"


def test_no_progress_bar_when_stderr_is_not_a_terminal(data_root, tmp_path):
    result = run_cli(*TRAIN, "--data-dir", data_root, "--out", str(tmp_path / "run"))  # no --quiet
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # a log file or pipe gets no \r-redrawn bars
    compared = run_cli("compare", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "4",
                       "--steps", "3", "--out", str(tmp_path / "compare"))
    assert compared.returncode == 0 and "step/s" not in compared.stderr and "\r" not in compared.stderr


def test_a_progress_bar_when_stderr_is_a_terminal(data_root, tmp_path):
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    process = subprocess.Popen([sys.executable, "-m", "backprop", *TRAIN, "--data-dir", data_root,
                                "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=follower,
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    os.close(follower)
    seen = b""
    while True:  # read the terminal as it is written, so that the program never blocks on it
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the program closed its end
                chunk = b""
            if not chunk and process.poll() is not None:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    process.wait(timeout=60)
    assert process.returncode == 0
    assert b"epoch 1/1" in seen and b"batch" in seen, seen[-500:]

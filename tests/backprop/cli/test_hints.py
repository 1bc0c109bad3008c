"""Every hint the program prints (backprop/cli/hints.py) is a command that works as printed: the
program as it was started, every argument quoted for the shell."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from backprop.checkpoint import load_checkpoint
from backprop.cli import hints
from tests.helpers import ROOT, SMALL_RUN, copy_run, printed_args, run_cli


def _run_printed(command: str, cwd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command exactly as the program printed it, through the shell."""
    return subprocess.run(command, shell=True, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT})


def _line_after(text: str, marker: str) -> str:
    lines = [line for line in text.splitlines() if marker in line]
    assert lines, text
    return lines[-1].split(marker, 1)[1].strip()


def test_divergence_exits_3_and_its_hint_starts_a_new_run_with_a_smaller_learning_rate(data_root, tmp_path):
    # A deep linear network with a huge step size grows its weights geometrically.
    result = run_cli("train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "16,16",
                     "--activation", "identity", "--lr", "10", "--epochs", "2", "--out", str(tmp_path / "r"),
                     "--quiet")
    assert result.returncode == 3, result.stderr
    assert "training diverged" in result.stderr and "Traceback" not in result.stderr
    # NumPy's own overflow warnings are silenced inside the training loop (the engine reports it).
    assert "RuntimeWarning" not in result.stderr
    hint = _line_after(result.stderr, "with a smaller learning rate: ")
    words = shlex.split(hint)
    assert words[1:4] == ["-m", "backprop", "train"]  # the program as it was started (python -m backprop)
    assert words[words.index("--lr") + 1] == "1.0"
    assert words[-2:] == ["--out", str(tmp_path / "r")]  # the run left nothing there: the same --out again
    # The hint's arguments, run in this process (the shell's reading of a printed hint: the slow test below).
    again = run_cli("train", *printed_args(hint, "train"), "--quiet", "--epochs", "1", cwd=str(tmp_path))
    assert again.returncode in (0, 3), (hint, again.stderr)  # a valid command: it trained (or diverged again)
    # The run it started (whose directory a second divergence removes): the same network, lr 1.
    header = again.stdout.splitlines()[0]
    assert "784-16-16-10 identity" in header and " lr 1 " in header, header


def _already_holds_hint(trained, tmp_path) -> tuple[str, str]:
    """(the run directory, the hint) of a second `train` into a finished run's directory."""
    data_root, out = trained[0], copy_run(trained[1], tmp_path)
    again = run_cli("train", *SMALL_RUN, "--data-dir", data_root, "--epochs", "2", "--out", out)
    assert again.returncode == 2 and "nothing was overwritten" in again.stderr
    return out, _line_after(again.stderr, "continue it with: ").split(", or choose", 1)[0]


def test_the_already_holds_a_run_hint_continues_that_run(trained, tmp_path):
    out, hint = _already_holds_hint(trained, tmp_path)
    resumed = run_cli("train", *printed_args(hint, "train"), "--epochs", "2", "--quiet")
    assert resumed.returncode == 0, (hint, resumed.stderr)
    assert len(load_checkpoint(out).progress.history) == 2


@pytest.mark.slow(reason="the printed hint run by the shell in a process of its own (a torch import); make test: "
                  "test_the_already_holds_a_run_hint_continues_that_run (its arguments, in this process), "
                  "test_hint_arguments_are_quoted_for_the_shell and test_hints_name_the_program_as_it_was_started")
def test_the_already_holds_a_run_hint_runs_verbatim_in_the_shell(trained, tmp_path):
    out, hint = _already_holds_hint(trained, tmp_path)
    resumed = _run_printed(hint + " --epochs 2 --quiet", cwd=ROOT)
    assert resumed.returncode == 0, (hint, resumed.stderr)
    assert len(load_checkpoint(out).progress.history) == 2


@pytest.mark.parametrize("argv0, expected", [
    ("/somewhere/backprop/__main__.py", "-m backprop"),  # python -m backprop
    (".venv/bin/backprop", ".venv/bin/backprop"),  # a path as typed works from the same directory
    ("/usr/bin/pytest", "backprop"),  # called as a library: the installed command's name
])
def test_hints_name_the_program_as_it_was_started(argv0, expected, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    program = hints.program(argv0, executable="/opt/py/bin/python3")
    assert program.endswith(expected)
    if argv0.endswith("__main__.py"):
        assert program == "/opt/py/bin/python3 -m backprop"


def test_hint_arguments_are_quoted_for_the_shell():
    command = hints.command("train", "--resume", "my runs/it's here/checkpoint.npz", argv0="/x/backprop")
    assert shlex.split(command)[-1] == "my runs/it's here/checkpoint.npz"

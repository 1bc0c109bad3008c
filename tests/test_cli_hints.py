"""Case 1: every hint the program prints is a command (or code) that works as printed, and a run
remembers where its data came from."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from backprop.checkpoint import load_checkpoint
from backprop.cli import hints
from engine_core.specs import mlp

from .helpers import ROOT, SMALL_RUN, copy_run, run_cli


def _run_printed(command: str, cwd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command exactly as the program printed it, through the shell."""
    return subprocess.run(command, shell=True, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT})


def _line_after(text: str, marker: str) -> str:
    lines = [line for line in text.splitlines() if marker in line]
    assert lines, text
    return lines[-1].split(marker, 1)[1].strip()


def test_a_run_records_its_data_directory_in_config_json_and_the_checkpoint(trained):
    data_root, out = trained
    assert json.load(open(os.path.join(out, "config.json")))["data_dir"] == os.path.abspath(data_root)
    assert load_checkpoint(out).data_dir == os.path.abspath(data_root)


def test_resume_and_evaluate_find_the_data_without_data_dir_from_any_directory(trained, tmp_path):
    out = copy_run(trained[1], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": ROOT}
    resumed = run_cli("train", "--resume", out, "--epochs", "2", "--quiet", cwd=str(elsewhere), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch  2/2" in resumed.stdout
    evaluated = run_cli("evaluate", out, cwd=str(elsewhere), env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test accuracy" in evaluated.stdout
    assert not os.path.exists(elsewhere / "data")  # nothing was looked for (or created) in ./data


def test_the_divergence_hint_starts_a_new_run_with_a_smaller_learning_rate(data_root, tmp_path):
    result = run_cli("train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "16,16",
                     "--activation", "identity", "--lr", "10", "--epochs", "2", "--out", str(tmp_path / "r"),
                     "--quiet")
    assert result.returncode == 3, result.stderr
    hint = _line_after(result.stderr, "with a smaller learning rate: ")
    words = shlex.split(hint)
    assert words[words.index("--lr") + 1] == "1.0" and "--out" not in words
    again = _run_printed(hint + " --quiet --epochs 1", cwd=str(tmp_path))
    assert again.returncode in (0, 3), (hint, again.stderr)  # a valid command: it trained (or diverged again)
    (run,) = os.listdir(tmp_path / "runs")
    config = json.load(open(tmp_path / "runs" / run / "config.json"))
    assert config["lr"] == 1.0
    assert config["layers"] == [spec.to_json() for spec in mlp([784, 16, 16, 10], "identity").children]


def test_the_already_holds_a_run_hint_continues_that_run(trained, tmp_path):
    data_root, out = trained[0], copy_run(trained[1], tmp_path)
    again = run_cli("train", *SMALL_RUN, "--data-dir", data_root, "--epochs", "2", "--out", out)
    assert again.returncode == 2 and "nothing was overwritten" in again.stderr
    hint = _line_after(again.stderr, "continue it with: ").split(", or choose", 1)[0]
    resumed = _run_printed(hint + " --epochs 2 --quiet", cwd=ROOT)
    assert resumed.returncode == 0, (hint, resumed.stderr)
    assert len(load_checkpoint(out).progress.history) == 2


def test_the_export_code_runs_as_printed_from_another_directory(trained, tmp_path):
    result = run_cli("export", trained[1], "--to", "model.pt", cwd=str(tmp_path), env={"PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    code = result.stdout.split("these Python lines load it:\n", 1)[1]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    loaded = subprocess.run([sys.executable, "-c", code + "\nprint(type(model).__name__)"], capture_output=True,
                            text=True, cwd=elsewhere, timeout=120)
    assert loaded.returncode == 0, (code, loaded.stderr)
    assert loaded.stdout.strip() == "Sequential"


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

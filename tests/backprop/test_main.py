"""`python -m backprop` (backprop/__main__.py) as a process: a data/ folder in the working directory is
only data."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def test_a_data_folder_in_the_working_directory_is_only_a_dataset_folder(tmp_path):
    """./data is the default --data-dir; a dataset there changes nothing about the program, and
    no top-level module named `data` is installed."""
    (tmp_path / "data" / "MNIST" / "raw").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "backprop", "train", "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--data-dir" in result.stdout
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.path)"], capture_output=True, text=True,
                           cwd=outside, timeout=60)
    if ROOT in eval(probe.stdout):
        # A compat-mode editable install puts the whole checkout on sys.path, where the plain
        # data/ folder imports as an (empty) namespace package; `make` installs without it.
        pytest.skip("the checkout itself is on sys.path (a compat-mode editable install)")
    found = subprocess.run([sys.executable, "-c", "import data"], capture_output=True, text=True, cwd=outside,
                           timeout=60)
    assert found.returncode != 0 and "ModuleNotFoundError: No module named 'data'" in found.stderr, found.stderr


def test_the_data_folder_holds_no_code():
    folder = os.path.join(ROOT, "data")
    assert not [name for name in os.listdir(folder) if name.endswith(".py")]

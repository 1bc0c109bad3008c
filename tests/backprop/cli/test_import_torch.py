"""Tests."""

from __future__ import annotations

import numpy as np

from backprop.checkpoint import load_checkpoint
from tests.helpers import cli_out, run_cli


def test_import_converts_weights_without_any_data(capsys, trained, tmp_path):
    model = str(tmp_path / "model.pt")
    cli_out(capsys, "export", trained[1], "--to", model)
    out = str(tmp_path / "imported")
    result = run_cli("import", model, "--layers", "linear(784,8),relu,linear(8,10)", "--out", out,
                     cwd=str(tmp_path))  # no --dataset, no --data-dir, no ./data
    assert result.returncode == 0, result.stderr
    for key, value in load_checkpoint(trained[1]).params.items():
        np.testing.assert_array_equal(load_checkpoint(out).params[key], value)
    evaluated = run_cli("evaluate", out, "--dataset", "fashion-mnist", "--data-dir", trained[0])
    assert evaluated.returncode == 0, evaluated.stderr

"""`backprop import`: a torch state dict as a run directory, with or without data, and the export
metadata beside the file read back (layers, dataset), its faults named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backprop.checkpoint import load_checkpoint
from tests.datasets import write_dataset
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


@pytest.mark.parametrize("field, value, words", [
    ("layers", "flatten, linear(784, 10) relu", "records layers that do not parse"),
    ("dataset", "kmnist", "records dataset 'kmnist', expected one of mnist, fashion-mnist"),
])
def test_export_metadata_that_import_cannot_use_is_named_with_the_option_to_give(capsys, trained, tmp_path, field,
                                                                                 value, words):
    """A sidecar edited by hand (or by another version) is named, never a traceback, never a run
    that evaluate then refuses."""
    model = str(tmp_path / "model.pt")
    cli_out(capsys, "export", trained[1], "--to", model)
    meta = json.loads(open(model + ".json").read())
    with open(model + ".json", "w") as f:
        json.dump({**meta, field: value}, f)
    result = run_cli("import", model, "--out", str(tmp_path / "run"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{model}.json {words}" in result.stderr and f"give --{field}" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_layers_read_from_a_stale_sidecar_are_named_when_the_weights_do_not_fit(capsys, trained, tmp_path):
    model = str(tmp_path / "model.pt")
    cli_out(capsys, "export", trained[1], "--to", model)
    meta = json.loads(open(model + ".json").read())
    with open(model + ".json", "w") as f:
        json.dump({**meta, "layers": "flatten, linear(784, 10)"}, f)
    result = run_cli("import", model, "--out", str(tmp_path / "run"))
    assert result.returncode == 1 and f"the layers were those {model}.json records" in result.stderr, result.stderr


def test_an_import_without_data_resumes_on_data_of_another_size(capsys, trained, tmp_path):
    """An imported run has trained on nothing yet: it resumes on any training split (the import
    recorded the standard 60,000 samples, these files hold 40)."""
    model, run = str(tmp_path / "model.pt"), str(tmp_path / "run")
    cli_out(capsys, "export", trained[1], "--to", model)
    cli_out(capsys, "import", model, "--out", run)
    write_dataset(str(tmp_path / "data"), "fashion-mnist", n_train=40, n_test=10)
    result = run_cli("train", "--resume", run, "--epochs", "1", "--data-dir", str(tmp_path / "data"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(run).progress.epoch == 1


def test_a_whole_pickled_model_is_told_to_save_its_state_dict(tmp_path):
    """torch.save(model) pickles the class: weights_only loading refuses it, and the message says
    what to save instead (torch's own is cut, with terminal escape codes), not to give --layers."""
    import torch
    from torch import nn

    model = str(tmp_path / "whole.pt")
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), model)
    result = run_cli("import", model, "--out", str(tmp_path / "run"))
    assert result.returncode == 1 and "a whole pickled object, not a state dict" in result.stderr, result.stderr
    assert "torch.save(model.state_dict(), PATH)" in result.stderr
    assert "\x1b[" not in result.stderr and "--layers" not in result.stderr


def test_a_state_dict_that_is_not_the_default_preset_is_told_which_layers_were_assumed(tmp_path):
    """A torch file of the user's own network, imported without --layers (and without export's
    metadata), is compared with the lenet preset's layers: the error names them and --layers."""
    import torch
    from torch import nn

    model = str(tmp_path / "mine.pt")
    torch.save(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(1568, 10)).state_dict(), model)
    result = run_cli("import", model, "--out", str(tmp_path / "run"))
    assert result.returncode == 1 and "state dict does not match the layers" in result.stderr, result.stderr
    assert "the layers were the lenet preset's (conv2d(1, 6, 5" in result.stderr and "--layers TEXT" in result.stderr


def test_export_import_evaluate_needs_no_options_the_run_had(capsys, trained, tmp_path):
    """The export's metadata carries the layers, the dataset and the data folder the run read:
    `import model.pt --out DIR` then `evaluate DIR` work as they are, and give the run's accuracy."""
    model, run = str(tmp_path / "model.pt"), str(tmp_path / "run")
    cli_out(capsys, "export", trained[1], "--to", model)
    assert run_cli("import", model, "--out", run, cwd=str(tmp_path)).returncode == 0
    evaluated = run_cli("evaluate", run, cwd=str(tmp_path))  # no ./data here: the recorded folder is used
    assert evaluated.returncode == 0, evaluated.stderr
    accuracy = json.loads(open(model + ".json").read())["test_accuracy"]
    assert f"accuracy {accuracy:.4f}" in evaluated.stdout, evaluated.stdout

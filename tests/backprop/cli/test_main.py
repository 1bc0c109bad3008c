"""The `backprop` command line as a whole (backprop/cli/__init__.py, main(argv)): the help and
--version, a reader that went away (`| head`, a true process test), and train, evaluate, export and
import end to end."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from backprop.architecture import format_layers, parse_layers
from backprop.checkpoint import load_checkpoint
from backprop.config import TrainConfig
from backprop.datasets import load_dataset
from backprop.engines import load_engine
from tests.helpers import ROOT, accuracy_of, run_cli, same_arrays, write_checkpoint
from tests.networks import NESTED_TEXT, STACK, STACK_TEXT


def test_help_is_reachable_from_the_command_line_for_every_command():
    for command in ("train", "evaluate", "export", "compare", "bench"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "usage: backprop " + command in result.stdout, command


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


def test_backprop_alone_prints_the_help_and_version_exists():
    alone = run_cli()
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.startswith("usage: backprop") and "train" in alone.stdout and "evaluate" in alone.stdout
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("backprop ") and "torch" in version.stdout


# -- the command line end to end ----------------------------------------------------------------
SMALL = ["--layers", STACK_TEXT, "--dataset", "fashion-mnist", "--batch-size", "32", "--quiet"]


def test_cli_trains_evaluates_exports_imports_and_resumes_a_stack(data_root, tmp_path, capsys, no_pictures):
    def run_cli(*args: str) -> subprocess.CompletedProcess[str]:  # in-process, as the commands' own tests
        from backprop.cli import main

        try:
            code = main(list(args))
        except SystemExit as exit:  # argparse's usage errors
            code = int(exit.code or 0)
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)

    out = str(tmp_path / "run")
    result = run_cli("train", *SMALL, "--data-dir", data_root, "--epochs", "1", "--limit", "128", "--out", out)
    assert result.returncode == 0, result.stderr
    assert json.load(open(os.path.join(out, "config.json")))["layers"][0]["kind"] == "conv2d"
    evaluated = run_cli("evaluate", out, "--engine", "torch")
    assert evaluated.returncode == 0, evaluated.stderr
    accuracy = evaluated.stdout.split("test accuracy ")[1].split()[0]
    model = str(tmp_path / "model.pt")
    exported = run_cli("export", out, "--to", model)
    assert exported.returncode == 0, exported.stderr
    code = exported.stdout.split("load it:\n", 1)[1]
    namespace: dict = {}
    exec(code, namespace)  # the printed lines as printed (from another directory: tests/backprop/cli/test_export.py)
    assert type(namespace["model"]).__name__ == "Sequential"
    imported = str(tmp_path / "imported")
    result = run_cli("import", model, "--layers", STACK_TEXT, "--dataset", "fashion-mnist", "--data-dir", data_root,
                     "--out", imported)
    assert result.returncode == 0, result.stderr
    again = run_cli("evaluate", imported)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("test accuracy ")[1].split()[0] == accuracy
    resumed = run_cli("train", "--resume", out, "--epochs", "2", "--engine", "torch", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out).progress.epoch == 2
    refused = run_cli("train", "--resume", out, "--epochs", "3", "--layers", "flatten, linear(784, 10)")
    assert refused.returncode == 2, refused.stderr
    assert "--layers 'flatten, linear(784, 10)' conflicts with the checkpoint (--layers " \
           f"'{format_layers(STACK)}')" in refused.stderr
    # An imported model can be trained on a subset, as a run started with train --limit.
    subset = str(tmp_path / "imported-subset")
    result = run_cli("import", model, "--layers", STACK_TEXT, "--dataset", "fashion-mnist", "--data-dir", data_root,
                     "--limit", "64", "--out", subset)
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(subset).meta["rng"]["train_samples"] == 64
    trained = run_cli("train", "--resume", subset, "--epochs", "1", "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert load_checkpoint(subset).progress.history[0]["samples_per_s"] > 0
    assert load_checkpoint(subset).config.limit == 64


def test_cli_trains_exports_and_imports_a_nested_sequential(data_root, tmp_path, capsys, no_pictures):
    import torch
    from torch import nn

    from backprop.cli import main

    def cli(*args: str) -> str:
        assert main(list(args)) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    out = str(tmp_path / "run")
    cli("train", "--layers", NESTED_TEXT, "--dataset", "fashion-mnist", "--data-dir", data_root,
        "--epochs", "1", "--limit", "64", "--batch-size", "16", "--quiet", "--out", out)
    checkpoint = load_checkpoint(out)
    assert list(checkpoint.params) == ["1.0.weight", "1.0.bias", "2.weight", "2.bias"]  # torch's nested keys
    assert checkpoint.config.network == parse_layers(NESTED_TEXT) and checkpoint.progress.epoch == 1
    assert format_layers(checkpoint.config.network) == NESTED_TEXT
    accuracy = accuracy_of(cli("evaluate", out))
    # export: a torch state dict that the printed code, run as printed, rebuilds and loads
    model = str(tmp_path / "model.pt")
    code = cli("export", out, "--to", model).split("load it:\n", 1)[1]
    namespace: dict = {}
    exec(code, namespace)
    module = namespace["model"]
    assert isinstance(module[1], nn.Sequential) and isinstance(module[1][0], nn.Linear)
    saved = torch.load(model, weights_only=True)
    assert list(saved) == list(module.state_dict()) == ["1.0.weight", "1.0.bias", "2.weight", "2.bias"]
    assert tuple(saved["1.0.weight"].shape) == (16, 784)  # torch's (out, in)
    np.testing.assert_array_equal(saved["1.0.weight"].numpy(), checkpoint.params["1.0.weight"].T)
    for key, value in module.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # import: the same --layers give a run that evaluates to the original's accuracy
    imported = str(tmp_path / "imported")
    cli("import", model, "--layers", NESTED_TEXT, "--dataset", "fashion-mnist", "--data-dir", data_root,
        "--out", imported)
    assert same_arrays(load_checkpoint(imported).params, checkpoint.params)
    assert accuracy_of(cli("evaluate", imported)) == accuracy


@pytest.mark.rendered  # figures drawn for real (tests/conftest.py: rendered_figures)
def test_cli_trains_evaluates_and_exports_end_to_end(data_root, tmp_path):
    import torch
    from torch import nn

    out = str(tmp_path / "run")
    result = run_cli("train", "--engine", "numpy", "--dataset", "fashion-mnist", "--data-dir", data_root,
                     "--epochs", "2", "--limit", "200", "--hidden", "32", "--batch-size", "16", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "epoch  2/2" in result.stdout and "test loss" in result.stdout
    for name in ("config.json", "metrics.csv", "curves.png", "checkpoint.npz"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    with open(os.path.join(out, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds",
                             "samples_per_s", "engine"]
    assert [r["engine"] for r in rows] == ["numpy", "numpy"]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["train_acc"]) > 0.5  # the synthetic classes are easy
    assert json.load(open(os.path.join(out, "config.json")))["limit"] == 200

    evaluation = run_cli("evaluate", os.path.join(out, "checkpoint.npz"), "--engine", "torch",
                         "--data-dir", data_root)
    assert evaluation.returncode == 0, evaluation.stderr
    assert "test accuracy" in evaluation.stdout and "confusion matrix" in evaluation.stdout
    assert os.path.getsize(os.path.join(out, "confusion.png")) > 0

    model_path = str(tmp_path / "model.pt")
    exported = run_cli("export", os.path.join(out, "checkpoint.npz"), "--to", model_path)
    assert exported.returncode == 0, exported.stderr
    state = torch.load(model_path, weights_only=True)
    model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    model.load_state_dict(state)
    dataset = load_dataset("fashion-mnist", data_root)
    checkpoint = load_checkpoint(os.path.join(out, "checkpoint.npz"))
    config = TrainConfig.from_json(checkpoint.meta["config"])
    engine = load_engine("numpy")
    net = engine.build_net(config.network, config.init, config.seed, config.dtype)
    net.load_state_dict(checkpoint.params)
    ours = net.forward(dataset.test_x)
    with torch.no_grad():
        theirs = model(torch.from_numpy(dataset.test_x)).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5 * np.abs(ours).max())
    assert np.array_equal(theirs.argmax(1), ours.argmax(1))


def test_a_torchvision_that_does_not_load_is_one_line_naming_both_versions(trained, tmp_path, monkeypatch):
    """A torchvision built for another torch (a CUDA one beside a CPU-only torch fails with
    "operator torchvision::nms does not exist") is named where it is first needed, with both
    versions and how to reinstall them as a pair: never a traceback."""
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` now fails
    for command in (["evaluate", trained[1], "--data-dir", trained[0]],
                    ["export", trained[1], "--to", str(tmp_path / "model.pt")],
                    ["train", "--dataset", "fashion-mnist", "--data-dir", trained[0], "--out", str(tmp_path / "r")]):
        result = run_cli(*command)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "torchvision " in result.stderr and "does not load beside torch " in result.stderr
        assert "as a pair" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "r").exists()  # nothing half-written

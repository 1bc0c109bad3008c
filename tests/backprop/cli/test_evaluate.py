"""`backprop evaluate` (backprop/cli/evaluate.py): the pictures it writes, the same accuracy in every
engine, and only the test split read."""

from __future__ import annotations

import os

import pytest

from backprop import pictures
from backprop.cli import main
from tests.helpers import accuracy_of, cli_out, run_cli
from tests.networks import RECURRENT_STACKS


def test_evaluate_reads_only_the_test_split_and_compare_and_bench_only_the_training_split(
        trained, tmp_path, monkeypatch, capsys, no_pictures):
    import backprop.datasets.mnist as mnist

    calls = []
    real = mnist.load_dataset

    def spy(*args, **kwargs):
        calls.append(kwargs.get("splits", mnist.SPLITS))
        return real(*args, **kwargs)

    monkeypatch.setattr(mnist, "load_dataset", spy)
    monkeypatch.setattr("backprop.cli.evaluate.load_dataset", spy)
    data_root, run = trained
    assert main(["evaluate", run, "--out", str(tmp_path / "e")]) == 0
    assert main(["compare", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "4", "--steps", "2",
                 "--quiet", "--out", str(tmp_path / "c")]) == 0
    assert main(["bench", "--engines", "numpy", "--data-dir", data_root, "--dataset", "fashion-mnist",
                 "--workloads", "notebook", "--batch-sizes", "8", "--steps", "1", "--repeats", "1", "--warmup", "1",
                 "--no-compile", "--isolation", "none", "--no-phases", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert calls == [("test",), ("train",), ("train",)]
    split = real("fashion-mnist", data_root, splits=("test",))
    assert split.train_x.shape == (0, 784) and len(split.test_y) == 64


@pytest.mark.rendered  # figures drawn for real (tests/conftest.py: rendered_figures)
def test_evaluate_writes_the_weight_and_mistake_grids(trained, tmp_path):
    _, run = trained
    out = str(tmp_path / "eval")
    result = run_cli("evaluate", run, "--out", out)
    assert result.returncode == 0, result.stderr
    for name in (pictures.WEIGHTS_PNG, pictures.MISTAKES_PNG):
        path = os.path.join(out, name)
        assert f"wrote {path}" in result.stdout
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_every_engine_evaluates_a_recurrent_checkpoint_to_the_sameaccuracy_of(data_root, tmp_path, capsys, no_pictures):
    out = str(tmp_path / "run")
    cli_out(capsys, "train", "--layers", RECURRENT_STACKS[0], "--dataset", "fashion-mnist", "--data-dir", data_root,
            "--limit", "32", "--batch-size", "16", "--epochs", "1", "--dtype", "float64", "--quiet", "--out", out)
    accuracies = {engine: accuracy_of(cli_out(capsys, "evaluate", out, "--engine", engine, "--out", str(tmp_path)))
                  for engine in ("numpy", "torch", "autograd")}
    assert len(set(accuracies.values())) == 1, accuracies

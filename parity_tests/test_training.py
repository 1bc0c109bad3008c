"""Training runs: checkpoints across engines, exact resume, the CLI end to end."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from backprop.checkpoint import load_checkpoint
from backprop.config import TrainConfig
from backprop.engines import load_engine
from backprop.trainer import Trainer
from data import load_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides) -> TrainConfig:
    base = dict(dataset="fashion-mnist", hidden=[16, 8], activation="tanh", init="xavier_normal",
                batch_size=24, lr=0.05, momentum=0.9, epochs=2, seed=3)
    return TrainConfig(**{**base, **overrides})


def _train(config, engine, data_root, out, resume=None):
    dataset = load_dataset(config.dataset, data_root, dtype=config.dtype)
    trainer = Trainer(config, load_engine(engine), dataset, out, quiet=True, resume=resume,
                      log=lambda *_: None)
    trainer.run()
    return trainer


def _same_bits(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k].view(np.uint8), b[k].view(np.uint8)) for k in a) and a.keys() == b.keys()


@pytest.mark.parametrize("engine_name", ["numpy", "torch", "autograd"])
def test_resuming_continues_the_exact_trajectory_of_an_uninterrupted_run(engine_name, data_root, tmp_path):
    config = _config(optimizer="sgd")
    straight = _train(config, engine_name, data_root, str(tmp_path / "straight"))
    first = _train(_config(epochs=1), engine_name, data_root, str(tmp_path / "split"))
    checkpoint = load_checkpoint(first.checkpoint_path)
    resumed = _train(config, engine_name, data_root, str(tmp_path / "split"), resume=checkpoint)
    assert _same_bits(straight.net.state_dict(), resumed.net.state_dict())
    a, b = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert _same_bits(a["state"]["momentum_buffer"], b["state"]["momentum_buffer"])
    assert [r["train_loss"] for r in straight.progress.history] == [
        r["train_loss"] for r in resumed.progress.history
    ]


def test_resuming_mid_epoch_continues_the_exact_trajectory(data_root, tmp_path):
    config = _config(epochs=1, optimizer="adam", lr=0.01, momentum=0.0)
    straight = _train(config, "numpy", data_root, str(tmp_path / "straight"))
    dataset = load_dataset(config.dataset, data_root)
    partial = Trainer(config, load_engine("numpy"), dataset, str(tmp_path / "partial"), quiet=True,
                      log=lambda *_: None)
    os.makedirs(partial.out_dir, exist_ok=True)
    # Stop after 4 of the 11 batches, as Ctrl-C would, and save.
    original = partial.feeder.batch

    def batch(step):
        if step == 4:
            partial._stop_requested = True
        return original(step)

    partial.feeder.batch = batch
    with pytest.raises(Exception, match="interrupted at epoch 1, batch 5"):
        partial.run()
    checkpoint = load_checkpoint(partial.checkpoint_path)
    assert checkpoint.meta["progress"]["step"] == 5
    resumed = _train(config, "numpy", data_root, str(tmp_path / "partial"), resume=checkpoint)
    assert _same_bits(straight.net.state_dict(), resumed.net.state_dict())
    assert straight.progress.history[0]["train_loss"] == resumed.progress.history[0]["train_loss"]


@pytest.mark.parametrize("source, target", [("numpy", "torch"), ("torch", "autograd"), ("autograd", "numpy")])
def test_any_engine_resumes_any_engines_checkpoint(source, target, data_root, tmp_path):
    config = _config(dtype="float64")
    first = _train(_config(dtype="float64", epochs=1), source, data_root, str(tmp_path / "a"))
    checkpoint = load_checkpoint(first.checkpoint_path)
    resumed = _train(config, target, data_root, str(tmp_path / "a"), resume=checkpoint)
    reference = _train(config, source, data_root, str(tmp_path / "b"))
    # Another engine rounds differently; in float64 one epoch stays within 1e-10 of the scale.
    for key, value in reference.net.state_dict().items():
        got = resumed.net.state_dict()[key]
        assert np.max(np.abs(got - value)) <= 1e-10 * max(1.0, np.max(np.abs(value))), key


def test_checkpoint_round_trip_between_engines_is_bit_exact(data_root, tmp_path):
    trainer = _train(_config(epochs=1), "torch", data_root, str(tmp_path / "t"))
    checkpoint = load_checkpoint(trainer.checkpoint_path)
    config = _config()
    for name in ("numpy", "autograd", "torch"):
        engine = load_engine(name)
        net = engine.build_net(config.sizes, config.activation, config.init, 99, config.dtype)
        net.load_state_dict(checkpoint.params)
        assert _same_bits(net.state_dict(), trainer.net.state_dict()), name
        opt = engine.build_optimizer(net, "sgd", 0.05, momentum=0.9)
        opt.load_state_dict(checkpoint.optimizer)
        assert _same_bits(opt.state_dict()["state"]["momentum_buffer"],
                          trainer.optimizer.state_dict()["state"]["momentum_buffer"]), name


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "backprop", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


def test_cli_trains_evaluates_and_exports_end_to_end(data_root, tmp_path):
    import torch
    from torch import nn

    out = str(tmp_path / "run")
    result = _cli("train", "--engine", "numpy", "--dataset", "fashion-mnist", "--data-dir", data_root,
                  "--epochs", "2", "--limit", "200", "--hidden", "32", "--batch-size", "16", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "epoch  2/2" in result.stdout and "test loss" in result.stdout
    for name in ("config.json", "metrics.csv", "curves.png", "checkpoint.npz"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    with open(os.path.join(out, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds",
                             "samples_per_s"]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["train_acc"]) > 0.5  # the synthetic classes are easy
    assert json.load(open(os.path.join(out, "config.json")))["limit"] == 200

    evaluation = _cli("evaluate", os.path.join(out, "checkpoint.npz"), "--engine", "torch",
                      "--data-dir", data_root)
    assert evaluation.returncode == 0, evaluation.stderr
    assert "test accuracy" in evaluation.stdout and "confusion matrix" in evaluation.stdout
    assert os.path.getsize(os.path.join(out, "confusion.png")) > 0

    model_path = str(tmp_path / "model.pt")
    exported = _cli("export", os.path.join(out, "checkpoint.npz"), "--to", model_path)
    assert exported.returncode == 0, exported.stderr
    state = torch.load(model_path, weights_only=True)
    model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    model.load_state_dict(state)
    dataset = load_dataset("fashion-mnist", data_root)
    checkpoint = load_checkpoint(os.path.join(out, "checkpoint.npz"))
    config = TrainConfig.from_json(checkpoint.meta["config"])
    engine = load_engine("numpy")
    net = engine.build_net(config.sizes, config.activation, config.init, config.seed, config.dtype)
    net.load_state_dict(checkpoint.params)
    ours = net.forward(dataset.test_x)
    with torch.no_grad():
        theirs = model(torch.from_numpy(dataset.test_x)).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5 * np.abs(ours).max())
    assert np.array_equal(theirs.argmax(1), ours.argmax(1))


def test_cli_resumes_a_numpy_run_with_the_torch_engine(data_root, tmp_path):
    out = str(tmp_path / "run")
    args = ["--dataset", "fashion-mnist", "--data-dir", data_root, "--limit", "100", "--hidden", "8",
            "--quiet"]
    first = _cli("train", "--engine", "numpy", "--epochs", "1", "--out", out, *args)
    assert first.returncode == 0, first.stderr
    second = _cli("train", "--engine", "torch", "--resume", os.path.join(out, "checkpoint.npz"),
                  "--epochs", "2", "--data-dir", data_root, "--quiet")
    assert second.returncode == 0, second.stderr
    assert "written by the numpy engine" in second.stdout and "epoch  2/2" in second.stdout
    with open(os.path.join(out, "metrics.csv")) as f:
        assert len(list(csv.DictReader(f))) == 2


def test_backprop_engine_environment_variable_picks_the_engine(data_root, tmp_path):
    out = str(tmp_path / "run")
    result = _cli("train", "--dataset", "fashion-mnist", "--data-dir", data_root, "--epochs", "1",
                  "--limit", "50", "--hidden", "4", "--out", out, "--quiet", env={"BACKPROP_ENGINE": "autograd"})
    assert result.returncode == 0, result.stderr
    assert "autograd engine" in result.stdout
    assert load_checkpoint(os.path.join(out, "checkpoint.npz")).meta["engine"] == "autograd"


def test_the_data_package_is_found_even_beside_a_users_own_data_folder(tmp_path):
    """The default --data-dir is ./data: a dataset folder there must not shadow the package."""
    (tmp_path / "data" / "MNIST" / "raw").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "backprop", "train", "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    found = subprocess.run([sys.executable, "-c", "import data; print(data.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=60)
    assert found.stdout.strip() == os.path.join(ROOT, "data", "__init__.py")

"""The training loop (backprop/training.py): exact resume (mid-epoch, any engine, dropout and batch
norm state), divergence and bad data stopped with a message, clipping, progress bars, the curves'
title."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import sys
import textwrap

import numpy as np
import pytest

import numpy_net
from backprop.architecture import image_view, parse_layers
from backprop.checkpoint import load_checkpoint
from backprop.cli import main
from backprop.config import TrainConfig, new_config
from backprop.datasets import load_dataset
from backprop.engines import load_engine
from backprop.training import Trainer, TrainingDiverged, TrainingInterrupted, curves_title, evaluate
from engine_core.specs import build, mlp
from tests.helpers import run_cli, same_arrays, same_bits, small_config, tanh_config, train_quietly, usage_error_line
from tests.networks import STACK, stack_config

TRAIN = ["train", "--dataset", "fashion-mnist", "--hidden", "8", "--batch-size", "4", "--epochs", "1"]


def test_no_progress_bar_when_stderr_is_not_a_terminal(data_root, tmp_path):
    result = run_cli(*TRAIN, "--data-dir", data_root, "--out", str(tmp_path / "run"))  # no --quiet
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # a log file or pipe gets no \r-redrawn bars
    compared = run_cli("compare", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "4",
                       "--steps", "3", "--out", str(tmp_path / "compare"))
    assert compared.returncode == 0 and "step/s" not in compared.stderr and "\r" not in compared.stderr


class _Terminal(io.StringIO):
    """stderr as the program sees a terminal: isatty() is true (what decides whether a bar is drawn)."""

    def isatty(self) -> bool:
        return True


def test_a_progress_bar_when_stderr_is_a_terminal(data_root, tmp_path):
    terminal = _Terminal()
    with contextlib.redirect_stderr(terminal), contextlib.redirect_stdout(io.StringIO()):
        assert main([*TRAIN, "--data-dir", data_root, "--out", str(tmp_path / "run")]) == 0
    seen = terminal.getvalue()
    assert "epoch 1/1" in seen and "batch" in seen and "\r" in seen, seen[-500:]


def test_a_resumed_run_that_changed_engine_says_so_in_its_title():
    title = curves_title(new_config("notebook"), ["numpy", "numpy", "torch"], "mnist")
    assert "engines numpy (epochs 1-2) then torch (epoch 3): resumed with another engine" in title
    assert "sgd lr 0.001" in title


def test_the_title_of_a_model_without_hidden_layers_names_no_activation():
    title = curves_title(new_config("default", hidden=[]), ["numpy"], "mnist")
    assert "784-10, no hidden layer" in title and "relu" not in title


# 64 samples in batches of 16: 4 steps an epoch, an MLP 784-8-10.
TINY_RUN = ["--dataset", "fashion-mnist", "--hidden", "8", "--batch-size", "16", "--limit", "64", "--quiet",
            "--blas-threads", "1"]


def _train_tiny(data_root: str, out: str, *flags: str) -> None:
    assert main(["train", *TINY_RUN, "--data-dir", data_root, "--out", out, *flags]) == 0


def test_an_engine_without_clip_grad_norm_is_refused_before_any_data_is_read(tmp_path, monkeypatch, capsys):
    (tmp_path / "noclip.py").write_text("from numpy_net import *  # noqa: F403\n\ndel clip_grad_norm_  # noqa: F821\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = usage_error_line(["train", "--engine", "noclip", "--clip-grad-norm", "1", "--data-dir",
                                str(tmp_path / "none")], capsys)
    assert message.startswith("backprop train: error: argument --engine: ")  # the engine, what it lacks, for what
    assert all(fact in message for fact in ("'noclip'", "clip_grad_norm_", "--clip-grad-norm")), message
    message = usage_error_line(["compare", "--engines", "numpy,noclip", "--clip-grad-norm", "1"], capsys)
    assert "argument --engines: engine 'noclip' has no clip_grad_norm_" in message


@pytest.mark.parametrize("engine", ["numpy", "torch", "autograd"])
def test_a_tiny_max_norm_bounds_every_step_of_plain_sgd(engine, data_root, tmp_path):
    """Plain SGD (lr 0.1, no momentum) moves the parameters by lr x the clipped gradient, whose
    global norm is at most max_norm: after 4 steps at max_norm 1e-4 they have moved by at most
    4 x 0.1 x 1e-4 (and by more than 100 times that without clipping)."""
    flags = ["--engine", engine, "--epochs", "1", "--lr", "0.1", "--momentum", "0", "--lr-schedule", "constant"]
    moved = {}
    for name, clip in (("clipped", ["--clip-grad-norm", "1e-4"]), ("plain", [])):
        out = str(tmp_path / name)
        _train_tiny(data_root, out, *flags, *clip)
        checkpoint = load_checkpoint(out)
        config = checkpoint.config
        start = load_engine("numpy").build_net(config.network, config.init, config.seed, config.dtype).state_dict()
        moved[name] = math.sqrt(sum(float(np.sum((checkpoint.params[k].astype(np.float64) - v) ** 2))
                                    for k, v in start.items()))
    bound = 4 * 0.1 * 1e-4
    assert 0 < moved["clipped"] <= bound * (1 + 1e-4), moved
    assert moved["plain"] > 100 * bound, moved


# -- divergence ------------------------------------------------------------------------------
def test_a_nan_loss_stops_the_run_with_where_and_what_to_try_and_keeps_the_last_checkpoint(data_root, tmp_path):
    dataset = load_dataset("fashion-mnist", data_root)
    out = str(tmp_path / "run")
    trainer = Trainer(small_config(), load_engine("numpy"), dataset, out, quiet=True, log=lambda *_: None)
    trainer.config.epochs = 1
    trainer.run()  # one good epoch, one good checkpoint
    before = open(trainer.checkpoint_path, "rb").read()
    trainer.config.epochs = 2
    trainer.net.flat_parameters[:] = np.nan  # the weights blow up
    with pytest.raises(TrainingDiverged) as info:
        trainer.run()
    message = str(info.value)
    assert "diverged at step 17 (epoch 2, batch 1)" in message
    assert "Last finite loss:" in message and "try a smaller one" in message
    assert info.value.lr == trainer.optimizer.lr
    assert open(trainer.checkpoint_path, "rb").read() == before


@pytest.mark.parametrize("part", ["train_x", "test_x"])
def test_data_holding_nan_is_refused_before_training_not_blamed_on_the_learning_rate(data_root, tmp_path, part):
    """NaN in the samples (only possible through the Python API: IDX files hold uint8) stops the
    run before any step, naming the sample and the pixel, and no run directory is written."""
    dataset = load_dataset("fashion-mnist", data_root)
    values = getattr(dataset, part).astype(np.float32)
    values[5, 147] = np.nan
    setattr(dataset, part, values)
    out = tmp_path / "run"
    expected = r"data holds NaN or Inf \(1 values; the first in sample 5, pixel 147\)"
    with pytest.raises(ValueError, match=expected) as info:
        Trainer(small_config(), load_engine("numpy"), dataset, str(out), quiet=True, log=lambda *_: None)
    assert "try a smaller one" not in str(info.value) and not out.exists()


@pytest.mark.parametrize(("layers", "refused"), [
    ("linear(784, 8), batchnorm1d(8), relu, linear(8, 10)", True),
    ("conv2d(1, 2, 28), batchnorm2d(2), flatten, linear(2, 10)", True),  # one pixel per channel
    ("conv2d(1, 2, 3), batchnorm2d(2), flatten, linear(1352, 10)", False),  # 676 values per channel
])
def test_a_last_batch_of_one_that_a_batch_norm_cannot_take_is_refused_before_the_run(data_root, tmp_path, capsys,
                                                                                     layers, refused):
    """33 samples at batch size 16: the last batch holds one sample. Where a batch norm would see a
    single value per channel the run is refused up front, naming the layer and the way out (before,
    the first epoch crashed at its last step with a traceback); a batch norm over image pixels
    takes it."""
    from backprop.cli import main

    out = tmp_path / "run"
    status = main(["train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--epochs", "1", "--limit", "33",
                   "--batch-size", "16", "--layers", layers, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    if refused:
        assert status == 1 and "Traceback" not in err, err
        assert "the last batch of every epoch would hold 1 sample (33 samples, batch size 16)" in err, err
        assert "layer 1 BatchNorm" in err and "--limit 32" in err and not out.exists()
    else:
        assert status == 0, err


# -- exact resume -------------------------------------------------------------------------------
def _trainer(config, engine, data_root, out, resume=None):
    dataset = load_dataset(config.dataset, data_root, dtype=config.dtype)
    return Trainer(config, load_engine(engine), dataset, out, quiet=True, resume=resume, log=lambda *_: None)


def _interrupted(config, engine, data_root, out, at_step):
    partial = _trainer(config, engine, data_root, out)
    original = partial.feeder.batch

    def batch(step):
        if partial.progress.epoch == 1 and step == at_step:
            partial._stop_requested = True
        return original(step)

    partial.feeder.batch = batch
    with pytest.raises(TrainingInterrupted):
        partial.run()
    return load_checkpoint(partial.checkpoint_path)


@pytest.mark.parametrize("first, second", [("numpy", "numpy"), ("torch", "torch")])
def test_interrupted_and_resumed_stack_equals_the_uninterrupted_run_bit_for_bit(first, second, data_root, tmp_path):
    config = stack_config(limit=144)  # 6 batches an epoch
    straight = _trainer(config, first, data_root, str(tmp_path / "straight"))
    straight.run()
    checkpoint = _interrupted(config, first, data_root, str(tmp_path / "partial"), at_step=4)
    assert set(checkpoint.dropout_rng) == {"4", "9"} and set(checkpoint.num_batches_tracked) == {"1", "7"}
    steps = 144 // 24
    assert checkpoint.num_batches_tracked == {"1": steps + 5, "7": steps + 5}
    resumed = _trainer(config, second, data_root, str(tmp_path / "partial"), resume=checkpoint)
    resumed.run()
    assert same_arrays(straight.net.state_dict(), resumed.net.state_dict())
    assert straight.dropout_states() == resumed.dropout_states()
    assert straight.num_batches_tracked() == resumed.num_batches_tracked() == {"1": 2 * steps, "7": 2 * steps}
    assert [r["test_acc"] for r in straight.progress.history] == [r["test_acc"] for r in resumed.progress.history]


def test_a_numpy_checkpoint_resumed_by_torch_follows_the_same_trajectory(data_root, tmp_path):
    config = stack_config(limit=144)  # 6 batches an epoch
    straight = _trainer(config, "numpy", data_root, str(tmp_path / "straight"))
    straight.run()
    checkpoint = _interrupted(config, "numpy", data_root, str(tmp_path / "partial"), at_step=4)
    resumed = _trainer(config, "torch", data_root, str(tmp_path / "partial"), resume=checkpoint)
    resumed.run()
    # Another engine's GEMMs round differently (float64: ~1e-16 per operation), but it draws the
    # very same dropout masks and continues the same running statistics.
    assert straight.dropout_states() == resumed.dropout_states()
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-10 * max(1.0, np.abs(a[key]).max()), err_msg=key)


def test_evaluation_leaves_a_training_net_in_train_mode(data_root):
    engine = load_engine("numpy")
    net = build(numpy_net, STACK, "float32", 0)
    dataset = load_dataset("fashion-mnist", data_root, splits=("test",))
    before = net.state_dict()
    evaluate(engine, net, image_view(dataset.test_x, STACK), dataset.test_y, chunk=16)
    assert net.training and all(layer.training for layer in net.layers)
    assert same_arrays(before, net.state_dict())  # eval mode: the running statistics did not move


def test_the_trainer_uses_each_epochs_rate(data_root, tmp_path):
    config = TrainConfig(dataset="fashion-mnist", network=mlp([784, 4, 10], "relu"), epochs=3, batch_size=64,
                         lr=0.1, lr_schedule="step", step_size=1, gamma=0.5)
    seen = []
    trainer = Trainer(config, load_engine("numpy"), load_dataset("fashion-mnist", data_root), str(tmp_path),
                      quiet=True, log=lambda *_: seen.append(trainer.optimizer.lr))
    trainer.run()
    assert seen == [0.1, 0.05, 0.025]


@pytest.mark.parametrize("engine_name", ["numpy", "torch", "autograd"])
def test_resuming_continues_the_exact_trajectory_of_an_uninterrupted_run(engine_name, data_root, tmp_path):
    config = tanh_config(optimizer="sgd")
    straight = train_quietly(config, engine_name, data_root, str(tmp_path / "straight"))
    first = train_quietly(tanh_config(epochs=1), engine_name, data_root, str(tmp_path / "split"))
    checkpoint = load_checkpoint(first.checkpoint_path)
    resumed = train_quietly(config, engine_name, data_root, str(tmp_path / "split"), resume=checkpoint)
    assert same_bits(straight.net.state_dict(), resumed.net.state_dict())
    a, b = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert same_bits(a["state"]["momentum_buffer"], b["state"]["momentum_buffer"])
    assert [r["train_loss"] for r in straight.progress.history] == [
        r["train_loss"] for r in resumed.progress.history
    ]


def test_resuming_mid_epoch_continues_the_exact_trajectory(data_root, tmp_path):
    config = tanh_config(epochs=1, optimizer="adam", lr=0.01, momentum=0.0)
    straight = train_quietly(config, "numpy", data_root, str(tmp_path / "straight"))
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
    with pytest.raises(TrainingInterrupted, match="interrupted at epoch 1, batch 5"):
        partial.run()
    checkpoint = load_checkpoint(partial.checkpoint_path)
    assert checkpoint.meta["progress"]["step"] == 5
    resumed = train_quietly(config, "numpy", data_root, str(tmp_path / "partial"), resume=checkpoint)
    assert same_bits(straight.net.state_dict(), resumed.net.state_dict())
    assert straight.progress.history[0]["train_loss"] == resumed.progress.history[0]["train_loss"]


@pytest.mark.parametrize("source, target", [("numpy", "torch"), ("torch", "autograd"), ("autograd", "numpy")])
def test_any_engine_resumes_any_engines_checkpoint(source, target, data_root, tmp_path):
    config = tanh_config(dtype="float64")
    first = train_quietly(tanh_config(dtype="float64", epochs=1), source, data_root, str(tmp_path / "a"))
    checkpoint = load_checkpoint(first.checkpoint_path)
    resumed = train_quietly(config, target, data_root, str(tmp_path / "a"), resume=checkpoint)
    reference = train_quietly(config, source, data_root, str(tmp_path / "b"))
    # Another engine rounds differently; in float64 one epoch stays within 1e-10 of the scale.
    for key, value in reference.net.state_dict().items():
        got = resumed.net.state_dict()[key]
        assert np.max(np.abs(got - value)) <= 1e-10 * max(1.0, np.max(np.abs(value))), key


def test_an_engine_that_declares_accumulating_gradients_gets_zero_grad_before_backward(data_root, tmp_path):
    """A third-party engine declaring ACCUMULATES_GRADIENTS: zero_grad comes before every backward."""
    (tmp_path / "counting.py").write_text(textwrap.dedent("""
        import numpy_net
        from numpy_net import *  # noqa: F403

        ACCUMULATES_GRADIENTS = True
        TRAINING_KWARGS = {}
        EVENTS = []


        class Sequential(numpy_net.Sequential):
            def backward(self, delta, input_grad=True):
                EVENTS.append("backward")
                return super().backward(delta, input_grad=input_grad)


        class SGD(numpy_net.SGD):
            def zero_grad(self):
                EVENTS.append("zero_grad")
                return super().zero_grad()
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        engine = load_engine("counting")
        trainer = Trainer(tanh_config(epochs=1, limit=48), engine, load_dataset("fashion-mnist", data_root),
                          str(tmp_path / "run"), quiet=True, log=lambda *_: None)
        trainer.run()
        events = engine.module.EVENTS
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("counting", None)
    assert events == ["zero_grad", "backward"] * 2  # 48 samples, batch 24


# Batch norm with momentum=None averages every batch so far: running = running + (batch - running) /
# num_batches_tracked, the layer's own counter, which a checkpoint stores and a resumed run sets back.
CUMULATIVE = "linear(784, 8), batchnorm1d(8, momentum=None), tanh, linear(8, 10)"


@pytest.mark.parametrize("engine_name", ["numpy", "torch", "autograd"])
def test_a_cumulative_average_batch_norm_resumes_mid_epoch_bit_for_bit(engine_name, data_root, tmp_path,
                                                                       monkeypatch):
    from backprop import training
    from backprop.architecture import parse_layers
    from backprop.engines import layer_at

    monkeypatch.setattr(training, "plot_curves", lambda *args, **kwargs: None)  # pictures are not tested here
    config = tanh_config(network=parse_layers(CUMULATIVE), optimizer="sgd")
    straight = train_quietly(config, engine_name, data_root, str(tmp_path / "straight"))
    steps = straight.progress.global_step
    assert straight.num_batches_tracked() == {"1": steps} == {"1": layer_at(straight.net, "1").num_batches_tracked}
    partial = Trainer(config, load_engine(engine_name), load_dataset(config.dataset, data_root),
                      str(tmp_path / "partial"), quiet=True, log=lambda *_: None)
    original = partial.feeder.batch

    def batch(step):
        if partial.progress.epoch == 1 and step == 3:
            partial._stop_requested = True
        return original(step)

    partial.feeder.batch = batch
    with pytest.raises(TrainingInterrupted):
        partial.run()
    checkpoint = load_checkpoint(partial.checkpoint_path)
    done = checkpoint.progress.global_step
    assert checkpoint.num_batches_tracked == {"1": done} and 0 < done < steps
    resumed = train_quietly(config, engine_name, data_root, str(tmp_path / "partial"), resume=checkpoint)
    assert same_bits(straight.net.state_dict(), resumed.net.state_dict())
    assert resumed.num_batches_tracked() == {"1": steps}
    # The count is what the average divides by: resumed from 0, the running statistics differ.
    restarted = train_quietly(config, engine_name, data_root, str(tmp_path / "restarted"),
                       resume=dataclasses.replace(checkpoint, num_batches_tracked={"1": 0}))
    assert restarted.num_batches_tracked() == {"1": steps - done}
    assert not np.array_equal(restarted.net.state_dict()["1.running_mean"], straight.net.state_dict()["1.running_mean"])


def test_an_engine_whose_batch_norm_keeps_no_counter_is_counted_by_the_trainer(data_root, tmp_path, monkeypatch):
    """A third-party batch norm without num_batches_tracked (written before momentum=None): the
    trainer counts one per training step, as torch would, and carries the count across a resume."""
    from backprop import training
    from backprop.architecture import parse_layers

    (tmp_path / "uncounted.py").write_text(textwrap.dedent("""
        import numpy_net
        from numpy_net import *  # noqa: F403


        class BatchNorm1d(numpy_net.BatchNorm1d):
            @property
            def num_batches_tracked(self):
                raise AttributeError("num_batches_tracked")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(training, "plot_curves", lambda *args, **kwargs: None)
    try:
        engine = load_engine("uncounted")
        config = tanh_config(network=parse_layers("linear(784, 8), batchnorm1d(8), tanh, linear(8, 10)"), limit=48)
        first = Trainer(dataclasses.replace(config, epochs=1), engine, load_dataset("fashion-mnist", data_root),
                        str(tmp_path / "run"), quiet=True, log=lambda *_: None)
        first.run()
        checkpoint = load_checkpoint(first.checkpoint_path)
        assert checkpoint.num_batches_tracked == {"1": 2}  # 48 samples, batch 24
        resumed = train_quietly(config, "uncounted", data_root, str(tmp_path / "run"), resume=checkpoint)
    finally:
        sys.modules.pop("uncounted", None)
    assert resumed.num_batches_tracked() == {"1": 4}


def test_the_curves_title_names_a_preset_only_for_its_own_network():
    from backprop.config import new_config
    from backprop.training import curves_title

    assert "default preset: " in curves_title(new_config("default"), ["numpy"], "mnist")
    for changed in (new_config("default", hidden=[8]),
                    new_config("default", layers=parse_layers("linear(784, 10)"))):
        assert "preset" not in curves_title(changed, ["numpy"], "mnist")


def test_a_stored_network_with_dropout_1_still_loads_and_only_training_refuses_it(tmp_path):
    """Old checkpoints keep loading: a config whose dropout is 1 (accepted before the rule) loads
    and evaluates; the Trainer, which would train it to chance, refuses it by name."""
    from backprop.config import TrainConfig
    from backprop.datasets import load_dataset
    from backprop.engines import load_engine
    from backprop.training import Trainer
    from tests.datasets import write_dataset
    from tests.networks import stack_config

    data = stack_config().to_json()
    data["layers"] = [{"kind": "flatten", "args": {"start_dim": 1, "end_dim": -1}},
                      {"kind": "dropout", "args": {"p": 1.0, "inplace": False, "seed": 0}},
                      {"kind": "linear", "args": {"in_features": 784, "out_features": 10, "bias": True}}]
    config = TrainConfig.from_json(data)
    write_dataset(str(tmp_path), "fashion-mnist", n_train=8, n_test=4)
    dataset = load_dataset("fashion-mnist", str(tmp_path))
    with pytest.raises(ValueError, match=r"layer 1 dropout\(p=1.0\): p=1 zeroes every value"):
        Trainer(config, load_engine("numpy"), dataset, str(tmp_path / "run"), quiet=True)

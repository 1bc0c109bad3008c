"""Training runs that go wrong: divergence, kills mid-write, Ctrl-C, bad checkpoints, bad flags."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backprop.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from backprop.datasets import load_dataset
from backprop.engines import load_engine
from backprop.training import Trainer, TrainingDiverged
from engine_core.specs import mlp

from .datasets import write_dataset
from .helpers import ROOT, run_cli, small_config, write_checkpoint

_config = small_config


def _cli(*args, env=None):
    return run_cli(*args, env=env)


# -- divergence ------------------------------------------------------------------------------
def test_a_nan_loss_stops_the_run_with_where_and_what_to_try_and_keeps_the_last_checkpoint(data_root, tmp_path):
    dataset = load_dataset("fashion-mnist", data_root)
    out = str(tmp_path / "run")
    trainer = Trainer(_config(), load_engine("numpy"), dataset, out, quiet=True, log=lambda *_: None)
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
        Trainer(_config(), load_engine("numpy"), dataset, str(out), quiet=True, log=lambda *_: None)
    assert "try a smaller one" not in str(info.value) and not out.exists()


def test_the_cli_exits_3_on_divergence(data_root, tmp_path):
    # A deep linear network with a huge step size grows its weights geometrically.
    result = _cli("train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "16,16",
                  "--activation", "identity", "--lr", "10", "--epochs", "2", "--out", str(tmp_path / "r"), "--quiet")
    assert result.returncode == 3, result.stderr
    assert "training diverged" in result.stderr and "with a smaller learning rate: " in result.stderr
    assert "Traceback" not in result.stderr
    # NumPy's own overflow warnings are silenced inside the training loop (the engine reports it).
    assert "RuntimeWarning" not in result.stderr


def test_the_command_line_leaves_numpys_error_handling_as_it_found_it(data_root, tmp_path):
    from backprop.cli import main

    before = np.geterr()
    status = main(["train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--epochs", "1", "--limit", "32",
                   "--batch-size", "16", "--hidden", "4", "--out", str(tmp_path / "run"), "--quiet"])
    assert status == 0
    assert np.geterr() == before


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


# -- atomic checkpoints ----------------------------------------------------------------------
WRITER = """
import sys, numpy as np
from backprop.checkpoint import checkpoint_meta, save_checkpoint
from backprop.config import TrainConfig
from backprop.progress import Progress
from engine_core.specs import mlp
path = sys.argv[1]
config = TrainConfig(network=mlp([784, 300, 10], "relu"), dtype="float64")
i = 0
print("ready", flush=True)
while True:
    v = float(i % 2)
    params = {"0.weight": np.full((784, 300), v), "0.bias": np.full(300, v),
              "2.weight": np.full((300, 10), v), "2.bias": np.full(10, v)}
    meta = {**checkpoint_meta(config, "numpy", Progress(), 1000), "marker": i % 2}
    save_checkpoint(path, params, {"step": 0, "lr": 0.05, "state": {}}, meta)
    i += 1
"""


def test_killing_a_writer_at_any_instant_leaves_a_whole_checkpoint(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(0)
    for trial in range(12):
        writer = subprocess.Popen([sys.executable, str(script), path], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        writer.stdout.readline()  # imports done, writing starts
        time.sleep(rng.uniform(0.05, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if not os.path.exists(path):
            continue  # killed before its first os.replace: nothing to tear
        checkpoint = load_checkpoint(path)  # never raises: old or new, never torn
        marker = checkpoint.meta["marker"]
        assert np.all(checkpoint.params["0.weight"] == float(marker)), trial
    assert os.path.exists(path)


# -- Ctrl-C ----------------------------------------------------------------------------------
def test_ctrl_c_saves_the_last_step_exits_130_and_the_resumed_run_matches(data_root, tmp_path):
    common = ["--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "1024,1024", "--batch-size", "1",
              "--epochs", "2", "--quiet", "--engine", "numpy", "--lr", "0.001"]
    interrupted = str(tmp_path / "interrupted")
    process = subprocess.Popen([sys.executable, "-m", "backprop", "train", *common, "--out", interrupted], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Interrupt during epoch 2: its first line proves training (and the SIGINT handler) is running.
    for line in process.stdout:
        if line.startswith("epoch  1/2"):
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "resume with: " in stderr and " train --resume " in stderr and "Traceback" not in stderr
    checkpoint = load_checkpoint(os.path.join(interrupted, "checkpoint.npz"))
    progress = checkpoint.meta["progress"]
    assert progress["epoch"] == 1 and 0 < progress["step"] < 256, progress  # mid-epoch 2

    # The printed hint, run verbatim through the shell: the run remembers its --data-dir (case 1).
    hint = [line for line in stderr.splitlines() if line.startswith("resume with: ")][-1][len("resume with: "):]
    assert "--data-dir" not in hint
    resumed = subprocess.run(hint + " --quiet", shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, (hint, resumed.stderr)
    straight = str(tmp_path / "straight")
    assert _cli("train", *common, "--out", straight).returncode == 0
    a = load_checkpoint(os.path.join(interrupted, "checkpoint.npz")).params
    b = load_checkpoint(os.path.join(straight, "checkpoint.npz")).params
    assert all(np.array_equal(a[k], b[k]) for k in a)


# -- bad checkpoints -------------------------------------------------------------------------
@pytest.fixture
def good_checkpoint(tmp_path):
    path = str(tmp_path / "good.npz")
    write_checkpoint(path, _config())
    return path


def test_a_truncated_checkpoint_is_refused(good_checkpoint):
    data = open(good_checkpoint, "rb").read()
    open(good_checkpoint, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(good_checkpoint)


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(str(path))
    assert not marker.exists()


def test_an_object_array_inside_an_npz_is_refused(tmp_path):
    path = str(tmp_path / "objects.npz")
    np.savez(path, meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)


def test_a_checkpoint_of_another_architecture_is_refused(good_checkpoint, tmp_path):
    checkpoint = load_checkpoint(good_checkpoint)
    params = dict(checkpoint.params)
    params["0.weight"] = np.zeros((784, 9), np.float32)
    bad = str(tmp_path / "other.npz")
    save_checkpoint(bad, params, {"state": {}}, checkpoint.meta)
    with pytest.raises(CheckpointError, match=r"other.npz: .*'0.weight'.*\(784, 8\).*\(784, 9\)"):
        load_checkpoint(bad)


def test_a_plain_npz_without_metadata_is_refused(tmp_path):
    path = str(tmp_path / "plain.npz")
    np.savez(path, w=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a backprop checkpoint"):
        load_checkpoint(path)


def test_the_cli_refuses_a_bad_checkpoint_with_a_message_and_exit_1(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a zip file")
    for command in (["train", "--resume", str(path)], ["evaluate", str(path)], ["export", str(path), "--to",
                                                                                  str(tmp_path / "m.pt")]):
        result = _cli(*command)
        assert result.returncode == 1, (command, result.stderr)
        assert "junk.npz" in result.stderr and "Traceback" not in result.stderr


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(data=st.data())
def test_a_byte_mutated_checkpoint_either_loads_or_raises_checkpoint_error(good_checkpoint, data):
    raw = bytearray(open(good_checkpoint, "rb").read())
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    mutated = good_checkpoint + ".mutated.npz"
    open(mutated, "wb").write(bytes(raw))
    try:
        checkpoint = load_checkpoint(mutated)
    except CheckpointError as error:
        assert "mutated.npz" in str(error)
        return
    assert set(checkpoint.params) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_metadata_that_is_not_json_is_refused(tmp_path):
    path = str(tmp_path / "badmeta.npz")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    np.savez(path, meta=np.frombuffer(b"{not json", np.uint8))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    np.savez(path, meta=np.frombuffer(json.dumps({"format": "other"}).encode(), np.uint8))
    with pytest.raises(CheckpointError, match="not a backprop checkpoint"):
        load_checkpoint(path)


# -- bad flags: usage errors, exit 2, before any data is read --------------------------------
@pytest.mark.parametrize("flags, text", [
    (["--engine", "jax"], "argument --engine: unknown engine 'jax'"),
    (["--engine", "json"], "'json' has no MLP"),
    (["--engine", "no/such"], "unknown engine 'no/such'"),
    (["--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["--activation", "gelu"], "invalid choice: 'gelu'"),
    (["--batch-size", "0"], "expected a positive integer (>= 1), got 0"),
    (["--epochs", "0"], "expected a positive integer (>= 1), got 0"),
    (["--limit", "0"], "expected a positive integer (>= 1), got 0"),
    (["--lr", "-1"], "expected a finite number >= 0"),
    (["--hidden", "64,x"], "comma-separated positive widths"),
    (["--nesterov", "--momentum", "0"], "--nesterov needs a momentum above 0 (--momentum 0)"),
    (["--optimizer", "adam", "--nesterov"], "--nesterov applies to --optimizer sgd only"),
    (["--limit", "10"], "--batch-size 64 (the default preset's batch size) is larger than --limit 10"),
    (["--out", "/dev/null/run"], "--out: /dev/null is not a directory"),
    (["--engine", "numpy", "--device", "cuda"], "engine 'numpy' runs on cpu (its DEVICES), not cuda"),
    (["--seed", "-1"], "expected an integer >= 0, got -1"),
])
def test_bad_flags_are_usage_errors_before_any_data_is_read(flags, text, tmp_path):
    # The data dir does not exist: had it been read, the exit would be 1 with a data message.
    result = _cli("train", "--data-dir", str(tmp_path / "nowhere"), *flags)
    assert result.returncode == 2, result.stderr
    assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_new_run_never_overwrites_an_existing_one(good_checkpoint, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    before = open(good_checkpoint, "rb").read()
    (run / "checkpoint.npz").write_bytes(before)
    result = _cli("train", "--data-dir", str(tmp_path / "nowhere"), "--out", str(run))
    assert result.returncode == 2 and "already holds a run" in result.stderr and "--resume" in result.stderr
    assert (run / "checkpoint.npz").read_bytes() == before


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error under test is for machines without it")
    result = _cli("train", "--data-dir", str(tmp_path), "--engine", "torch", "--device", "cuda")
    assert result.returncode == 2 and "CUDA is not available" in result.stderr


def test_an_unknown_backprop_engine_variable_is_a_usage_error(tmp_path):
    result = _cli("train", "--data-dir", str(tmp_path), env={"BACKPROP_ENGINE": "jax"})
    assert result.returncode == 2 and "BACKPROP_ENGINE" in result.stderr


# -- checkpoints validated once, for every command (field case 5) ----------------------------
def _commands(path: str, tmp_path) -> list[list[str]]:
    return [["train", "--resume", path, "--data-dir", str(tmp_path / "nowhere")],
            ["evaluate", path, "--data-dir", str(tmp_path / "nowhere")],
            ["export", path, "--to", str(tmp_path / "model.pt")]]


def _assert_every_command_refuses(path: str, tmp_path, words: str) -> None:
    for command in _commands(path, tmp_path):
        result = _cli(*command)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, (command, result.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"backprop: error: {path}: "), (command, result.stderr)
        assert words in lines[0], (command, lines[0])
    assert not os.path.exists(tmp_path / "model.pt")


def _layers(sizes=(784, 8, 10), activation="relu", change=None) -> list[dict]:
    """config.layers of small_config's MLP (or of ``sizes``), ``change``d in place."""
    layers = [spec.to_json() for spec in mlp(list(sizes), activation).children]
    if change is not None:
        change(layers)
    return layers


@pytest.mark.parametrize("changes, words", [
    (dict(config_changes={"layers": _layers(change=lambda ls: ls.__setitem__(1, {"kind": "swish", "args": {}}))}),
     "config.layers[1].kind: expected one of sequential, linear"),
    (dict(config_changes={"init": None}), "config.init: missing"),
    # The metadata says 9 hidden units; the arrays hold 8.
    (dict(config_changes={"layers": _layers((784, 9, 10))}), "'0.weight'"),
], ids=["unknown-activation", "missing-field", "contradicts-the-arrays"])
def test_train_evaluate_and_export_refuse_bad_metadata_with_one_line_and_exit_1(changes, words, tmp_path):
    path = str(tmp_path / "bad.npz")
    write_checkpoint(path, **changes)
    _assert_every_command_refuses(path, tmp_path, words)


def test_train_evaluate_and_export_refuse_bad_optimizer_state(tmp_path):
    """A step count that says SGD with momentum has stepped, but no momentum buffer."""
    path = str(tmp_path / "bad.npz")
    meta = write_checkpoint(path)
    checkpoint_progress = {**meta["progress"], "global_step": 3}
    params = load_checkpoint(path).params
    save_checkpoint(path, params, {"step": 3, "lr": 0.05, "state": {}}, {**meta, "progress": checkpoint_progress})
    _assert_every_command_refuses(path, tmp_path, "momentum_buffer")


@pytest.mark.parametrize("changes, words", [
    (dict(config_changes={"optimizer": "rmsprop"}), "config.optimizer: expected one of sgd, adam, adamw"),
    (dict(config_changes={"dtype": "float16"}), "config.dtype"),
    (dict(config_changes={"dataset": "cifar"}), "config.dataset"),
    (dict(config_changes={"lr_schedule": "linear"}), "config.lr_schedule"),
    (dict(config_changes={"batch_size": 0}), "config.batch_size: expected an integer >= 1"),
    (dict(config_changes={"epochs": "3"}), "config.epochs: expected an integer"),
    (dict(config_changes={"nesterov": 1}), "config.nesterov"),
    (dict(config_changes={"lr": float("nan")}), "config.lr"),
    (dict(config_changes={"betas": [0.9]}), "config.betas"),
    (dict(config_changes={"layers": _layers(change=lambda ls: ls[0]["args"].__setitem__("out_features", 0))}),
     "config.layers[0].out_features"),
    (dict(config_changes={"t_max": None}), "config.t_max: missing"),
    # 784 -> 8, then a Linear that expects 5 features.
    (dict(config_changes={"layers": _layers(change=lambda ls: ls[2]["args"].__setitem__("in_features", 5))}),
     "config.layers: layer 2 Linear(in_features=5"),
    (dict(config_changes={"layers": None}), "config.layers: missing"),
    (dict(config_changes={"layers": []}), "config.layers: expected a non-empty list"),
    (dict(config_changes={"surprise": 1}), "config.surprise: unknown field"),
    (dict(config_changes={"dtype": "float64"}), "is float32, but config.dtype is float64"),
    (dict(meta_changes={"config": None}), "'config' missing"),
    (dict(meta_changes={"engine": None}), "'engine' missing"),
    (dict(meta_changes={"progress": None}), "'progress' missing"),
    (dict(meta_changes={"history": None}), "'history' missing"),
    (dict(meta_changes={"rng": {"train_samples": 0}}), "rng.train_samples"),
    (dict(meta_changes={"progress": {"epoch": 0}}), "progress.step: missing"),
    (dict(meta_changes={"history": [{"epoch": 1}]}), "history[0].train_loss: missing"),
])
def test_every_metadata_field_is_checked(changes, words, tmp_path):
    path = str(tmp_path / "bad.npz")
    write_checkpoint(path, **changes)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message, message


OLD_MLP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "legacy", "default", "checkpoint.npz")


@pytest.mark.parametrize("change, words", [
    (lambda c: c.__setitem__("hidden", [256, 0]), "config.hidden: expected an integer >= 1, got 0"),
    (lambda c: c.__setitem__("sizes", [784, 5, 10]), "config.sizes: [784, 5, 10] contradicts config.hidden"),
    (lambda c: c.__setitem__("activation", "swish"), "config.activation: expected one of identity, relu"),
    (lambda c: c.pop("activation"), "config.activation: missing"),
    (lambda c: c.pop("hidden"), "config.hidden: missing"),
])
def test_every_network_field_of_an_old_mlp_checkpoint_is_checked(change, words, tmp_path):
    """A version 3 MLP (tests/legacy) described its network by hidden, activation and sizes, with
    layers null; those fields are still read, and still checked, when it loads."""
    path = _rewrite_meta(OLD_MLP, str(tmp_path / "old.npz"), lambda meta: change(meta["config"]))
    assert json.loads(np.load(path)["meta"].tobytes())["version"] == 3
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message, message


def test_progress_that_contradicts_the_run_is_refused(tmp_path):
    path = str(tmp_path / "bad.npz")
    meta = write_checkpoint(path, train_samples=64)  # batch 16: 4 batches an epoch
    progress = {**meta["progress"], "step": 5}
    write_checkpoint(path, train_samples=64, meta_changes={"progress": progress})
    with pytest.raises(CheckpointError, match=r"progress.step 5 exceeds the 4 batches"):
        load_checkpoint(path)
    write_checkpoint(path, meta_changes={"progress": {**meta["progress"], "global_step": 2}})
    with pytest.raises(CheckpointError, match=r"optimizer step count 0 contradicts progress.global_step 2"):
        load_checkpoint(path)
    write_checkpoint(path, meta_changes={"progress": {**meta["progress"], "epoch": 1}})
    with pytest.raises(CheckpointError, match=r"history has 0 rows but progress.epoch says 1"):
        load_checkpoint(path)


def test_a_checkpoint_of_the_previous_version_still_loads(tmp_path):
    """Version 1 had no t_max (its cosine period was the stored epochs) and no lr in the history."""
    path = str(tmp_path / "v1.npz")
    meta = write_checkpoint(path, config_changes={"t_max": None})
    raw = dict(np.load(path))
    stored = json.loads(raw["meta"].tobytes())
    stored["version"] = 1
    raw["meta"] = np.frombuffer(json.dumps(stored).encode(), np.uint8)
    np.savez(path, **raw)
    config = load_checkpoint(path).config
    assert config.t_max == meta["config"]["epochs"] == config.epochs


def test_resuming_on_data_of_another_size_is_refused(data_root, tmp_path):
    out = str(tmp_path / "run")
    first = _cli("train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "4",
                 "--epochs", "1", "--out", out, "--quiet")
    assert first.returncode == 0, first.stderr
    other = str(tmp_path / "other")
    write_dataset(other, "fashion-mnist", n_train=30, n_test=10)
    result = _cli("train", "--resume", os.path.join(out, "checkpoint.npz"), "--data-dir", other, "--epochs", "2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot resume: it was trained on 256 samples, and this data has 30" in result.stderr


# -- engines named on the command line --------------------------------------------------------
def test_compare_and_bench_refuse_an_unknown_engine_with_a_usage_error(tmp_path):
    for command in (["compare", "--engines", "numpy,jax"], ["bench", "--engines", "numpy,json"]):
        result = _cli(*command, "--out", str(tmp_path / "out"))
        assert result.returncode == 2, result.stderr
        assert "argument --engines:" in result.stderr and ("'jax'" in result.stderr or "'json'" in result.stderr)
        assert "Traceback" not in result.stderr


def test_an_engine_module_that_fails_to_import_is_a_usage_error_naming_it(tmp_path):
    (tmp_path / "broken_engine.py").write_text("raise RuntimeError('half-written engine')\n")
    result = _cli("evaluate", str(tmp_path / "c.npz"), "--engine", "broken_engine",
                  env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert "engine 'broken_engine': importing broken_engine failed (RuntimeError: half-written engine)" in result.stderr


def _rewrite_meta(path: str, out: str, change=None, raw: str | None = None) -> str:
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    if change is not None:
        change(meta)
    arrays["meta"] = np.frombuffer((raw if raw is not None else json.dumps(meta)).encode(), dtype=np.uint8)
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize("change, raw, words", [
    (lambda m: m.__setitem__("optimizer_lr", 10**400), None, "must be a finite number"),
    (lambda m: m["config"].__setitem__("gamma", 10**400), None, "config.gamma: expected a finite number"),
    (lambda m: m["config"].__setitem__("seed", -1), None, "config.seed: expected an integer >= 0"),
    (None, "[" * 100_000, "metadata is not valid JSON"),
    (None, '{"format": "backprop-checkpoint", "version": 2, "x": ' + "9" * 5000 + "}", "not valid JSON"),
])
def test_metadata_no_check_could_interpret_is_still_one_checkpoint_error(good_checkpoint, tmp_path, change, raw,
                                                                         words):
    """Numbers beyond any float, nesting too deep, integers too long to parse: every command reads
    checkpoints through load_checkpoint, so each gets one CheckpointError line, never a traceback."""
    bad = _rewrite_meta(good_checkpoint, str(tmp_path / "bad.npz"), change, raw)
    with pytest.raises(CheckpointError, match=re.escape(words)):
        load_checkpoint(bad)

"""Training runs that go wrong: divergence, kills mid-write, Ctrl-C, bad checkpoints, bad flags."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
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
from backprop.config import TrainConfig
from backprop.engines import load_engine
from backprop.trainer import Trainer, TrainingDiverged
from data import load_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "backprop", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, **kwargs)


def _config(**overrides):
    base = dict(dataset="fashion-mnist", hidden=[8], activation="relu", init="xavier_normal", batch_size=16,
                lr=0.05, momentum=0.9, epochs=2, seed=1)
    return TrainConfig(**{**base, **overrides})


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
    assert "Last finite loss:" in message and "smaller --lr" in message
    assert open(trainer.checkpoint_path, "rb").read() == before


def test_the_cli_exits_3_on_divergence(data_root, tmp_path):
    # A deep linear network with a huge step size grows its weights geometrically.
    result = _cli("train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "16,16",
                  "--activation", "identity", "--lr", "10", "--epochs", "2", "--out", str(tmp_path / "r"), "--quiet")
    assert result.returncode == 3, result.stderr
    assert "training diverged" in result.stderr and "smaller --lr" in result.stderr
    assert "Traceback" not in result.stderr


# -- atomic checkpoints ----------------------------------------------------------------------
WRITER = """
import sys, numpy as np
from backprop.checkpoint import save_checkpoint
path = sys.argv[1]
i = 0
print("ready", flush=True)
while True:
    value = np.full((300, 300), float(i % 2))
    save_checkpoint(path, {"fc0.weight": value, "fc0.bias": np.full(300, float(i % 2))}, {"state": {}},
                    {"config": {"sizes": [300, 300]}, "marker": i % 2})
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
        assert np.all(checkpoint.params["fc0.weight"] == float(marker)), trial
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
    assert "resume with: backprop train --resume" in stderr and "Traceback" not in stderr
    checkpoint = load_checkpoint(os.path.join(interrupted, "checkpoint.npz"))
    progress = checkpoint.meta["progress"]
    assert progress["epoch"] == 1 and 0 < progress["step"] < 256, progress  # mid-epoch 2

    resumed = _cli("train", "--resume", os.path.join(interrupted, "checkpoint.npz"), "--data-dir", data_root, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    straight = str(tmp_path / "straight")
    assert _cli("train", *common, "--out", straight).returncode == 0
    a = load_checkpoint(os.path.join(interrupted, "checkpoint.npz")).params
    b = load_checkpoint(os.path.join(straight, "checkpoint.npz")).params
    assert all(np.array_equal(a[k], b[k]) for k in a)


# -- bad checkpoints -------------------------------------------------------------------------
@pytest.fixture
def good_checkpoint(tmp_path):
    path = str(tmp_path / "good.npz")
    config = _config()
    net = load_engine("numpy").build_net(config.sizes, "relu", "xavier_normal", 0, "float32")
    save_checkpoint(path, net.state_dict(), {"state": {}}, {"config": config.to_json(), "engine": "numpy",
                                                            "progress": {}})
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
    params["fc0.weight"] = np.zeros((784, 9), np.float32)
    bad = str(tmp_path / "other.npz")
    save_checkpoint(bad, params, {"state": {}}, checkpoint.meta)
    with pytest.raises(CheckpointError, match=r"'fc0.weight' has shape \(784, 9\)"):
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
    assert set(checkpoint.params) == {"fc0.weight", "fc0.bias", "fc1.weight", "fc1.bias"}


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
    (["--engine", "jax"], "invalid choice: 'jax'"),
    (["--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["--activation", "gelu"], "invalid choice: 'gelu'"),
    (["--batch-size", "0"], "expected a positive integer (>= 1), got 0"),
    (["--epochs", "0"], "expected a positive integer (>= 1), got 0"),
    (["--limit", "0"], "expected a positive integer (>= 1), got 0"),
    (["--lr", "-1"], "expected a finite number >= 0"),
    (["--hidden", "64,x"], "comma-separated positive widths"),
    (["--nesterov", "--momentum", "0"], "--nesterov needs a --momentum above 0"),
    (["--out", "/dev/null/run"], "--out: /dev/null is not a directory"),
    (["--engine", "numpy", "--device", "cuda"], "needs a torch engine"),
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
    result = _cli("train", "--data-dir", str(tmp_path), env={**os.environ, "BACKPROP_ENGINE": "jax"})
    assert result.returncode == 2 and "BACKPROP_ENGINE" in result.stderr

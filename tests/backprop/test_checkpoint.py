"""Checkpoints (backprop/checkpoint.py): written atomically, validated in full when read, and every bad
file (truncated, pickled, tampered, of another network, metadata no check could read) refused with
one line naming the path, by every command."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numpy_net
from backprop import checkpoint as checkpoint_module
from backprop.architecture import parse_layers
from backprop.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from backprop.cli import main
from backprop.config import TrainConfig, new_config
from backprop.engines import load_engine
from engine_core.specs import build, mlp
from tests.helpers import (
    LEGACY,
    ROOT,
    cli_out,
    copy_run,
    one_line_error,
    rewrite_meta,
    run_cli,
    same_bits,
    small_config,
    tanh_config,
    train_quietly,
    write_checkpoint,
)
from tests.networks import STACK, stack_config


def test_a_run_directory_means_its_checkpoint_in_every_command(trained, tmp_path, no_pictures):
    copy = copy_run(trained[1], tmp_path)
    evaluated = run_cli("evaluate", copy)
    assert evaluated.returncode == 0 and f"{copy}/checkpoint.npz on fashion-mnist" in evaluated.stdout
    exported = run_cli("export", copy, "--to", str(tmp_path / "m.pt"))
    assert exported.returncode == 0, exported.stderr
    resumed = run_cli("train", "--resume", copy, "--epochs", "2", "--quiet")
    assert resumed.returncode == 0 and "epoch  2/2" in resumed.stdout, resumed.stderr


def _bad_checkpoints(tmp_path, run: str) -> dict[str, tuple[str, str]]:
    """name -> (path, words its one-line refusal must contain)"""
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello\n")
    shutil.copy(os.path.join(run, "curves.png"), tmp_path / "curves.png")
    (tmp_path / "no_run").mkdir()
    (tmp_path / "parent_file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    return {
        "missing": (str(tmp_path / "nope.npz"), "no such checkpoint file"),
        "missing-parent": (str(tmp_path / "gone" / "c.npz"), f"{tmp_path / 'gone'} does not exist"),
        "under-a-file": (str(tmp_path / "parent_file" / "c.npz"), "is not a directory"),
        "dir-without-checkpoint": (str(tmp_path / "no_run"), "a directory without checkpoint.npz"),
        "empty": (str(tmp_path / "empty.npz"), "the file is empty"),
        "text": (str(tmp_path / "notes.txt"), "not a checkpoint (a checkpoint is a .npz archive)"),
        "png": (str(tmp_path / "curves.png"), "it is a PNG image"),
        "fifo": (str(tmp_path / "fifo"), "not a regular file"),
    }


def test_every_wrong_checkpoint_path_is_one_line_in_every_command(trained, tmp_path):
    for name, (path, words) in _bad_checkpoints(tmp_path, trained[1]).items():
        for command in (["train", "--resume", path], ["evaluate", path],
                        ["export", path, "--to", str(tmp_path / "m.pt")]):
            result = run_cli(*command)
            assert result.returncode == 1, (name, command, result.stderr)
            line = one_line_error(result, path, words)
            assert len(result.stderr.strip().splitlines()) == 1, (name, command, line)
    assert not os.path.exists(tmp_path / "m.pt")


def test_a_directory_of_runs_names_the_runs_it_holds(trained, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(trained[1], runs / "20260101-000000-numpy")
    result = run_cli("evaluate", str(runs))
    one_line_error(result, "a directory without checkpoint.npz", "runs/20260101-000000-numpy")


def test_checkpoints_written_before_the_field_load_without_clipping(tmp_path):
    """The version 3 fixtures (tests/legacy), and a version 4 file whose config has no
    clip_grad_norm: None, the only behaviour there was. A stored bad value is refused."""
    for name in ("default", "lenet"):
        assert load_checkpoint(os.path.join(LEGACY, name)).config.clip_grad_norm is None
    path = str(tmp_path / "checkpoint.npz")
    meta = write_checkpoint(path, config_changes={"clip_grad_norm": None})  # None deletes the key
    checkpoint = load_checkpoint(path)
    assert "clip_grad_norm" not in meta["config"] and checkpoint.meta["version"] == 4
    assert checkpoint.config.clip_grad_norm is None
    assert TrainConfig.from_json(meta["config"]).clip_grad_norm is None  # the config dict as stored then
    write_checkpoint(path, config_changes={"clip_grad_norm": 2})
    assert load_checkpoint(path).config.clip_grad_norm == 2.0
    for bad in (0, -1, "1", True):
        write_checkpoint(path, config_changes={"clip_grad_norm": bad})
        with pytest.raises(CheckpointError, match=r"config\.clip_grad_norm: expected a (finite )?number > 0 or null"):
            load_checkpoint(path)


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
    """12 writers side by side, each rewriting its own checkpoint in a loop, each killed (SIGKILL)
    at its own random instant: every file left is a whole checkpoint, the old one or the new."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(0)
    paths = [str(tmp_path / f"checkpoint{trial}.npz") for trial in range(12)]
    writers = [subprocess.Popen([sys.executable, str(script), path], cwd=ROOT, stdout=subprocess.PIPE, text=True)
               for path in paths]
    for writer in writers:
        writer.stdout.readline()  # imports done, writing starts
    start = time.monotonic()
    for delay, writer in sorted(((rng.uniform(0.05, 0.4), writer) for writer in writers), key=lambda pair: pair[0]):
        time.sleep(max(0.0, start + delay - time.monotonic()))
        writer.send_signal(signal.SIGKILL)
    for writer in writers:
        writer.wait()
        writer.stdout.close()
    written = [path for path in paths if os.path.exists(path)]  # a writer killed before its first os.replace: none
    for path in written:
        checkpoint = load_checkpoint(path)  # never raises: old or new, never torn
        marker = checkpoint.meta["marker"]
        assert np.all(checkpoint.params["0.weight"] == float(marker)), path
    assert written


# -- bad checkpoints -------------------------------------------------------------------------
@pytest.fixture
def good_checkpoint(tmp_path):
    path = str(tmp_path / "good.npz")
    write_checkpoint(path, small_config())
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
        result = run_cli(*command)
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


# -- checkpoints validated once, for every command (field case 5) ----------------------------
def _commands(path: str, tmp_path) -> list[list[str]]:
    return [["train", "--resume", path, "--data-dir", str(tmp_path / "nowhere")],
            ["evaluate", path, "--data-dir", str(tmp_path / "nowhere")],
            ["export", path, "--to", str(tmp_path / "model.pt")]]


def _assert_every_command_refuses(path: str, tmp_path, words: str) -> None:
    for command in _commands(path, tmp_path):
        result = run_cli(*command)
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
    bad = rewrite_meta(good_checkpoint, str(tmp_path / "bad.npz"), change, raw)
    with pytest.raises(CheckpointError, match=re.escape(words)):
        load_checkpoint(bad)


# Every kind of state: a conv2d, both batch norms (buffers, num_batches_tracked), two dropouts.
TAMPERED_STACK = parse_layers("conv2d(1, 2, 3, stride=2), batchnorm2d(2), relu, maxpool2d(2), dropout(0.25, seed=5), "
                     "flatten, linear(72, 8), batchnorm1d(8), relu, dropout(0.5, seed=7), linear(8, 10)")


Arrays = dict[str, np.ndarray]


Meta = dict[str, Any]


def _set(path: str, value: object) -> Callable[[Arrays, Meta], None]:
    """An edit that sets the metadata field at ``path`` ("a/b/c"; "a/b/-c" deletes c)."""
    *parents, last = path.split("/")

    def edit(arrays: Arrays, meta: Meta) -> None:
        node = meta
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if last.startswith("-"):
            del node[last[1:]]
        else:
            node[last] = value

    return edit


def _array(key: str, position: int, value: float) -> Callable[[Arrays, Meta], None]:
    def edit(arrays: Arrays, meta: Meta) -> None:
        arrays[key] = arrays[key].copy()
        arrays[key].flat[position] = value

    return edit


CASES = {
    # batch norm buffers, checked for what they are
    "negative running_var": (_array("param/1.running_var", 1, -0.5),
                             "state_dict['1.running_var']: a running variance must be >= 0, got -0.5 at position 1"),
    "NaN running_var": (_array("param/7.running_var", 0, np.nan), "'param/7.running_var' contains NaN or Inf"),
    "Inf running_mean": (_array("param/7.running_mean", 3, np.inf), "'param/7.running_mean' contains NaN or Inf"),
    "negative num_batches_tracked": (_set("num_batches_tracked/1", -1),
                                     "num_batches_tracked['1']: expected an integer in [0, 2**63)"),
    "num_batches_tracked beyond int64": (_set("num_batches_tracked/7", 2**63), "num_batches_tracked['7']"),
    "fractional num_batches_tracked": (_set("num_batches_tracked/7", 1.5),
                                       "num_batches_tracked['7']: expected an integer >= 0, got float 1.5"),
    # stored layer specs carry every argument
    "conv2d padding deleted": (_set("config/layers/0/args/-padding", None), "config.layers[0].padding: missing"),
    "batchnorm eps deleted": (_set("config/layers/7/args/-eps", None), "config.layers[7].eps: missing"),
    "unknown argument": (_set("config/layers/6/args/colour", "red"),
                         "config.layers[6].colour: unknown argument of linear"),
    "layer kind deleted": (_set("config/layers/2/-kind", None), "config.layers[2].kind: missing"),
    "batchnorm eps 0": (_set("config/layers/1/args/eps", 0), "config.layers[1].eps: must be > 0"),
    "bad padding value": (_set("config/layers/0/args/padding", -1), "config.layers[0].padding: expected an int >= 0"),
    # dropout generator states: structure and ranges, by field
    "rng state 2**200": (_set("dropout_rng/4/state/state", 2**200),
                         "dropout_rng['4']: state.state: expected an integer in [0, 2**128), got 1606938044258990"),
    "rng state a string": (_set("dropout_rng/4/state/state", "abc"),
                           "dropout_rng['4']: state.state: expected an integer in [0, 2**128), got str 'abc'"),
    "rng state a float": (_set("dropout_rng/9/state/state", 1.5), "dropout_rng['9']: state.state: expected an integer"),
    "rng inc negative": (_set("dropout_rng/9/state/inc", -3), "dropout_rng['9']: state.inc: expected an integer in"),
    "rng inc even": (_set("dropout_rng/9/state/inc", 4), "dropout_rng['9']: state.inc: expected an odd integer"),
    "rng has_uint32 5": (_set("dropout_rng/4/has_uint32", 5), "dropout_rng['4']: has_uint32: expected 0 or 1, got 5"),
    "rng uinteger 2**32": (_set("dropout_rng/4/uinteger", 2**32),
                           "dropout_rng['4']: uinteger: expected an integer in [0, 2**32)"),
    "rng uinteger deleted": (_set("dropout_rng/4/-uinteger", None), "dropout_rng['4']: uinteger: missing"),
    "rng extra field": (_set("dropout_rng/4/seed", 5), "dropout_rng['4']: seed: unknown field"),
    "rng inner extra field": (_set("dropout_rng/4/state/x", 1), "dropout_rng['4']: state.x: unknown field"),
    "rng other generator": (_set("dropout_rng/4/bit_generator", "MT19937"),
                            "dropout_rng['4']: bit_generator: expected 'PCG64'"),
    "rng state not an object": (_set("dropout_rng/4/state", [1, 2]), "dropout_rng['4']: state: expected an object"),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[Arrays, Meta]:
    """A valid checkpoint of TAMPERED_STACK, with a dropout state drawn forward and counted batches."""
    path = str(tmp_path_factory.mktemp("good") / "checkpoint.npz")
    config = new_config("default", layers=TAMPERED_STACK, dataset="fashion-mnist", batch_size=16, epochs=2,
                        dtype="float64")
    net = build(numpy_net, TAMPERED_STACK, "float64", 3)
    net.forward(np.random.default_rng(0).normal(size=(4, 1, 28, 28)))  # statistics and masks move on
    rng = {4: net.layers[4].rng_state(), 9: net.layers[9].rng_state()}
    write_checkpoint(path, config, params=net.state_dict(),
                     meta_changes={"dropout_rng": {str(i): state for i, state in rng.items()},
                                   "num_batches_tracked": {"1": 1, "7": 1}})
    load_checkpoint(path)  # the untampered file loads
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return arrays, json.loads(arrays.pop("meta").tobytes())


@pytest.mark.parametrize("edit, words", CASES.values(), ids=CASES.keys())
def test_a_tampered_checkpoint_is_refused_by_evaluate_and_resume_and_left_as_it_was(good, edit, words, tmp_path,
                                                                                     capsys):
    arrays, meta = good
    arrays, meta = dict(arrays), json.loads(json.dumps(meta))
    edit(arrays, meta)
    path = str(tmp_path / "checkpoint.npz")
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    before = open(path, "rb").read()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert words in str(info.value), str(info.value)
    nowhere = str(tmp_path / "nowhere")
    for command in (["evaluate", path, "--data-dir", nowhere], ["train", "--resume", path, "--data-dir", nowhere]):
        assert main(command) == 1, command
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"backprop: error: {path}: ") and words in lines[0], lines
        assert open(path, "rb").read() == before, command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]  # nothing written beside it


def test_dropout_state_that_does_not_match_the_layers_is_refused(tmp_path):
    config = stack_config()
    net = build(numpy_net, STACK, "float64", 3)
    path = str(tmp_path / "checkpoint.npz")
    write_checkpoint(path, config, params=net.state_dict(), meta_changes={"dropout_rng": {"4": {"x": 1}}})
    with pytest.raises(checkpoint_module.CheckpointError, match=r"dropout_rng.*do not match"):
        load_checkpoint(path)
    write_checkpoint(path, config, params=net.state_dict(),
                     meta_changes={"num_batches_tracked": {"1": -1, "7": 0}})
    with pytest.raises(checkpoint_module.CheckpointError, match=r"num_batches_tracked\['1'\]"):
        load_checkpoint(path)


def test_checkpoint_round_trip_between_engines_is_bit_exact(data_root, tmp_path):
    trainer = train_quietly(tanh_config(epochs=1), "torch", data_root, str(tmp_path / "t"))
    checkpoint = load_checkpoint(trainer.checkpoint_path)
    config = tanh_config()
    for name in ("numpy", "autograd", "torch"):
        engine = load_engine(name)
        net = engine.build_net(config.network, config.init, 99, config.dtype)
        net.load_state_dict(checkpoint.params)
        assert same_bits(net.state_dict(), trainer.net.state_dict()), name
        opt = engine.build_optimizer(net, "sgd", 0.05, momentum=0.9)
        opt.load_state_dict(checkpoint.optimizer)
        assert same_bits(opt.state_dict()["state"]["momentum_buffer"],
                          trainer.optimizer.state_dict()["state"]["momentum_buffer"]), name


@pytest.mark.parametrize("changes, message", [
    ({"blas_threads": 0}, "'blas_threads': expected a thread count in 1..4096, got 0"),
    ({"blas_threads": True}, "'blas_threads': expected a thread count"),
    ({"gradients": {"layers": ["0.weight"], "steps": -1, "sums": [[0, 0, 0]]}}, "gradients.steps"),
    ({"gradients": {"layers": ["0.weight"], "steps": 1, "sums": [[0, 0]]}}, "gradients.sums: expected 1 rows"),
    ({"gradients": {"layers": [], "steps": 1, "sums": []}}, "gradients.layers"),
    ({"gradients": {"layers": ["0.weight"], "steps": 0, "sums": [[0, 0, 0]], "history": [[1, 5, [[1, -2, 0]]]]}},
     "gradients.history[0]: expected [epoch >= 1, steps >= 1, 1 rows"),
    ({"gradients": {"layers": ["0.weight"], "steps": 0, "sums": [[0, 0, 0]], "history": [[0, 5, [[1, 2, 0]]]]}},
     "gradients.history[0]"),
    ({"gradients": {"layers": ["0.weight"], "steps": 0, "sums": [[0, 0, 0]], "history": "x"}},
     "gradients.history: expected a list"),
])
def test_bad_thread_or_gradient_records_in_a_checkpoint_are_refused(changes, message, tmp_path):
    from backprop.checkpoint import CheckpointError
    from tests.helpers import write_checkpoint

    path = str(tmp_path / "checkpoint.npz")
    write_checkpoint(path, meta_changes=changes)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path)


def test_a_torch_file_given_as_a_checkpoint_is_named_with_the_import_command(capsys, trained, tmp_path):
    """The import command printed for a torch file is one to paste: the path quoted for the shell,
    --layers asked for only when no export metadata beside the file records them."""
    model = str(tmp_path / "my model.pt")
    cli_out(capsys, "export", trained[1], "--to", model)
    again = str(tmp_path / "again.pt")
    for command in (["evaluate", model], ["export", model, "--to", again], ["train", "--resume", model]):
        result = run_cli(*command)
        assert result.returncode == 1 and "a torch file" in result.stderr, result.stderr
        printed = re.search(r"`(backprop import [^`]*)`", result.stderr).group(1)
        assert shlex.split(printed) == ["backprop", "import", model, "--out", "DIR"], printed
    bare = str(tmp_path / "bare.pt")
    shutil.copy(model, bare)  # no metadata beside it: the layers must be given
    printed = re.search(r"`(backprop import [^`]*)`", run_cli("evaluate", bare).stderr).group(1)
    assert shlex.split(printed) == ["backprop", "import", bare, "--layers", "TEXT", "--out", "DIR"], printed
    imported = run_cli("import", model, "--out", str(tmp_path / "imported"))  # layers and dataset from model.pt.json
    assert imported.returncode == 0, imported.stderr
    assert load_checkpoint(str(tmp_path / "imported")).config.dataset == "fashion-mnist"

"""Files written before a network was one tree (backprop/legacy.py; tests/legacy/ holds version 3
checkpoints, its README says how they were made): they load, evaluate to the same accuracy and loss,
export, and resume to exactly the parameters that code reached."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from backprop import checkpoint as checkpoint_module
from backprop.checkpoint import VERSION, CheckpointError, load_checkpoint
from backprop.cli import main
from engine_core.specs import initial_state, mlp
from tests.datasets import write_dataset
from tests.helpers import LEGACY, rewrite_meta, same_arrays, small_config, write_checkpoint

OLD_MLP = os.path.join(LEGACY, "default", "checkpoint.npz")


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
    path = rewrite_meta(OLD_MLP, str(tmp_path / "old.npz"), lambda meta: change(meta["config"]))
    assert json.loads(np.load(path)["meta"].tobytes())["version"] == 3
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message, message


def test_version_2_checkpoints_without_layers_still_load(tmp_path, monkeypatch):
    # A version 2 MLP: hidden and activation, layers null, the notebook's fc{i} keys, no layer state.
    monkeypatch.setattr(checkpoint_module, "VERSION", 2)
    path = str(tmp_path / "checkpoint.npz")
    config = small_config()
    state = initial_state(config.network, config.seed, config.init)
    old = {f"fc{int(key[0]) // 2}.{key[2:]}": value.astype(np.float32) for key, value in state.items()}
    write_checkpoint(path, config, params=old, config_changes={"layers": None, "hidden": [8], "activation": "relu"},
                     meta_changes={"dropout_rng": None, "num_batches_tracked": None})
    checkpoint = load_checkpoint(path)
    assert checkpoint.meta["version"] == 2 and checkpoint.config.network == mlp([784, 8, 10], "relu")
    assert list(checkpoint.params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert same_arrays(checkpoint.params, {key: value.astype(np.float32) for key, value in state.items()})
    assert checkpoint.dropout_rng == {} and checkpoint.num_batches_tracked == {}


EXPECTED = json.load(open(os.path.join(LEGACY, "expected.json")))["runs"]


RUNS = sorted(EXPECTED)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("legacy") / "data")
    write_dataset(root)  # the data the fixtures were trained on (256 train, 64 test, seed 0)
    return root


def _copy(name: str, tmp_path) -> str:
    run = str(tmp_path / name)
    shutil.copytree(os.path.join(LEGACY, name), run)
    return run


def _sha(arrays: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes() for v in arrays.values())).hexdigest()


@pytest.mark.parametrize("name", RUNS)
def test_an_old_checkpoint_loads_with_torchs_keys_and_its_values_unchanged(name):
    checkpoint = load_checkpoint(os.path.join(LEGACY, name))
    old = EXPECTED[name]["at_epoch_2"]
    assert len(checkpoint.params) == len(old["param_keys"])
    assert _sha(checkpoint.params) == old["params_sha256"]  # same values, same order
    assert list(checkpoint.params) == _state_keys(checkpoint)
    if EXPECTED[name]["layers"] is None:  # an MLP: fc{i} became {2i}
        assert list(checkpoint.params) == [f"{2 * int(k[2:].split('.')[0])}.{k.split('.')[1]}"
                                           for k in old["param_keys"]]
    else:
        assert list(checkpoint.params) == old["param_keys"]
    state = checkpoint.optimizer["state"]
    buffers = {f"{b}/{k}": v for b, per in state.items() for k, v in per.items()}
    assert _sha(buffers) == old["optimizer_state_sha256"]


def _state_keys(checkpoint) -> list[str]:
    from engine_core.specs import state_shapes

    return list(state_shapes(checkpoint.config.network))


@pytest.mark.parametrize("name", RUNS)
def test_an_old_checkpoint_evaluates_to_the_accuracy_and_loss_it_had(name, data, tmp_path, capsys, no_pictures):
    run = _copy(name, tmp_path)
    assert main(["evaluate", run, "--data-dir", data]) == 0
    out = capsys.readouterr().out
    assert EXPECTED[name]["evaluate"]["numpy"]["stdout_line"] in out


@pytest.mark.parametrize("engine", ["numpy", "torch"])
@pytest.mark.parametrize("name", RUNS)
def test_an_old_checkpoint_resumes_to_exactly_the_parameters_the_old_code_reached(name, engine, data, tmp_path):
    run = _copy(name, tmp_path)
    assert main(["train", "--resume", os.path.join(run, "checkpoint.npz"), "--engine", engine, "--epochs", "4",
                 "--blas-threads", "1", "--quiet", "--data-dir", data]) == 0
    resumed = load_checkpoint(run)
    expected = EXPECTED[name]["resume_to_epoch_4"][engine]
    assert resumed.meta["version"] == VERSION
    assert resumed.num_batches_tracked == expected["num_batches_tracked"]
    rows = [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")}
            for row in _csv(os.path.join(run, "metrics.csv"))[2:]]
    want = [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")}
            for row in expected["metrics_rows_3_4"]]
    if _sha(resumed.params) == expected["params_sha256"]:
        assert rows == want  # the generating machine's arithmetic: every bit
        return
    # Another CPU: NumPy's OpenBLAS and torch's kernels pick their float32 code by the CPU (an AMD
    # EPYC's differs from the machine that wrote the fixtures), so the 8-16 resumed steps round
    # differently: measured there, the parameters' float64 sum moved by 3.5e-9 to 2.6e-7 of itself
    # and the losses in their 7th digit. What a broken resume does is far larger: a lost momentum
    # buffer, a restarted schedule or a re-drawn dropout mask changes the epoch-4 weights by the
    # whole update (lr 0.025 times the gradients), orders of magnitude above that rounding.
    total = sum(float(np.sum(value, dtype=np.float64)) for value in resumed.params.values())
    assert total == pytest.approx(expected["params_sum_float64"], rel=1e-5)
    assert [{k: v for k, v in row.items() if k not in NUMBERS} for row in rows] == \
        [{k: v for k, v in row.items() if k not in NUMBERS} for row in want]
    for got, row in zip(rows, want):
        for key in NUMBERS:
            assert float(got[key]) == pytest.approx(float(row[key]), rel=1e-5, abs=1e-7), key


NUMBERS = ("train_loss", "test_loss", "train_acc", "test_acc")


def _csv(path: str) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", RUNS)
def test_an_old_checkpoint_exports_to_torch_and_torch_gives_its_accuracy(name, data, tmp_path, capsys):
    import torch

    from backprop.architecture import image_view
    from backprop.datasets import load_dataset
    from backprop.export import torch_module

    run = _copy(name, tmp_path)
    target = str(tmp_path / "model.pt")
    assert main(["export", run, "--to", target]) == 0
    network = load_checkpoint(run).config.network
    model = torch_module(network)
    model.load_state_dict(torch.load(target, weights_only=True))
    model.eval()
    dataset = load_dataset("fashion-mnist", data, dtype="float32")
    with torch.no_grad():
        logits = model(torch.from_numpy(image_view(dataset.test_x, network)))
    expected = EXPECTED[name]["evaluate"]["numpy"]["in_process"]
    assert float((logits.argmax(1).numpy() == dataset.test_y).mean()) == expected["test_accuracy"]


def test_an_old_checkpoint_naming_a_parameter_twice_is_refused(tmp_path, capsys):
    """fc0.weight becomes 0.weight on read: a crafted file holding both is refused, not merged."""
    run = _copy("default", tmp_path)
    path = os.path.join(run, "checkpoint.npz")
    arrays = dict(np.load(path))
    arrays["param/0.weight"] = np.zeros_like(arrays["param/fc0.weight"])
    np.savez(path, **arrays)
    assert main(["evaluate", run, "--data-dir", str(tmp_path)]) != 0
    assert "entry 'param/fc0.weight' and entry 'param/0.weight' name the same parameter" in capsys.readouterr().err


# -- version 4 networks written before issue 21's layer arguments -------------------------------
# Every argument each kind had in checkpoint format 4 before dilation, groups, ceil_mode, affine,
# inplace, ... came (Kind.added lists those: a stored network lacking them gets torch's defaults,
# the only behaviour there was, and nothing else may be missing).
V4_ARGUMENTS = {
    "sequential": [], "linear": ["in_features", "out_features", "bias"],
    "conv2d": ["in_channels", "out_channels", "kernel_size", "stride", "padding", "bias"],
    "maxpool2d": ["kernel_size", "stride"], "avgpool2d": ["kernel_size", "stride"], "flatten": [],
    "dropout": ["p", "seed"], "batchnorm1d": ["num_features", "eps", "momentum"],
    "batchnorm2d": ["num_features", "eps", "momentum"], "identity": [], "relu": [], "sigmoid": [], "tanh": [],
    "leakyrelu": ["negative_slope"], "gelu": ["approximate"],
}


# config.layers as format 4 wrote it then, every kind with arguments added since in it.
V4_LAYERS = [
    {"kind": "conv2d", "args": {"in_channels": 1, "out_channels": 4, "kernel_size": 3, "stride": 1, "padding": 1,
                                "bias": True}},
    {"kind": "batchnorm2d", "args": {"num_features": 4, "eps": 1e-05, "momentum": 0.1}},
    {"kind": "relu", "args": {}},
    {"kind": "maxpool2d", "args": {"kernel_size": 2, "stride": None}},
    {"kind": "avgpool2d", "args": {"kernel_size": 1, "stride": None}},
    {"kind": "dropout", "args": {"p": 0.25, "seed": 1}},
    {"kind": "flatten", "args": {}},
    {"kind": "sequential", "args": {}, "children": [
        {"kind": "linear", "args": {"in_features": 784, "out_features": 16, "bias": True}},
        {"kind": "batchnorm1d", "args": {"num_features": 16, "eps": 1e-05, "momentum": 0.1}},
        {"kind": "leakyrelu", "args": {"negative_slope": 0.01}}]},
    {"kind": "linear", "args": {"in_features": 16, "out_features": 10, "bias": True}},
]


V4_TEXT = ("conv2d(1, 4, 3, padding=1), batchnorm2d(4), relu, maxpool2d(2), avgpool2d(1), dropout(0.25, seed=1), "
           "flatten, sequential(linear(784, 16), batchnorm1d(16), leakyrelu), linear(16, 10)")


def test_the_arguments_added_since_format_4_are_exactly_the_new_ones():
    from engine_core.specs import KINDS

    # Kinds registered after format 4 (rnn, lstm, ...) cannot be in a format-4 file: only the
    # kinds that format had are compared, and every one of them must still be registered.
    assert {kind: [name for name in info.defaults if name not in info.added]
            for kind, info in KINDS.items() if kind in V4_ARGUMENTS} == V4_ARGUMENTS


def test_a_format_4_network_written_before_the_new_arguments_loads_builds_and_exports(tmp_path, capsys):
    import torch

    from backprop.architecture import parse_layers
    from backprop.config import TrainConfig
    from backprop.engines import load_engine
    from backprop.export import torch_module
    from tests.helpers import small_config, write_checkpoint

    network = parse_layers(V4_TEXT)
    path = str(tmp_path / "checkpoint.npz")
    meta = write_checkpoint(path, small_config(network=network), config_changes={"layers": V4_LAYERS})
    assert VERSION == 4 and "dilation" not in json.dumps(meta["config"]["layers"])
    assert TrainConfig.from_json(meta["config"]).network == network  # a config.json of then, too
    checkpoint = load_checkpoint(path)
    assert checkpoint.meta["version"] == 4 and checkpoint.config.network == network
    conv, norm = network.children[0].args, network.children[1].args
    assert (conv["dilation"], conv["groups"], conv["padding_mode"]) == (1, 1, "zeros")
    assert (norm["affine"], norm["track_running_stats"]) == (True, True)
    for engine in ("numpy", "torch"):  # what evaluate and train --resume build from it
        net = load_engine(engine).build_net(checkpoint.config.network, "torch_default", 0, "float32")
        net.load_state_dict(checkpoint.params)
    target = str(tmp_path / "model.pt")
    assert main(["export", path, "--to", target]) == 0, capsys.readouterr().err
    torch_module(network).load_state_dict(torch.load(target, weights_only=True))  # strict: every key
    # A stored spec missing an argument it had then is still refused: it was edited.
    edited = json.loads(json.dumps(V4_LAYERS))
    del edited[0]["args"]["stride"]
    with pytest.raises(ValueError, match=r"config\.layers\[0\]\.stride: missing"):
        TrainConfig.from_json({**meta["config"], "layers": edited})

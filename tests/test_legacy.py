"""Checkpoints written before a network was one tree (version 3, commit 561505f: tests/legacy/,
its README says how they were made) load, evaluate to the same accuracy and loss, export, and
resume to exactly the parameters that code reached, in the numpy and torch engines."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from backprop.checkpoint import VERSION, load_checkpoint
from backprop.cli import main

from .datasets import write_dataset

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "legacy")
EXPECTED = json.load(open(os.path.join(HERE, "expected.json")))["runs"]
RUNS = sorted(EXPECTED)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("legacy") / "data")
    write_dataset(root)  # the data the fixtures were trained on (256 train, 64 test, seed 0)
    return root


def _copy(name: str, tmp_path) -> str:
    run = str(tmp_path / name)
    shutil.copytree(os.path.join(HERE, name), run)
    return run


def _sha(arrays: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes() for v in arrays.values())).hexdigest()


@pytest.mark.parametrize("name", RUNS)
def test_an_old_checkpoint_loads_with_torchs_keys_and_its_values_unchanged(name):
    checkpoint = load_checkpoint(os.path.join(HERE, name))
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
def test_an_old_checkpoint_evaluates_to_the_accuracy_and_loss_it_had(name, data, tmp_path, capsys):
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
    assert _sha(resumed.params) == expected["params_sha256"]
    assert resumed.num_batches_tracked == expected["num_batches_tracked"]
    rows = [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")}
            for row in _csv(os.path.join(run, "metrics.csv"))[2:]]
    assert rows == [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")}
                    for row in expected["metrics_rows_3_4"]]


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

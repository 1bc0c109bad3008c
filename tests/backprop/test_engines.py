"""Engines for the application (backprop/engines.py): any module path, a module that fails to import or
lacks a layer or the conversions refused by name, and the traits an engine declares."""

from __future__ import annotations

import os
import types

import pytest

import numpy_net
from backprop.architecture import LENET
from backprop.engines import Engine, EngineError, load_engine
from engine_core.specs import mlp
from tests.helpers import run_cli
from tests.networks import STACK


def test_an_engine_module_that_fails_to_import_is_a_usage_error_naming_it(tmp_path):
    (tmp_path / "broken_engine.py").write_text("raise RuntimeError('half-written engine')\n")
    result = run_cli("evaluate", str(tmp_path / "c.npz"), "--engine", "broken_engine",
                     env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert "engine 'broken_engine': importing broken_engine failed (RuntimeError: half-written engine)" in result.stderr


# -- engines ----------------------------------------------------------------------------------
def test_an_engine_without_a_layer_is_an_engine_error_naming_it():
    numpy_engine = load_engine("numpy")
    module = types.ModuleType("partial_engine")
    module.__dict__.update({k: v for k, v in vars(numpy_net).items() if k != "Conv2d"})
    engine = Engine("partial_engine", module, numpy_engine.traits)
    with pytest.raises(EngineError, match="has no Conv2d layer"):
        engine.build_net(LENET, "he_normal", 0, "float32")


def test_oracle_trains_a_stack_without_recording_deltas():
    engine = load_engine("autograd")
    net = engine.build_net(STACK, "he_normal", 0, "float32", training=True)
    assert net.keep_deltas is False
    assert engine.build_net(STACK, "he_normal", 0, "float32").keep_deltas is True


# -- pluggable engines ------------------------------------------------------------------------
MYMOD = "from numpy_net import *  # noqa: F403\n"


def test_train_accepts_an_engine_module_by_its_dotted_path(data_root, tmp_path, no_pictures):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "my_engine.py").write_text(MYMOD)
    out = str(tmp_path / "run")
    result = run_cli("train", "--engine", "mypkg.my_engine", "--data-dir", data_root, "--dataset", "fashion-mnist",
                     "--epochs", "1", "--limit", "64", "--hidden", "8", "--out", out, "--quiet",
                     env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "epoch  1/1" in result.stdout
    assert os.path.exists(os.path.join(out, "checkpoint.npz"))
    again = run_cli("evaluate", os.path.join(out, "checkpoint.npz"), "--engine", "mypkg.my_engine", "--data-dir",
                    data_root, env={"PYTHONPATH": str(tmp_path)})
    assert again.returncode == 0, again.stderr


def test_training_kwargs_reach_the_network_only_when_training():
    engine = load_engine("autograd")
    assert engine.traits.accumulates_gradients and engine.traits.training_kwargs == {"keep_deltas": False}
    network = mlp([4, 3], "relu")
    assert engine.build_net(network, "xavier_normal", 0, "float32", training=True).keep_deltas is False
    assert engine.build_net(network, "xavier_normal", 0, "float32").keep_deltas is True


def test_an_engine_of_another_array_type_without_conversions_is_refused_by_name(tmp_path, monkeypatch):
    """A torch engine that lacks the optional asarray/labels/to_numpy cannot take the trainer's
    NumPy batches: refused up front naming what is missing, instead of failing mid-training."""
    from backprop.engines import EngineError, load_engine

    (tmp_path / "tmin.py").write_text("from torch_net import MLP, SoftmaxCrossEntropy, SGD  # noqa: F401\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EngineError, match="provides no asarray, labels, to_numpy"):
        load_engine("tmin")

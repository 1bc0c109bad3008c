"""Hand-edited layer-stack checkpoints: every kind of tampered state is refused by name, by every
command that reads it, before anything trains, and the file is left exactly as it was."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import numpy_net
from backprop.architecture import parse_layers
from backprop.checkpoint import CheckpointError, load_checkpoint
from backprop.cli import main
from backprop.config import new_config
from engine_core.specs import LayerSpec, build

from .helpers import write_checkpoint

# Every kind of state: a conv2d, both batch norms (buffers, num_batches_tracked), two dropouts.
STACK = parse_layers("conv2d(1, 2, 3, stride=2), batchnorm2d(2), relu, maxpool2d(2), dropout(0.25, seed=5), "
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
    """A valid checkpoint of STACK, with a dropout state drawn forward and counted batches."""
    path = str(tmp_path_factory.mktemp("good") / "checkpoint.npz")
    config = new_config("default", layers=STACK, dataset="fashion-mnist", batch_size=16, epochs=2, dtype="float64")
    net = build(numpy_net, STACK, "float64", 3)
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


@pytest.mark.parametrize("module", ["numpy_net", "torch_net"])
def test_every_engine_refuses_the_same_tampered_layer_state_alike(module):
    """The checks live once in engine_core: a layer's own load_state_dict / set_rng_state refuse
    what a checkpoint's validator refuses, with the same words, and keep their state."""
    engine = __import__(module)
    norm = build(engine, [LayerSpec("batchnorm1d", {"num_features": 3})], "float64")
    before = {k: np.array(v) for k, v in norm.state_dict().items()}
    with pytest.raises(ValueError, match=r"'0.running_var'\]: a running variance must be >= 0, got -1 at position 2"):
        norm.load_state_dict({**before, "0.running_var": np.array([1.0, 0.0, -1.0])})
    assert all(np.array_equal(np.asarray(v), before[k]) for k, v in norm.state_dict().items())
    dropout = engine.Dropout(0.5, seed=1)
    state = dropout.rng_state()
    for bad, words in [({**state, "state": {**state["state"], "state": 2**200}}, "state.state: expected an integer"),
                       ({**state, "state": {**state["state"], "state": "abc"}}, "state.state: expected an integer"),
                       ({**state, "has_uint32": 2}, "has_uint32: expected 0 or 1")]:
        with pytest.raises(ValueError, match=re.escape(f"rng state: {words}")):
            dropout.set_rng_state(bad)
        assert dropout.rng_state() == state

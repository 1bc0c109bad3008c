"""The engines' network tree and optimizer base (engine_core/bookkeeping.py), in numpy_net, torch_net
and the oracle: nesting, torch's dotted names, flat parameter views, validation once at the tree's
boundary, a Sequential's private overwrite."""

from __future__ import annotations

import numpy as np
import pytest

import numpy_net
import torch_net
from engine_core.specs import LayerSpec, build, mlp, sequential
from tests.layer_stacks import HAND_IDS, HAND_WRITTEN, INPLACE_STACKS, linear, with_inplace
from torch_net import autograd

ENGINES = [numpy_net, torch_net, autograd]


def _nested() -> LayerSpec:
    return sequential(LayerSpec("flatten"),
                      sequential(LayerSpec("linear", {"in_features": 4, "out_features": 3}), LayerSpec("relu"),
                                 sequential(LayerSpec("batchnorm1d", {"num_features": 3}))),
                      LayerSpec("linear", {"in_features": 3, "out_features": 2}))


@pytest.mark.parametrize("engine", ENGINES, ids=lambda m: m.__name__)
def test_mlp_is_the_same_kind_of_object_as_a_built_tree_with_the_same_keys(engine):
    net = engine.MLP([4, 3, 2], seed=0)
    built = build(engine, mlp([4, 3, 2]), init="xavier_normal")
    assert type(net) is type(built) is engine.Sequential
    assert list(net.state_dict()) == list(built.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for key, value in net.state_dict().items():
        assert np.array_equal(value, built.state_dict()[key])


@pytest.mark.parametrize("engine", ENGINES, ids=lambda m: m.__name__)
def test_nested_trees_have_torchs_dotted_keys(engine):
    net = build(engine, _nested(), dtype="float64")
    assert list(net.state_dict()) == ["1.0.weight", "1.0.bias", "1.2.0.weight", "1.2.0.bias", "1.2.0.running_mean",
                                      "1.2.0.running_var", "2.weight", "2.bias"]


@pytest.mark.parametrize("engine", [numpy_net, torch_net], ids=lambda m: m.__name__)
def test_a_nested_containers_flat_arrays_are_its_slice_of_the_roots(engine):
    net = build(engine, _nested(), dtype="float64")
    inner = net.layers[1]
    assert inner.is_root is False and net.is_root is True
    # inner holds 1.0.* (12 + 3) and 1.2.0.weight/bias (3 + 3): 21 values, right at the start
    assert tuple(inner.flat_parameters.shape) == (21,)
    inner.flat_parameters[...] = 7
    assert all(np.all(np.asarray(engine.to_numpy(v)) == 7) for k, v in net.parameters().items() if k.startswith("1."))
    assert np.all(np.asarray(engine.to_numpy(net.parameters()["2.weight"])) != 7)


@pytest.mark.parametrize("engine", [numpy_net, torch_net], ids=lambda m: m.__name__)
def test_layers_are_named_by_their_path_in_messages(engine):
    net = build(engine, _nested(), dtype="float64")
    assert net.layers[1].layers[2].layers[0].describe() == "layer 1.2.0 BatchNorm1d(3, eps=1e-05, momentum=0.1)"
    with pytest.raises(ValueError, match=r"layer 1\.0 Linear\(in_features=4, out_features=3\): x: expected"):
        net.forward(engine.asarray(np.zeros((2, 1, 3, 3)), "float64"))


@pytest.mark.parametrize("engine", [numpy_net, torch_net], ids=lambda m: m.__name__)
def test_inner_layers_check_each_kind_of_input_once_and_again_when_it_changes(engine, monkeypatch):
    """Validation once, at the boundary: after a forward has passed every layer's checks, the
    same kind of input runs the inner layers unchecked; another shape is checked in full again,
    so a bad one is still refused by the layer it does not fit, in its own words."""
    net = build(engine, _nested(), dtype="float64")
    calls = []
    layers_module = __import__(f"{engine.__name__}.layers", fromlist=["check_features"])
    original = layers_module.check_features
    monkeypatch.setattr(layers_module, "check_features", lambda *a: calls.append(a) or original(*a))
    good = engine.asarray(np.ones((2, 1, 2, 2)), "float64")
    net.forward(good)
    assert len(calls) == 2  # both Linears checked the first input
    net.forward(good)
    net.forward(good)
    assert len(calls) == 2  # nothing re-checked: the tree's first layer (Flatten) validated x
    with pytest.raises(ValueError, match=r"layer 1\.0 Linear"):
        net.forward(engine.asarray(np.ones((2, 1, 3, 3)), "float64"))  # another shape: checked, refused
    assert len(calls) == 3
    out = net.forward(good)  # back to the known input: checked once more, then trusted again
    assert tuple(out.shape) == (2, 2) and len(calls) == 5


@pytest.mark.parametrize("engine", [numpy_net, torch_net], ids=lambda m: m.__name__)
def test_the_callers_delta_is_checked_every_time_and_never_written(engine):
    net = engine.MLP([4, 3, 3, 2], dtype="float64")
    x = engine.asarray(np.ones((2, 4)), "float64")
    for _ in range(3):
        net.forward(x)
        delta = engine.asarray(np.full((2, 2), 0.5), "float64")
        net.backward(delta)
        assert np.all(np.asarray(engine.to_numpy(delta)) == 0.5)
    with pytest.raises(ValueError, match=r"layer 4 Linear\(in_features=3, out_features=2\): delta"):
        net.backward(engine.asarray(np.ones((3, 2)), "float64"))


@pytest.mark.parametrize("engine", [numpy_net, torch_net], ids=lambda m: m.__name__)
def test_the_root_refuses_nan_input_for_any_first_layer(engine):
    net = build(engine, _nested(), dtype="float64")
    x = np.ones((2, 1, 2, 2))
    x[1, 0, 1, 0] = np.nan
    with pytest.raises(FloatingPointError, match=r"x: contains NaN or Inf \(first at index \[1, 0, 1, 0\]\)"):
        net.forward(engine.asarray(x, "float64"))


@pytest.fixture
def composite_kind():
    """A composite layer kind registered for one test (a later layer family, such as a
    transformer encoder layer, is registered the same way), removed afterwards."""
    from engine_core import specs

    def parts(args):
        return [("linear1", LayerSpec("linear", {"in_features": args["features"], "out_features": args["features"]})),
                ("norm1", LayerSpec("batchnorm1d", {"num_features": args["features"]}))]

    kind = specs.register(specs.Kind("block", "Block", {"features": specs.REQUIRED}, parts=parts))
    yield kind
    del specs.KINDS["block"]


def test_a_composite_kind_registered_once_gets_torchs_keys_for_its_parts(composite_kind):
    from engine_core.specs import initial_state, state_shapes

    network = sequential(LayerSpec("linear", {"in_features": 4, "out_features": 3}),
                         LayerSpec("block", {"features": 3}))
    assert list(state_shapes(network)) == ["0.weight", "0.bias", "1.linear1.weight", "1.linear1.bias",
                                           "1.norm1.weight", "1.norm1.bias", "1.norm1.running_mean",
                                           "1.norm1.running_var"]
    assert list(initial_state(network)) == list(state_shapes(network))
    assert [path for path, _ in network.leaves()] == ["0", "1"]  # the block runs its parts itself
    assert LayerSpec.from_json(network.children[1].to_json()) == network.children[1]


@pytest.mark.parametrize("engine", [numpy_net, torch_net], ids=lambda m: m.__name__)
def test_an_inf_in_x_is_refused_when_the_first_child_is_a_block_that_could_squash_it(engine):
    tree = sequential(sequential(LayerSpec("linear", {"in_features": 4, "out_features": 6}), LayerSpec("tanh")),
                      LayerSpec("linear", {"in_features": 6, "out_features": 2}))
    net = build(engine, tree, dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 4))
    x[0, 3] = np.inf
    with pytest.raises(FloatingPointError, match=r"x: contains NaN or Inf \(first at row 0, column 3\)"):
        net.forward(engine.asarray(x, "float64"))


@pytest.mark.parametrize("engine", [numpy_net, torch_net], ids=lambda m: m.__name__)
def test_a_layer_taken_out_of_a_tree_that_trusted_it_checks_everything_again(engine):
    net = build(engine, _nested(), dtype="float64")
    good = engine.asarray(np.ones((2, 1, 2, 2)), "float64")
    net.forward(good)
    net.forward(good)  # trusted: the inner layers skipped their checks
    net.backward(engine.asarray(np.ones((2, 2)), "float64"))
    inner_linear = net.layers[1].layers[0]
    with pytest.raises(ValueError, match=r"layer 1\.0 Linear\(in_features=4, out_features=3\): x: expected shape"):
        inner_linear.forward(engine.asarray(np.ones((5, 9)), "float64"))
    with pytest.raises(TypeError, match=r"expected dtype float64"):
        net.layers[1].forward(engine.asarray(np.ones((2, 4)), "float32"))
    before = {k: np.array(engine.to_numpy(v)) for k, v in net.grads().items()}
    with pytest.raises(ValueError, match=r"layer 2 Linear.*delta"):
        net.layers[2].backward(engine.asarray(np.ones((7, 2)), "float64"))
    assert all(np.array_equal(before[k], np.asarray(engine.to_numpy(v))) for k, v in net.grads().items())


@pytest.mark.parametrize("engine", [numpy_net, torch_net], ids=lambda m: m.__name__)
def test_switching_one_childs_mode_makes_the_tree_check_again(engine):
    net = build(engine, _nested(), dtype="float64")
    x = engine.asarray(np.ones((1, 1, 2, 2)), "float64")
    net.eval()
    net.forward(x)
    net.forward(x)  # trusted, in eval mode: a batch of one is fine for batch norm
    net.layers[1].train()
    running = net.state_dict()["1.2.0.running_var"]
    with pytest.raises(ValueError, match=r"layer 1\.2\.0 BatchNorm1d.*more than 1 value per channel"):
        net.forward(x)
    assert np.array_equal(net.state_dict()["1.2.0.running_var"], running)


@pytest.mark.parametrize("engine", [numpy_net, torch_net], ids=lambda m: m.__name__)
def test_a_layer_object_used_twice_is_refused_naming_both_places(engine):
    relu = engine.ReLU()
    with pytest.raises(ValueError, match=r"ReLU at 1 is used again at 3: each place in a network needs its own"):
        engine.Sequential(engine.Linear(4, 3), relu, engine.Linear(3, 3), relu, engine.Linear(3, 2))


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
def test_a_sequential_overwrites_only_between_two_linears_whatever_inplace_says(subject):
    trio = build(subject.module, [linear(5, 4), with_inplace("relu", False), linear(4, 3)])
    assert trio.layers[1]._overwrite
    issue = build(subject.module, INPLACE_STACKS["issue 21: Linear, Tanh, LeakyReLU(0.1, inplace), Linear"][0](True))
    assert not issue.layers[1]._overwrite and not issue.layers[2]._overwrite
    assert issue.layers[2].inplace  # the user's flag, kept and shown
    assert not subject.ReLU(inplace=True)._overwrite
    assert not hasattr(subject.Dropout(inplace=True), "_overwrite")

"""Layer stacks in the application: --layers and --preset lenet, their config and checkpoint
fields, exact resume with dropout and batch norm, export to torch.nn.Sequential and back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import numpy_net
from backprop import checkpoint as checkpoint_module
from backprop import threads
from backprop.architecture import LENET, LayersSyntaxError, evaluation_chunk, format_layers, image_view, parse_layers
from backprop.checkpoint import load_checkpoint
from backprop.cli import main
from backprop.config import PRESETS, ConfigError, TrainConfig, new_config
from backprop.datasets import load_dataset
from backprop.engines import Engine, EngineError, load_engine
from backprop.export import read_torch_state, to_torch_layout, torch_module
from backprop.training import Trainer, TrainingInterrupted, evaluate
from engine_core.specs import LayerSpec, build, initial_state, mlp, sequential

from .helpers import accuracy_of, run_cli, small_config, write_checkpoint

# A small stack with every kind of state: parameters, batch norm buffers, a dropout generator.
STACK_TEXT = "conv2d(1, 3, 3, stride=2), batchnorm2d(3), relu, maxpool2d(2), dropout(0.25, seed=5), flatten, " \
             "linear(108, 16), batchnorm1d(16), relu, dropout(0.5, seed=7), linear(16, 10)"
STACK = parse_layers(STACK_TEXT)


def _config(**overrides) -> TrainConfig:
    flags = dict(layers=STACK, dataset="fashion-mnist", batch_size=24, epochs=2, seed=3, dtype="float64")
    return new_config("default", **{**flags, **overrides})


def _same_bits(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


# -- configuration --------------------------------------------------------------------------
def test_layers_round_trip_through_config_json():
    config = _config()
    data = json.loads(json.dumps(config.to_json()))
    assert not {"sizes", "hidden", "activation"} & set(data)  # the network is its layers alone
    assert data["layers"] == [spec.to_json() for spec in STACK.children]
    again = TrainConfig.from_json(data)
    assert again.network == STACK and again == config
    assert TrainConfig.from_json(json.loads(json.dumps(new_config("lenet").to_json()))).network == LENET


def test_an_old_config_without_the_layers_field_is_the_mlp():
    # Written before the network was one tree: hidden widths and an activation, no layers.
    data = small_config().to_json()
    del data["layers"]
    data.update(hidden=[8], activation="relu", sizes=[784, 8, 10])
    config = TrainConfig.from_json(data, legacy=True)  # as a checkpoint of version 1 to 3 is read
    assert config.network == mlp([784, 8, 10], "relu") and config == small_config()


@pytest.mark.parametrize("field, value", [("hidden", [8]), ("activation", "relu"), ("sizes", [784, 8, 10])])
def test_a_current_config_refuses_the_old_network_fields(field, value):
    data = {**small_config().to_json(), field: value}
    with pytest.raises(ValueError, match=rf"config\.{field}: unknown field"):
        TrainConfig.from_json(data)


@pytest.mark.parametrize("value, message", [
    ("conv2d", "config.layers: expected a non-empty list"),
    ([], "config.layers: expected a non-empty list"),
    ([{"kind": "conv3d", "args": {}}], r"config.layers\[0\].kind: .*conv3d"),
    ([{"kind": "linear", "args": {"in_features": "784", "out_features": 10, "bias": True}}],
     r"config.layers\[0\].in_features: expected a positive int"),
    ([{"kind": "linear", "args": {"in_features": 784, "out_features": 10, "bias": True, "colour": 1}}],
     r"config.layers\[0\].colour: unknown argument of linear"),
    # Stored specs carry every argument (to_json writes them all): a missing one is not defaulted.
    ([{"kind": "linear", "args": {"in_features": 784, "out_features": 10}}], r"config.layers\[0\].bias: missing"),
    ([{"kind": "linear", "args": {"in_features": 784, "out_features": 10, "bias": True}, "name": "fc"}],
     r"config.layers\[0\].name: unknown field"),
    ([{"kind": "relu"}], r"config.layers\[0\].args: missing"),
    ([{"kind": "linear", "args": {"in_features": 784, "out_features": 12, "bias": True}}],
     "config.layers: .*expected 10 logits"),
    ([{"kind": "conv2d", "args": {"in_channels": 3, "out_channels": 2, "kernel_size": 3, "stride": 1, "padding": 0,
                                  "bias": True}}], "config.layers: .*3 input channels"),
])
def test_config_refuses_bad_layers_naming_the_field(value, message):
    data = _config().to_json()
    data["layers"] = value
    with pytest.raises((ValueError, TypeError), match=message):
        TrainConfig.from_json(data)


def test_config_refuses_hidden_widths_beside_layers():
    data = _config().to_json()
    data.update(hidden=[8], activation="relu")  # an old stack's placeholders, but widths in them
    with pytest.raises(ValueError, match=r"config\.hidden: .*contradicts config\.layers"):
        TrainConfig.from_json(data, legacy=True)


@pytest.mark.parametrize("preset, flags, message", [
    ("default", dict(layers=STACK, hidden=[8]), "--layers cannot be combined with --hidden"),
    ("default", dict(layers=STACK, activation="tanh", init="he_normal"),
     "--layers cannot be combined with --activation:"),
    ("lenet", dict(activation="tanh", init="he_normal"), "--activation cannot be combined with --preset lenet"),
    ("lenet", dict(hidden=[8]), "--hidden cannot be combined with --preset lenet"),
])
def test_conflicting_flags_are_config_errors_naming_them(preset, flags, message):
    with pytest.raises(ConfigError, match=message):
        new_config(preset, **flags)


def test_lenet_preset_is_the_lenet_stack_for_at_most_ten_epochs():
    config = new_config("lenet")
    assert config.network == LENET and config.epochs <= 10 and PRESETS["lenet"]["network"] is LENET


def test_images_are_views_and_evaluation_chunks_bound_memory():
    x = np.zeros((5, 784), np.float32)
    images = image_view(x, LENET)
    assert images.shape == (5, 1, 28, 28) and np.shares_memory(images, x)
    flat = image_view(x, mlp([784, 256, 128, 10], "relu"))
    assert flat.shape == x.shape and np.shares_memory(flat, x)  # an MLP takes the rows as they are
    chunk = evaluation_chunk(LENET, 4)
    # ~0.2 MB a sample in float32 (conv1's im2col alone 78 KB): a 256 MB budget is ~1,300 samples.
    assert 500 <= chunk <= 2_000
    assert evaluation_chunk(mlp([784, 256, 128, 10], "relu"), 4) == 10_000


# -- the --layers grammar: torch's every argument ---------------------------------------------
@pytest.mark.parametrize("item, expected", [
    ('conv2d(1, 6, 5, padding="same", dilation=2, groups=1)', dict(padding="same", dilation=2, groups=1)),
    ("conv2d(4, 8, (3, 1), stride=[2, 1], padding=(1, 0), groups=4, bias=False, padding_mode='zeros')",
     dict(kernel_size=(3, 1), stride=(2, 1), padding=(1, 0), groups=4, bias=False)),
    ("conv2d(1, 6, 5, padding='valid')", dict(padding="valid")),
    ("maxpool2d(3, 2, padding=1, ceil_mode=True)", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("maxpool2d(3, dilation=2, return_indices=False)", dict(dilation=2, stride=None)),
    ("avgpool2d(2, count_include_pad=False, divisor_override=3)", dict(count_include_pad=False, divisor_override=3)),
    ("avgpool2d(3, 2, 1, True, False, None)", dict(padding=1, ceil_mode=True, count_include_pad=False)),
    ("flatten(1, -1)", dict(start_dim=1, end_dim=-1)),
    ("flatten(start_dim=2)", dict(start_dim=2, end_dim=-1)),
    ("batchnorm1d(8, affine=False, track_running_stats=False, momentum=None)",
     dict(affine=False, track_running_stats=False, momentum=None)),
    ("batchnorm2d(8, 1e-3, None, False)", dict(eps=1e-3, momentum=None, affine=False)),
    ("relu(inplace=True)", dict(inplace=True)),
    ("leakyrelu(0.1, True)", dict(negative_slope=0.1, inplace=True)),
    ("dropout(0.2, True)", dict(p=0.2, inplace=True, seed=0)),
    ("GELU('tanh')", dict(approximate="tanh")),
])
def test_the_layers_text_takes_every_torch_argument_and_gives_it_back(item, expected):
    from backprop.architecture import parse_layer

    spec = parse_layer(item)
    assert {name: spec.args[name] for name in expected} == expected
    assert parse_layer(format_layers([spec])) == spec
    assert not any(isinstance(value, list) for value in spec.args.values())  # [2, 1] is read as (2, 1),
    assert LayerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec  # as a stored spec is


def test_a_trailing_comma_is_accepted_at_the_top_level_as_inside_sequential():
    plain = parse_layers("flatten, sequential(linear(784, 16), relu), linear(16, 10)")
    assert parse_layers("flatten, sequential(linear(784, 16), relu,), linear(16, 10),") == plain
    assert parse_layers("flatten , sequential(linear(784, 16), relu , ) , linear(16, 10) , ") == plain
    # a comma, a bracket or a parenthesis inside a string is no separator
    with pytest.raises(ValueError, match=r"'conv2d\(1, 6, 5, padding=\"\(,\]\"\)': conv2d: padding: invalid "):
        parse_layers('conv2d(1, 6, 5, padding="(,]"), flatten, linear(3456, 10)')


def test_a_stack_starting_with_activations_or_dropout_takes_what_the_next_layer_takes():
    from backprop.architecture import input_shape

    assert input_shape(parse_layers("dropout(0.1), relu, conv2d(1, 2, 3), flatten, linear(1352, 10)")) == (1, 28, 28)
    assert input_shape(parse_layers("relu, sequential(batchnorm2d(1)), flatten, linear(784, 10)")) == (1, 28, 28)
    assert input_shape(parse_layers("dropout(0.1), linear(784, 10)")) == (784,)


@given(data=st.data())
def test_every_spec_the_catalog_draws_round_trips_through_the_text_and_the_printed_torch_code(data):
    """The harness's strategies draw every argument of every kind (parity_tests/catalog.py): the
    --layers text of a drawn layer parses back to it, and the torch code export prints for it
    builds the module export builds."""
    from torch import nn

    from backprop.architecture import parse_layer
    from backprop.export import torch_namespace, torch_spelling
    from parity_tests.catalog import CATALOG

    entry = CATALOG[data.draw(st.sampled_from(sorted(CATALOG)), label="kind")]
    spec, _ = entry.draw(data.draw)
    assert parse_layer(format_layers([spec])) == spec
    printed = eval(torch_spelling(spec), torch_namespace())  # our own printed code (nn, and the classes it defines)
    built = torch_module(sequential(spec))[0]

    def settings_of(module: nn.Module) -> dict:
        return {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}

    assert type(printed) is type(built) and settings_of(printed) == settings_of(built)


def test_the_help_and_the_network_page_list_every_kind_with_torchs_names_and_defaults():
    from backprop.architecture import layer_signature
    from backprop.cli.options import LAYERS_HELP
    from engine_core.specs import KINDS

    page = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "network.md")).read()
    flat = " ".join(page.split())
    for kind in KINDS:
        signature = layer_signature(kind)
        assert signature in LAYERS_HELP, signature
        if "=" in signature:  # the kinds with arguments, in docs/network.md's --layers table
            assert " ".join(signature.split()) in flat.replace("( ", "("), signature
    assert layer_signature("conv2d") == ("conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, "
                                         "dilation=1, groups=1, bias=True, padding_mode='zeros')")


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
    config = _config()
    straight = _trainer(config, first, data_root, str(tmp_path / "straight"))
    straight.run()
    checkpoint = _interrupted(config, first, data_root, str(tmp_path / "partial"), at_step=4)
    assert set(checkpoint.dropout_rng) == {"4", "9"} and set(checkpoint.num_batches_tracked) == {"1", "7"}
    steps = -(-256 // 24)
    assert checkpoint.num_batches_tracked == {"1": steps + 5, "7": steps + 5}
    resumed = _trainer(config, second, data_root, str(tmp_path / "partial"), resume=checkpoint)
    resumed.run()
    assert _same_bits(straight.net.state_dict(), resumed.net.state_dict())
    assert straight.dropout_states() == resumed.dropout_states()
    assert straight.num_batches_tracked() == resumed.num_batches_tracked() == {"1": 2 * steps, "7": 2 * steps}
    assert [r["test_acc"] for r in straight.progress.history] == [r["test_acc"] for r in resumed.progress.history]


def test_a_numpy_checkpoint_resumed_by_torch_follows_the_same_trajectory(data_root, tmp_path):
    config = _config()
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


def test_dropout_state_that_does_not_match_the_layers_is_refused(tmp_path):
    config = _config()
    net = build(numpy_net, STACK, "float64", 3)
    path = str(tmp_path / "checkpoint.npz")
    write_checkpoint(path, config, params=net.state_dict(), meta_changes={"dropout_rng": {"4": {"x": 1}}})
    with pytest.raises(checkpoint_module.CheckpointError, match=r"dropout_rng.*do not match"):
        load_checkpoint(path)
    write_checkpoint(path, config, params=net.state_dict(),
                     meta_changes={"num_batches_tracked": {"1": -1, "7": 0}})
    with pytest.raises(checkpoint_module.CheckpointError, match=r"num_batches_tracked\['1'\]"):
        load_checkpoint(path)


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
    assert _same_bits(checkpoint.params, {key: value.astype(np.float32) for key, value in state.items()})
    assert checkpoint.dropout_rng == {} and checkpoint.num_batches_tracked == {}


# -- export and import --------------------------------------------------------------------------
def test_export_to_torch_nn_and_import_back_round_trips(tmp_path):
    import torch

    net = build(numpy_net, STACK, "float64", 11)
    x = np.random.default_rng(0).normal(size=(6, 1, 28, 28))
    net.forward(x)  # one train-mode step's statistics in the buffers
    net.eval()
    module = torch_module(STACK, "float64")
    module.load_state_dict({key: torch.from_numpy(np.array(value))
                            for key, value in to_torch_layout(STACK, net.state_dict(), {"1": 3, "7": 3}).items()})
    state = module.state_dict()
    assert list(state) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "6.weight", "6.bias", "7.weight", "7.bias", "7.running_mean", "7.running_var", "7.num_batches_tracked",
        "10.weight", "10.bias"]
    assert state["1.num_batches_tracked"].dtype == torch.int64 and int(state["1.num_batches_tracked"]) == 3
    assert tuple(state["6.weight"].shape) == (16, 108)  # torch's (out, in)
    module.eval()
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12, atol=1e-12)
    path = str(tmp_path / "model.pt")
    torch.save(state, path)
    params, tracked = read_torch_state(path, STACK)
    assert tracked == {"1": 3, "7": 3}
    assert _same_bits(params, net.state_dict())
    again = build(numpy_net, STACK, "float64", 0)
    again.load_state_dict(params)
    again.eval()
    assert np.array_equal(again.forward(x), net.forward(x))


def test_import_refuses_a_state_dict_of_another_network(tmp_path):
    import torch

    from backprop.export import TorchImportError

    path = str(tmp_path / "model.pt")
    torch.save({"0.weight": torch.zeros(3, 1, 3, 3)}, path)
    with pytest.raises(TorchImportError, match=r"model\.pt: .*missing 0\.bias"):
        read_torch_state(path, STACK)


def test_import_of_a_state_dict_without_num_batches_tracked_starts_the_count_at_0(data_root, tmp_path, capsys):
    """pytorch/pytorch#8430: torch before 0.4.1 wrote batch norm without num_batches_tracked, and
    torch's strict load_state_dict accepts such a file, a fresh layer's counter staying 0; so does
    `backprop import` (one layer's counter missing, the other's given)."""
    import torch

    module = torch_module(STACK, "float32")
    with torch.no_grad():
        module[1].running_mean.fill_(0.5)
        module[7].running_var.fill_(2.0)
        module[7].num_batches_tracked.fill_(4)
    state = {key: value for key, value in module.state_dict().items() if key != "1.num_batches_tracked"}
    assert torch_module(STACK, "float32").load_state_dict(state, strict=True)  # torch's verdict
    checkpoint = _imported(tmp_path, state, STACK_TEXT, data_root, capsys)
    assert checkpoint.num_batches_tracked == {"1": 0, "7": 4}
    assert np.all(checkpoint.params["1.running_mean"] == 0.5) and np.all(checkpoint.params["7.running_var"] == 2.0)
    # Every counter missing is as fine; any other key missing is still refused, naming it.
    params, tracked = read_torch_state(_saved(tmp_path, {k: v for k, v in state.items() if "num_batches" not in k}),
                                       STACK)
    assert tracked == {"1": 0, "7": 0} and _same_bits(params, checkpoint.params)
    from backprop.export import TorchImportError

    with pytest.raises(TorchImportError, match=r"missing 7\.running_mean \("):
        read_torch_state(_saved(tmp_path, {k: v for k, v in state.items() if k != "7.running_mean"}), STACK)


def _saved(tmp_path, state: dict) -> str:
    import torch

    path = str(tmp_path / "state.pt")
    torch.save(state, path)
    return path


def _imported(tmp_path, state: dict, layers_text: str, data_root: str, capsys):
    """`backprop import` (in-process) of a torch state dict saved to a file: the checkpoint it wrote."""
    out = str(tmp_path / "imported")
    assert main(["import", _saved(tmp_path, state), "--layers", layers_text, "--dataset", "fashion-mnist",
                 "--data-dir", data_root, "--out", out]) == 0, capsys.readouterr().err
    return load_checkpoint(out)


# Batch norm's arguments one at a time, on (N, C), (N, C, L) and (N, C, H, W): torch's module has
# torch's keys for each (affine=False: no weight or bias; track_running_stats=False: no running
# statistics and no counter), computes the engine's eval-mode output, and its file imports back
# bit for bit with the counters of the layers that keep one.
BATCH_NORM_ARGS = ["", ", affine=False", ", track_running_stats=False", ", momentum=None",
                   ", momentum=None, affine=False", ", affine=False, track_running_stats=False"]
BATCH_NORM_STACKS = ["flatten, linear(784, 6), batchnorm1d(6{}), tanh, linear(6, 10)",
                     "conv2d(1, 3, 5, stride=3), flatten(2), batchnorm1d(3{}), flatten, linear(192, 10)",
                     "conv2d(1, 3, 5, stride=3), tanh, batchnorm2d(3{}), flatten, linear(192, 10)"]


@pytest.mark.parametrize("stack", BATCH_NORM_STACKS, ids=["(N, C)", "(N, C, L)", "(N, C, H, W)"])
@pytest.mark.parametrize("args", BATCH_NORM_ARGS, ids=lambda args: args[2:] or "defaults")
def test_batch_norm_arguments_export_to_torch_and_import_back(stack, args, tmp_path):
    import torch

    network = parse_layers(stack.format(args))
    spec = network.children[2]
    net = build(numpy_net, network, "float64", seed=5)
    rng = np.random.default_rng(1)
    for _ in range(3):  # three train-mode batches: the running statistics and the counter move
        net.forward(rng.normal(size=(4, 1, 28, 28)))
    net.eval()
    count = net.layers[2].num_batches_tracked
    assert count == (3 if spec.args["track_running_stats"] else 0)
    module = torch_module(network, "float64")
    state = to_torch_layout(network, net.state_dict(), {"2": count})
    module.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in state.items()})  # strict
    names = {key[2:] for key in module.state_dict() if key.startswith("2.")}
    assert names == {*(("weight", "bias") if spec.args["affine"] else ()),
                     *(("running_mean", "running_var", "num_batches_tracked") if spec.args["track_running_stats"]
                       else ())}
    assert (module[2].momentum, module[2].affine, module[2].track_running_stats) == (
        spec.args["momentum"], spec.args["affine"], spec.args["track_running_stats"])
    module.eval()
    x = rng.normal(size=(5, 1, 28, 28))
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.forward(x), want, rtol=1e-12, atol=1e-12)
    params, tracked = read_torch_state(_saved(tmp_path, module.state_dict()), network)
    assert _same_bits(params, net.state_dict())
    assert tracked == ({"2": 3} if spec.args["track_running_stats"] else {})


# torch's layers with arguments other than their defaults, every kind that has some: a grouped and a
# dilated "same" convolution, pools with padding, ceil_mode (a dropped last window), count_include_pad
# and divisor_override, batch norm without affine parameters, with the cumulative average and
# without running statistics (over (N, C, L)), in-place activations and dropout, Flatten(2).
NEW_ARGS_TEXT = ("conv2d(1, 4, 3, padding='same', dilation=2, bias=False), "
                 "batchnorm2d(4, affine=False, momentum=None), "
                 "relu(inplace=True), maxpool2d(3, 2, padding=1, ceil_mode=True), conv2d(4, 8, 3, groups=4, "
                 "padding=(1, 0)), avgpool2d(2, padding=1, ceil_mode=True, count_include_pad=False, "
                 "divisor_override=3), leakyrelu(0.1, True), dropout(0.2, True), flatten(2), "
                 "layernorm(56, eps=0.001), layernorm((8, 56), bias=False), "
                 "batchnorm1d(8, track_running_stats=False), gelu('tanh'), flatten(1, -1), linear(448, 10)")


def test_export_and_import_round_trip_every_new_layer_argument(data_root, tmp_path, capsys):
    import torch
    from torch import nn

    from backprop.checkpoint import checkpoint_meta, save_checkpoint
    from backprop.progress import Progress

    def cli(*args: str) -> str:
        assert main(list(args)) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    network = parse_layers(NEW_ARGS_TEXT)
    # A checkpoint whose buffers have moved: two train-mode batches (momentum=None: their average).
    trained = build(numpy_net, network, "float64", seed=2)
    for seed in (1, 2):
        trained.forward(image_view(np.random.default_rng(seed).standard_normal((6, 784)), network))
    out = str(tmp_path / "checkpoint.npz")
    config = _config(layers=network)
    save_checkpoint(out, trained.state_dict(), {"step": 0, "lr": config.lr, "state": {}},
                    checkpoint_meta(config, "numpy", Progress(), 256, num_batches_tracked={"1": 2}))
    checkpoint = load_checkpoint(out)
    assert checkpoint.num_batches_tracked["1"] == 2
    # export: the printed code builds each layer with its arguments, and loads the file (strictly)
    model = str(tmp_path / "model.pt")
    code = cli("export", out, "--to", model).split("load it:\n", 1)[1]
    assert "nn.Conv2d(1, 4, 3, padding='same', dilation=2, bias=False)" in code
    namespace: dict = {}
    exec(code, namespace)
    module = namespace["model"]
    expected = torch_module(network, "float64")
    for printed, built in zip(module, expected):
        assert type(printed) is type(built)
        assert {k: v for k, v in vars(printed).items() if not k.startswith("_") and k != "training"} == \
               {k: v for k, v in vars(built).items() if not k.startswith("_") and k != "training"}, built
    assert (module[0].padding, module[0].dilation, module[4].groups) == ("same", (2, 2), 4)
    assert (module[1].affine, module[1].momentum, module[3].ceil_mode, module[11].track_running_stats) == \
           (False, None, True, False)
    assert (module[9].eps, module[9].normalized_shape, module[10].normalized_shape, module[10].bias) == \
           (0.001, (56,), (8, 56), None)
    assert (module[5].count_include_pad, module[5].divisor_override, module[8].start_dim) == (False, 3, 2)
    saved = torch.load(model, weights_only=True)
    # torch's keys: affine=False has no weight or bias, track_running_stats=False no buffers at all
    assert list(saved) == ["0.weight", "1.running_mean", "1.running_var", "1.num_batches_tracked", "4.weight",
                           "4.bias", "9.weight", "9.bias", "10.weight", "11.weight", "11.bias", "14.weight",
                           "14.bias"]
    expected.load_state_dict(saved, strict=True)
    assert int(saved["1.num_batches_tracked"]) == 2
    # torch's eval-mode output is the engine's
    x = image_view(np.random.default_rng(0).standard_normal((5, 784)), network)
    net = build(numpy_net, network, "float64")
    net.load_state_dict(checkpoint.params)
    net.eval()
    module.eval()
    with torch.no_grad():
        theirs = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.forward(x), theirs, rtol=1e-10, atol=1e-12)
    # import: the same parameters, buffers and counters, in the file's float64
    imported = str(tmp_path / "imported")
    cli("import", model, "--layers", NEW_ARGS_TEXT, "--dataset", "fashion-mnist", "--data-dir", data_root,
        "--out", imported)
    again = load_checkpoint(imported)
    assert again.config.network == network and again.config.dtype == "float64"
    assert _same_bits(again.params, checkpoint.params)
    assert again.num_batches_tracked["1"] == 2
    assert isinstance(module[1], nn.BatchNorm2d)


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e5m2", "float16"])
def test_import_widens_floating_types_numpy_lacks_to_float32_exactly(dtype, data_root, tmp_path, capsys):
    """pytorch/pytorch#110285: a bfloat16 (or float8) state dict; each of its values is a float32."""
    import torch

    network = parse_layers(NEW_ARGS_TEXT)
    torch_dtype = getattr(torch, dtype, None)
    if torch_dtype is None:
        pytest.skip(f"this torch has no {dtype}")
    state = {key: value.to(torch_dtype) if value.is_floating_point() else value
             for key, value in torch_module(network).state_dict().items()}
    state["1.num_batches_tracked"] = torch.tensor(7)
    checkpoint = _imported(tmp_path, state, NEW_ARGS_TEXT, data_root, capsys)
    assert checkpoint.config.dtype == "float32" and checkpoint.num_batches_tracked["1"] == 7
    for key, value in checkpoint.params.items():
        exact = state[key].to(torch.float32).numpy()
        assert value.dtype == np.float32 and np.array_equal(value, exact.T if key == "14.weight" else exact), key
        # nothing was lost: the float32 values go back to the file's bits
        assert torch.equal(torch.from_numpy(np.ascontiguousarray(exact)).to(torch_dtype).view(torch.uint8),
                           state[key].view(torch.uint8)), key


@pytest.mark.parametrize("change, message", [
    (lambda s, torch: {**s, "4.weight": s["4.weight"].to(torch.complex64)},
     r"model\.pt: state_dict\['4\.weight'\]: expected a floating-point array, got dtype complex64"),
    (lambda s, torch: {**s, "4.weight": s["4.weight"].to(torch.complex32)},
     r"model\.pt: 4\.weight: a complex32 tensor, which NumPy cannot hold; expected dense floating-point"),
    (lambda s, torch: {**s, "4.bias": s["4.bias"].to(torch.int32)},
     r"state_dict\['4\.bias'\]: expected a floating-point array, got dtype int32"),
    (lambda s, torch: {**s, "4.bias": s["4.bias"] > 0}, r"state_dict\['4\.bias'\]: .*got dtype bool"),
    (lambda s, torch: {**s, "4.weight": s["4.weight"].to_sparse()},
     r"4\.weight: a float32 sparse_coo tensor, which NumPy cannot hold"),
    (lambda s, torch: {**s, "1.num_batches_tracked": torch.tensor(2.0)},
     r"1\.num_batches_tracked: expected a 0-d integer >= 0, got float32"),
    (lambda s, torch: {**s, "4.bias": torch.full_like(s["4.bias"], float("nan")).to(torch.bfloat16)},
     r"4\.bias.*NaN"),
])
def test_import_refuses_a_tensor_of_the_wrong_kind_naming_its_key_and_dtype(change, message, data_root, tmp_path,
                                                                           capsys):
    import warnings

    import torch

    state = dict(torch_module(parse_layers(NEW_ARGS_TEXT)).state_dict())
    path = str(tmp_path / "model.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex32 support is experimental; sparse tensors are validated
        torch.save(change(state, torch), path)
        code = main(["import", path, "--layers", NEW_ARGS_TEXT, "--dataset", "fashion-mnist", "--data-dir",
                     data_root, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert len(err.strip().splitlines()) == 1


# -- the command line end to end ----------------------------------------------------------------
SMALL = ["--layers", STACK_TEXT, "--dataset", "fashion-mnist", "--batch-size", "32", "--quiet"]


def test_cli_trains_evaluates_exports_imports_and_resumes_a_stack(data_root, tmp_path, capsys):
    def run_cli(*args: str) -> subprocess.CompletedProcess[str]:  # in-process, as the commands' own tests
        from backprop.cli import main

        try:
            code = main(list(args))
        except SystemExit as exit:  # argparse's usage errors
            code = int(exit.code or 0)
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)

    out = str(tmp_path / "run")
    result = run_cli("train", *SMALL, "--data-dir", data_root, "--epochs", "1", "--limit", "128", "--out", out)
    assert result.returncode == 0, result.stderr
    assert json.load(open(os.path.join(out, "config.json")))["layers"][0]["kind"] == "conv2d"
    evaluated = run_cli("evaluate", out, "--engine", "torch")
    assert evaluated.returncode == 0, evaluated.stderr
    accuracy = evaluated.stdout.split("test accuracy ")[1].split()[0]
    model = str(tmp_path / "model.pt")
    exported = run_cli("export", out, "--to", model)
    assert exported.returncode == 0, exported.stderr
    code = exported.stdout.split("load it:\n", 1)[1]
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    imported = str(tmp_path / "imported")
    result = run_cli("import", model, "--layers", STACK_TEXT, "--dataset", "fashion-mnist", "--data-dir", data_root,
                     "--out", imported)
    assert result.returncode == 0, result.stderr
    again = run_cli("evaluate", imported)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("test accuracy ")[1].split()[0] == accuracy
    resumed = run_cli("train", "--resume", out, "--epochs", "2", "--engine", "torch", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out).progress.epoch == 2
    refused = run_cli("train", "--resume", out, "--epochs", "3", "--layers", "flatten, linear(784, 10)")
    assert refused.returncode == 2, refused.stderr
    assert "--layers 'flatten, linear(784, 10)' conflicts with the checkpoint (--layers " \
           f"'{format_layers(STACK)}')" in refused.stderr
    # An imported model can be trained on a subset, as a run started with train --limit.
    subset = str(tmp_path / "imported-subset")
    result = run_cli("import", model, "--layers", STACK_TEXT, "--dataset", "fashion-mnist", "--data-dir", data_root,
                     "--limit", "64", "--out", subset)
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(subset).meta["rng"]["train_samples"] == 64
    trained = run_cli("train", "--resume", subset, "--epochs", "1", "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert load_checkpoint(subset).progress.history[0]["samples_per_s"] > 0
    assert load_checkpoint(subset).config.limit == 64


NESTED_TEXT = "flatten, sequential(linear(784, 16), relu), linear(16, 10)"


def test_cli_trains_exports_and_imports_a_nested_sequential(data_root, tmp_path, capsys):
    import torch
    from torch import nn

    from backprop.cli import main

    def cli(*args: str) -> str:
        assert main(list(args)) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    out = str(tmp_path / "run")
    cli("train", "--layers", NESTED_TEXT, "--dataset", "fashion-mnist", "--data-dir", data_root,
        "--epochs", "1", "--limit", "64", "--batch-size", "16", "--quiet", "--out", out)
    checkpoint = load_checkpoint(out)
    assert list(checkpoint.params) == ["1.0.weight", "1.0.bias", "2.weight", "2.bias"]  # torch's nested keys
    assert checkpoint.config.network == parse_layers(NESTED_TEXT) and checkpoint.progress.epoch == 1
    assert format_layers(checkpoint.config.network) == NESTED_TEXT
    accuracy = accuracy_of(cli("evaluate", out))
    # export: a torch state dict that the printed code, run as printed, rebuilds and loads
    model = str(tmp_path / "model.pt")
    code = cli("export", out, "--to", model).split("load it:\n", 1)[1]
    namespace: dict = {}
    exec(code, namespace)
    module = namespace["model"]
    assert isinstance(module[1], nn.Sequential) and isinstance(module[1][0], nn.Linear)
    saved = torch.load(model, weights_only=True)
    assert list(saved) == list(module.state_dict()) == ["1.0.weight", "1.0.bias", "2.weight", "2.bias"]
    assert tuple(saved["1.0.weight"].shape) == (16, 784)  # torch's (out, in)
    np.testing.assert_array_equal(saved["1.0.weight"].numpy(), checkpoint.params["1.0.weight"].T)
    for key, value in module.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # import: the same --layers give a run that evaluates to the original's accuracy
    imported = str(tmp_path / "imported")
    cli("import", model, "--layers", NESTED_TEXT, "--dataset", "fashion-mnist", "--data-dir", data_root,
        "--out", imported)
    assert _same_bits(load_checkpoint(imported).params, checkpoint.params)
    assert accuracy_of(cli("evaluate", imported)) == accuracy


def test_init_is_accepted_with_layers_and_changes_the_initial_weights(data_root, tmp_path):
    from backprop.cli import build_parsers
    from backprop.cli.train import train_config

    _, commands = build_parsers()
    parser = commands["train"]

    def config_of(*flags: str) -> TrainConfig:
        return train_config(parser.parse_args(["--layers", NESTED_TEXT, "--dataset", "fashion-mnist", "--seed", "4",
                                               *flags]), parser)

    default, xavier = config_of(), config_of("--init", "xavier_uniform")
    assert default.init == "torch_default" and xavier.init == "xavier_uniform"  # --layers alone: torch's init
    assert xavier.network == default.network == parse_layers(NESTED_TEXT)
    assert new_config("lenet", init="xavier_uniform").init == "xavier_uniform"
    start = {}
    for name, config in (("default", default), ("xavier", xavier)):
        trainer = _trainer(config, "numpy", data_root, str(tmp_path / name))  # built, not run
        start[name] = trainer.net.state_dict()
    for key in start["default"]:
        assert not np.array_equal(start["default"][key], start["xavier"][key]), key
    # xavier_uniform: U(+-sqrt(6 / (fan_in + fan_out))) weights, zero biases (torch_default draws them)
    assert np.abs(start["xavier"]["1.0.weight"]).max() <= np.sqrt(6 / (784 + 16))
    assert not start["xavier"]["1.0.bias"].any() and not start["xavier"]["2.bias"].any()
    assert _same_bits(start["xavier"], {key: value.astype(np.float32) for key, value in
                                        initial_state(xavier.network, 4, "xavier_uniform").items()})
    # and the command line trains with it, recording it
    out = tmp_path / "run"
    result = run_cli("train", "--layers", NESTED_TEXT, "--init", "xavier_uniform", "--dataset", "fashion-mnist",
                     "--data-dir", data_root, "--epochs", "1", "--limit", "32", "--batch-size", "16", "--quiet",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert json.load(open(out / "config.json"))["init"] == "xavier_uniform"
    assert load_checkpoint(str(out)).config.init == "xavier_uniform"


@pytest.mark.parametrize("text, message", [
    ("conv3d(1, 6, 5), flatten, linear(4704, 10)", "unknown layer 'conv3d'"),
    ("conv2d(1, 6, 5), relu, linear(10, 10)", r"layer 2 Linear\(in_features=10.*expects input \(\*, 10\)"),
    ('conv2d(1, 6, 5, padding="full"), flatten, linear(4704, 10)',
     r"conv2d\(1, 6, 5, padding=\"full\"\)': conv2d: padding: invalid padding string 'full'"),
    ("conv2d(1, 6, 4, padding='same', stride=2), flatten, linear(4704, 10)", r"conv2d: padding: .*stride"),
    ("maxpool2d(2, return_indices=True), flatten, linear(196, 10)", "maxpool2d: return_indices: True is not"),
    ("avgpool2d(2, divisor_override=0), flatten, linear(196, 10)", "avgpool2d: divisor_override"),
    ("conv2d(1, 6, 3, groups=2), flatten, linear(4056, 10)", "conv2d: groups: "),
    ("flatten, batchnorm1d(784, affine=None), linear(784, 10)", "batchnorm1d: affine: expected True or False"),
    ("relu(inplace=1), flatten, linear(784, 10)", "relu: inplace: expected True or False, got int 1"),
    ("flatten(start_dim=2), linear(784, 10)", r"layer 0 Flatten\(start_dim=2.*do not fit a 2-D input"),
    ("flatten,, linear(784, 10)", r"layer 1 is empty"),
    ("flatten, linear(784, 10), ,", r"layer 2 is empty"),
    ("conv2d(1, 6, 5, padding='same), flatten", "unterminated string"),
    ("conv2d(1, 6, 5, padding=-1), flatten, linear(3456, 10)", "padding"),
    ("linear(784, 64), relu", "expected 10 logits"),
    ("linear(784, 10", "unbalanced"),
    # Python's call rules: an argument given twice is refused (the keyword must not silently win),
    # and a positional argument may not follow a keyword one.
    ("linear(784, 10, in_features=100)", r"linear\(\) got multiple values for argument 'in_features'"),
    ("linear(784, out_features=10, out_features=12)", "got multiple values for argument 'out_features'"),
    ("linear(in_features=784, 10)", "positional argument after a keyword argument"),
    ("batchnorm1d(784, eps=0), linear(784, 10)", r"eps: must be > 0 .*constant over a batch has variance 0"),
])
def test_bad_layers_text_is_a_usage_error_naming_the_layer(text, message, tmp_path, capsys):
    stderr = _usage_error(capsys, "train", "--layers", text, "--out", str(tmp_path / "run"))
    assert "argument --layers:" in stderr
    assert re.search(message, stderr), stderr
    assert not os.path.exists(tmp_path / "run")


def _usage_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_layers_with_mlp_flags_is_a_usage_error_naming_both(tmp_path, capsys):
    stderr = _usage_error(capsys, "train", "--layers", "flatten, linear(784, 10)", "--hidden", "8",
                          "--out", str(tmp_path / "r"))
    assert "--layers cannot be combined with --hidden" in stderr
    stderr = _usage_error(capsys, "compare", "--preset", "lenet", "--activation", "tanh", "--out", str(tmp_path / "c"))
    assert "--activation cannot be combined with --preset lenet" in stderr


def test_evaluation_leaves_a_training_net_in_train_mode(data_root):
    engine = load_engine("numpy")
    net = build(numpy_net, STACK, "float32", 0)
    dataset = load_dataset("fashion-mnist", data_root, splits=("test",))
    before = net.state_dict()
    evaluate(engine, net, image_view(dataset.test_x, STACK), dataset.test_y, chunk=16)
    assert net.training and all(layer.training for layer in net.layers)
    assert _same_bits(before, net.state_dict())  # eval mode: the running statistics did not move


def test_the_suggested_new_run_command_spells_the_layers(data_root):
    from backprop.cli.train import new_run_command

    command = new_run_command(_config(), load_engine("numpy"), data_root, lr=0.005)
    assert "--layers 'conv2d(1, 3, 3, stride=2), batchnorm2d(3)," in command and "--hidden" not in command
    assert "--lr 0.005" in command
    lenet = new_run_command(new_config("lenet"), load_engine("numpy"), data_root)
    assert "--preset lenet" in lenet and "--layers" not in lenet


# -- exact resume from the command line, default flags ------------------------------------------
# `train` as `python -m backprop` runs it, but stopped as Ctrl-C stops it: before batch AT_STEP of
# epoch 2 the trainer is told to stop (no timing-dependent signal), then checkpoints and exits 130.
INTERRUPTING_MAIN = """
import sys
from backprop import threads, training
from backprop.cli import main

threads.load_average = lambda: 0.0  # as the suite's conftest: auto's count as on an idle machine

epoch, at_step = int(sys.argv[1]), int(sys.argv[2])
original = training.Trainer._train_epoch

def train_epoch(self):
    batch = self.feeder.batch

    def stopping_batch(step):
        if self.progress.epoch == epoch and step == at_step:
            self._stop_requested = True
        return batch(step)

    self.feeder.batch = stopping_batch
    original(self)

training.Trainer._train_epoch = train_epoch
sys.exit(main(sys.argv[3:]))
"""


def _interrupted_cli(tmp_path, epoch: int, at_step: int, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "interrupting_main.py"
    script.write_text(INTERRUPTING_MAIN)
    return subprocess.run([sys.executable, str(script), str(epoch), str(at_step), "train", *args],
                          capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)), timeout=300)


def test_ctrl_c_and_resume_with_default_flags_equal_the_uninterrupted_run_bit_for_bit(data_root, tmp_path):
    # float32, where the GEMM thread count shows in the last bits, and a step whose largest
    # product (2 * 16 * 784 * 128 = 3.2 MFLOP) gets 2 threads from auto's rule on 2 cores or more.
    common = ["--dataset", "fashion-mnist", "--data-dir", data_root, "--hidden", "128", "--batch-size", "16",
              "--epochs", "2", "--limit", "128", "--quiet", "--track-gradients"]
    straight, partial = str(tmp_path / "straight"), str(tmp_path / "partial")
    assert run_cli("train", *common, "--out", straight).returncode == 0
    stopped = _interrupted_cli(tmp_path, 1, 5, *common, "--out", partial)
    assert stopped.returncode == 130, stopped.stderr
    hint = [line for line in stopped.stderr.splitlines() if line.startswith("resume with: ")][-1]
    assert "--blas-threads" not in hint and "--track-gradients" not in hint  # both remembered by the checkpoint
    checkpoint = load_checkpoint(partial)
    assert (checkpoint.progress.epoch, checkpoint.progress.step) == (1, 6)  # batch 5 is the last one done
    assert checkpoint.gradients is not None and checkpoint.gradients["steps"] == 6  # mid-epoch sums saved
    resumed = run_cli("train", "--resume", partial, "--quiet")  # default flags: nothing about threads
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr == ""  # no note about threads, no warning
    a, b = load_checkpoint(straight), load_checkpoint(partial)
    assert _same_bits(a.params, b.params)
    expected = threads.rule_threads(threads.config_gemms(a.config))
    assert a.blas_threads == b.blas_threads == expected
    assert json.load(open(os.path.join(partial, "config.json")))["blas_threads"] == expected
    assert f"the numpy engine, {expected} BLAS thread" in resumed.stdout
    # The gradient means of the interrupted epoch cover all its steps, to the bit.
    assert open(os.path.join(partial, "gradients.csv")).read() == open(os.path.join(straight, "gradients.csv")).read()
    assert [r["test_loss"] for r in a.progress.history] == [r["test_loss"] for r in b.progress.history]


def test_a_resumed_session_reuses_the_recorded_thread_count_unless_told_otherwise(data_root, tmp_path):
    common = ["--dataset", "fashion-mnist", "--data-dir", data_root, "--hidden", "128", "--batch-size", "16",
              "--epochs", "3", "--quiet", "--limit", "64"]
    out = str(tmp_path / "run")
    first = _interrupted_cli(tmp_path, 0, 2, *common, "--blas-threads", "1", "--out", out)
    assert first.returncode == 130 and "1 BLAS thread (--blas-threads 1) ->" in first.stdout, first.stderr
    assert load_checkpoint(out).blas_threads == 1
    again = _interrupted_cli(tmp_path, 1, 2, "--resume", out, "--quiet")  # the rule would say 2: the run said 1
    assert again.returncode == 130 and "1 BLAS thread (the count the run recorded) ->" in again.stdout \
        and again.stderr.count("\n") == 3, \
        again.stderr  # the interruption's two lines and its hint
    told = run_cli("train", "--resume", out, "--quiet", "--blas-threads", "2")
    assert told.returncode == 0 and "2 BLAS threads (--blas-threads 2) ->" in told.stdout, told.stderr
    assert told.stderr.startswith("train: note: --blas-threads gives 2 threads where the run trained on 1: "
                                  "float32 numbers may differ from the uninterrupted run")
    assert load_checkpoint(out).blas_threads == 2


@pytest.mark.parametrize(("text", "message"), [
    ("conv2d(1, 1, 27), maxpool2d(2, stride=1, padding=1, dilation=3), flatten, linear(1, 10)",
     "layer 1 MaxPool2d(kernel_size=2, stride=1, padding=1, dilation=3, return_indices=False, ceil_mode=False): "
     "x: a window over the input's 2x2 pixels would hold only padding"),
    ("conv2d(1, 4, 3, padding=9223372036854775807), flatten, linear(10, 10)",
     "layer 2 Linear(in_features=10, out_features=10, bias=True): expects input (*, 10), got (2, "
     "1361129467683753857395273291879306758400)"),
])
def test_layers_that_could_only_fail_at_the_first_step_are_refused_when_parsed(text, message):
    """A max-pooling window of padding only (it has no pixel to take the maximum of) and sizes past
    int64 are --layers errors naming the layer, not a traceback at the first step or an overflow."""
    with pytest.raises(LayersSyntaxError) as info:
        parse_layers(text)
    assert message in str(info.value)

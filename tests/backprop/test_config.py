"""A run's configuration (backprop/config.py): each optimizer's torch defaults, the presets,
combinations that make no sense, and config.json's layers and fields."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

from backprop.architecture import GRU_NETWORK, LENET, LSTM_NETWORK, format_layers, parse_layers
from backprop.config import OPTIMIZER_DEFAULTS, PRESETS, ConfigError, TrainConfig, new_config, preset_network
from engine_core.specs import mlp
from tests.helpers import run_cli, small_config
from tests.networks import STACK, TINY_LSTM, stack_config


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW)])
def test_the_optimizer_defaults_are_torchs_own(name, cls):
    parameters = inspect.signature(cls.__init__).parameters
    for key, value in OPTIMIZER_DEFAULTS[name].items():
        assert parameters[key].default == value, (name, key)


@pytest.mark.parametrize("preset, flags, expected", [
    # An optimizer other than the preset's takes torch's defaults, not the SGD preset's 0.05.
    ("default", dict(optimizer="adam"), dict(lr=1e-3, momentum=0.0, weight_decay=0.0)),
    ("default", dict(optimizer="adamw"), dict(lr=1e-3, momentum=0.0, weight_decay=1e-2)),
    ("notebook", dict(optimizer="adam"), dict(lr=1e-3, momentum=0.0, weight_decay=0.0)),
    # The preset's own optimizer, named or not, keeps the preset's numbers.
    ("default", dict(), dict(lr=0.05, momentum=0.9, weight_decay=0.0)),
    ("default", dict(optimizer="sgd"), dict(lr=0.05, momentum=0.9, weight_decay=0.0)),
    ("notebook", dict(optimizer="sgd"), dict(lr=0.001, momentum=0.0)),
    # A flag given always wins.
    ("default", dict(optimizer="adam", lr=0.01, weight_decay=0.5), dict(lr=0.01, weight_decay=0.5)),
    ("default", dict(lr=0.2, momentum=0.5), dict(lr=0.2, momentum=0.5, optimizer="sgd")),
])
def test_defaults_follow_the_optimizer_chosen(preset, flags, expected):
    config = new_config(preset, **flags)
    for key, value in expected.items():
        assert getattr(config, key) == value, key
    assert config.preset == preset and config.network == preset_network(preset)


@pytest.mark.parametrize("flags, words", [
    (dict(optimizer="adam", nesterov=True), "--nesterov applies to --optimizer sgd only"),
    (dict(optimizer="adamw", momentum=0.9), "--momentum applies to --optimizer sgd only"),
    (dict(nesterov=True, momentum=0.0), "--nesterov needs a momentum above 0 (--momentum 0)"),
    (dict(gamma=0.5), "--gamma applies to --lr-schedule step, and this run's schedule is cosine"),
    (dict(step_size=3, lr_schedule="constant"), "--step-size applies to --lr-schedule step"),
    (dict(hidden=[], activation="tanh"), "a network without hidden layers (--hidden none) has no activation"),
    (dict(limit=10), "--batch-size 64 (the default preset's batch size) is larger than --limit 10"),
])
def test_combinations_that_make_no_sense_name_the_real_problem(flags, words):
    with pytest.raises(ConfigError) as info:
        new_config("default", **flags)
    assert words in str(info.value)


def test_nesterov_on_the_notebook_preset_says_where_the_zero_momentum_comes_from():
    with pytest.raises(ConfigError, match="the notebook preset's momentum 0"):
        new_config("notebook", nesterov=True)
    assert new_config("notebook", nesterov=True, momentum=0.9).nesterov


def test_a_presets_max_norm_flows_into_the_config_and_the_flag_wins(monkeypatch):
    monkeypatch.setitem(PRESETS, "notebook", {**PRESETS["notebook"], "clip_grad_norm": 2.0})
    assert new_config("notebook").clip_grad_norm == 2.0
    assert new_config("notebook", optimizer="adam").clip_grad_norm == 2.0  # not the optimizer's setting
    assert new_config("notebook", clip_grad_norm=0.25).clip_grad_norm == 0.25
    assert new_config("notebook", clip_grad_norm=math.inf).clip_grad_norm is None  # --clip-grad-norm none
    assert new_config("default").clip_grad_norm is None
    assert new_config("notebook").optimizer_summary() == "sgd lr 0.001, constant lr, clip grad norm 2"
    for name, values in PRESETS.items():  # whatever the presets say, each is a valid stored value
        config = new_config(name)
        assert config.clip_grad_norm == values.get("clip_grad_norm")
        assert TrainConfig.from_json(json.loads(json.dumps(config.to_json()))).clip_grad_norm == config.clip_grad_norm


# -- configuration --------------------------------------------------------------------------
def test_layers_round_trip_through_config_json():
    config = stack_config()
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
    data = stack_config().to_json()
    data["layers"] = value
    with pytest.raises((ValueError, TypeError), match=message):
        TrainConfig.from_json(data)


def test_a_network_built_in_python_is_checked_as_layers_is():
    """new_config(layers=...) from Python meets the rules --layers and config.json meet (one
    check_stack): a dropout of p=1 trains to chance, a network must end in 10 logits."""
    from engine_core.specs import LayerSpec

    with pytest.raises(ConfigError, match=r"^layers: layer 1 dropout\(p=1.0\): p=1 zeroes every value"):
        new_config(layers=[LayerSpec("flatten"), LayerSpec("dropout", {"p": 1.0}),
                           LayerSpec("linear", {"in_features": 784, "out_features": 10})])
    with pytest.raises(ConfigError, match=r"^layers: the last layer outputs .*expected 10 logits"):
        new_config(layers=[LayerSpec("linear", {"in_features": 784, "out_features": 12})])
    attention = LayerSpec("multiheadattention", {"embed_dim": 28, "num_heads": 4, "dropout": 1.0, "batch_first": True})
    with pytest.raises(ConfigError, match=r"^layers: layer 0 multiheadattention\(.*\): dropout=1 zeroes every"):
        new_config(layers=[attention, LayerSpec("laststep", {"batch_first": True}),
                           LayerSpec("linear", {"in_features": 28, "out_features": 10})])


def test_config_refuses_hidden_widths_beside_layers():
    data = stack_config().to_json()
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


# -- presets -----------------------------------------------------------------------------------
@pytest.mark.parametrize("preset, network", [("lstm", LSTM_NETWORK), ("gru", GRU_NETWORK)])
def test_the_recurrent_presets_train_the_row_reader_with_adam_and_clipping(preset, network):
    config = new_config(preset)
    assert config.network == network and format_layers(network) == (
        f"{preset}(28, 128, batch_first=True), laststep(batch_first=True), linear(128, 10)")
    assert (config.optimizer, config.lr, config.batch_size, config.init, config.clip_grad_norm) == (
        "adam", 1e-3, 64, "torch_default", 1.0)
    assert config.epochs <= 10 and config.momentum == 0.0 and config.weight_decay == 0.0
    assert config.optimizer_summary() == "adam lr 0.001, cosine schedule, clip grad norm 1"
    # Another optimizer takes torch's default lr, not the preset's Adam one; the flags still win.
    assert new_config(preset, optimizer="sgd").lr == 1e-3 and new_config(preset, lr=0.01).lr == 0.01
    with pytest.raises(ConfigError, match=f"--hidden cannot be combined with --preset {preset}: its network is a "
                                          "layer stack"):
        new_config(preset, hidden=[8])
    assert new_config(preset, layers=parse_layers(TINY_LSTM)).clip_grad_norm == 1.0  # --layers keeps the rest


@pytest.mark.parametrize("momentum", ["1", "1.5"])
def test_a_momentum_that_can_only_diverge_is_refused(momentum, tmp_path):
    for command in (["train"], ["compare", "--steps", "1"]):
        result = run_cli(*command, "--momentum", momentum, "--out", str(tmp_path / "x"))
        assert result.returncode == 2 and f"--momentum {momentum}" in result.stderr, result.stderr
        assert "grows without bound" in result.stderr and "learning rate" in result.stderr
    assert not (tmp_path / "x").exists()

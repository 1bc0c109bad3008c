"""Case 3: defaults fit the choice (each optimizer's own torch default unless --lr is given or the
preset's own optimizer is chosen), --help shows every default and where it comes from, and
combinations that make no sense name the real problem."""

from __future__ import annotations

import argparse
import inspect
import json

import pytest
import torch

from backprop.cli import build_parsers
from backprop.cli.options import HelpFormatter
from backprop.config import OPTIMIZER_DEFAULTS, ConfigError, new_config, preset_network

from .helpers import run_cli


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


def test_adam_without_lr_trains_at_adams_default_on_the_command_line(data_root, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--optimizer", "adam", "--data-dir", data_root, "--dataset", "fashion-mnist",
                     "--hidden", "8", "--batch-size", "16", "--epochs", "1", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "adam lr 0.001," in result.stdout  # the header says what it trains with
    config = json.load(open(out / "config.json"))
    assert (config["optimizer"], config["lr"], config["momentum"]) == ("adam", 0.001, 0.0)


def test_the_nesterov_with_adam_usage_error_on_the_command_line(tmp_path):
    result = run_cli("train", "--optimizer", "adam", "--nesterov", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--nesterov applies to --optimizer sgd only" in result.stderr and "momentum above 0" not in result.stderr


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]


@pytest.mark.parametrize("command", ["train", "evaluate", "export", "compare", "bench"])
def test_help_shows_every_default(command):
    _, commands = build_parsers()
    parser = commands[command]
    formatter = HelpFormatter(prog="backprop")
    for action in _options(parser):
        text = formatter._get_help_string(action) or ""
        assert "default" in text or action.required, (command, action.option_strings, text)


def test_help_says_which_defaults_come_from_the_preset_and_which_lr_wins():
    _, commands = build_parsers()
    text = commands["train"].format_help()
    flat = " ".join(text.split())
    for flag in ("--batch-size", "--hidden", "--epochs", "--activation", "--lr-schedule", "--momentum"):
        assert flag in text
    assert "the preset's: 32 (notebook), 64 (default)" in flat  # --batch-size
    assert "with another optimizer, torch's default for it" in flat and "So --optimizer adam alone trains at 0.001" \
        in flat
    assert "adamw 0.01" in flat  # --weight-decay
    assert "(default: $BACKPROP_ENGINE, then numpy)" in flat
    assert "(default: ./data" in flat


def test_help_is_reachable_from_the_command_line_for_every_command():
    for command in ("train", "evaluate", "export", "compare", "bench"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "usage: backprop " + command in result.stdout, command

"""Case 8: what a newcomer needs: the README's commands are valid ones, it says how to call
`backprop`, where the data goes and how to install without a GPU; a network without hidden
layers is documented and named for what it is; an oversized batch is reported, not shrunk."""

from __future__ import annotations

import json
import os
import shlex

import pytest

from backprop.cli import build_parsers
from backprop.cli.train import train_config
from engine_core.specs import mlp

from .helpers import ROOT, run_cli

README = os.path.join(ROOT, "README.md")


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def _code_lines() -> list[str]:
    """The lines inside the README's fenced code blocks, a line ending in a backslash joined with
    the next (as the shell reads it)."""
    lines, inside, pending = [], False, ""
    for line in _readme().splitlines():
        if line.strip().startswith("```"):
            inside = not inside
        elif inside and line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1]
        elif inside:
            lines.append(pending + line)
            pending = ""
    return lines


def _readme_commands() -> list[list[str]]:
    """Every `backprop ...` line of the README's code blocks (and `make train`'s DATA and ARGS),
    as argument lists; synopsis lines (with [...]) are left out."""
    commands = []
    for line in _code_lines():
        line = line.split(" #", 1)[0].strip().removeprefix("$ ")
        if not line.startswith(("backprop ", ".venv/bin/backprop ", "make train")) or "[" in line or "..." in line:
            continue
        words = shlex.split(line)
        if words[0] in ("backprop", ".venv/bin/backprop"):
            commands.append(words[1:])
        else:
            settings = dict(word.split("=", 1) for word in words[2:])
            commands.append(["train", *shlex.split(settings.get("DATA", "")), *shlex.split(settings.get("ARGS", ""))])
    return commands


def test_the_readme_shows_commands():
    commands = _readme_commands()
    assert len(commands) >= 8
    assert {c[0] for c in commands} >= {"train", "evaluate", "export", "compare", "bench"}


@pytest.mark.parametrize("args", _readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_command_in_the_readme_is_a_valid_one(args):
    parser, commands = build_parsers()
    if args == ["--version"]:
        with pytest.raises(SystemExit) as info:
            parser.parse_args(args)
        assert info.value.code == 0
        return
    namespace = parser.parse_args(args)  # a usage error would raise SystemExit(2)
    if namespace.command == "train" and not namespace.resume:
        train_config(namespace, commands["train"])  # and so would flags that make no sense together


def test_the_first_screen_tells_a_newcomer_what_they_need():
    first = _readme().split("## The interface", 1)[0]
    for words in (".venv/bin/backprop", "source .venv/bin/activate",  # how to call it
                  "--index-url https://download.pytorch.org/whl/cpu",  # a CPU-only torch
                  "5.8 GB",  # the install size
                  "../shared/datasets", "FashionMNIST/raw/",  # what the data folder is
                  "gunzip", "ossci-datasets",  # MNIST onto an offline machine
                  "BLAS threads"):  # float32 results depend on the thread count
        assert words in first, words


def test_no_hidden_layer_is_documented_and_its_header_names_no_activation(data_root, tmp_path):
    assert "--hidden none" in _readme()
    out = tmp_path / "run"
    result = run_cli("train", "--hidden", "", "--data-dir", data_root, "--dataset", "fashion-mnist",
                     "--batch-size", "16", "--epochs", "1", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert "784-10, no hidden layer" in header
    assert not any(name in header for name in ("relu", "tanh", "sigmoid", "identity")), header
    layers = json.load(open(out / "config.json"))["layers"]
    assert layers == [spec.to_json() for spec in mlp([784, 10]).children]  # one Linear, 784 -> 10
    assert " 1 epoch;" in header and "1 epochs" not in header, header  # counts are pluralised
    again = run_cli("train", "--resume", str(out), "--data-dir", data_root, "--quiet")
    assert again.returncode == 0 and "already finished 1 of 1 epoch. To train on" in again.stdout, again.stdout


def test_the_help_and_the_readme_say_what_the_commands_take():
    _, commands = build_parsers()
    train = " ".join(commands["train"].format_help().split())
    assert "Train a network, an MLP or a stack of layers (--layers, --preset lenet, lstm or gru)" in train
    assert "Train an MLP" not in train
    imports = " ".join(commands["import"].format_help().split())
    assert "(default: the layers of --preset, itself lenet by default)" in imports and "(default: lenet)" in imports
    synopsis = {line.split()[1]: line for line in _code_lines() if line.startswith("backprop ")}
    # import works without --layers or --preset (lenet's stack): the synopsis marks both optional.
    assert "model.pt [--layers TEXT | --preset lenet (the default)] --out DIR" in synopsis["import"]
    from backprop.benchmark import WORKLOADS

    assert f"[--workloads {','.join(WORKLOADS)}]" in synopsis["bench"]


def test_an_oversized_batch_is_reported_not_shrunk(data_root, tmp_path):
    # Larger than the 256 training samples: found once the data is read, still a usage error.
    result = run_cli("train", "--batch-size", "300", "--hidden", "4", "--data-dir", data_root, "--dataset",
                     "fashion-mnist", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "--batch-size 300 is larger than the 256 training samples" in result.stderr
    assert not os.path.exists(tmp_path / "run")  # nothing left behind
    # Larger than --limit: refused before any data is read.
    limited = run_cli("train", "--batch-size", "32", "--limit", "20", "--data-dir", str(tmp_path / "nowhere"))
    assert limited.returncode == 2 and "--batch-size 32 is larger than --limit 20" in limited.stderr
    for command in (["compare", "--batch-size", "300", "--hidden", "4", "--steps", "1"],
                    ["bench", "--batch-sizes", "8,300", "--steps", "1", "--engines", "numpy"]):
        other = run_cli(*command, "--data-dir", data_root, "--dataset", "fashion-mnist",
                        "--out", str(tmp_path / command[0]))
        assert other.returncode == 2 and "300 is larger than the 256 training samples" in other.stderr, other.stderr

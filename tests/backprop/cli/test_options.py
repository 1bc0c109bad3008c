"""What every command shares (backprop/cli/options.py): argument types and usage errors naming the flag
(exit 2, before any data is read, a suggestion for a near miss), output and data paths refused by
name, the engine chosen by --engine or $BACKPROP_ENGINE, --layers' errors and the help's defaults."""

from __future__ import annotations

import argparse
import os
import re

import pytest

from backprop.architecture import format_layers, parse_layers
from backprop.checkpoint import load_checkpoint
from backprop.cli import build_parsers, main
from backprop.cli.options import HelpFormatter
from backprop.config import PRESETS
from tests.helpers import ROOT, SMALL_RUN, one_line_error, run_cli, usage_error_line
from tests.networks import RECURRENT_STACKS, TINY_LSTM


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


def test_every_wrong_output_path_is_a_usage_error_naming_it(trained, tmp_path):
    data_root, run = trained
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["train", *SMALL_RUN, "--data-dir", data_root, "--out", str(a_file)], "exists and is not a directory"),
        (["train", *SMALL_RUN, "--data-dir", data_root, "--out", str(a_file / "run")], "is not a directory"),
        (["evaluate", run, "--out", str(a_file)], "exists and is not a directory"),
        (["export", run, "--to", str(tmp_path)], "is a directory; name the file to write"),
        (["export", run, "--to", str(tmp_path / "sub") + "/"], "is a directory; name the file to write"),
        (["export", run, "--to", str(tmp_path / "missing" / "m.pt")], "does not exist"),
        (["export", run, "--to", str(a_file / "m.pt")], "is not a directory"),
        (["export", run, "--to", os.path.join(run, "checkpoint.npz")], "that is the checkpoint itself"),
        (["compare", "--steps", "1", "--out", str(a_file)], "exists and is not a directory"),
        (["bench", "--steps", "1", "--out", str(a_file)], "exists and is not a directory"),
    ]
    for args, words in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        one_line_error(result, words)
    assert a_file.read_text() == "x" and os.path.getsize(os.path.join(run, "checkpoint.npz")) > 1000


def test_a_data_dir_that_is_a_file_is_a_usage_error_in_every_command(trained, tmp_path):
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    for args in (["train"], ["evaluate", trained[1]], ["compare"], ["bench"]):
        result = run_cli(*args, "--data-dir", str(a_file))
        assert result.returncode == 2, (args, result.stderr)
        one_line_error(result, f"--data-dir {a_file}: not a directory")


@pytest.mark.parametrize("args, words", [
    # the field cases: a negative seed in train and in compare (it was a NumPy traceback there)
    (["train", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
    (["compare", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
    (["compare", "--seed", "1.5"], "argument --seed: expected an integer >= 0, got '1.5'"),
    (["compare", "--steps", "0"], "argument --steps: expected a positive integer"),
    (["compare", "--tol", "-1"], "argument --tol: expected a finite number >= 0"),
    (["compare", "--lr", "nan"], "argument --lr: expected a finite number >= 0"),
    (["compare", "--engines", "numpy"], "--engines: give two or three different engines"),
    (["compare", "--limit", "8", "--batch-size", "16"], "--batch-size 16 is larger than --limit 8"),
    (["compare", "--optimizer", "adam", "--momentum", "0.9"], "--momentum applies to --optimizer sgd only"),
    (["bench", "--seed", "1"], "unrecognized arguments: --seed 1"),
    (["bench", "--batch-sizes", "32,0"], "argument --batch-sizes: expected a positive integer"),
    (["bench", "--repeats", "0"], "argument --repeats: expected a positive integer"),
    (["bench", "--epochs", "-0.5"], "argument --epochs: expected a finite number >= 0"),
    (["bench", "--workloads", "huge"], "--workloads: unknown workload 'huge'"),
    (["bench", "--engines", "numpy,numpy"], "--engines: give one or more different engines"),
    (["evaluate", "c.npz", "--engine", "jax"], "argument --engine: unknown engine 'jax'"),
    (["evaluate", "c.npz", "--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["evaluate", "c.npz", "--device", "tpu"], "runs on cpu (its DEVICES), not tpu"),
    (["evaluate"], "the following arguments are required: CHECKPOINT"),
    (["export", "c.npz"], "the following arguments are required: --to"),
    (["train", "--epochs", "two"], "argument --epochs: expected a positive integer, got 'two'"),
    (["train", "--lr", "inf"], "argument --lr: expected a finite number >= 0"),
    (["train", "--hidden", "64,,x"], "argument --hidden: expected comma-separated positive widths"),
    (["train", "--engine", "jax"], "argument --engine: unknown engine 'jax'"),
    (["train", "--engine", "json"], "'json' has no MLP"),
    (["train", "--engine", "no/such"], "unknown engine 'no/such'"),
    (["train", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["train", "--activation", "gelu"], "invalid choice: 'gelu'"),
    (["train", "--batch-size", "0"], "expected a positive integer (>= 1), got 0"),
    (["train", "--epochs", "0"], "expected a positive integer (>= 1), got 0"),
    (["train", "--limit", "0"], "expected a positive integer (>= 1), got 0"),
    (["train", "--lr", "-1"], "expected a finite number >= 0"),
    (["train", "--hidden", "64,x"], "comma-separated positive widths"),
    (["train", "--nesterov", "--momentum", "0"], "--nesterov needs a momentum above 0 (--momentum 0)"),
    (["train", "--optimizer", "adam", "--nesterov"], "--nesterov applies to --optimizer sgd only"),
    (["train", "--limit", "10"], "--batch-size 64 (the default preset's batch size) is larger than --limit 10"),
    (["train", "--out", "/dev/null/run"], "--out: /dev/null is not a directory"),
    (["train", "--engine", "numpy", "--device", "cuda"], "engine 'numpy' runs on cpu (its DEVICES), not cuda"),
])
def test_bad_values_are_usage_errors_naming_the_flag_in_every_command(args, words, tmp_path):
    # The data directory does not exist: had it been read, the exit would be 1 with a data message.
    where = [] if args[0] == "export" else ["--data-dir", str(tmp_path / "nowhere")]
    result = run_cli(*args, *where)
    assert result.returncode == 2, (args, result.stderr)
    assert words in result.stderr, (args, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith(f"usage: backprop {args[0]}"), result.stderr


@pytest.mark.parametrize("args, suggestion", [
    (["train", "--optimiser", "adam"], "unrecognized arguments: --optimiser adam; did you mean --optimizer?"),
    (["train", "--lr-shedule=cosine"], "did you mean --lr-schedule?"),
    (["compare", "--engnes", "numpy,torch"], "did you mean --engines?"),
    (["bench", "--batchsizes", "32"], "did you mean --batch-sizes?"),
    (["evaluate", "c.npz", "--data-dri", "x"], "did you mean --data-dir?"),
    (["export", "c.npz", "--too", "m.pt"], "did you mean --to?"),
    (["train", "--optimizer", "adm"], "invalid choice: 'adm' (choose from 'sgd', 'adam', 'adamw'); did you mean "
                                      "'adam'?"),
    (["train", "--dataset", "fashion_mnist"], "did you mean 'fashion-mnist'?"),
    (["train", "--engine", "nmupy"], "unknown engine 'nmupy'"),
    (["train", "--engine", "nmupy"], "did you mean 'numpy'?"),
    (["bench", "--workloads", "notebok"], "did you mean 'notebook'?"),
    (["trian"], "invalid choice: 'trian'"),
    (["trian"], "did you mean 'train'?"),
])
def test_a_near_miss_suggests_the_close_flag_choice_or_command(args, suggestion, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert suggestion in capsys.readouterr().err


def test_an_unknown_flag_is_reported_by_the_command_it_was_given_to(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "c.npz", "--seed", "3"])
    err = capsys.readouterr().err
    assert err.startswith("usage: backprop evaluate") and "unrecognized arguments: --seed 3" in err


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize("value, facts", [
    # what is expected (a number > 0, or none for no clipping) and what was given
    ("0", ["> 0", "none", "got 0"]),
    ("-1", ["> 0", "none", "got -1"]),
    ("nan", ["finite", "> 0", "got nan"]),
    ("1e999", ["finite", "> 0", "got 1e999"]),
    ("x", ["a number", "got 'x'"]),
])
def test_a_bad_max_norm_is_a_usage_error_naming_the_flag(command, value, facts, tmp_path, capsys):
    message = usage_error_line([command, "--clip-grad-norm", value, "--data-dir", str(tmp_path / "none")], capsys)
    assert message.startswith(f"backprop {command}: error: argument --clip-grad-norm: "), message
    assert all(fact in message for fact in facts), (facts, message)


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error under test is for machines without it")
    result = run_cli("train", "--data-dir", str(tmp_path), "--engine", "torch", "--device", "cuda")
    assert result.returncode == 2 and "CUDA is not available" in result.stderr


def test_an_unknown_backprop_engine_variable_is_a_usage_error(tmp_path):
    result = run_cli("train", "--data-dir", str(tmp_path), env={"BACKPROP_ENGINE": "jax"})
    assert result.returncode == 2 and "BACKPROP_ENGINE" in result.stderr


# -- engines named on the command line --------------------------------------------------------
def test_compare_and_bench_refuse_an_unknown_engine_with_a_usage_error(tmp_path):
    for command in (["compare", "--engines", "numpy,jax"], ["bench", "--engines", "numpy,json"]):
        result = run_cli(*command, "--out", str(tmp_path / "out"))
        assert result.returncode == 2, result.stderr
        assert "argument --engines:" in result.stderr and ("'jax'" in result.stderr or "'json'" in result.stderr)
        assert "Traceback" not in result.stderr


def test_the_help_and_the_network_page_list_every_kind_with_torchs_names_and_defaults():
    from backprop.architecture import layer_signature
    from backprop.cli.options import LAYERS_HELP
    from engine_core.specs import KINDS

    page = open(os.path.join(ROOT, "docs", "network.md")).read()
    flat = " ".join(page.split())
    for kind in KINDS:
        signature = layer_signature(kind)
        assert signature in LAYERS_HELP, signature
        if "=" in signature:  # the kinds with arguments, in docs/network.md's --layers table
            assert " ".join(signature.split()) in flat.replace("( ", "("), signature
    assert layer_signature("conv2d") == ("conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, "
                                         "dilation=1, groups=1, bias=True, padding_mode='zeros')")


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
    ("flatten,, linear(784, 10)", r"the layer after 'flatten' is empty"),
    ("flatten, linear(784, 10), ,", r"the layer after 'linear\(784, 10\)' is empty"),
    (",flatten, linear(784, 10)", r"the first layer is empty"),
    ("flatten, linear(784 64), relu, linear(64, 10)", r"'linear\(784 64\)': .*a comma is missing between two of them"),
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


def test_the_refusal_is_a_usage_error_of_layers(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--layers", "lstm(28, 4), laststep, linear(4, 10)", "--quiet"])
    assert exit_.value.code == 2
    assert "error: argument --layers: layer 0 lstm(28, 4): the trainer feeds each image as" in capsys.readouterr().err


def test_the_layers_help_lists_the_recurrent_kinds_with_torchs_arguments():
    from backprop.cli.options import LAYERS_HELP

    flat = " ".join(LAYERS_HELP.split())
    for signature in ("rnn(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True, batch_first=False)",
                      "lstm(input_size, hidden_size, num_layers=1, bias=True, batch_first=False)",
                      "gru(input_size, hidden_size, num_layers=1, bias=True, batch_first=False)",
                      "laststep(batch_first=False)", "(28, 28): 28 rows of 28 pixels"):
        assert signature in flat, signature
    for text in (TINY_LSTM, *RECURRENT_STACKS):
        assert format_layers(parse_layers(text)) == text  # the text gives back the very network


def test_every_help_that_lists_presets_names_the_recurrent_ones_rightly():
    from backprop.cli import build_parsers

    _, commands = build_parsers()
    train = " ".join(commands["train"].format_help().split())
    assert "lstm: LSTM of 128 reading the image's 28 rows, its last step, linear 10, torch_default, batch 64, " \
           "adam lr 0.001, cosine schedule, clip grad norm 1, 5 epochs" in train
    assert "gru: GRU of 128 reading" in train
    assert "for its own optimizer (sgd; adam for lstm, gru; adamw for vit)" in train
    assert "when --optimizer is the preset's own (sgd; adam for lstm, gru; adamw for vit)" in train
    for command in ("import", "compare"):
        assert "{notebook,default,lenet,lstm,gru,vit}" in commands[command].format_help()
    bench = " ".join(commands["bench"].format_help().split())
    assert "lstm" in bench and "64 for lenet and lstm" in bench
    assert set(PRESETS) >= {"lstm", "gru"}


def test_backprop_engine_environment_variable_picks_the_engine(data_root, tmp_path):
    out = str(tmp_path / "run")
    result = run_cli("train", "--dataset", "fashion-mnist", "--data-dir", data_root, "--epochs", "1",
                     "--limit", "50", "--batch-size", "10", "--hidden", "4", "--out", out, "--quiet",
                     env={"BACKPROP_ENGINE": "autograd"})
    assert result.returncode == 0, result.stderr
    assert "autograd engine" in result.stdout
    assert load_checkpoint(os.path.join(out, "checkpoint.npz")).meta["engine"] == "autograd"

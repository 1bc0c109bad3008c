"""The application side of the recurrent layers (issue 22): networks that read an image row by row
((batch, 28 rows, 28 pixels)), their --layers checks, the lstm and gru presets, training, resuming
and evaluating in every engine, export to torch and import back, and compare in float64. The
layers' math is the parity harness's (parity_tests); these runs are tiny (LSTM of 4, 64 samples)."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

import numpy_net
from backprop.architecture import (
    GRU_NETWORK,
    LSTM_NETWORK,
    LayersSyntaxError,
    evaluation_chunk,
    format_layers,
    image_view,
    input_shape,
    parse_layers,
)
from backprop.checkpoint import load_checkpoint
from backprop.cli import main
from backprop.config import PRESETS, ConfigError, new_config
from backprop.export import read_torch_state, to_torch_layout, torch_module, torch_state_shapes
from engine_core.specs import build

from .helpers import accuracy_of, assert_torch_predicts_as_the_engine, cli_out, train_and_export

TINY = "lstm(28, 4, batch_first=True), laststep(batch_first=True), linear(4, 10)"
# Every recurrent kind with arguments other than the defaults: two stacked layers, no bias, relu.
STACKS = [
    "gru(28, 3, num_layers=2, batch_first=True), laststep(batch_first=True), linear(3, 10)",
    "rnn(28, 5, nonlinearity='relu', bias=False, batch_first=True), tanh, laststep(batch_first=True), "
    "linear(5, 10)",
    "lstm(28, 4, batch_first=True), lstm(4, 3, batch_first=True), laststep(batch_first=True), linear(3, 10)",
]




# -- the network's input and its checks --------------------------------------------------------
def test_a_network_starting_with_a_recurrent_layer_reads_each_image_as_28_rows_of_28_pixels():
    for text in (TINY, *STACKS, "dropout(0.1), " + TINY):
        assert input_shape(parse_layers(text)) == (28, 28), text
    x = np.arange(3 * 784, dtype=np.float32).reshape(3, 784)
    rows = image_view(x, LSTM_NETWORK)
    assert rows.shape == (3, 28, 28) and np.shares_memory(rows, x)  # a view: no copy
    np.testing.assert_array_equal(rows[1, 2], x[1, 56:84])  # time step 2 of image 1 is its third row
    # Evaluation chunks count each recurrent layer's per-step values: (2 G + 3) T H a layer.
    preset = evaluation_chunk(LSTM_NETWORK, 4)
    assert 1_000 <= preset <= 2_500  # ~0.16 MB a sample in float32
    assert evaluation_chunk(parse_layers(TINY), 4) == 10_000  # tiny: every test image at once
    deeper = parse_layers("lstm(28, 128, num_layers=2, batch_first=True), laststep(batch_first=True), "
                          "linear(128, 10)")
    assert evaluation_chunk(deeper, 4) < preset and evaluation_chunk(LSTM_NETWORK, 8) < preset


@pytest.mark.parametrize("text, message", [
    ("lstm(28, 4), laststep(batch_first=True), linear(4, 10)",
     "layer 0 lstm(28, 4): the trainer feeds each image as (batch, 28 rows, 28 pixels); give it batch_first=True"),
    ("relu, gru(28, 4), laststep(batch_first=True), linear(4, 10)",
     "layer 1 gru(28, 4): the trainer feeds each image as"),
    ("lstm(28, 4, batch_first=True), laststep, linear(4, 10)",
     "layer 1 laststep reads the output of layer 0 lstm(28, 4, batch_first=True), which is batch first "
     "(batch, seq_len, features); give it batch_first=True as well"),
    ("sequential(rnn(28, 4, batch_first=True), rnn(4, 4)), laststep(batch_first=True), linear(4, 10)",
     "layer 0.1 rnn(4, 4) reads the output of layer 0.0 rnn(28, 4, batch_first=True)"),
    ("conv2d(1, 2, 3), flatten(2), lstm(676, 4), laststep(batch_first=True), linear(4, 10)",
     "layer 2 lstm(676, 4): its input is batch first (no layer moves the batch axis); give it batch_first=True"),
    ("lstm(28, 4, batch_first=True), linear(4, 10)",
     "the last layer outputs (28, 10) per sample; expected 10 logits (a recurrent layer outputs every time step: "
     "add laststep(batch_first=True)"),
    ("lstm(27, 4, batch_first=True), laststep(batch_first=True), linear(4, 10)",
     "expects a 3-D input (batch, seq_len, 27), got (2, 28, 28)"),
])
def test_sequence_layers_that_would_read_the_batch_as_time_are_refused_naming_them(text, message):
    with pytest.raises(LayersSyntaxError) as error:
        parse_layers(text)
    assert message in str(error.value)


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
    for text in (TINY, *STACKS):
        assert format_layers(parse_layers(text)) == text  # the text gives back the very network


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
    assert new_config(preset, layers=parse_layers(TINY)).clip_grad_norm == 1.0  # --layers keeps the rest


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


# -- training, resuming and evaluating in every engine -----------------------------------------
@pytest.mark.parametrize("engine", ["numpy", "torch", "autograd"])
def test_a_recurrent_run_trains_resumes_and_evaluates_in_every_engine(engine, data_root, tmp_path, capsys):
    # The lstm preset's Adam and clipping on the tiny LSTM; a constant lr, since a cosine period is
    # fixed when a run is created (a 1-epoch run resumed to 2 is not a 2-epoch run).
    common = ["--preset", "lstm", "--layers", TINY, "--dataset", "fashion-mnist", "--data-dir", data_root, "--limit",
              "64", "--batch-size", "16", "--dtype", "float64", "--lr-schedule", "constant", "--quiet",
              "--engine", engine]
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    cli_out(capsys, "train", *common, "--epochs", "2", "--out", straight)
    cli_out(capsys, "train", *common, "--epochs", "1", "--out", resumed)
    cli_out(capsys, "train", "--resume", resumed, "--epochs", "2", "--quiet", "--engine", engine)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert list(a.params) == ["0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0", "0.bias_hh_l0", "2.weight",
                              "2.bias"]
    assert a.params["0.weight_ih_l0"].shape == (16, 28)  # torch's (4 H, in), not transposed
    assert a.config.network == parse_layers(TINY) and (a.config.optimizer, a.config.clip_grad_norm) == ("adam", 1.0)
    assert b.progress.epoch == 2
    for key, value in a.params.items():  # an interrupted and resumed run is the uninterrupted one
        np.testing.assert_array_equal(value, b.params[key], err_msg=key)
    out = cli_out(capsys, "evaluate", straight, "--engine", engine)
    assert "test accuracy" in out and "weights.png" in out
    for name in ("confusion.png", "weights.png", "mistakes.png"):
        assert os.path.getsize(os.path.join(straight, name)) > 0


def test_every_engine_evaluates_a_recurrent_checkpoint_to_the_sameaccuracy_of(data_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    cli_out(capsys, "train", "--layers", STACKS[0], "--dataset", "fashion-mnist", "--data-dir", data_root, "--limit",
            "32", "--batch-size", "16", "--epochs", "1", "--dtype", "float64", "--quiet", "--out", out)
    accuracies = {engine: accuracy_of(cli_out(capsys, "evaluate", out, "--engine", engine, "--out", str(tmp_path)))
                  for engine in ("numpy", "torch", "autograd")}
    assert len(set(accuracies.values())) == 1, accuracies


def test_the_first_weight_drawn_is_the_recurrent_input_weight_one_image_per_gate():
    from backprop import pictures

    net = build(numpy_net, parse_layers(TINY), "float64", seed=3)
    images, titles, key = pictures.weight_images(net.state_dict())
    assert key == "0.weight_ih_l0" and titles == ["gate i", "gate f", "gate g", "gate o"]
    np.testing.assert_array_equal(images[2], net.state_dict()["0.weight_ih_l0"][8:12])  # g's rows: (H, 28)
    gru = build(numpy_net, parse_layers(STACKS[0]), "float64")
    assert pictures.weight_images(gru.state_dict())[1] == ["gate r", "gate z", "gate n"]


# -- export and import -------------------------------------------------------------------------
def test_export_prints_torch_code_that_rebuilds_the_recurrent_network_and_import_maps_it_back(
        data_root, tmp_path, capsys):
    import torch
    from torch import nn

    checkpoint, model, code = train_and_export(capsys, TINY, data_root, tmp_path)
    out = str(tmp_path / "run")
    # torch's nn.LSTM returns (output, (h_n, c_n)): the printed code defines the wrapper it needs
    assert "class LSTM(nn.LSTM):" in code and "class LastStep(nn.Module):" in code
    assert "nn.Sequential(LSTM(28, 4, batch_first=True), LastStep(batch_first=True), nn.Linear(4, 10))" in code
    namespace: dict = {}
    exec(code, namespace)  # our own printed code, run as printed
    module = namespace["model"].eval()
    assert isinstance(module[0], nn.LSTM) and module[0].batch_first and module[1].batch_first
    saved = torch.load(model, weights_only=True)
    assert list(saved) == list(module.state_dict()) == list(torch_state_shapes(checkpoint.config.network)) == [
        "0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0", "0.bias_hh_l0", "2.weight", "2.bias"]
    np.testing.assert_array_equal(saved["0.weight_hh_l0"].numpy(), checkpoint.params["0.weight_hh_l0"])  # as is
    # torch's predictions are the engine's
    assert_torch_predicts_as_the_engine(module, checkpoint)
    # import: the same parameters, and a run that evaluates to the original's accuracy
    imported = str(tmp_path / "imported")
    cli_out(capsys, "import", model, "--preset", "lstm", "--layers", TINY, "--dataset", "fashion-mnist", "--data-dir",
            data_root, "--out", imported)
    again = load_checkpoint(imported)
    assert again.config.dtype == "float64" and again.config.optimizer == "adam"
    for key, value in checkpoint.params.items():
        np.testing.assert_array_equal(again.params[key], value, err_msg=key)
    assert accuracy_of(cli_out(capsys, "evaluate", imported)) == accuracy_of(cli_out(capsys, "evaluate", out))


@pytest.mark.parametrize("text", STACKS)
def test_every_recurrent_kind_goes_to_torch_and_back_with_the_same_predictions(text, tmp_path):
    import torch

    network = parse_layers(text)
    net = build(numpy_net, network, "float64", seed=7)
    module = torch_module(network, "float64").eval()
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                            to_torch_layout(network, net.state_dict()).items()})  # strict: every key
    x = image_view(np.random.default_rng(1).standard_normal((5, 784)), network)
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(x), module(torch.from_numpy(x)).numpy(), rtol=1e-10, atol=1e-12)
    path = str(tmp_path / "model.pt")
    torch.save(module.state_dict(), path)
    params, tracked = read_torch_state(path, network)
    assert tracked == {} and list(params) == list(net.state_dict())
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(params[key], value, err_msg=key)


def test_a_state_dict_of_another_recurrent_layer_is_refused_naming_the_keys(tmp_path, capsys):
    import torch

    path = str(tmp_path / "gru.pt")
    torch.save(torch_module(GRU_NETWORK).state_dict(), path)
    code = main(["import", path, "--preset", "lstm", "--dataset", "fashion-mnist", "--out", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert "0.weight_ih_l0: expected shape (512, 28) (torch's layout), got (384, 28)" in err


# -- compare -----------------------------------------------------------------------------------
def test_compare_of_the_lstm_preset_in_float64_stays_near_machine_precision(data_root, tmp_path, capsys):
    out = str(tmp_path / "compare")
    cli_out(capsys, "compare", "--preset", "lstm", "--layers", TINY, "--engines", "numpy,torch,autograd", "--dtype",
            "float64", "--dataset", "fashion-mnist", "--data-dir", data_root, "--limit", "64", "--batch-size", "16",
         "--epochs", "1", "--quiet", "--out", out)
    rows = list(csv.DictReader(open(os.path.join(out, "compare.csv"))))
    assert {row["engine"] for row in rows} == {"torch", "autograd"} and len(rows) == 2 * 4
    assert max(float(row["max_rel_diff"]) for row in rows) < 1e-12
    assert max(float(row["loss_diff"]) for row in rows) < 1e-12


def test_compare_past_its_tolerance_on_a_recurrent_network_says_why_and_what_to_read(data_root, tmp_path, capsys):
    # A tolerance of 0 is exceeded by the first rounding; a recurrent net's message explains the
    # growth (chaos, measured on torch alone) and which steps to read. An MLP's does not.
    common = ["--engines", "numpy,torch", "--dtype", "float64", "--dataset", "fashion-mnist", "--data-dir", data_root,
              "--limit", "64", "--batch-size", "16", "--steps", "2", "--tol", "0", "--quiet"]
    code = main(["compare", "--preset", "lstm", "--layers", TINY, *common, "--out", str(tmp_path / "lstm")])
    err = capsys.readouterr().err
    assert code == 1 and "tolerance 0 exceeded" in err
    assert "training a recurrent network is chaotic" in err and "--steps 100 stays within 1e-13" in err
    code = main(["compare", "--hidden", "8", *common, "--out", str(tmp_path / "mlp")])
    err = capsys.readouterr().err
    assert code == 1 and "tolerance 0 exceeded" in err and "chaotic" not in err

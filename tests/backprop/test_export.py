"""Export to torch.nn and import back (backprop/export.py): every layer's arguments, batch norm's
counters, recurrent, attention and transformer layers, and state dicts refused by key and dtype."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import numpy_net
from backprop.architecture import GRU_NETWORK, image_view, parse_layers
from backprop.checkpoint import load_checkpoint
from backprop.cli import main
from backprop.export import read_torch_state, to_torch_layout, torch_module, torch_state_shapes
from engine_core.specs import build
from tests.helpers import (
    accuracy_of,
    assert_imports_back,
    assert_torch_predicts_as_the_engine,
    cli_out,
    same_arrays,
    train_and_export,
)
from tests.networks import RECURRENT_STACKS, STACK, STACK_TEXT, TINY_ATTENTION, TINY_LSTM, TINY_VIT, stack_config


def test_train_evaluate_export_and_import_an_attention_network(data_root, tmp_path, capsys, no_pictures):
    checkpoint, model, code = train_and_export(capsys, TINY_ATTENTION, data_root, tmp_path)
    out = str(tmp_path / "run")
    accuracies = {engine: accuracy_of(cli_out(capsys, "evaluate", out, "--engine", engine, "--out", str(tmp_path)))
                  for engine in ("numpy", "torch", "autograd")}
    assert len(set(accuracies.values())) == 1, accuracies
    # torch's nn.MultiheadAttention takes (query, key, value) and returns a pair: the printed code
    # defines the self-attention wrapper it needs
    assert "class MultiheadAttention(nn.MultiheadAttention):" in code
    assert "nn.Sequential(MultiheadAttention(28, 4, batch_first=True), nn.LayerNorm(28), " in code
    namespace: dict = {}
    exec(code, namespace)
    module = namespace["model"].eval()
    saved = torch.load(model, weights_only=True)
    assert list(saved) == ["0.in_proj_weight", "0.in_proj_bias", "0.out_proj.weight", "0.out_proj.bias",
                           "1.weight", "1.bias", "4.weight", "4.bias"]
    # out_proj is a Linear: (in, out) here, torch's (out, in) in the file
    np.testing.assert_array_equal(saved["0.out_proj.weight"].numpy(), checkpoint.params["0.out_proj.weight"].T)
    np.testing.assert_array_equal(saved["0.in_proj_weight"].numpy(), checkpoint.params["0.in_proj_weight"])
    assert_torch_predicts_as_the_engine(module, checkpoint)
    assert_imports_back(capsys, model, TINY_ATTENTION, data_root, tmp_path, checkpoint)


def test_a_vit_goes_to_torch_as_its_own_encoder_layer_and_comes_back(data_root, tmp_path, capsys):
    checkpoint, model, code = train_and_export(capsys, TINY_VIT, data_root, tmp_path)
    assert "nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.25, activation='gelu', " \
           "batch_first=True, norm_first=True)" in code
    for name in ("Patches", "PositionalEmbedding", "SequenceMean"):
        assert f"class {name}(nn.Module):" in code
    namespace: dict = {}
    exec(code, namespace)
    module = namespace["model"].eval()
    saved = torch.load(model, weights_only=True)
    np.testing.assert_array_equal(saved["3.linear1.weight"].numpy(), checkpoint.params["3.linear1.weight"].T)
    np.testing.assert_array_equal(saved["3.self_attn.in_proj_weight"].numpy(),
                                  checkpoint.params["3.self_attn.in_proj_weight"])
    assert_torch_predicts_as_the_engine(module, checkpoint)
    assert_imports_back(capsys, model, TINY_VIT, data_root, tmp_path, checkpoint)


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
    assert same_arrays(params, net.state_dict())
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
    assert tracked == {"1": 0, "7": 0} and same_arrays(params, checkpoint.params)
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
    assert same_arrays(params, net.state_dict())
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
    config = stack_config(layers=network)
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
    assert same_arrays(again.params, checkpoint.params)
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


# -- export and import -------------------------------------------------------------------------
def test_export_prints_torch_code_that_rebuilds_the_recurrent_network_and_import_maps_it_back(
        data_root, tmp_path, capsys, no_pictures):
    import torch
    from torch import nn

    checkpoint, model, code = train_and_export(capsys, TINY_LSTM, data_root, tmp_path)
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
    cli_out(capsys, "import", model, "--preset", "lstm", "--layers", TINY_LSTM, "--dataset", "fashion-mnist",
            "--data-dir", data_root, "--out", imported)
    again = load_checkpoint(imported)
    assert again.config.dtype == "float64" and again.config.optimizer == "adam"
    for key, value in checkpoint.params.items():
        np.testing.assert_array_equal(again.params[key], value, err_msg=key)
    assert accuracy_of(cli_out(capsys, "evaluate", imported)) == accuracy_of(cli_out(capsys, "evaluate", out))


@pytest.mark.parametrize("text", RECURRENT_STACKS)
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

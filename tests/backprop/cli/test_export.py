"""`backprop export` (backprop/cli/export.py): the Python lines it prints rebuild the network and load
the file, run as printed from another directory. The conversion itself:
tests/backprop/test_export.py."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from backprop.checkpoint import load_checkpoint
from backprop.datasets import load_dataset
from backprop.engines import load_engine
from engine_core.specs import mlp
from tests.helpers import ROOT, accuracy_of, cli_out, copy_run, run_cli, training_stopped_at


def test_the_export_code_runs_as_printed_from_another_directory(trained, tmp_path, monkeypatch):
    result = run_cli("export", trained[1], "--to", "model.pt", cwd=str(tmp_path), env={"PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    code = result.stdout.split("these Python lines load it:\n", 1)[1]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    namespace: dict = {}
    exec(code, namespace)  # in a namespace of its own: every name it uses, it imports or defines
    assert type(namespace["model"]).__name__ == "Sequential"


# -- export -----------------------------------------------------------------------------------
@pytest.mark.parametrize("activation, dtype", [("tanh", "float64"), ("identity", "float32"), ("sigmoid", "float32")])
def test_export_prints_code_that_rebuilds_the_network_and_loads_the_file(activation, dtype, tmp_path):
    import torch

    from tests.helpers import small_config, write_checkpoint

    path, model_path = str(tmp_path / "c.npz"), str(tmp_path / "model.pt")
    config = small_config(network=mlp([784, 5, 3, 10], activation), dtype=dtype, seed=4)
    write_checkpoint(path, config)
    result = run_cli("export", path, "--to", model_path)
    assert result.returncode == 0, result.stderr
    # The printed lines run as they are, from any directory.
    code = result.stdout.split("these Python lines load it:\n", 1)[1]
    namespace: dict = {}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        exec(code, namespace)
    finally:
        os.chdir(cwd)
    model = namespace["model"]
    layer = {"tanh": "Tanh", "identity": "Identity", "sigmoid": "Sigmoid"}[activation]
    assert [type(m).__name__ for m in model] == ["Linear", layer, "Linear", layer, "Linear"]
    x = np.random.default_rng(0).standard_normal((7, 784)).astype(dtype)
    net = load_engine("numpy").build_net(config.network, config.init, config.seed, dtype)
    net.load_state_dict(load_checkpoint(path).params)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    assert theirs.dtype == np.dtype(dtype)
    np.testing.assert_allclose(theirs, net.forward(x), rtol=0, atol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("network, dtype", [
    (["--hidden", "16"], "float32"),  # flat pixels: the transform flattens
    (["--hidden", "16"], "float64"),  # the model's dtype
    (["--layers", "conv2d(1,4,3),relu,maxpool2d(2),flatten,linear(676,10)"], "float32"),  # (1, 28, 28) images
    (["--layers", "lstm(28,8,batch_first=True),laststep(batch_first=True),linear(8,10)"], "float32"),  # rows
], ids=["mlp", "mlp-float64", "cnn", "lstm"])
def test_the_printed_export_code_reproduces_the_runs_accuracy(capsys, data_root, tmp_path, network, dtype):
    import torch
    import torchvision

    out, model = str(tmp_path / "run"), str(tmp_path / "model.pt")
    cli_out(capsys, "train", *network, "--dataset", "fashion-mnist", "--data-dir", data_root, "--epochs", "1",
            "--batch-size", "16", "--dtype", dtype, "--quiet", "--out", out)
    expected = float(accuracy_of(cli_out(capsys, "evaluate", out, "--data-dir", data_root)))
    code = cli_out(capsys, "export", out, "--to", model).split("these Python lines load it:\n", 1)[1]
    pasted: dict[str, object] = {}
    exec(code, pasted)  # as a user pastes it
    images = torchvision.datasets.FashionMNIST(data_root, train=False, transform=pasted["transform"])
    hits = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(images, batch_size=32):
            hits += int((pasted["model"](x).argmax(1) == y).sum())  # type: ignore[operator]
    assert round(hits / len(images), 4) == expected
    inputs = torch.stack([pasted["transform"](image.numpy()) for image in images.data])  # type: ignore[operator]
    run_inputs = load_dataset("fashion-mnist", data_root, dtype=dtype).test_x
    np.testing.assert_array_equal(inputs.reshape(len(inputs), -1).numpy(), run_inputs)  # bit for bit
    meta = json.load(open(model + ".json"))
    assert meta["input"]["dtype"] == dtype and meta["dataset"] == "fashion-mnist" and len(meta["classes"]) == 10
    assert meta["test_accuracy"] == pytest.approx(load_checkpoint(out).progress.history[-1]["test_acc"])
    assert meta["state_dict"] == "model.pt"
    assert os.path.samefile(meta["checkpoint"], os.path.join(out, "checkpoint.npz"))
    standalone: dict[str, object] = {}
    exec(meta["input"]["transform"], standalone)  # the metadata's transform runs on its own
    assert np.array_equal(standalone["transform"](images.data[0].numpy()).numpy(),  # type: ignore[operator]
                          pasted["transform"](images.data[0].numpy()).numpy())  # type: ignore[operator]


def test_export_never_writes_its_metadata_over_a_file_it_did_not_write(capsys, trained, tmp_path):
    """--to X writes X.json beside X: a file of the user's there (a run's config.json, say) or a
    directory is refused before anything is written; an earlier export's metadata is replaced."""
    run = copy_run(trained[1], tmp_path)
    config = open(os.path.join(run, "config.json")).read()
    result = run_cli("export", run, "--to", os.path.join(run, "config"))
    assert result.returncode == 2 and "config.json, which exists and is not an earlier export's" in result.stderr
    assert open(os.path.join(run, "config.json")).read() == config and not os.path.exists(os.path.join(run, "config"))
    (tmp_path / "m.pt.json").mkdir()
    result = run_cli("export", run, "--to", str(tmp_path / "m.pt"))
    assert result.returncode == 2 and "is a directory" in result.stderr and not (tmp_path / "m.pt").exists()
    for name in ("metrics.csv", "config.json"):  # the model file itself: only an earlier export is replaced
        before = open(os.path.join(run, name), "rb").read()
        result = run_cli("export", run, "--to", os.path.join(run, name))
        assert result.returncode == 2 and "is no earlier export" in result.stderr, result.stderr
        assert open(os.path.join(run, name), "rb").read() == before
        assert not os.path.exists(os.path.join(run, name + ".json"))
    model = str(tmp_path / "model.pt")
    cli_out(capsys, "export", run, "--to", model)
    cli_out(capsys, "export", run, "--to", model)  # again: its own metadata is not in the way
    assert json.loads(open(model + ".json").read())["format"] == "backprop export 1"


def test_the_printed_lines_load_the_model_before_they_need_torchvision(trained, tmp_path):
    """A user with torch alone gets the model; only `transform` imports torchvision."""
    result = run_cli("export", trained[1], "--to", str(tmp_path / "model.pt"))
    code = result.stdout.split("these Python lines load it:\n", 1)[1]
    before, after = code.split("model.eval()", 1)
    assert "torchvision" not in before and "from torchvision import transforms" in after


def test_a_checkpoint_taken_inside_an_epoch_exports_without_an_accuracy_its_weights_never_had(
        capsys, trained, tmp_path):
    run = copy_run(trained[1], tmp_path)
    with training_stopped_at(1, 3):
        assert run_cli("train", "--resume", run, "--epochs", "2", "--quiet").returncode == 130
    cli_out(capsys, "export", run, "--to", str(tmp_path / "model.pt"))
    meta = json.loads((tmp_path / "model.pt.json").read_text())
    steps = load_checkpoint(run).progress.step
    assert steps > 0 and (meta["epochs"], meta["batches_past_epochs"], meta["test_accuracy"]) == (1, steps, None)

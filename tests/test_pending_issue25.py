"""Issue 25's outputs that misled (staging file: its tests move to their modules' files)."""

from __future__ import annotations

import json
import os
import shlex

import numpy as np
import pytest

from backprop import threads
from backprop.architecture import parse_layers
from backprop.checkpoint import load_checkpoint
from backprop.datasets import load_dataset
from backprop.gemms import Gemm

from .helpers import SMALL_RUN, accuracy_of, cli_out, run_cli


def _printed_args(command: str, subcommand: str) -> list[str]:
    """The arguments after ``subcommand`` of a command the program printed (its program words,
    `python -m backprop` or a path, dropped): what run_cli takes."""
    words = shlex.split(command)
    return words[words.index(subcommand) + 1:]


# -- 1. threads: auto follows the machine's load, and the header says why ---------------------

BIG = [Gemm("fc", 64, 784, 256)]  # 25.7 MFLOP: the rule alone gives every core


@pytest.mark.parametrize("cores, load, expected", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 3.7, 1),  # one other process takes a core
    (8, 2.2, 6), (8, 9.0, 1), (1, 0.0, 1), (4, None, 4),  # None: no load average on this OS
])
def test_auto_takes_the_cores_the_load_average_leaves_free(cores, load, expected):
    assert threads.free_cores(cores, load) == expected
    choice = threads.auto_threads(BIG, cores=cores, load=load)
    assert choice.count == expected
    if expected < cores:  # the reason names the load and what it leaves
        assert f"{load:.2f}" in choice.reason and f"{expected} of the {cores} cores free" in choice.reason


def test_auto_never_gives_more_than_the_rule_and_says_which_limit_set_it():
    small = [Gemm("fc", 32, 100, 10)]  # 0.06 MFLOP
    choice = threads.auto_threads(small, cores=8, load=0.0)
    assert choice.count == 1 and "MFLOP" in choice.reason
    assert threads.auto_threads(BIG, cores=2, load=0.0).reason.startswith("auto: one per MFLOP")
    mixed = threads.auto_threads(BIG, cores=2, load=0.0, mixed_pools=True)
    assert mixed.count == 1 and "NumPy's BLAS and torch" in mixed.reason
    assert threads.training_threads(3, None).describe("BLAS") == "3 BLAS threads (--blas-threads 3)"
    assert threads.ThreadChoice(1, "x").describe("torch") == "1 torch thread (x)"  # never "1 threads"


@pytest.mark.parametrize("load, expected", [(0.0, 2), (1.2, 1)])
def test_train_header_gives_the_count_and_why(data_root, tmp_path, monkeypatch, load, expected):
    monkeypatch.setattr(threads, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "load_average", lambda: load)
    result = run_cli("train", "--dataset", "fashion-mnist", "--data-dir", data_root, "--hidden", "256",
                     "--batch-size", "64", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert f"{expected} BLAS thread{'s' if expected > 1 else ''} (auto: " in header
    assert (f"load average {load:.2f}" in header) and (("leaves 1 of the 2 cores free" in header) == (expected == 1))
    assert load_checkpoint(str(tmp_path / "run")).blas_threads == expected  # resumed sessions reuse it


@pytest.mark.parametrize("flag, expected", [([], 1), (["--blas-threads", "2"], 2)])
def test_compare_takes_blas_threads_and_reports_them(tmp_path, monkeypatch, flag, expected):
    monkeypatch.setattr(threads, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "load_average", lambda: 0.0)
    result = run_cli("compare", "--steps", "2", "--quiet", "--out", str(tmp_path / "cmp"), *flag)
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    # numpy and torch in one process: auto takes 1 thread and says why; an explicit count is kept
    assert f"{expected} BLAS and torch thread" in header
    assert ("NumPy's BLAS and torch take turns" in header) == (not flag)
    assert threads.current_threads() == {"numpy_blas": expected, "torch": expected}
    threads.apply_threads("numpy", 2), threads.apply_threads("torch", 2)


def test_compare_rejects_a_bad_thread_count(tmp_path):
    result = run_cli("compare", "--steps", "1", "--blas-threads", "0", "--out", str(tmp_path / "cmp"))
    assert result.returncode == 2 and "--blas-threads" in result.stderr and "positive" in result.stderr


# -- 2. a finished cosine run's hint starts a run that anneals again ---------------------------

def test_a_finished_cosine_run_is_not_told_to_train_on_at_lr_0(data_root, tmp_path):
    out = str(tmp_path / "run")
    first = run_cli("train", *SMALL_RUN, "--data-dir", data_root, "--epochs", "1", "--lr-schedule", "cosine",
                    "--out", out)
    assert first.returncode == 0, first.stderr
    done = run_cli("train", "--resume", out)
    assert done.returncode == 0 and "nothing to do" in done.stdout
    assert "raise --epochs" not in done.stdout and "lr 0" in done.stdout
    hint = done.stdout.rsplit("(this run is kept): ", 1)[1].strip()
    args = _printed_args(hint, "train")
    assert "--resume" not in args and args[args.index("--epochs") + 1] == "2"
    again = run_cli("train", *args, "--quiet", "--out", str(tmp_path / "longer"), cwd=str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert "lr 0" not in again.stderr  # no idle-epoch warning: the new run anneals over its 2 epochs
    config = json.load(open(tmp_path / "longer" / "config.json"))
    assert config["epochs"] == 2 and config["t_max"] == 2 and config["lr_schedule"] == "cosine"


@pytest.mark.parametrize("schedule", ["constant", "step"])
def test_a_finished_run_whose_schedule_goes_on_is_told_to_raise_epochs(data_root, tmp_path, schedule):
    out = str(tmp_path / "run")
    assert run_cli("train", *SMALL_RUN, "--data-dir", data_root, "--epochs", "1", "--lr-schedule", schedule,
                   "--out", out).returncode == 0
    done = run_cli("train", "--resume", out)
    hint = done.stdout.split("raise --epochs: ", 1)[1].strip()
    more = run_cli("train", *_printed_args(hint, "train"), "--quiet")
    assert more.returncode == 0 and "lr 0" not in more.stderr, more.stderr
    assert len(load_checkpoint(out).progress.history) == 6


# -- 3. export prints the input transform, and pasting it reproduces the run's accuracy -------

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


# -- 4. float32 results and the thread count ----------------------------------------------------

def _float32_run(data_root: str, out: str, count: int, *more: str) -> dict[str, np.ndarray]:
    result = run_cli("train", "--dataset", "fashion-mnist", "--data-dir", data_root, "--hidden", "256",
                     "--batch-size", "64", "--epochs", "1", "--quiet", "--blas-threads", str(count), "--out", out,
                     *more)
    assert result.returncode == 0, result.stderr
    return load_checkpoint(out).params


def test_float32_training_is_bitwise_reproducible_at_an_equal_thread_count(data_root, tmp_path):
    for count in (1, 2):
        a = _float32_run(data_root, str(tmp_path / f"a{count}"), count)
        b = _float32_run(data_root, str(tmp_path / f"b{count}"), count)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{count} threads: {key}")
    threads.apply_threads("numpy", threads.cpu_count())


def test_float32_steps_at_different_thread_counts_differ_only_in_the_last_bits(data_root, tmp_path):
    """docs/cli.md's table: after one step, 1 and 2 threads' parameters are ~1e-7 apart (relative),
    a difference that training then grows."""
    one = _float32_run(data_root, str(tmp_path / "one"), 1, "--limit", "64")
    two = _float32_run(data_root, str(tmp_path / "two"), 2, "--limit", "64")
    threads.apply_threads("numpy", threads.cpu_count())
    for key in one:
        scale = float(np.abs(one[key]).max())
        assert float(np.abs(one[key] - two[key]).max()) <= 1e-6 * scale, key


# -- each command needs only the files it reads --------------------------------------------------

@pytest.mark.parametrize("kept, command, works", [
    ("t10k", "evaluate", True), ("train", "evaluate", False), ("train", "compare", True), ("t10k", "compare", False),
])
def test_a_command_needs_only_the_split_it_reads(trained, tmp_path, kept, command, works):
    import shutil

    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in os.listdir(os.path.join(trained[0], "FashionMNIST", "raw")):
        if name.startswith(kept):
            shutil.copy(os.path.join(trained[0], "FashionMNIST", "raw", name), raw / name)
    args = ["evaluate", trained[1]] if command == "evaluate" else \
        ["compare", "--dataset", "fashion-mnist", "--steps", "1", "--batch-size", "16", "--quiet",
         "--out", str(tmp_path / "cmp")]
    result = run_cli(*args, "--data-dir", str(tmp_path / "data"), cwd=str(tmp_path))
    if works:
        assert result.returncode == 0, result.stderr
    else:  # the message names the split and the files it needs
        missing = "t10k-images-idx3-ubyte" if kept == "train" else "train-images-idx3-ubyte"
        assert result.returncode == 1 and missing in result.stderr and "split needs" in result.stderr, result.stderr


def test_import_converts_weights_without_any_data(capsys, trained, tmp_path):
    model = str(tmp_path / "model.pt")
    cli_out(capsys, "export", trained[1], "--to", model)
    out = str(tmp_path / "imported")
    result = run_cli("import", model, "--layers", "linear(784,8),relu,linear(8,10)", "--out", out,
                     cwd=str(tmp_path))  # no --dataset, no --data-dir, no ./data
    assert result.returncode == 0, result.stderr
    for key, value in load_checkpoint(trained[1]).params.items():
        np.testing.assert_array_equal(load_checkpoint(out).params[key], value)
    evaluated = run_cli("evaluate", out, "--dataset", "fashion-mnist", "--data-dir", trained[0])
    assert evaluated.returncode == 0, evaluated.stderr


# -- smaller things a new user tripped over ------------------------------------------------------

@pytest.mark.parametrize("layers, facts", [
    ("linear(784,16) relu, linear(16,10)", ["a comma is missing between 'linear(784,16)' and 'relu'"]),
    ("linear(784,16), relu, linear(16,10), softmax", ["no softmax layer", "applies the softmax itself"]),
    ("linear(784,16), relu, linear(16,10), LogSoftmax(1)", ["no LogSoftmax layer", "logits"]),
    ("linear(784,16), dropout(1), linear(16,10)", ["p=1 zeroes every value", "below 1"]),
    ("linear(784,16), relu, sequential(linear(16,16), dropout(p=1.0)), linear(16,10)", ["p=1"]),  # nested too
])
def test_layers_slips_get_messages_that_name_the_slip(layers, facts):
    result = run_cli("train", "--layers", layers, "--quiet")
    assert result.returncode == 2, result.stdout
    for fact in facts:
        assert fact in result.stderr, result.stderr


def test_a_trailing_comma_in_layers_is_accepted_as_python_accepts_it():
    from backprop.architecture import parse_layers

    assert parse_layers("linear(784, 10),") == parse_layers("linear(784, 10)")


@pytest.mark.parametrize("momentum", ["1", "1.5"])
def test_a_momentum_that_can_only_diverge_is_refused(momentum, tmp_path):
    for command in (["train"], ["compare", "--steps", "1"]):
        result = run_cli(*command, "--momentum", momentum, "--out", str(tmp_path / "x"))
        assert result.returncode == 2 and f"--momentum {momentum}" in result.stderr, result.stderr
        assert "grows without bound" in result.stderr and "learning rate" in result.stderr
    assert not (tmp_path / "x").exists()


DIVERGING = ["--dataset", "fashion-mnist", "--batch-size", "16", "--quiet", "--lr", "1000"]  # NaN in epoch 1


def test_a_run_that_diverges_before_its_first_checkpoint_leaves_nothing_in_the_way(data_root, tmp_path):
    out = str(tmp_path / "run")
    diverged = run_cli("train", *DIVERGING, "--data-dir", data_root, "--out", out)
    assert diverged.returncode == 3 and "Removed what the run wrote (config.json)" in diverged.stderr
    assert not os.path.exists(out)
    hint = diverged.stderr.split("to start again with a smaller learning rate: ", 1)[1].strip()
    again = run_cli("train", *_printed_args(hint, "train"), "--limit", "32", "--epochs", "1", "--out", out)
    assert again.returncode in (0, 3), again.stderr  # the same --out is free again


def test_a_diverged_run_in_an_existing_directory_keeps_what_was_there(data_root, tmp_path):
    out = tmp_path / "run"
    out.mkdir()  # made by the user, empty: the run's files go, the directory stays
    diverged = run_cli("train", *DIVERGING, "--data-dir", data_root, "--out", str(out))
    assert diverged.returncode == 3 and out.is_dir() and os.listdir(out) == []


def test_a_directory_that_blocks_a_run_is_named_with_how_to_clear_it(trained, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    resumed = run_cli("train", "--resume", str(half))
    assert resumed.returncode == 1 and "nothing to resume" in resumed.stderr and f"rm -r {half}" in resumed.stderr
    rerun = run_cli("train", "--out", str(half))
    assert rerun.returncode == 2 and f"rm -r {half}" in rerun.stderr and "nothing was overwritten" in rerun.stderr
    over = run_cli("train", "--out", trained[1])
    assert over.returncode == 2 and "--resume" in over.stderr and f"rm -r {trained[1]}" in over.stderr


def test_a_torch_file_given_as_a_checkpoint_is_named_with_the_import_command(capsys, trained, tmp_path):
    model = str(tmp_path / "model.pt")
    cli_out(capsys, "export", trained[1], "--to", model)
    again = str(tmp_path / "again.pt")
    for command in (["evaluate", model], ["export", model, "--to", again], ["train", "--resume", model]):
        result = run_cli(*command)
        assert result.returncode == 1 and "a torch file" in result.stderr, result.stderr
        assert f"backprop import {model} --layers 'linear(784, 8), relu, linear(8, 10)'" in result.stderr
    imported = run_cli("import", model, "--out", str(tmp_path / "imported"))  # layers and dataset from model.pt.json
    assert imported.returncode == 0, imported.stderr
    assert load_checkpoint(str(tmp_path / "imported")).config.dataset == "fashion-mnist"


def test_the_curves_title_names_a_preset_only_for_its_own_network():
    from backprop.config import new_config
    from backprop.training import curves_title

    assert "default preset: " in curves_title(new_config("default"), ["numpy"], "mnist")
    for changed in (new_config("default", hidden=[8]),
                    new_config("default", layers=parse_layers("linear(784, 10)"))):
        assert "preset" not in curves_title(changed, ["numpy"], "mnist")


@pytest.mark.parametrize("p, shown", [(0.5, "0.50"), (0.9912, "0.99"), (0.9991, "0.99910"), (0.99971, "0.99971"),
                                      (0.999994, "0.999994"), (0.9999996, ">0.999999"), (1.0, ">0.999999")])
def test_a_mistakes_confidence_is_never_shown_as_1(p, shown):
    from backprop.pictures import confidence_text

    assert confidence_text(p) == shown


def test_the_weights_picture_has_one_colour_scale_with_a_bar():
    from backprop import pictures

    images = np.random.default_rng(0).uniform(-1, 1, (5, 4, 4)) * np.arange(1, 6)[:, None, None]
    fig = pictures.image_grid(images, [str(i) for i in range(5)], cmap="RdBu_r", symmetric=True, colorbar="weight")
    drawn = [ax for ax in fig.axes if ax.images]
    m = float(np.abs(images).max())
    assert all(ax.images[0].get_clim() == (-m, m) for ax in drawn)  # one scale for every panel
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "weight"]
    assert len(bars) == 1
    pictures.pyplot().close(fig)

"""`backprop train` (backprop/cli/train.py): what a run records (data directory, --clip-grad-norm,
--init, --track-gradients), resuming in any engine to the uninterrupted run's bits (Ctrl-C included:
one true process test), resume conflicts in the command line's words, and the header and notes it
prints."""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from backprop import gradflow, threads
from backprop.architecture import parse_layers
from backprop.checkpoint import load_checkpoint
from backprop.cli import build_parsers, main
from backprop.config import TrainConfig, new_config
from backprop.datasets import load_dataset
from backprop.engines import load_engine
from backprop.schedules import epoch_learning_rates
from backprop.training import Trainer
from engine_core.specs import initial_state, paths_of
from tests.datasets import write_dataset
from tests.helpers import (
    ROOT,
    SMALL_RUN,
    accuracy_of,
    cli_out,
    copy_run,
    printed_args,
    run_cli,
    same_arrays,
    small_config,
    training_stopped_at,
    usage_error_line,
    write_checkpoint,
)
from tests.networks import NESTED_TEXT, TINY_LSTM, TINY_VIT, stack_config


def test_a_vit_run_resumed_in_another_engine_is_the_uninterrupted_run(data_root, tmp_path, capsys, no_pictures):
    """Its four dropouts per encoder layer draw masks from generators a checkpoint keeps by path
    (``3.self_attn.attn_dropout``, ``3.dropout1``, ...): resumed by another engine, the run goes
    on with the very masks the uninterrupted one drew."""
    assert paths_of(parse_layers(TINY_VIT), "dropout") == ["3.self_attn.attn_dropout", "3.dropout", "3.dropout1",
                                                           "3.dropout2"]
    common = ["--preset", "vit", "--layers", TINY_VIT, "--dataset", "fashion-mnist", "--data-dir", data_root, "--limit",
              "48", "--batch-size", "16", "--dtype", "float64", "--lr-schedule", "constant", "--quiet"]
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    cli_out(capsys, "train", *common, "--epochs", "2", "--engine", "numpy", "--out", straight)
    cli_out(capsys, "train", *common, "--epochs", "1", "--engine", "torch", "--out", resumed)
    cli_out(capsys, "train", "--resume", resumed, "--epochs", "2", "--quiet", "--engine", "autograd")
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert (a.config.optimizer, a.config.clip_grad_norm) == ("adamw", 1.0)
    for key, value in a.params.items():
        np.testing.assert_allclose(b.params[key], value, rtol=1e-10, atol=1e-12, err_msg=key)
    accuracies = {engine: accuracy_of(cli_out(capsys, "evaluate", straight, "--engine", engine, "--out",
                                              str(tmp_path)))
                  for engine in ("numpy", "torch", "autograd")}
    assert len(set(accuracies.values())) == 1, accuracies


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


def test_a_run_records_its_data_directory_in_config_json_and_the_checkpoint(trained):
    data_root, out = trained
    assert json.load(open(os.path.join(out, "config.json")))["data_dir"] == os.path.abspath(data_root)
    assert load_checkpoint(out).data_dir == os.path.abspath(data_root)


def test_resume_and_evaluate_find_the_data_without_data_dir_from_any_directory(trained, tmp_path, no_pictures):
    out = copy_run(trained[1], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": ROOT}
    resumed = run_cli("train", "--resume", out, "--epochs", "2", "--quiet", cwd=str(elsewhere), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch  2/2" in resumed.stdout
    evaluated = run_cli("evaluate", out, cwd=str(elsewhere), env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test accuracy" in evaluated.stdout
    assert not os.path.exists(elsewhere / "data")  # nothing was looked for (or created) in ./data


# 64 samples in batches of 16: 4 steps an epoch, an MLP 784-8-10.
TINY_RUN = ["--dataset", "fashion-mnist", "--hidden", "8", "--batch-size", "16", "--limit", "64", "--quiet",
            "--blas-threads", "1"]


def _train_tiny(data_root: str, out: str, *flags: str) -> None:
    assert main(["train", *TINY_RUN, "--data-dir", data_root, "--out", out, *flags]) == 0


def test_the_flag_is_recorded_in_config_json_and_the_checkpoint_and_said_in_the_header(data_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    _train_tiny(data_root, out, "--epochs", "1", "--clip-grad-norm", "0.5")
    assert "sgd lr 0.05 momentum 0.9, cosine schedule, clip grad norm 0.5, batch 16" in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "config.json")))["clip_grad_norm"] == 0.5
    assert load_checkpoint(out).config.clip_grad_norm == 0.5
    unclipped = str(tmp_path / "plain")
    _train_tiny(data_root, unclipped, "--epochs", "1")
    assert json.load(open(os.path.join(unclipped, "config.json")))["clip_grad_norm"] is None
    assert load_checkpoint(unclipped).config.clip_grad_norm is None


def test_a_resumed_run_keeps_clipping_exactly_as_the_uninterrupted_one(data_root, tmp_path, capsys):
    """Two epochs straight, or one and a resume without the flag: the same bits (the resumed
    session clips as the run did), and the flag given again with the run's value is accepted."""
    straight, halves = str(tmp_path / "straight"), str(tmp_path / "halves")
    flags = ["--clip-grad-norm", "0.05", "--lr-schedule", "constant"]  # a cosine period would depend on --epochs
    _train_tiny(data_root, straight, "--epochs", "2", *flags)
    _train_tiny(data_root, halves, "--epochs", "1", *flags)
    assert main(["train", "--resume", halves, "--epochs", "2", "--quiet", "--clip-grad-norm", "0.05"]) == 0
    assert "clip grad norm 0.05" in capsys.readouterr().out  # the resumed session's header
    a, b = load_checkpoint(straight), load_checkpoint(halves)
    assert b.config.clip_grad_norm == 0.05 and b.progress.epoch == 2
    for key, value in a.params.items():
        np.testing.assert_array_equal(b.params[key], value, err_msg=key)


@pytest.mark.parametrize("stored, given, facts", [
    # the flag as given, and what the checkpoint says in the command line's words
    (["--clip-grad-norm", "0.5"], "0.7", ["--clip-grad-norm 0.7 ", "(--clip-grad-norm 0.5)"]),
    (["--clip-grad-norm", "0.5"], "none", ["--clip-grad-norm none ", "(--clip-grad-norm 0.5)"]),
    ([], "1", ["--clip-grad-norm 1.0 ", "no --clip-grad-norm"]),
])
def test_resume_refuses_another_max_norm_in_the_command_lines_words(stored, given, facts, tmp_path, capsys):
    path = str(tmp_path / "checkpoint.npz")
    write_checkpoint(path, small_config(clip_grad_norm=float(stored[1]) if stored else None))
    message = usage_error_line(["train", "--resume", path, "--clip-grad-norm", given], capsys)
    assert message.startswith("backprop train: error: ") and "resumed run" in message, message
    assert all(fact in message for fact in facts), (facts, message)


@pytest.mark.parametrize("word", ["none", "None", "inf"])
def test_none_turns_a_presets_clipping_off_and_resume_accepts_it_where_the_run_never_clipped(word, data_root, tmp_path,
                                                                                               capsys):
    from backprop.cli.options import max_norm

    assert max_norm(word) == math.inf
    out = str(tmp_path / "run")
    assert main(["train", "--preset", "lstm", "--dataset", "fashion-mnist", "--batch-size", "16", "--limit", "32",
                 "--quiet", "--blas-threads", "1", "--epochs", "1", "--clip-grad-norm", word, "--data-dir", data_root,
                 "--out", out]) == 0
    assert "clip grad norm" not in capsys.readouterr().out  # the header says no clipping
    assert load_checkpoint(out).config.clip_grad_norm is None
    assert json.load(open(os.path.join(out, "config.json")))["clip_grad_norm"] is None
    assert main(["train", "--resume", out, "--epochs", "2", "--quiet", "--clip-grad-norm", word]) == 0


def test_the_command_line_leaves_numpys_error_handling_as_it_found_it(data_root, tmp_path):
    from backprop.cli import main

    before = np.geterr()
    status = main(["train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--epochs", "1", "--limit", "32",
                   "--batch-size", "16", "--hidden", "4", "--out", str(tmp_path / "run"), "--quiet"])
    assert status == 0
    assert np.geterr() == before


# -- Ctrl-C ----------------------------------------------------------------------------------
# `backprop train` as `python -m backprop` runs it, with one change: at batch 5 of epoch 2 the process
# sends itself SIGINT, as the terminal does on Ctrl-C (the signal, its handler and the exit status
# are the interpreter's: a true process test; sent from inside, it arrives at a known step).
CTRL_C = """
import os, runpy, signal, sys
from backprop import training

original = training.Trainer._train_epoch

sent = []

def train_epoch(self):
    batch = self.feeder.batch

    def interrupted_batch(step):
        if self.progress.epoch == 1 and step == 5 and not sent:
            sent.append(step)
            os.kill(os.getpid(), signal.SIGINT)
        return batch(step)

    self.feeder.batch = interrupted_batch
    original(self)

training.Trainer._train_epoch = train_epoch
sys.argv[0] = "backprop"
runpy.run_module("backprop", run_name="__main__")
"""


def test_ctrl_c_saves_the_last_step_exits_130_and_the_resumed_run_matches(data_root, tmp_path):
    common = ["--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "16", "--batch-size", "4",
              "--limit", "64", "--epochs", "2", "--quiet", "--engine", "numpy", "--lr", "0.01"]
    interrupted = str(tmp_path / "interrupted")
    process = subprocess.run([sys.executable, "-c", CTRL_C, "train", *common, "--out", interrupted], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 130, process.stderr
    assert "resume with: " in process.stderr and " train --resume " in process.stderr
    assert "Traceback" not in process.stderr
    checkpoint = load_checkpoint(os.path.join(interrupted, "checkpoint.npz"))
    progress = checkpoint.meta["progress"]
    assert progress["epoch"] == 1 and 0 < progress["step"] < 16, progress  # mid-epoch 2
    # The printed hint (its shell spelling: tests/backprop/cli/test_hints.py) resumes the run, which
    # remembers its --data-dir (case 1), to the uninterrupted run's bits.
    hint = [line for line in process.stderr.splitlines() if line.startswith("resume with: ")][-1]
    assert "--data-dir" not in hint
    resumed = run_cli("train", *printed_args(hint, "train"), "--quiet")
    assert resumed.returncode == 0, (hint, resumed.stderr)
    straight = str(tmp_path / "straight")
    assert run_cli("train", *common, "--out", straight).returncode == 0
    a = load_checkpoint(os.path.join(interrupted, "checkpoint.npz")).params
    b = load_checkpoint(os.path.join(straight, "checkpoint.npz")).params
    assert all(np.array_equal(a[k], b[k]) for k in a)


# -- bad checkpoints -------------------------------------------------------------------------
@pytest.fixture
def good_checkpoint(tmp_path):
    path = str(tmp_path / "good.npz")
    write_checkpoint(path, small_config())
    return path


def test_a_new_run_never_overwrites_an_existing_one(good_checkpoint, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    before = open(good_checkpoint, "rb").read()
    (run / "checkpoint.npz").write_bytes(before)
    result = run_cli("train", "--data-dir", str(tmp_path / "nowhere"), "--out", str(run))
    assert result.returncode == 2 and "already holds a run" in result.stderr and "--resume" in result.stderr
    assert (run / "checkpoint.npz").read_bytes() == before


def test_resuming_on_data_of_another_size_is_refused(data_root, tmp_path):
    out = str(tmp_path / "run")
    first = run_cli("train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "4",
                    "--epochs", "1", "--out", out, "--quiet")
    assert first.returncode == 0, first.stderr
    other = str(tmp_path / "other")
    write_dataset(other, "fashion-mnist", n_train=30, n_test=10)
    result = run_cli("train", "--resume", os.path.join(out, "checkpoint.npz"), "--data-dir", other, "--epochs", "2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot resume: it was trained on 256 samples, and this data has 30" in result.stderr


def test_train_track_gradients_writes_the_files_and_a_resumed_run_extends_them(data_root, tmp_path):
    from tests.helpers import SMALL_RUN, run_cli

    out = str(tmp_path / "run")
    first = run_cli("train", *SMALL_RUN, "--data-dir", data_root, "--epochs", "1", "--out", out, "--track-gradients")
    assert first.returncode == 0, first.stderr
    assert os.path.join(out, "gradients.png") in first.stdout
    epoch_one = gradflow.read_csv(os.path.join(out, "gradients.csv"))
    steps = 256 // 16
    assert [(r["epoch"], r["layer"], r["shape"], r["steps"]) for r in epoch_one] == \
           [(1, "0", "784x8", steps), (1, "2", "8x10", steps)]
    resumed = run_cli("train", "--resume", out, "--epochs", "2", "--quiet", "--track-gradients")
    assert resumed.returncode == 0, resumed.stderr
    rows = gradflow.read_csv(os.path.join(out, "gradients.csv"))
    assert rows[:2] == epoch_one and [r["epoch"] for r in rows[2:]] == [2, 2]
    assert all(r["weight_grad_norm"] > 0 and r["delta_norm"] > 0 for r in rows)
    # The default preset's cosine schedule, fixed at creation to 1 epoch, has lr 0 in epoch 2: no update.
    assert all(r["update_ratio"] > 0 for r in rows[:2]) and all(r["update_ratio"] == 0 for r in rows[2:])
    # Resumed into another directory, the file still covers the whole run: the finished epochs'
    # rows travel in the checkpoint, not only in the first directory's gradients.csv.
    elsewhere = str(tmp_path / "elsewhere")
    moved = run_cli("train", "--resume", out, "--epochs", "3", "--quiet", "--out", elsewhere)
    assert moved.returncode == 0, moved.stderr
    moved_rows = gradflow.read_csv(os.path.join(elsewhere, "gradients.csv"))
    assert moved_rows[:4] == rows and [r["epoch"] for r in moved_rows[4:]] == [3, 3]


def test_train_without_the_flag_writes_no_gradient_files(data_root, tmp_path):
    from tests.helpers import SMALL_RUN, run_cli

    out = str(tmp_path / "run")
    result = run_cli("train", *SMALL_RUN, "--data-dir", data_root, "--epochs", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(os.path.join(out, "gradients.csv"))
    assert "gradients" not in result.stdout


# -- exact resume -------------------------------------------------------------------------------
def _trainer(config, engine, data_root, out, resume=None):
    dataset = load_dataset(config.dataset, data_root, dtype=config.dtype)
    return Trainer(config, load_engine(engine), dataset, out, quiet=True, resume=resume, log=lambda *_: None)


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
    assert same_arrays(start["xavier"], {key: value.astype(np.float32) for key, value in
                                        initial_state(xavier.network, 4, "xavier_uniform").items()})
    # and the command line trains with it, recording it
    out = tmp_path / "run"
    result = run_cli("train", "--layers", NESTED_TEXT, "--init", "xavier_uniform", "--dataset", "fashion-mnist",
                     "--data-dir", data_root, "--epochs", "1", "--limit", "32", "--batch-size", "16", "--quiet",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert json.load(open(out / "config.json"))["init"] == "xavier_uniform"
    assert load_checkpoint(str(out)).config.init == "xavier_uniform"


def test_the_suggested_new_run_command_spells_the_layers(data_root):
    from backprop.cli.train import new_run_command

    command = new_run_command(stack_config(), load_engine("numpy"), data_root, lr=0.005)
    assert "--layers 'conv2d(1, 3, 3, stride=2), batchnorm2d(3)," in command and "--hidden" not in command
    assert "--lr 0.005" in command
    lenet = new_run_command(new_config("lenet"), load_engine("numpy"), data_root)
    assert "--preset lenet" in lenet and "--layers" not in lenet


# -- exact resume from the command line, default flags ------------------------------------------
def test_ctrl_c_and_resume_with_default_flags_equal_the_uninterrupted_run_bit_for_bit(data_root, tmp_path):
    # float32, where the GEMM thread count shows in the last bits, and a step whose largest
    # product (2 * 16 * 784 * 128 = 3.2 MFLOP) gets 2 threads from auto's rule on 2 cores or more.
    common = ["--dataset", "fashion-mnist", "--data-dir", data_root, "--hidden", "128", "--batch-size", "16",
              "--epochs", "2", "--limit", "128", "--quiet", "--track-gradients"]
    straight, partial = str(tmp_path / "straight"), str(tmp_path / "partial")
    assert run_cli("train", *common, "--out", straight).returncode == 0
    with training_stopped_at(epoch=1, step=5):  # as Ctrl-C stops it (the process test: above)
        stopped = run_cli("train", *common, "--out", partial)
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
    assert same_arrays(a.params, b.params)
    expected = threads.rule_threads(threads.config_gemms(a.config))
    assert a.blas_threads == b.blas_threads == expected
    assert json.load(open(os.path.join(partial, "config.json")))["blas_threads"] == expected
    assert f"the numpy engine, {expected} BLAS thread" in resumed.stdout
    # The gradient means of the interrupted epoch cover all its steps, to the bit.
    assert open(os.path.join(partial, "gradients.csv")).read() == open(os.path.join(straight, "gradients.csv")).read()
    assert [r["test_loss"] for r in a.progress.history] == [r["test_loss"] for r in b.progress.history]


# -- training, resuming and evaluating in every engine -----------------------------------------
@pytest.mark.parametrize("engine", ["numpy", "torch", "autograd"])
def test_a_recurrent_run_trains_resumes_and_evaluates_in_every_engine(engine, data_root, tmp_path, capsys, request):
    # The lstm preset's Adam and clipping on the tiny LSTM; a constant lr, since a cosine period is
    # fixed when a run is created (a 1-epoch run resumed to 2 is not a 2-epoch run).
    common = ["--preset", "lstm", "--layers", TINY_LSTM, "--dataset", "fashion-mnist", "--data-dir", data_root,
              "--limit", "64", "--batch-size", "16", "--dtype", "float64", "--lr-schedule", "constant", "--quiet",
              "--engine", engine]
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    cli_out(capsys, "train", *common, "--epochs", "2", "--out", straight)
    cli_out(capsys, "train", *common, "--epochs", "1", "--out", resumed)
    cli_out(capsys, "train", "--resume", resumed, "--epochs", "2", "--quiet", "--engine", engine)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert list(a.params) == ["0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0", "0.bias_hh_l0", "2.weight",
                              "2.bias"]
    assert a.params["0.weight_ih_l0"].shape == (16, 28)  # torch's (4 H, in), not transposed
    assert a.config.network == parse_layers(TINY_LSTM)
    assert (a.config.optimizer, a.config.clip_grad_norm) == ("adam", 1.0)
    assert b.progress.epoch == 2
    for key, value in a.params.items():  # an interrupted and resumed run is the uninterrupted one
        np.testing.assert_array_equal(value, b.params[key], err_msg=key)
    if engine != "numpy":  # the pictures, drawn by the same code whatever the engine: once is enough
        request.getfixturevalue("no_pictures")
    out = cli_out(capsys, "evaluate", straight, "--engine", engine)
    assert "test accuracy" in out
    if engine == "numpy":
        assert "weights.png" in out
        for name in ("confusion.png", "weights.png", "mistakes.png"):
            assert os.path.getsize(os.path.join(straight, name)) > 0


def test_cli_resumes_a_numpy_run_with_the_torch_engine(data_root, tmp_path):
    out = str(tmp_path / "run")
    args = ["--dataset", "fashion-mnist", "--data-dir", data_root, "--limit", "100", "--hidden", "8",
            "--quiet"]
    first = run_cli("train", "--engine", "numpy", "--epochs", "1", "--out", out, *args)
    assert first.returncode == 0, first.stderr
    second = run_cli("train", "--engine", "torch", "--resume", os.path.join(out, "checkpoint.npz"),
                     "--epochs", "2", "--data-dir", data_root, "--quiet")
    assert second.returncode == 0, second.stderr
    assert "written by the numpy engine" in second.stdout and "epoch  2/2" in second.stdout
    with open(os.path.join(out, "metrics.csv")) as f:
        assert [row["engine"] for row in csv.DictReader(f)] == ["numpy", "torch"]  # which engine trained each epoch
    assert load_checkpoint(out).engines == ["numpy", "torch"]  # what curves.png's title names


# -- the cosine schedule across a resume (field case 8) --------------------------------------
def _torch_cosine(base_lr: float, t_max: int, epochs: int) -> list[float]:
    import torch

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max)
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    return rates


def test_a_resumed_cosine_run_keeps_torchs_schedule_and_metrics_csv_shows_each_epochs_lr(data_root, tmp_path):
    out = str(tmp_path / "run")
    common = ["--data-dir", data_root, "--dataset", "fashion-mnist", "--limit", "48", "--hidden", "4",
              "--batch-size", "16", "--lr-schedule", "cosine", "--lr", "0.05", "--quiet"]
    first = run_cli("train", *common, "--epochs", "3", "--out", out)
    assert first.returncode == 0, first.stderr
    resumed = run_cli("train", "--resume", os.path.join(out, "checkpoint.npz"), "--data-dir", data_root,
                      "--epochs", "7", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    with open(os.path.join(out, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 8))
    got = [float(r["lr"]) for r in rows]
    expected = _torch_cosine(0.05, t_max=3, epochs=7)  # the period of the run as it was created
    assert got == pytest.approx(expected, rel=1e-15, abs=0)
    assert got != pytest.approx(epoch_learning_rates("cosine", 0.05, 7))
    config = load_checkpoint(os.path.join(out, "checkpoint.npz")).config
    assert config.epochs == 7 and config.t_max == 3


def test_a_resumed_step_schedule_is_unaffected_by_more_epochs(data_root, tmp_path):
    out = str(tmp_path / "run")
    common = ["--data-dir", data_root, "--dataset", "fashion-mnist", "--limit", "32", "--hidden", "4",
              "--batch-size", "16", "--lr-schedule", "step", "--step-size", "2", "--gamma", "0.5", "--lr", "0.04",
              "--quiet"]
    assert run_cli("train", *common, "--epochs", "2", "--out", out).returncode == 0
    resumed = run_cli("train", "--resume", os.path.join(out, "checkpoint.npz"), "--data-dir", data_root,
                      "--epochs", "5", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    with open(os.path.join(out, "metrics.csv")) as f:
        assert [float(r["lr"]) for r in csv.DictReader(f)] == [0.04, 0.04, 0.02, 0.02, 0.01]


# -- resumed sessions: what the run remembers, what the user is told -------------------------------
def test_continuing_a_finished_cosine_run_names_the_lr_0_epochs_and_what_to_do(trained, tmp_path):
    out = copy_run(trained[1], tmp_path)  # the default preset: cosine, T_max fixed at 1 epoch
    result = run_cli("train", "--resume", out, "--epochs", "4", "--quiet", "--track-gradients",
                     "--blas-threads", "99")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("train: note: --blas-threads gives 99 threads where the run trained on 1: ")
    assert lines[1].startswith("train: warning: 99 threads for the GEMMs are more than the ") and "cores" in lines[1]
    cosine = [line for line in lines if "lr 0" in line]
    assert len(cosine) == 1 and cosine[0].startswith("train: warning: epochs 2, 4 will train at lr 0 and update no "
                                                     "weight: the cosine schedule's T_max was fixed at 1 epoch")
    assert " train --dataset fashion-mnist --data-dir " in cosine[0] and "--epochs 4" in cosine[0]
    assert "--track-gradients: the run did not track gradients before; tracking starts at epoch 2" in result.stdout
    rates = [row["lr"] for row in load_checkpoint(out).progress.history]
    assert [epoch + 1 for epoch, lr in enumerate(rates) if lr == 0] == [2, 4]
    assert load_checkpoint(out).gradients is not None  # and it keeps tracking from now on
    again = run_cli("train", "--resume", out, "--epochs", "5", "--quiet")  # epoch 5 trains at a rate above 0
    assert again.returncode == 0 and "lr 0" not in again.stderr, again.stderr
    # The run's recorded count is reused (and still more than the cores); tracking goes on.
    assert again.stderr.startswith("train: warning: 99 threads for the GEMMs") and again.stderr.count("\n") == 1
    assert "gradients.csv" in again.stdout
    # Past T_max and asked for fewer epochs than it has: the hint says what already happened.
    done = run_cli("train", "--resume", out, "--epochs", "3")
    assert "already finished 5 epochs, more than the 3 epochs asked for" in done.stdout, done.stdout
    assert "its epochs 2-5 already trained at lr 0 and then at rising rates" in done.stdout


@pytest.mark.parametrize("flags, message", [
    (["--limit", "2000"], "--limit 2000 conflicts with the checkpoint (all training samples, no --limit)"),
    (["--hidden", "32"], "--hidden 32 conflicts with the checkpoint (--hidden 8 --activation relu)"),
    (["--hidden", "none"], "--hidden none conflicts with the checkpoint (--hidden 8 --activation relu)"),
    (["--activation", "tanh"], "--activation tanh conflicts with the checkpoint (--hidden 8 --activation relu)"),
    (["--nesterov"], "--nesterov conflicts with the checkpoint (no --nesterov)"),
    (["--layers", "flatten, linear(784, 10)"],
     "--layers 'flatten, linear(784, 10)' conflicts with the checkpoint (--hidden 8 --activation relu)"),
])
def test_a_resume_conflict_speaks_the_command_lines_spelling(flags, message, tmp_path, capsys):
    from backprop.cli import main
    from tests.helpers import write_checkpoint

    path = str(tmp_path / "checkpoint.npz")
    write_checkpoint(path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", path, *flags])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("backprop train: error: ") and message in line and "resumed run" in line, line


@pytest.mark.parametrize("load, expected", [(0.0, 2), (1.2, 1)])
def test_train_header_gives_the_count_and_why(data_root, tmp_path, monkeypatch, load, expected):
    monkeypatch.setattr(threads, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "current_load", lambda: load)
    result = run_cli("train", "--dataset", "fashion-mnist", "--data-dir", data_root, "--hidden", "256",
                     "--batch-size", "64", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert f"{expected} BLAS thread{'s' if expected > 1 else ''} (auto: " in header
    assert f"load {load:.2f}" in header or f"load of {load:.2f}" in header
    assert ("leaves 1 of the 2 cores free" in header) == (expected == 1)
    assert load_checkpoint(str(tmp_path / "run")).blas_threads == expected  # resumed sessions reuse it


def _printed_args(command: str, subcommand: str) -> list[str]:
    """The arguments after ``subcommand`` of a command the program printed (its program words,
    `python -m backprop` or a path, dropped): what run_cli takes."""
    words = shlex.split(command)
    return words[words.index(subcommand) + 1:]


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


DIVERGING = ["--dataset", "fashion-mnist", "--batch-size", "16", "--quiet", "--lr", "1000"]  # NaN in epoch 1


def test_a_run_that_diverges_before_its_first_checkpoint_leaves_nothing_in_the_way(data_root, tmp_path):
    out = str(tmp_path / "run")
    diverged = run_cli("train", *DIVERGING, "--data-dir", data_root, "--out", out)
    assert diverged.returncode == 3 and "Removed what the run wrote (config.json)" in diverged.stderr
    assert not os.path.exists(out)
    hint = diverged.stderr.split("to start again with a smaller learning rate: ", 1)[1].strip()
    assert _printed_args(hint, "train")[-2:] == ["--out", out]  # the --out it freed
    again = run_cli("train", *_printed_args(hint, "train"), "--limit", "32", "--epochs", "1")
    assert again.returncode in (0, 3), again.stderr  # the same --out is free again


def test_a_diverged_run_in_an_existing_directory_keeps_what_was_there(data_root, tmp_path):
    out = tmp_path / "run"
    out.mkdir()  # made by the user, empty: the run's files go, the directory stays
    diverged = run_cli("train", *DIVERGING, "--data-dir", data_root, "--out", str(out))
    assert diverged.returncode == 3 and out.is_dir() and os.listdir(out) == []


def test_a_directory_that_blocks_a_run_is_named_with_how_to_clear_it(trained, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((Path(trained[1]) / "config.json").read_text())
    resumed = run_cli("train", "--resume", str(half))
    assert resumed.returncode == 1 and "nothing to resume" in resumed.stderr, resumed.stderr
    assert f"rm -r -- {half}" in resumed.stderr
    rerun = run_cli("train", "--out", str(half))
    assert rerun.returncode == 2 and f"rm -r -- {half}" in rerun.stderr and "nothing was overwritten" in rerun.stderr
    over = run_cli("train", "--out", trained[1])
    assert over.returncode == 2 and "--resume" in over.stderr and f"rm -r -- {trained[1]}" in over.stderr
    # Another program's config.json is not called a run's, and no deletion of its folder is offered.
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"name": "my project"}')
    evaluated = run_cli("evaluate", str(project))
    assert evaluated.returncode == 1 and "without checkpoint.npz" in evaluated.stderr, evaluated.stderr
    assert "config.json" not in evaluated.stderr and "rm -r" not in evaluated.stderr

"""--clip-grad-norm end to end: recorded in config.json and the checkpoint, kept on resume, absent
(None) in files written before it, bad values refused with a message naming the flag, presets'
values flowing into the configuration, and the trajectory really clipped in every engine (train
and compare), and numpy_net's clipping at overflow."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from backprop.checkpoint import CheckpointError, load_checkpoint
from backprop.cli import main
from backprop.config import PRESETS, TrainConfig, new_config
from backprop.engines import load_engine
from backprop.lockstep import LockstepSettings, run_lockstep
from engine_core.specs import mlp

from .helpers import write_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
# 64 samples in batches of 16: 4 steps an epoch, an MLP 784-8-10.
TINY = ["--dataset", "fashion-mnist", "--hidden", "8", "--batch-size", "16", "--limit", "64", "--quiet",
        "--blas-threads", "1"]


def _train(data_root: str, out: str, *flags: str) -> None:
    assert main(["train", *TINY, "--data-dir", data_root, "--out", out, *flags]) == 0


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_the_flag_is_recorded_in_config_json_and_the_checkpoint_and_said_in_the_header(data_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    _train(data_root, out, "--epochs", "1", "--clip-grad-norm", "0.5")
    assert "sgd lr 0.05 momentum 0.9, cosine schedule, clip grad norm 0.5, batch 16" in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "config.json")))["clip_grad_norm"] == 0.5
    assert load_checkpoint(out).config.clip_grad_norm == 0.5
    unclipped = str(tmp_path / "plain")
    _train(data_root, unclipped, "--epochs", "1")
    assert json.load(open(os.path.join(unclipped, "config.json")))["clip_grad_norm"] is None
    assert load_checkpoint(unclipped).config.clip_grad_norm is None


def test_a_resumed_run_keeps_clipping_exactly_as_the_uninterrupted_one(data_root, tmp_path, capsys):
    """Two epochs straight, or one and a resume without the flag: the same bits (the resumed
    session clips as the run did), and the flag given again with the run's value is accepted."""
    straight, halves = str(tmp_path / "straight"), str(tmp_path / "halves")
    flags = ["--clip-grad-norm", "0.05", "--lr-schedule", "constant"]  # a cosine period would depend on --epochs
    _train(data_root, straight, "--epochs", "2", *flags)
    _train(data_root, halves, "--epochs", "1", *flags)
    assert main(["train", "--resume", halves, "--epochs", "2", "--quiet", "--clip-grad-norm", "0.05"]) == 0
    assert "clip grad norm 0.05" in capsys.readouterr().out  # the resumed session's header
    a, b = load_checkpoint(straight), load_checkpoint(halves)
    assert b.config.clip_grad_norm == 0.05 and b.progress.epoch == 2
    for key, value in a.params.items():
        np.testing.assert_array_equal(b.params[key], value, err_msg=key)


@pytest.mark.parametrize("stored, given, conflict", [
    (["--clip-grad-norm", "0.5"], "0.7", "--clip-grad-norm 0.7 conflicts with the checkpoint (--clip-grad-norm 0.5)"),
    (["--clip-grad-norm", "0.5"], "none", "--clip-grad-norm none conflicts with the checkpoint (--clip-grad-norm 0.5)"),
    ([], "1", "--clip-grad-norm 1.0 conflicts with the checkpoint (no gradient clipping, no --clip-grad-norm)"),
])
def test_resume_refuses_another_max_norm_in_the_command_lines_words(stored, given, conflict, tmp_path, capsys):
    from .helpers import small_config

    path = str(tmp_path / "checkpoint.npz")
    write_checkpoint(path, small_config(clip_grad_norm=float(stored[1]) if stored else None))
    message = _usage_error(["train", "--resume", path, "--clip-grad-norm", given], capsys)
    assert message == f"backprop train: error: {conflict}: a resumed run keeps its configuration"


def test_checkpoints_written_before_the_field_load_without_clipping(tmp_path):
    """The version 3 fixtures (tests/legacy), and a version 4 file whose config has no
    clip_grad_norm: None, the only behaviour there was. A stored bad value is refused."""
    for name in ("default", "lenet"):
        assert load_checkpoint(os.path.join(HERE, "legacy", name)).config.clip_grad_norm is None
    path = str(tmp_path / "checkpoint.npz")
    meta = write_checkpoint(path, config_changes={"clip_grad_norm": None})  # None deletes the key
    checkpoint = load_checkpoint(path)
    assert "clip_grad_norm" not in meta["config"] and checkpoint.meta["version"] == 4
    assert checkpoint.config.clip_grad_norm is None
    assert TrainConfig.from_json(meta["config"]).clip_grad_norm is None  # the config dict as stored then
    write_checkpoint(path, config_changes={"clip_grad_norm": 2})
    assert load_checkpoint(path).config.clip_grad_norm == 2.0
    for bad in (0, -1, "1", True):
        write_checkpoint(path, config_changes={"clip_grad_norm": bad})
        with pytest.raises(CheckpointError, match=r"config\.clip_grad_norm: expected a (finite )?number > 0 or null"):
            load_checkpoint(path)


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize("value, words", [
    ("0", "expected a finite number > 0 (the largest gradient norm a step keeps) or none (no clipping), got 0"),
    ("-1", "expected a finite number > 0 (the largest gradient norm a step keeps) or none (no clipping), got -1"),
    ("nan", "expected a finite number > 0 (the largest gradient norm a step keeps) or none (no clipping), got nan"),
    ("1e999", "expected a finite number > 0 (the largest gradient norm a step keeps) or none (no clipping), got 1e999"),
    ("x", "expected a number, the largest gradient norm a step keeps, got 'x'"),
])
def test_a_bad_max_norm_is_a_usage_error_naming_the_flag(command, value, words, tmp_path, capsys):
    message = _usage_error([command, "--clip-grad-norm", value, "--data-dir", str(tmp_path / "none")], capsys)
    assert message == f"backprop {command}: error: argument --clip-grad-norm: {words}"


def test_an_engine_without_clip_grad_norm_is_refused_before_any_data_is_read(tmp_path, monkeypatch, capsys):
    (tmp_path / "noclip.py").write_text("from numpy_net import *  # noqa: F403\n\ndel clip_grad_norm_  # noqa: F821\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = _usage_error(["train", "--engine", "noclip", "--clip-grad-norm", "1", "--data-dir",
                            str(tmp_path / "none")], capsys)
    assert message == ("backprop train: error: argument --engine: engine 'noclip' has no clip_grad_norm_ (needed "
                       "for --clip-grad-norm; see engine_core.protocol)")
    message = _usage_error(["compare", "--engines", "numpy,noclip", "--clip-grad-norm", "1"], capsys)
    assert "argument --engines: engine 'noclip' has no clip_grad_norm_" in message


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


@pytest.mark.parametrize("engine", ["numpy", "torch", "autograd"])
def test_a_tiny_max_norm_bounds_every_step_of_plain_sgd(engine, data_root, tmp_path):
    """Plain SGD (lr 0.1, no momentum) moves the parameters by lr x the clipped gradient, whose
    global norm is at most max_norm: after 4 steps at max_norm 1e-4 they have moved by at most
    4 x 0.1 x 1e-4 (and by more than 100 times that without clipping)."""
    flags = ["--engine", engine, "--epochs", "1", "--lr", "0.1", "--momentum", "0", "--lr-schedule", "constant"]
    moved = {}
    for name, clip in (("clipped", ["--clip-grad-norm", "1e-4"]), ("plain", [])):
        out = str(tmp_path / name)
        _train(data_root, out, *flags, *clip)
        checkpoint = load_checkpoint(out)
        config = checkpoint.config
        start = load_engine("numpy").build_net(config.network, config.init, config.seed, config.dtype).state_dict()
        moved[name] = math.sqrt(sum(float(np.sum((checkpoint.params[k].astype(np.float64) - v) ** 2))
                                    for k, v in start.items()))
    bound = 4 * 0.1 * 1e-4
    assert 0 < moved["clipped"] <= bound * (1 + 1e-4), moved
    assert moved["plain"] > 100 * bound, moved


def test_compare_clips_in_every_engine_and_they_stay_in_lockstep(tmp_path, capsys):
    """float64 lockstep with clipping: every engine within 1e-10 of numpy's parameters at every
    step, on a trajectory that clipping really changed (its losses differ from the unclipped run's)."""
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 784)), rng.integers(0, 10, 64)
    engines = [load_engine(name) for name in ("numpy", "torch", "autograd")]
    settings = dict(network=mlp([784, 8, 10], "tanh"), init="xavier_normal", dtype="float64", batch_size=16,
                    seed=0, optimizer="sgd", lr=0.5, momentum=0.9, steps=6)
    clipped = run_lockstep(engines, x, y, LockstepSettings(**settings, clip_grad_norm=0.01))
    plain = run_lockstep(engines, x, y, LockstepSettings(**settings))
    assert max(row["max_rel_diff"] for row in clipped) <= 1e-10
    assert all(abs(a["loss"] - b["loss"]) > 1e-6 for a, b in zip(clipped[2:], plain[2:]))  # step 2 on
    assert main(["compare", "--engines", "numpy,torch", "--hidden", "8", "--limit", "64", "--batch-size", "16",
                 "--steps", "4", "--clip-grad-norm", "0.01", "--tol", "1e-10", "--quiet", "--out",
                 str(tmp_path / "cmp")]) == 0
    assert ", clip grad norm 0.01, 4 steps" in capsys.readouterr().out


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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("grad, max_norm", [(3e38, 1.0), (1e200, 1.0), (math.inf, 1.0), (0.5, 1e300)])
def test_numpy_nets_clipping_gives_torchs_overflow_results_without_a_numpy_warning(dtype, grad, max_norm):
    """A norm that overflows to Inf (and Inf * 0 = NaN after it), or a max_norm past the dtype's
    range: torch's values, and no RuntimeWarning (torch gives none)."""
    import warnings

    import torch

    import numpy_net

    if dtype == "float32" and grad == 1e200:
        grad = 3e38
    net = numpy_net.MLP([3, 2], seed=0, dtype=dtype)
    params = [torch.zeros(tuple(v.shape), dtype=getattr(torch, dtype)) for v in net.grads().values()]
    for value, param in zip(net.grads().values(), params):
        value[...] = grad
        param.grad = torch.full(tuple(value.shape), grad, dtype=param.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        total = numpy_net.clip_grad_norm_(net, max_norm)
    want = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if math.isfinite(total) and math.isfinite(float(want)):
        # torch reduces the norms with the CPU's SIMD width (AVX2 or AVX-512 code), NumPy with its
        # BLAS's dot: sqrt(1.5)^2 + sqrt(0.5)^2 = 2 rounds 1 ulp apart on some CPUs (an AMD EPYC).
        np.testing.assert_array_max_ulp(np.float64(total), np.float64(float(want)), maxulp=1)
    else:
        np.testing.assert_equal(total, float(want))
    for value, param in zip(net.grads().values(), params):
        np.testing.assert_array_equal(value, param.grad.numpy())

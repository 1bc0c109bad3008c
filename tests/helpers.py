"""Shared by the application's tests: running the CLI, small runs and their configs, checkpoints
valid in every field, comparing state dicts."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from backprop.checkpoint import checkpoint_meta, save_checkpoint
from backprop.config import TrainConfig
from backprop.datasets import load_dataset
from backprop.engines import load_engine
from backprop.progress import Progress
from backprop.training import Trainer
from engine_core.specs import mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Checkpoints written by earlier versions of the program (tests/legacy/README.md says how).
LEGACY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "legacy")


def run_cli_process(*args: str, env: dict[str, str] | None = None, cwd: str = ROOT,
                    timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m backprop ARGS`` in a fresh process; env is added to the current environment. For
    what only a process shows: exit statuses set by the interpreter, signals, pipes, imports."""
    return subprocess.run([sys.executable, "-m", "backprop", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str = ROOT) -> subprocess.CompletedProcess[str]:
    """``backprop ARGS`` in this process (backprop.cli.main), as run_cli_process would run it: as
    ``python -m backprop`` (sys.argv, which the printed hints spell), from ``cwd``, with env added
    to the environment (a PYTHONPATH's folders also on sys.path, and the modules imported from
    them forgotten afterwards), stdout and stderr captured, a SystemExit's code (a usage error's 2)
    as the exit status; everything changed is put back afterwards."""
    from backprop.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_argv, saved_path = dict(os.environ), os.getcwd(), sys.argv, list(sys.path)
    extra = [os.path.abspath(p) for p in (env or {}).get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ.update(env or {})
    os.chdir(cwd)
    sys.argv = [os.path.join(ROOT, "backprop", "__main__.py"), *args]
    sys.path[:0] = extra
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv, sys.path[:] = saved_argv, saved_path
        for name, module in list(sys.modules.items()):
            where = getattr(module, "__file__", None) or ""
            if extra and any(where.startswith(folder + os.sep) for folder in extra if folder != ROOT):
                del sys.modules[name]
    return subprocess.CompletedProcess(["backprop", *args], code, out.getvalue(), err.getvalue())


def small_config(**overrides: Any) -> TrainConfig:
    """A Fashion-MNIST config with one small hidden layer."""
    base: dict[str, Any] = dict(dataset="fashion-mnist", network=mlp([784, 8, 10], "relu"), init="xavier_normal",
                                batch_size=16, lr=0.05, momentum=0.9, epochs=2, seed=1)
    return TrainConfig(**{**base, **overrides})


def tanh_config(**overrides: Any) -> TrainConfig:
    """A Fashion-MNIST config of a tanh MLP 784-16-8-10 with momentum, two epochs of batch 24."""
    base: dict[str, Any] = dict(dataset="fashion-mnist", network=mlp([784, 16, 8, 10], "tanh"),
                                init="xavier_normal", batch_size=24, lr=0.05, momentum=0.9, epochs=2, seed=3)
    return TrainConfig(**{**base, **overrides})


def train_quietly(config: TrainConfig, engine: str, data_root: str, out: str, resume: str | None = None) -> Trainer:
    """The finished Trainer of ``config`` on ``engine`` (a --engine name), the data read from
    ``data_root`` and the run written to ``out`` (``resume``: a checkpoint to go on from)."""
    dataset = load_dataset(config.dataset, data_root, dtype=config.dtype)
    trainer = Trainer(config, load_engine(engine), dataset, out, quiet=True, resume=resume, log=lambda *_: None)
    trainer.run()
    return trainer


def write_checkpoint(path: str, config: TrainConfig | None = None, train_samples: int = 256,
                     params: dict[str, np.ndarray] | None = None, meta_changes: dict[str, Any] | None = None,
                     config_changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a checkpoint of an untrained network that load_checkpoint accepts, unless the
    ``*_changes`` (merged into the metadata / its config; a value of None deletes the key) make
    it invalid on purpose. Returns the metadata written."""
    config = config or small_config()
    if params is None:
        net = load_engine("numpy").build_net(config.network, config.init, config.seed, config.dtype)
        params = net.state_dict()
    meta = checkpoint_meta(config, "numpy", Progress(), train_samples)
    for key, value in (config_changes or {}).items():
        if value is None:
            del meta["config"][key]
        else:
            meta["config"][key] = value
    for key, value in (meta_changes or {}).items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    save_checkpoint(path, params, {"step": 0, "lr": config.lr, "state": {}}, meta)
    return meta


SMALL_RUN = ["--dataset", "fashion-mnist", "--hidden", "8", "--batch-size", "16", "--quiet"]


def finished_run(root: str) -> tuple[str, str]:
    """(data dir, run dir) of one finished 1-epoch `backprop train` run of SMALL_RUN under ``root``
    (tests that share it copy the run before changing it)."""
    from .datasets import write_dataset

    data = os.path.join(root, "data")
    write_dataset(data)
    out = os.path.join(root, "run")
    result = run_cli("train", *SMALL_RUN, "--data-dir", data, "--epochs", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    return data, out


def copy_run(run: str, tmp_path: Any) -> str:
    """A copy of the run directory ``run`` at tmp_path/run, to change without touching the original."""
    copy = os.path.join(str(tmp_path), "run")
    shutil.copytree(run, copy)
    return copy


def cli_out(capsys: Any, *args: str) -> str:
    """``backprop ARGS`` in this process (backprop.cli.main), which must succeed; its stdout."""
    from backprop.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return str(captured.out)


def accuracy_of(stdout: str) -> str:
    """The test accuracy an evaluate printed ("test accuracy 0.8760"), as printed."""
    return stdout.split("test accuracy ")[1].split()[0]


def assert_torch_predicts_as_the_engine(module: Any, checkpoint: Any, samples: int = 6) -> None:
    """An exported torch module (float64, eval mode) gives numpy_net's outputs for the
    checkpoint's network and parameters, on random images shaped as the network reads them."""
    import torch

    import numpy_net
    from backprop.architecture import image_view
    from engine_core.specs import build

    x = image_view(np.random.default_rng(0).standard_normal((samples, 784)), checkpoint.config.network)
    net = build(numpy_net, checkpoint.config.network, "float64").eval()  # no dropout, as the module's
    net.load_state_dict(checkpoint.params)
    with torch.no_grad():
        theirs = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.forward(x), theirs, rtol=1e-10, atol=1e-12)


def train_and_export(capsys: Any, layers: str, data_root: str, tmp_path: Any) -> tuple[Any, str, str]:
    """A one-epoch float64 run of the --layers network on 32 samples, exported: (its checkpoint,
    the model.pt path, the Python lines export prints to rebuild and load it)."""
    from backprop.checkpoint import load_checkpoint

    out = str(tmp_path / "run")
    cli_out(capsys, "train", "--layers", layers, "--dataset", "fashion-mnist", "--data-dir", data_root, "--limit",
            "32", "--batch-size", "16", "--epochs", "1", "--dtype", "float64", "--quiet", "--out", out)
    model = str(tmp_path / "model.pt")
    code = cli_out(capsys, "export", out, "--to", model).split("load it:\n", 1)[1]
    return load_checkpoint(out), model, code


def assert_imports_back(capsys: Any, model: str, layers: str, data_root: str, tmp_path: Any, checkpoint: Any) -> None:
    """`backprop import` of an exported model.pt gives back the checkpoint's parameters, bit for bit."""
    from backprop.checkpoint import load_checkpoint

    imported = str(tmp_path / "imported")
    cli_out(capsys, "import", model, "--layers", layers, "--dataset", "fashion-mnist", "--data-dir", data_root,
            "--out", imported)
    again = load_checkpoint(imported)
    for key, value in checkpoint.params.items():
        np.testing.assert_array_equal(again.params[key], value, err_msg=key)


def same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """The same keys, and under each the same values of the same dtype."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """The same keys, and under each the same bytes (bit-exact: -0.0 is not 0.0, NaNs by payload)."""
    return a.keys() == b.keys() and all(np.array_equal(a[k].view(np.uint8), b[k].view(np.uint8)) for k in a)


def usage_error_line(argv: list[str], capsys: Any) -> str:
    """``backprop ARGV`` in this process, which must be a usage error (exit 2): its message's last line."""
    from backprop.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return str(capsys.readouterr().err).strip().splitlines()[-1]


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The error a command ended with, which must be one line (no traceback, no temporary file's
    name) holding every one of ``words``."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and ".tmp" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith(("backprop: error: ", "backprop ")), result.stderr
    for word in words:
        assert word in lines[-1], (word, result.stderr)
    return lines[-1]


def rewrite_meta(path: str, out: str, change: Any = None, raw: str | None = None) -> str:
    """A copy of the checkpoint ``path`` at ``out`` whose metadata is ``change``d in place (or is the
    text ``raw``), the arrays as they were."""
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    if change is not None:
        change(meta)
    arrays["meta"] = np.frombuffer((raw if raw is not None else json.dumps(meta)).encode(), dtype=np.uint8)
    np.savez(out, **arrays)
    return out


def printed_args(command: str, subcommand: str) -> list[str]:
    """The arguments after ``subcommand`` of a command line the program printed (its program words,
    ``python -m backprop`` or a path, dropped): what run_cli takes to run it in this process."""
    words = shlex.split(command)
    return words[words.index(subcommand) + 1:]


@contextlib.contextmanager
def training_stopped_at(epoch: int, step: int) -> Any:
    """Within: every Trainer stops as Ctrl-C stops it (the flag its SIGINT handler sets), before
    batch ``step`` of the epoch after ``epoch`` finished ones, then checkpoints; the command exits 130."""
    from backprop import training

    original = training.Trainer._train_epoch

    def train_epoch(self: Any) -> None:
        batch = self.feeder.batch

        def stopping_batch(at: int) -> Any:
            if self.progress.epoch == epoch and at == step:
                self._stop_requested = True
            return batch(at)

        self.feeder.batch = stopping_batch
        original(self)

    training.Trainer._train_epoch = train_epoch  # type: ignore[method-assign]
    try:
        yield
    finally:
        training.Trainer._train_epoch = original  # type: ignore[method-assign]

"""Case 5: every path argument is understood or clearly refused: a run directory means its
checkpoint; a wrong checkpoint, output or data path gets one line naming the path and the
problem (never a traceback or a temporary file's name); commands read only the data they need."""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from backprop import fileio
from backprop.cli import main
from backprop.datasets import load_dataset

from .datasets import write_dataset
from .helpers import SMALL_RUN, copy_run, run_cli


def _one_line_error(result, *words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and ".tmp" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith(("backprop: error: ", "backprop ")), result.stderr
    for word in words:
        assert word in lines[-1], (word, result.stderr)
    return lines[-1]


def test_a_run_directory_means_its_checkpoint_in_every_command(trained, tmp_path):
    copy = copy_run(trained[1], tmp_path)
    evaluated = run_cli("evaluate", copy)
    assert evaluated.returncode == 0 and f"{copy}/checkpoint.npz on fashion-mnist" in evaluated.stdout
    exported = run_cli("export", copy, "--to", str(tmp_path / "m.pt"))
    assert exported.returncode == 0, exported.stderr
    resumed = run_cli("train", "--resume", copy, "--epochs", "2", "--quiet")
    assert resumed.returncode == 0 and "epoch  2/2" in resumed.stdout, resumed.stderr


def _bad_checkpoints(tmp_path, run: str) -> dict[str, tuple[str, str]]:
    """name -> (path, words its one-line refusal must contain)"""
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello\n")
    shutil.copy(os.path.join(run, "curves.png"), tmp_path / "curves.png")
    (tmp_path / "no_run").mkdir()
    (tmp_path / "parent_file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    return {
        "missing": (str(tmp_path / "nope.npz"), "no such checkpoint file"),
        "missing-parent": (str(tmp_path / "gone" / "c.npz"), f"{tmp_path / 'gone'} does not exist"),
        "under-a-file": (str(tmp_path / "parent_file" / "c.npz"), "is not a directory"),
        "dir-without-checkpoint": (str(tmp_path / "no_run"), "a directory without checkpoint.npz"),
        "empty": (str(tmp_path / "empty.npz"), "the file is empty"),
        "text": (str(tmp_path / "notes.txt"), "not a checkpoint (a checkpoint is a .npz archive)"),
        "png": (str(tmp_path / "curves.png"), "it is a PNG image"),
        "fifo": (str(tmp_path / "fifo"), "not a regular file"),
    }


def test_every_wrong_checkpoint_path_is_one_line_in_every_command(trained, tmp_path):
    for name, (path, words) in _bad_checkpoints(tmp_path, trained[1]).items():
        for command in (["train", "--resume", path], ["evaluate", path],
                        ["export", path, "--to", str(tmp_path / "m.pt")]):
            result = run_cli(*command)
            assert result.returncode == 1, (name, command, result.stderr)
            line = _one_line_error(result, path, words)
            assert len(result.stderr.strip().splitlines()) == 1, (name, command, line)
    assert not os.path.exists(tmp_path / "m.pt")


def test_a_directory_of_runs_names_the_runs_it_holds(trained, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(trained[1], runs / "20260101-000000-numpy")
    result = run_cli("evaluate", str(runs))
    _one_line_error(result, "a directory without checkpoint.npz", "runs/20260101-000000-numpy")


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
        _one_line_error(result, words)
    assert a_file.read_text() == "x" and os.path.getsize(os.path.join(run, "checkpoint.npz")) > 1000


def test_a_data_dir_that_is_a_file_is_a_usage_error_in_every_command(trained, tmp_path):
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    for args in (["train"], ["evaluate", trained[1]], ["compare"], ["bench"]):
        result = run_cli(*args, "--data-dir", str(a_file))
        assert result.returncode == 2, (args, result.stderr)
        _one_line_error(result, f"--data-dir {a_file}: not a directory")


@pytest.mark.parametrize("inside", ["FashionMNIST", "FashionMNIST/raw"])
def test_a_data_dir_naming_the_dataset_folder_or_its_raw_folder_is_understood(inside, tmp_path):
    write_dataset(str(tmp_path / "data"), n_train=40, n_test=8)
    dataset = load_dataset("fashion-mnist", str(tmp_path / "data" / inside))
    assert len(dataset.train_y) == 40 and len(dataset.test_y) == 8


def test_a_failed_write_names_the_file_not_its_temporary(tmp_path, monkeypatch, capsys, data_root):
    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full_disk)
    out = str(tmp_path / "run")
    status = main(["train", *SMALL_RUN, "--data-dir", data_root, "--epochs", "1", "--out", out])
    err = capsys.readouterr().err
    assert status == 1, err
    assert err.strip() == f"backprop: error: {out}/config.json: No space left on device", err
    assert not os.path.exists(out)  # no temporary file left behind, and the empty run directory removed


def test_evaluate_reads_only_the_test_split_and_compare_and_bench_only_the_training_split(
        trained, tmp_path, monkeypatch, capsys):
    import backprop.datasets.mnist as mnist

    calls = []
    real = mnist.load_dataset

    def spy(*args, **kwargs):
        calls.append(kwargs.get("splits", mnist.SPLITS))
        return real(*args, **kwargs)

    monkeypatch.setattr(mnist, "load_dataset", spy)
    monkeypatch.setattr("backprop.cli.evaluate.load_dataset", spy)
    data_root, run = trained
    assert main(["evaluate", run, "--out", str(tmp_path / "e")]) == 0
    assert main(["compare", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "4", "--steps", "2",
                 "--quiet", "--out", str(tmp_path / "c")]) == 0
    assert main(["bench", "--engines", "numpy", "--data-dir", data_root, "--dataset", "fashion-mnist",
                 "--workloads", "notebook", "--batch-sizes", "8", "--steps", "1", "--repeats", "1", "--warmup", "1",
                 "--no-compile", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert calls == [("test",), ("train",), ("train",)]
    split = real("fashion-mnist", data_root, splits=("test",))
    assert split.train_x.shape == (0, 784) and len(split.test_y) == 64


def test_missing_dirs_lists_the_missing_ancestors_innermost_first(tmp_path):
    from backprop.fileio import missing_dirs

    assert missing_dirs(str(tmp_path)) == []
    deep = tmp_path / "a" / "b" / "c"
    assert missing_dirs(str(deep)) == [str(deep), str(tmp_path / "a" / "b"), str(tmp_path / "a")]
    (tmp_path / "f").write_text("x")  # a file counts as existing: the walk stops there
    assert missing_dirs(str(tmp_path / "f" / "g")) == [str(tmp_path / "f" / "g")]

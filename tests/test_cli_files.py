"""Case 4: files are what the user expects: every output honours the umask, and a data lookup
that downloads nothing creates nothing."""

from __future__ import annotations

import os
import stat

import pytest

from backprop.cli import main
from backprop.fileio import atomic_write_text

from .helpers import write_checkpoint


def _modes(folder: str) -> dict[str, int]:
    return {name: stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) for name in os.listdir(folder)}


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_get_the_mode_any_new_file_gets(umask, tmp_path):
    old = os.umask(umask)
    try:
        atomic_write_text(str(tmp_path / "a.txt"), "x")
        with open(tmp_path / "plain.txt", "w") as f:  # what open() makes, for comparison
            f.write("x")
    finally:
        os.umask(old)
    assert _modes(str(tmp_path)) == {"a.txt": 0o666 & ~umask, "plain.txt": 0o666 & ~umask}


def test_every_output_of_every_command_honours_the_umask(data_root, tmp_path):
    run = str(tmp_path / "runs" / "run")
    steps = [
        ("train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "8", "--batch-size", "16",
         "--epochs", "1", "--quiet", "--out", run),
        ("evaluate", run),
        ("export", run, "--to", str(tmp_path / "model.pt")),
        ("compare", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "8", "--steps", "3",
         "--quiet", "--out", str(tmp_path / "compare")),
        ("bench", "--engines", "numpy", "--workloads", "notebook", "--batch-sizes", "8", "--steps", "2", "--no-compile",
         "--repeats", "1", "--warmup", "1", "--data-dir", data_root, "--dataset", "fashion-mnist",
         "--out", str(tmp_path / "bench")),
    ]
    old = os.umask(0o027)  # in-process: the umask is the process's, as a shell would set it
    try:
        for args in steps:
            assert main(list(args)) == 0, args
    finally:
        os.umask(old)
    expected_files = {
        run: {"config.json", "metrics.csv", "curves.png", "checkpoint.npz", "confusion.png", "weights.png",
                  "mistakes.png"},
        str(tmp_path / "compare"): {"compare.csv", "compare.png"},
        str(tmp_path / "bench"): {"bench.json", "bench.png"},
    }
    for folder, names in expected_files.items():
        modes = _modes(folder)
        assert set(modes) == names, folder  # and no lock or temporary file left behind
        assert all(mode == 0o640 for mode in modes.values()), (folder, {k: oct(v) for k, v in modes.items()})
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(tmp_path / "model.pt").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "runs").st_mode) == 0o750


@pytest.fixture
def offline(monkeypatch):
    """torchvision's mirrors pointed at a closed local port: every download fails at once."""
    import torchvision

    for name in ("MNIST", "FashionMNIST"):
        monkeypatch.setattr(getattr(torchvision.datasets, name), "mirrors", ["http://127.0.0.1:9/"])


@pytest.mark.parametrize("command", ["train", "evaluate", "compare", "bench"])
def test_a_data_lookup_that_downloads_nothing_creates_nothing(command, offline, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    typo = tmp_path / "shraed" / "datsets"  # neither level exists
    existing = tmp_path / "existing"
    existing.mkdir()
    checkpoint = tmp_path / "c.npz"
    write_checkpoint(str(checkpoint))  # records no data directory: evaluate falls back to ./data
    before = sorted(os.listdir(tmp_path))
    for data_dir in (str(typo), str(existing), None):  # None: the default, ./data
        data = ["--data-dir", data_dir] if data_dir else []
        if command == "train":
            args = ["train", "--hidden", "4", "--batch-size", "8", "--out", "run", *data]
        elif command == "evaluate":
            args = ["evaluate", str(checkpoint), "--out", "eval", *data]
        else:
            if data_dir is None:
                continue  # without --data-dir compare and bench use synthetic data
            args = [command, "--out", command, *data]
        assert main(args) == 1, args
        message = capsys.readouterr().err
        assert "download failed" in message, message
        assert sorted(os.listdir(tmp_path)) == before, args  # no data folder, no run folder
        assert os.listdir(existing) == []  # no MNIST/raw/ inside a folder that was there
    assert "does not exist (nothing was created)" in main_message(["train", "--data-dir", str(typo)], capsys)


def main_message(args: list[str], capsys) -> str:
    main(args)
    return capsys.readouterr().err

"""Files that survive a crash (backprop/fileio.py): every output honours the umask, a failed write
names the file (not its temporary), missing directories listed."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from backprop import fileio
from backprop.cli import main
from backprop.fileio import atomic_write_text
from tests.helpers import SMALL_RUN


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


@pytest.mark.rendered  # figures drawn for real (tests/conftest.py: rendered_figures)
def test_every_output_of_every_command_honours_the_umask(data_root, tmp_path, monkeypatch):
    run = str(tmp_path / "runs" / "run")
    steps = [
        ("train", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "8", "--batch-size", "16",
         "--epochs", "1", "--quiet", "--out", run),
        ("evaluate", run),
        ("export", run, "--to", str(tmp_path / "model.pt")),
        ("compare", "--data-dir", data_root, "--dataset", "fashion-mnist", "--hidden", "8", "--steps", "3",
         "--quiet", "--out", str(tmp_path / "compare")),
        ("bench", "--engines", "numpy", "--workloads", "notebook", "--batch-sizes", "8", "--steps", "2", "--no-compile",
         "--isolation", "none", "--no-phases", "--repeats", "1", "--warmup", "1", "--data-dir", data_root,
         "--dataset", "fashion-mnist", "--out", str(tmp_path / "bench")),
    ]
    monkeypatch.setattr("backprop.benchmark.settle", lambda seconds: None)  # bench's pauses between libraries
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


def test_missing_dirs_lists_the_missing_ancestors_innermost_first(tmp_path):
    from backprop.fileio import missing_dirs

    assert missing_dirs(str(tmp_path)) == []
    deep = tmp_path / "a" / "b" / "c"
    assert missing_dirs(str(deep)) == [str(deep), str(tmp_path / "a" / "b"), str(tmp_path / "a")]
    (tmp_path / "f").write_text("x")  # a file counts as existing: the walk stops there
    assert missing_dirs(str(tmp_path / "f" / "g")) == [str(tmp_path / "f" / "g")]

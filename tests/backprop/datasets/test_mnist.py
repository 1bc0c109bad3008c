"""MNIST-format data through torchvision (backprop/datasets/mnist.py): IDX and legacy files read and
normalised, the offline message, data directories understood or refused, and a lookup that downloads
nothing creates nothing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from backprop.cli import main
from backprop.datasets import DataError, load_dataset
from tests.datasets import raw_file, small_raw_dataset, synthetic_images, write_dataset, write_legacy_dataset
from tests.helpers import run_cli, write_checkpoint


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


@pytest.mark.parametrize("inside", ["FashionMNIST", "FashionMNIST/raw"])
def test_a_data_dir_naming_the_dataset_folder_or_its_raw_folder_is_understood(inside, tmp_path):
    write_dataset(str(tmp_path / "data"), n_train=40, n_test=8)
    dataset = load_dataset("fashion-mnist", str(tmp_path / "data" / inside))
    assert len(dataset.train_y) == 40 and len(dataset.test_y) == 8


def test_idx_files_are_read_through_torchvision_and_normalised_like_the_notebook(tmp_path):
    root = str(tmp_path)
    write_dataset(root, "mnist", n_train=40, n_test=10, seed=3)
    ds = load_dataset("mnist", root)
    images, labels = synthetic_images(40, 3)
    # The notebook: ToTensor (x / 255, float32) then Normalize(0.5, 0.5), flattened to 784.
    expected = ((torch.from_numpy(images).float() / 255 - 0.5) / 0.5).reshape(40, 784).numpy()
    assert ds.train_x.dtype == np.float32 and ds.train_x.shape == (40, 784)
    assert np.array_equal(ds.train_x, expected)
    assert np.array_equal(ds.train_y, labels.astype(np.int64))
    assert ds.test_x.shape == (10, 784) and ds.train_x.min() >= -1 and ds.train_x.max() <= 1


def test_float64_datasets_are_the_float32_values_widened(tmp_path):
    write_dataset(str(tmp_path), "fashion-mnist", n_train=20, n_test=5)
    a = load_dataset("fashion-mnist", str(tmp_path))
    b = load_dataset("fashion-mnist", str(tmp_path), dtype="float64")
    assert b.train_x.dtype == np.float64 and np.array_equal(b.train_x, a.train_x.astype(np.float64))


def test_no_files_and_no_network_ends_in_one_clear_message_naming_both_layouts(tmp_path, monkeypatch):
    import torchvision

    # No network: point torchvision's mirrors at a closed local port, so the download fails at once.
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataError) as info:
        load_dataset("mnist", str(tmp_path / "empty"))
    message = str(info.value)
    assert "download failed" in message
    assert os.path.join("MNIST", "raw", "train-images-idx3-ubyte") in message
    assert "t10k-labels-idx1-ubyte" in message and "--data-dir" in message
    assert os.path.join("MNIST", "processed", "training.pt") in message and "test.pt" in message


def test_files_present_need_no_network(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    write_dataset(str(tmp_path), "fashion-mnist", n_train=8, n_test=4)
    assert len(load_dataset("fashion-mnist", str(tmp_path)).train_y) == 8


# -- the legacy layout torchvision < 0.9 wrote (MNIST/processed/training.pt, test.pt) -----------
def test_a_legacy_processed_folder_alone_is_read_like_the_idx_files(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # no download
    legacy, idx = tmp_path / "legacy", tmp_path / "idx"
    write_legacy_dataset(str(legacy), "mnist", n_train=40, n_test=10, seed=3)
    write_dataset(str(idx), "mnist", n_train=40, n_test=10, seed=3)
    assert not (legacy / "MNIST" / "raw").exists()
    a, b = load_dataset("mnist", str(legacy)), load_dataset("mnist", str(idx))
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.train_y.dtype == np.int64 and a.train_x.dtype == np.float32


def test_a_legacy_file_with_labels_above_nine_is_named(tmp_path):
    folder = write_legacy_dataset(str(tmp_path), "fashion-mnist", n_train=12, n_test=4)
    images, labels = torch.load(os.path.join(folder, "test.pt"), weights_only=True)
    labels[2] = 11
    torch.save((images, labels), os.path.join(folder, "test.pt"))
    with pytest.raises(DataError, match=r"processed/test.pt: label 11 at position 2; labels must be 0-9"):
        load_dataset("fashion-mnist", str(tmp_path))


def test_legacy_images_of_the_wrong_size_or_count_are_named(tmp_path):
    folder = write_legacy_dataset(str(tmp_path), "mnist", n_train=12, n_test=4)
    path = os.path.join(folder, "training.pt")
    torch.save((torch.zeros(12, 14, 14, dtype=torch.uint8), torch.zeros(12, dtype=torch.int64)), path)
    with pytest.raises(DataError, match=r"training.pt: images of 14x14 pixels, expected 28x28"):
        load_dataset("mnist", str(tmp_path))
    torch.save((torch.zeros(12, 28, 28, dtype=torch.uint8), torch.zeros(11, dtype=torch.int64)), path)
    with pytest.raises(DataError, match=r"training.pt: holds 12 images but 11 labels"):
        load_dataset("mnist", str(tmp_path))


def test_a_legacy_file_that_is_not_a_tensor_pair_is_named(tmp_path):
    folder = write_legacy_dataset(str(tmp_path), "mnist", n_train=12, n_test=4)
    path = os.path.join(folder, "training.pt")
    with open(path, "wb") as f:
        f.write(b"not a torch file")
    with pytest.raises(DataError, match=r"training.pt: not a readable legacy torchvision file"):
        load_dataset("mnist", str(tmp_path))
    torch.save({"images": torch.zeros(3)}, path)
    with pytest.raises(DataError, match=r"training.pt: not a readable legacy torchvision file"):
        load_dataset("mnist", str(tmp_path))


def test_half_a_legacy_folder_says_what_is_missing(tmp_path):
    folder = write_legacy_dataset(str(tmp_path), "mnist", n_train=12, n_test=4)
    os.remove(os.path.join(folder, "test.pt"))
    with pytest.raises(DataError, match=r"has training.pt but not test.pt; the legacy layout needs both"):
        load_dataset("mnist", str(tmp_path))


def test_a_directory_with_only_some_of_the_files_says_which_are_missing(tmp_path):
    folder = small_raw_dataset(str(tmp_path))
    os.remove(raw_file(folder, "test_images"))
    with pytest.raises(DataError, match=r"but not t10k-images-idx3-ubyte"):
        load_dataset("fashion-mnist", str(tmp_path))


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


def test_no_data_for_a_command_that_reads_one_split_names_only_that_splits_files(tmp_path, monkeypatch):
    """evaluate reads the test split only: the message lists the two t10k files, not all four."""
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataError) as info:
        load_dataset("mnist", str(tmp_path / "empty"), splits=("test",))
    message = str(info.value)
    assert "these two uncompressed IDX files (the test split's" in message, message
    assert "t10k-images-idx3-ubyte" in message and "train-images-idx3-ubyte" not in message

"""Data: IDX files and the legacy layout through torchvision, normalisation, batch order, the
offline message."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from backprop.datasets import BatchFeeder, DataError, epoch_order, load_dataset
from backprop.engines import load_engine

from .datasets import synthetic_images, write_dataset, write_legacy_dataset


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


# -- batches ------------------------------------------------------------------------------------
def test_epoch_order_is_a_seeded_permutation_that_changes_each_epoch():
    a, b = epoch_order(7, 0, 100), epoch_order(7, 1, 100)
    assert sorted(a) == list(range(100)) and not np.array_equal(a, b)
    assert np.array_equal(a, epoch_order(7, 0, 100))


def test_every_engine_sees_the_same_batches_and_torch_shares_the_memory():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((70, 784)).astype(np.float32)
    y = rng.integers(0, 10, 70)
    numpy_feeder = load_engine("numpy").feeder(x, y, 32, seed=5)
    torch_feeder = load_engine("torch").feeder(x, y, 32, seed=5)
    seen = []
    for epoch in range(2):
        numpy_feeder.start_epoch(epoch)
        torch_feeder.start_epoch(epoch)
        for step in range(numpy_feeder.steps_per_epoch):
            xa, ya = numpy_feeder.batch(step)
            xb, yb = torch_feeder.batch(step)
            assert isinstance(xa, np.ndarray) and isinstance(xb, torch.Tensor)
            assert np.array_equal(xa, xb.numpy()) and np.array_equal(ya, yb.numpy())
            idx = epoch_order(5, epoch, 70)[step * 32 : (step + 1) * 32]
            assert np.array_equal(xa, x[idx]) and np.array_equal(ya, y[idx])
            seen.extend(idx.tolist())
    # Each epoch covers every sample once, the last batch being the short remainder (70 = 32+32+6).
    assert sorted(seen) == sorted(list(range(70)) * 2)
    # No copy per batch: torch_net.asarray shares the feeder's one preallocated buffer, so every
    # batch is the same tensor memory, which is that buffer's.
    torch_feeder.start_epoch(0)
    first = torch_feeder.batch(0)[0]
    assert first.data_ptr() == torch_feeder.batch(1)[0].data_ptr()
    assert np.shares_memory(first.numpy(), torch_feeder._x_buf)


def test_an_engine_whose_conversion_copies_gets_each_batch_converted_afresh():
    x = np.arange(12 * 784, dtype=np.float32).reshape(12, 784)
    y = np.arange(12) % 10
    copying = BatchFeeder(x, y, 4, seed=0, convert=np.array, convert_labels=np.array, per_batch=True)
    copying.start_epoch(0)
    for step in range(3):
        xb, yb = copying.batch(step)
        idx = epoch_order(0, 0, 12)[step * 4 : (step + 1) * 4]
        assert np.array_equal(xb, x[idx]) and np.array_equal(yb, y[idx])


def test_asking_for_a_batch_before_an_epoch_is_a_clear_error():
    feeder = BatchFeeder(np.zeros((4, 3), np.float32), np.zeros(4, np.int64), 2, seed=0)
    with pytest.raises(RuntimeError, match="start_epoch"):
        feeder.batch(0)

"""Data: IDX files through torchvision, normalisation, batch order, the offline message."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from data import BatchFeeder, DataError, epoch_order, load_dataset

from .datasets import synthetic_images, write_dataset


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


def test_no_files_and_no_network_ends_in_one_clear_message(tmp_path, monkeypatch):
    import torchvision

    # No network: point torchvision's mirrors at a closed local port, so the download fails at once.
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataError) as info:
        load_dataset("mnist", str(tmp_path / "empty"))
    message = str(info.value)
    assert "download failed" in message
    assert os.path.join("MNIST", "raw", "train-images-idx3-ubyte") in message
    assert "t10k-labels-idx1-ubyte" in message and "--data-dir" in message


def test_files_present_need_no_network(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    write_dataset(str(tmp_path), "fashion-mnist", n_train=8, n_test=4)
    assert len(load_dataset("fashion-mnist", str(tmp_path)).train_y) == 8


def test_epoch_order_is_a_seeded_permutation_that_changes_each_epoch():
    a, b = epoch_order(7, 0, 100), epoch_order(7, 1, 100)
    assert sorted(a) == list(range(100)) and not np.array_equal(a, b)
    assert np.array_equal(a, epoch_order(7, 0, 100))


def test_every_engine_sees_the_same_batches_and_torch_shares_the_memory():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((70, 784)).astype(np.float32)
    y = rng.integers(0, 10, 70)
    numpy_feeder = BatchFeeder(x, y, 32, seed=5)
    torch_feeder = BatchFeeder(x, y, 32, seed=5, convert=torch.from_numpy, convert_labels=torch.from_numpy)
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
    # No copy per batch: the torch batch is a view of the feeder's one preallocated buffer.
    torch_feeder.start_epoch(0)
    first = torch_feeder.batch(0)[0]
    assert first.data_ptr() == torch_feeder.batch(1)[0].data_ptr()

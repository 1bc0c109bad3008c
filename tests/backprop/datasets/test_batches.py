"""Batches (backprop/datasets/batches.py): a seeded permutation per epoch, the same batches for every
engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backprop.datasets import BatchFeeder, epoch_order
from backprop.engines import load_engine


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

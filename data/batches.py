"""Batches by indexing a seeded permutation: the same order for every engine."""

from __future__ import annotations

import numpy as np


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of one epoch: a permutation drawn from default_rng([seed, epoch]).

    Deriving each epoch's generator from (seed, epoch) makes any epoch's order reproducible
    on its own, which is what lets a checkpoint resume mid-epoch on the exact batches.
    """
    return np.random.default_rng([seed, epoch]).permutation(n)


class BatchFeeder:
    """Gathers batch rows into one preallocated array per split; engines receive views of it.

    ``convert`` turns a NumPy array into the engine's array type once (for torch,
    torch.from_numpy shares the memory), so feeding a batch allocates and converts nothing.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                 convert=None, convert_labels=None, to_device=None) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.seed = seed
        self.n = len(x)
        self._x_buf = np.empty((batch_size, x.shape[1]), x.dtype)
        self._y_buf = np.empty(batch_size, np.int64)
        convert = convert or (lambda a: a)
        convert_labels = convert_labels or (lambda a: a)
        self._x_engine = convert(self._x_buf)
        self._y_engine = convert_labels(self._y_buf)
        # Views for a short last batch, made once.
        last = self.n % batch_size
        self._last = (self._x_engine[:last], self._y_engine[:last]) if last else None
        self._to_device = to_device  # for a GPU: one host-to-device copy per batch
        self._order: np.ndarray | None = None
        self._epoch: int | None = None

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)

    def start_epoch(self, epoch: int) -> None:
        if self._epoch != epoch:
            self._order = epoch_order(self.seed, epoch, self.n)
            self._epoch = epoch

    def indices(self, step: int) -> np.ndarray:
        return self._order[step * self.batch_size : (step + 1) * self.batch_size]

    def batch(self, step: int):
        """(x, y) of batch ``step`` of the current epoch, in the engine's types."""
        idx = self.indices(step)
        k = len(idx)
        # mode="clip" skips per-index bounds checks and the extra copy that mode="raise" makes
        # with out= (numpy.take's documented note); a permutation's indices are always valid.
        np.take(self.x, idx, axis=0, out=self._x_buf[:k], mode="clip")
        np.take(self.y, idx, out=self._y_buf[:k], mode="clip")
        xb, yb = (self._x_engine, self._y_engine) if k == self.batch_size else self._last
        if self._to_device is not None:
            return self._to_device(xb), self._to_device(yb)
        return xb, yb

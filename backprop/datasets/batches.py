"""Batches by indexing a seeded permutation: the same order for every engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of one epoch: a permutation of range(n) drawn from default_rng([seed, epoch]).

    Deriving each epoch's generator from (seed, epoch) makes any epoch's order reproducible
    on its own, which is what lets a checkpoint resume mid-epoch on the exact batches.
    """
    return np.random.default_rng([seed, epoch]).permutation(n)


def _identity(array: np.ndarray) -> Any:
    return array


class BatchFeeder:
    """Gathers batch rows into one preallocated buffer; engines receive arrays backed by it.

    x: (N, F) floats, or (N, C, H, W) images (any (N, ...): a batch has x's sample shape),
    y: (N,) integer labels. ``convert`` / ``convert_labels`` turn a NumPy
    array into the engine's array type. With ``per_batch=False`` (the default) they are called
    once, on the whole buffers, and must return arrays that share the buffers' memory (NumPy
    itself; a CPU tensor made by torch.from_numpy): feeding a batch then copies the rows once and
    converts nothing. With ``per_batch=True`` they are called on every batch's rows instead (a
    copy, e.g. to a GPU).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                 convert: Callable[[np.ndarray], Any] | None = None,
                 convert_labels: Callable[[np.ndarray], Any] | None = None,
                 per_batch: bool = False) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.seed = seed
        self.n = len(x)
        self._x_buf = np.empty((batch_size, *x.shape[1:]), x.dtype)
        self._y_buf = np.empty(batch_size, np.int64)
        self._convert = convert or _identity
        self._convert_labels = convert_labels or _identity
        self._per_batch = per_batch
        if not per_batch:
            self._x_engine = self._convert(self._x_buf)
            self._y_engine = self._convert_labels(self._y_buf)
            # Views for a short last batch, made once.
            last = self.n % batch_size
            self._last = (self._x_engine[:last], self._y_engine[:last]) if last else None
        self._order: np.ndarray | None = None
        self._epoch: int | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch, the last one short when batch_size does not divide N."""
        return -(-self.n // self.batch_size)

    def start_epoch(self, epoch: int) -> None:
        """Draw (or keep) the sample order of ``epoch`` (0-based)."""
        if self._epoch != epoch:
            self._order = epoch_order(self.seed, epoch, self.n)
            self._epoch = epoch

    def indices(self, step: int) -> np.ndarray:
        """The sample indices of batch ``step`` of the current epoch; RuntimeError before start_epoch."""
        if self._order is None:
            raise RuntimeError("BatchFeeder: call start_epoch(epoch) before asking for batches")
        return self._order[step * self.batch_size : (step + 1) * self.batch_size]

    def batch(self, step: int) -> tuple[Any, Any]:
        """(x, y) of batch ``step`` of the current epoch, in the engine's types.

        The arrays are valid until the next call: the next batch overwrites the same buffer.
        """
        idx = self.indices(step)
        k = len(idx)
        # mode="clip" skips per-index bounds checks and the extra copy that mode="raise" makes
        # with out= (numpy.take's documented note); a permutation's indices are always valid.
        np.take(self.x, idx, axis=0, out=self._x_buf[:k], mode="clip")
        np.take(self.y, idx, out=self._y_buf[:k], mode="clip")
        if self._per_batch:
            return self._convert(self._x_buf[:k]), self._convert_labels(self._y_buf[:k])
        if k == self.batch_size:
            return self._x_engine, self._y_engine
        assert self._last is not None  # k < batch_size happens only for the short last batch
        return self._last

"""Softmax cross-entropy, fused: the loss and the delta that starts backprop."""

from __future__ import annotations

import math

import numpy as np

from .checks import check_labels, check_logits, raise_non_finite_logits


class SoftmaxCrossEntropy:
    """L = mean_b [logsumexp(z_b) - z_b[y_b]]; dL/dz = (softmax(z) - onehot(y)) / B, z (B, C).

    log-sum-exp is taken after subtracting each row's maximum, so no exp overflows and
    log(softmax) is never formed: saturated logits give a finite loss and gradient.
    """

    def __init__(self) -> None:
        self.probs: np.ndarray | None = None  # softmax(z) of the last forward, (B, C)
        self.y: np.ndarray | None = None

    def forward(self, logits: np.ndarray, y: np.ndarray) -> float:
        """The mean loss (a Python float) for logits (B, C) float32/float64 and labels y (B,)
        of any integer dtype and byte order, values in [0, C).

        Raises TypeError/ValueError for bad arrays and NonFiniteError for NaN/Inf logits.
        """
        logits = check_logits(logits)
        batch, classes = logits.shape
        y = check_labels(y, batch, classes)
        if self.probs is None or self.probs.shape != logits.shape or self.probs.dtype != logits.dtype:
            self.probs = np.empty_like(logits)
            self._delta = np.empty_like(logits)
            self._rows = np.arange(batch)
            self._ones = np.ones(classes, logits.dtype)
        shifted = self.probs
        rows = self._rows
        # The row maxima, read at the argmax: NumPy's argmax over short rows is ~4x faster than
        # its max (a NaN anywhere in a row is that row's argmax, so NaN still propagates).
        top = logits[rows, logits.argmax(axis=1)]
        # Logits beyond the dtype's range after the shift overflow here; the loss then comes out
        # non-finite and raise_non_finite_logits says so: NumPy's own warning would come first.
        with np.errstate(over="ignore", invalid="ignore"):
            np.subtract(logits, top[:, None], out=shifted)
            picked = shifted[rows, y]  # z_y - max, before shifted becomes exp(shifted)
            np.exp(shifted, out=shifted)
            total = np.matmul(shifted, self._ones)[:, None]  # row sums as one BLAS gemv
            loss = float(np.log(total).sum() - picked.sum()) / batch
            shifted /= total  # now softmax(z)
        self.y = y
        if not math.isfinite(loss):
            raise_non_finite_logits(logits)
        return loss

    def backward(self) -> np.ndarray:
        """dL/dlogits (B, C); reused buffer, valid until the next backward."""
        if self.probs is None or self.y is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward() called before forward()")
        delta = self._delta
        batch = delta.shape[0]
        np.copyto(delta, self.probs)
        delta[self._rows, self.y] -= 1
        delta /= batch  # the mean's 1/B, divided as torch's mean backward does
        return delta

    def softmax(self) -> np.ndarray:
        """softmax(z) of the last forward, (B, C)."""
        if self.probs is None:
            raise RuntimeError("SoftmaxCrossEntropy.softmax() called before forward()")
        return self.probs

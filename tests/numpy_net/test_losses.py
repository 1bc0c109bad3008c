"""Softmax cross-entropy (numpy_net/losses.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import numpy_net


def test_extreme_finite_logits_raise_without_a_numpy_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FloatingPointError, match="loss: overflowed"):
            numpy_net.SoftmaxCrossEntropy().forward(np.array([[-3e38, 3e38]], np.float32), np.array([0]))

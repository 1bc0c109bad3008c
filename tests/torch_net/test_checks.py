"""The torch engine's tensor checks and conversions (torch_net/checks.py)."""

from __future__ import annotations

import warnings

import numpy as np

import torch_net


def test_torch_net_never_aliases_a_read_only_array():
    array = np.arange(6.0).reshape(2, 3)
    array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = torch_net.asarray(array, "float64")
    tensor += 1
    assert array[0, 0] == 0.0

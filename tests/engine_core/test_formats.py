"""The state formats every engine reads and writes (engine_core/formats.py): arrays in another byte
order load everywhere."""

from __future__ import annotations

import numpy as np
import pytest

import numpy_net
from tests.layer_stacks import EVERY_ENGINE, EVERY_ID


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_big_endian_state_dicts_and_conversions_load_everywhere(subject):
    state = numpy_net.MLP([5, 4, 3], seed=4, dtype="float64").state_dict()
    swapped = {k: v.astype(">f8") for k, v in state.items()}
    net = subject.MLP([5, 4, 3], seed=0, dtype="float64")
    net.load_state_dict(swapped)
    for key, value in net.state_dict().items():
        assert np.array_equal(value, state[key]), key
    x = subject.asarray(np.arange(10.0).reshape(2, 5).astype(">f8"), "float64")
    assert np.array_equal(subject.to_numpy(x), np.arange(10.0).reshape(2, 5))
    assert subject.to_numpy(subject.labels(np.array([2, 0], ">i4"))).tolist() == [2, 0]

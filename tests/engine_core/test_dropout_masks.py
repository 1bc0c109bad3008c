"""Dropout's random source (engine_core/dropout_masks.py): the same masks from the same seed in every
engine, resumable from a saved generator state."""

from __future__ import annotations

import json

import numpy as np
import pytest

import numpy_net
from engine_core.specs import LayerSpec
from parity_tests.engines import Engine
from tests.layer_stacks import EVERY_ENGINE, EVERY_ID, one_layer, outcome


# -- dropout ----------------------------------------------------------------------------------------
def _dropout(engine: Engine, p: float, seed: int = 0):
    return one_layer(engine, LayerSpec("dropout", {"p": p, "seed": seed}))


def _masks(engine: Engine, net, shape: tuple[int, ...], count: int, dtype: str = "float64") -> list[np.ndarray]:
    ones = engine.asarray(np.ones(shape), dtype)
    return [engine.to_numpy(net.forward(ones)).copy() for _ in range(count)]


def test_every_engine_draws_the_same_dropout_masks_from_the_same_seed():
    masks = [_masks(e, _dropout(e, 0.3, seed=11), (4, 5), 3) for e in EVERY_ENGINE]
    for other in masks[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(masks[0], other))
    first = masks[0][0]
    assert set(np.unique(first)) <= {0.0, 1 / 0.7} and not np.array_equal(masks[0][0], masks[0][1])
    expected = (np.random.default_rng(11).random((4, 5)) >= 0.3) / 0.7  # the documented draw
    assert np.array_equal(first, expected)


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_a_saved_generator_state_resumes_the_exact_masks_in_any_engine(subject):
    net = _dropout(Engine(numpy_net), 0.5, seed=5)
    _masks(Engine(numpy_net), net, (3, 4), 2)
    saved = json.loads(json.dumps(net.layers[0].rng_state()))  # JSON round trip, as a checkpoint would store it
    following = _masks(Engine(numpy_net), net, (3, 4), 2)
    other = _dropout(subject, 0.5, seed=123)  # another seed: the state decides
    resumed = other.layers[0]
    resumed.set_rng_state(saved)
    assert all(np.array_equal(a, b) for a, b in zip(following, _masks(subject, other, (3, 4), 2)))
    state = resumed.rng_state()
    for bad in ({"bit_generator": "MT19937", "state": {}}, {"bit_generator": "PCG64"}, "PCG64", None):
        kind, message = outcome(lambda bad=bad: resumed.set_rng_state(bad))
        assert kind == "ValueError" and "rng state" in message and "Dropout" in message, message
    assert resumed.rng_state() == state  # a refused state changes nothing

"""Property 6: state dicts move between engines bit for bit, and the same seed gives the same
initial parameters everywhere."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import numpy_net
import torch_net

from .engines import Engine, oracle
from .strategies import net_specs

ENGINES = [Engine(numpy_net), Engine(torch_net), oracle()]


def _assert_bitwise_equal(a: dict, b: dict, what: str) -> None:
    assert list(a) == list(b), f"{what}: keys {list(a)} vs {list(b)}"
    for key in a:
        assert a[key].dtype == b[key].dtype, f"{what}: {key} dtype {a[key].dtype} vs {b[key].dtype}"
        assert a[key].shape == b[key].shape, f"{what}: {key} shape {a[key].shape} vs {b[key].shape}"
        assert np.array_equal(a[key].view(np.uint8), b[key].view(np.uint8)), f"{what}: {key} bits differ"


@given(net_specs())
def test_same_seed_gives_bit_identical_initial_parameters_in_every_engine(spec):
    states = [spec.build(e).state_dict() for e in ENGINES]
    for engine, state in zip(ENGINES[1:], states[1:]):
        _assert_bitwise_equal(states[0], state, f"numpy_net vs {engine.name}")


@given(net_specs(), net_specs())
def test_state_dict_round_trips_between_engines_are_exact(source_spec, target_seed_spec):
    """numpy -> torch -> autograd -> numpy leaves every bit in place."""
    spec = source_spec
    other_seed = type(spec)(spec.sizes, spec.activation, target_seed_spec.init,
                            target_seed_spec.seed, spec.dtype)
    original = spec.build(ENGINES[0]).state_dict()
    state = original
    for engine in [*ENGINES[1:], ENGINES[0]]:
        net = other_seed.build(engine)
        net.load_state_dict(state)
        state = net.state_dict()
        _assert_bitwise_equal(original, state, f"after loading into {engine.name}")


def test_state_dict_layout_is_in_by_out(engine):
    net = engine.MLP([5, 3, 2], seed=0)
    state = net.state_dict()
    assert list(state) == ["fc0.weight", "fc0.bias", "fc1.weight", "fc1.bias"]
    assert state["fc0.weight"].shape == (5, 3) and state["fc1.bias"].shape == (2,)
    assert all(isinstance(v, np.ndarray) for v in state.values())


@pytest.mark.parametrize("mutate, word", [
    (lambda s: s.pop("fc1.bias"), "fc1.bias"),
    (lambda s: s.update({"fc9.weight": np.zeros(1)}), "fc9.weight"),
    (lambda s: s.update({"fc0.weight": np.zeros((3, 5))}), "fc0.weight"),
    (lambda s: s.update({"fc0.bias": np.zeros(3, np.int64)}), "fc0.bias"),
    (lambda s: s.update({"fc1.weight": np.full((3, 2), np.nan)}), "fc1.weight"),
])
def test_a_bad_state_dict_is_refused_naming_the_key_and_changes_nothing(engine, mutate, word):
    net = engine.MLP([5, 3, 2], seed=0)
    before = net.state_dict()
    bad = engine.MLP([5, 3, 2], seed=1).state_dict()
    mutate(bad)
    with pytest.raises((ValueError, TypeError), match=word.replace(".", r"\.")):
        net.load_state_dict(bad)
    _assert_bitwise_equal(before, net.state_dict(), "after a refused load")

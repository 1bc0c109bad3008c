"""Property 6: state dicts move between engines bit for bit, and the same seed gives the same
initial parameters everywhere."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from .engines import oracle
from .strategies import net_specs

ORACLE = oracle()


def _assert_bitwise_equal(a: dict, b: dict, what: str) -> None:
    assert list(a) == list(b), f"{what}: keys {list(a)} vs {list(b)}"
    for key in a:
        assert a[key].dtype == b[key].dtype, f"{what}: {key} dtype {a[key].dtype} vs {b[key].dtype}"
        assert a[key].shape == b[key].shape, f"{what}: {key} shape {a[key].shape} vs {b[key].shape}"
        assert np.array_equal(a[key].view(np.uint8), b[key].view(np.uint8)), f"{what}: {key} bits differ"


@given(net_specs())
def test_same_seed_gives_the_oracles_initial_parameters_bit_for_bit(engine, spec):
    _assert_bitwise_equal(spec.build(ORACLE).state_dict(), spec.build(engine).state_dict(),
                          f"{ORACLE.name} vs {engine.name}")


@given(net_specs(), net_specs())
def test_state_dict_round_trips_through_the_oracle_are_exact(engine, source_spec, target_seed_spec):
    """engine -> autograd -> engine leaves every bit in place."""
    spec = source_spec
    other_seed = type(spec)(spec.sizes, spec.activation, target_seed_spec.init,
                            target_seed_spec.seed, spec.dtype)
    original = spec.build(engine).state_dict()
    state = original
    for target in (ORACLE, engine):
        net = other_seed.build(target)
        net.load_state_dict(state)
        state = net.state_dict()
        _assert_bitwise_equal(original, state, f"after loading into {target.name}")


def test_state_dict_layout_is_in_by_out(engine):
    net = engine.MLP([5, 3, 2], seed=0)
    state = net.state_dict()
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert state["0.weight"].shape == (5, 3) and state["2.bias"].shape == (2,)
    assert all(isinstance(v, np.ndarray) for v in state.values())


@pytest.mark.parametrize("fault, mutate, word", [
    ("the key 2.bias missing", lambda s: s.pop("2.bias"), "2.bias"),
    ("an unexpected key 9.weight", lambda s: s.update({"9.weight": np.zeros(1)}), "9.weight"),
    ("0.weight of shape (3, 5) where (5, 3) is expected", lambda s: s.update({"0.weight": np.zeros((3, 5))}),
     "0.weight"),
    ("0.bias of integers", lambda s: s.update({"0.bias": np.zeros(3, np.int64)}), "0.bias"),
    ("2.weight holding NaN", lambda s: s.update({"2.weight": np.full((3, 2), np.nan)}), "2.weight"),
], ids=["missing", "unexpected", "shape", "dtype", "nan"])
def test_a_bad_state_dict_is_refused_naming_the_key_and_changes_nothing(engine, fault, mutate, word):
    """The protocol: load_state_dict refuses a state dict that does not fit, with a ValueError or
    TypeError whose message names the key, and leaves the network as it was."""
    net = engine.MLP([5, 3, 2], seed=0)
    before = net.state_dict()
    bad = engine.MLP([5, 3, 2], seed=1).state_dict()
    mutate(bad)
    what = f"{engine.name}: MLP([5, 3, 2]).load_state_dict of a state dict with {fault}"
    try:
        net.load_state_dict(bad)
    except (ValueError, TypeError) as error:
        assert word in str(error), f"{what}: refused, but the message does not name {word}: {error}"
    except Exception as error:
        pytest.fail(f"{what} raised {type(error).__name__}: {error}; the protocol asks for a ValueError or "
                    f"TypeError naming {word}")
    else:
        pytest.fail(f"{what} was accepted; the protocol asks for a ValueError or TypeError naming {word}")
    _assert_bitwise_equal(before, net.state_dict(), "after a refused load")

"""Global-norm gradient clipping: every engine's clip_grad_norm_(net, max_norm) leaves the same
gradients, and returns the same total norm, as torch.nn.utils.clip_grad_norm_ given the same
gradients, below the threshold (gradients untouched), above it (scaled down) and at its edges
(max_norm 0 zeroes every gradient, inf clips nothing, all-zero gradients stay zero).

Tolerances: float64 rtol 1e-10 (the issue's bound). float32: u = 2**-24; a sum of N
non-negative rounded products errs by at most N u of itself in any summation order (first order),
so a gradient's norm errs by (N/2 + 1) u, the norm of k norms by (N/2 + k/2 + 2) u, in each of
the two implementations compared; the factor max_norm / (n + 1e-6) adds 3 u each and the product
with the gradient u each: |got - want| <= (N + k + 12) u of the value, N the largest gradient's
size. A wrong rule (no 1e-6, no clamp at 1, norms added instead of squared, a gradient left out of
the norm or the scaling) errs far beyond that in float64, and most of them in float32 too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from .compare import check_close, max_abs
from .engines import oracle
from .strategies import net_specs
from .test_trees import MAX_EXAMPLES, _require, tree_problems

ORACLE = oracle()
UNIT = float(np.finfo(np.float32).eps) / 2  # 2**-24, float32's unit roundoff
# max_norm as a multiple of the gradients' total norm: far below, near and far above it, and the ends.
FACTORS = (0.0, 1e-3, 0.25, 0.9, 1.1, 4.0, 1e3, math.inf)


def _set_gradients(engine, net, grads: dict[str, np.ndarray]) -> None:
    """The same gradients (engine layout, by state key) into any engine's arrays: the oracle's
    parameters' .grad (torch's layout), another engine's grads() arrays."""
    import torch

    if engine.name == ORACLE.name:
        for name, param in net.named_parameters().items():
            param.grad = net.to_engine_layout(name, torch.from_numpy(grads[name])).contiguous().to(param.dtype)
        return
    for name, target in net.grads().items():
        if isinstance(target, np.ndarray):
            target[...] = grads[name]
        else:
            target.copy_(torch.from_numpy(np.ascontiguousarray(grads[name])))


def _random_gradients(shapes: dict[str, tuple[int, ...]], dtype: str, seed: int) -> dict[str, np.ndarray]:
    """Normal values at a random scale per array (1e-4 to 1e2), some arrays all zero."""
    rng = np.random.default_rng(seed)
    grads = {}
    for name, shape in shapes.items():
        scale = 0.0 if rng.random() < 0.1 else 10.0 ** rng.uniform(-4, 2)
        grads[name] = (rng.standard_normal(shape) * scale).astype(dtype)
    return grads


def _clip_in_both(engine, build, dtype: str, seed: int, factor: float) -> None:
    """Build the network in the engine and the oracle, write the same random gradients into
    both, clip with max_norm = factor x their total norm, and compare norm and gradients."""
    nets = {e.name: build(e) for e in (engine, ORACLE)}
    shapes = {k: tuple(v.shape) for k, v in nets[ORACLE.name].grads().items()}
    grads = _random_gradients(shapes, dtype, seed)
    exact = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))
    max_norm = factor if exact == 0 or factor in (0.0, math.inf) else factor * exact
    note(f"engine={engine.name} shapes={shapes} dtype={dtype} seed={seed} max_norm={max_norm!r} norm={exact!r}")
    totals, clipped = {}, {}
    for e in (engine, ORACLE):
        _set_gradients(e, nets[e.name], grads)
        totals[e.name] = e.clip_grad_norm_(nets[e.name], max_norm)
        clipped[e.name] = {k: e.to_numpy(v) for k, v in nets[e.name].grads().items()}
    assert isinstance(totals[engine.name], float), type(totals[engine.name])
    size = max([int(np.prod(s)) for s in shapes.values()] + [1])
    rtol = 1e-10 if dtype == "float64" else (size + len(shapes) + 12) * UNIT
    want = totals[ORACLE.name]
    check_close(f"{engine.name}: clip_grad_norm_'s total norm", totals[engine.name], want, want, dtype, rtol=rtol)
    for key, value in clipped[ORACLE.name].items():
        check_close(f"{engine.name}: grads[{key!r}] after clip_grad_norm_(max_norm={max_norm!r})",
                    clipped[engine.name][key], value, max_abs([value]), dtype, rtol=rtol)
    if max_norm / (exact + 1e-6) >= 1 + 1e-3:  # below the threshold: multiplied by exactly 1
        for key, value in grads.items():
            np.testing.assert_array_equal(clipped[engine.name][key], value, err_msg=f"{key} changed below max_norm")


@given(net_specs(max_width=16), st.integers(0, 2**32 - 1), st.sampled_from(FACTORS))
def test_clip_grad_norm_leaves_the_gradients_and_norm_torch_leaves(engine, spec, seed, factor):
    """Random MLPs (both dtypes) and gradients: the total norm and every clipped gradient agree
    with torch.nn.utils.clip_grad_norm_ (see the module docstring for the tolerances)."""
    engine.require("clip_grad_norm_", why="optional in the engine protocol")
    _clip_in_both(engine, spec.build, spec.dtype, seed, factor)


@settings(max_examples=MAX_EXAMPLES)
@given(tree_problems(), st.integers(0, 2**32 - 1), st.sampled_from(FACTORS))
def test_clip_grad_norm_covers_every_parameter_of_a_nested_network(engine, problem, seed, factor):
    """Random trees (nested Sequentials; Conv2d, batch norm, Linear parameters), float64: every
    parameter's gradient is clipped by the one global norm, as torch clips them."""
    _require(engine)
    engine.require("clip_grad_norm_", why="optional in the engine protocol")
    spec, _ = problem
    _clip_in_both(engine, spec.build, spec.dtype, seed, factor)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_clip_grad_norm_of_non_finite_gradients_gives_what_torch_gives(engine, bad):
    """error_if_nonfinite=False: a NaN makes the norm and every gradient NaN; an Inf makes the
    norm Inf and the factor 0, so the Inf becomes NaN and the rest 0. The loss that follows
    shows it (the trainer stops there, as without clipping)."""
    engine.require("clip_grad_norm_", why="optional in the engine protocol")
    results = {}
    for e in (engine, ORACLE):
        net = e.MLP([3, 4, 2], seed=0, dtype="float64")
        grads = {k: np.full(tuple(v.shape), 0.5) for k, v in net.grads().items()}
        grads["0.weight"][1, 2] = bad
        _set_gradients(e, net, grads)
        with np.errstate(invalid="ignore"):
            total = e.clip_grad_norm_(net, 1.0)
        results[e.name] = total, {k: e.to_numpy(v) for k, v in net.grads().items()}
    (total, got), (want_total, want) = results[engine.name], results[ORACLE.name]
    np.testing.assert_equal(total, want_total)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_clip_grad_norm_of_a_network_without_parameters_is_zero(engine):
    """torch returns a zero norm for no gradients at all, and changes nothing."""
    engine.require("clip_grad_norm_", "Sequential", "Flatten", why="optional in the engine protocol")
    for e in (engine, ORACLE):
        assert e.clip_grad_norm_(e.Sequential(e.Flatten()), 1.0) == 0.0


@pytest.mark.parametrize("max_norm, error", [(-1.0, ValueError), (math.nan, ValueError), (-math.inf, ValueError),
                                             ("1", TypeError), (True, TypeError), (None, TypeError)])
def test_clip_grad_norm_refuses_a_max_norm_that_is_no_number_at_least_0(engine, max_norm, error):
    """torch takes any float (a negative one reverses every gradient, NaN makes them NaN); every
    engine, the oracle included, refuses those with one message naming max_norm, gradients untouched."""
    engine.require("clip_grad_norm_", why="optional in the engine protocol")
    messages = []
    for e in (engine, ORACLE):
        net = e.MLP([3, 2], seed=0)
        before = {k: e.to_numpy(v) for k, v in net.grads().items()}
        with pytest.raises(error, match=r"^max_norm: expected a number >= 0") as info:
            e.clip_grad_norm_(net, max_norm)
        messages.append(str(info.value))
        for key, value in net.grads().items():
            np.testing.assert_array_equal(e.to_numpy(value), before[key])
    assert messages[0] == messages[1]

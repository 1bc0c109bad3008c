"""The layer catalog (catalog.py) against the oracle, layer by layer: forward, dL/dx, every
parameter gradient and the running statistics, in both dtypes and in train and eval mode;
central finite differences in float64; and no layer modifies the caller's arrays.

A layer the engine under test does not provide is reported as skipped, with its name; so is an
argument of torch's that its layer class does not take (the cases that set it are left out of the
other tests, which still test the rest).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from engine_core import specs

from .catalog import CATALOG, LayerCase, build_case, layer_cases
from .compare import Mismatch, check_close, max_abs
from .engines import Engine, oracle

ORACLE = oracle()
KINDS = list(CATALOG)
# An engine whose layer lacks some of torch's arguments (an older Conv2d without dilation, groups
# and padding_mode) gets the cases that leave them at their defaults: the others are filtered out
# (_draw), which can be most of a kind's cases. That is the harness working as documented, not a
# slow strategy, so hypothesis's filter_too_much health check is off for these properties.
FILTERING = [HealthCheck.filter_too_much]


def _require(engine: Engine, case_kind: str) -> None:
    """Skip (with the class name) when the engine lacks the layer or a Sequential to hold it."""
    engine.require_layers(case_kind, why=f"layer {case_kind!r} is optional in the protocol")


def _draw(engine: Engine, data: st.DataObject, kind: str, dtype: str | None = None) -> LayerCase:
    """A case of ``kind`` the engine can build: cases that set an argument its layer class does not
    take are left out (test_every_argument_is_taken_with_torchs_default reports the argument)."""
    case = data.draw(layer_cases(CATALOG[kind], dtype))
    assume(not engine.unsupported(case.spec))
    return case


def _run(engine: Engine, case: LayerCase, x: np.ndarray | None = None) -> dict:
    """Forward x (case.x by default) and backward case.delta through a one-layer stack."""
    net = build_case(engine.module, case)
    xs = engine.asarray(case.x if x is None else x, case.dtype)
    out = net.forward(xs)
    result = {"out": engine.to_numpy(out).astype(np.float64)}
    dx = net.backward(engine.asarray(case.delta, case.dtype))
    result["dx"] = engine.to_numpy(dx).astype(np.float64)
    result["grads"] = {k: engine.to_numpy(v).astype(np.float64) for k, v in net.grads().items()}
    result["state"] = {k: np.asarray(v, np.float64) for k, v in net.state_dict().items()}
    return result


@pytest.mark.parametrize("kind", KINDS)
@settings(suppress_health_check=FILTERING)
@given(data=st.data())
def test_every_layer_matches_the_oracle_forward_backward_and_state(engine, kind, data):
    """Output, dL/dx, parameter gradients and buffers (running statistics) agree with torch
    autograd: normwise rtol 1e-10 in float64, the entry's argued rtol in float32."""
    _require(engine, kind)
    entry = CATALOG[kind]
    case = _draw(engine, data, kind)
    note(f"engine={engine.name} case={case!r}")
    got, want = _run(engine, case), _run(ORACLE, case)
    rtol = 1e-10 if case.dtype == "float64" else entry.rtol32
    # Differences below the dtype's smallest normal number are not errors: subnormals keep fewer
    # bits, and libraries flush them to 0 or not (a float32 delta of 1e-45 is all rounding).
    floor = float(np.finfo(case.dtype).tiny) / rtol
    scale_out = max(max_abs([want["out"], case.x]), floor)
    what = f"{engine.name}: {case.spec!r} ({'train' if case.training else 'eval'}, {case.dtype})"
    _close(f"{what}: output", got["out"], want["out"], scale_out, rtol, case.dtype)
    scale_back = max(max_abs([want["dx"], case.delta, *want["grads"].values()]), floor)
    assert sorted(got["grads"]) == sorted(want["grads"]), f"{what}: gradient keys"
    # Every backward quantity is checked before one fails, so that the report names each one that
    # differs (a dropped term through time shows in dL/dx and in the parameters it reaches).
    backward = [("dL/dx", "dx", None), *((f"grads[{key!r}]", "grads", key) for key in want["grads"])]
    failures = []
    for name, field, key in backward:
        g, w = (got[field], want[field]) if key is None else (got[field][key], want[field][key])
        try:
            _close(f"{what}: {name}", g, w, scale_back, rtol, case.dtype)
        except Mismatch as error:
            failures.append((name, str(error).removeprefix(f"{what}: ")))
    if failures:
        also = "".join(f"\n  also: {message}" for _, message in failures[1:])
        raise Mismatch(f"{what}: {failures[0][1]}{also}\n  differing: {', '.join(name for name, _ in failures)}")
    assert list(got["state"]) == list(want["state"]), f"{what}: state keys {list(got['state'])}"
    for key in want["state"]:
        _close(f"{what}: state[{key!r}]", got["state"][key], want["state"][key],
               max(max_abs([want["state"][key], case.x]), floor), rtol, case.dtype)


def _close(what: str, got: np.ndarray, want: np.ndarray, scale: float, rtol: float, dtype: str) -> None:
    """check_close of the float64 copies, its message naming the case's ``dtype`` (whose rtol it is)."""
    check_close(what, got, want, scale, dtype, rtol=rtol)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=max(2, settings().max_examples // 4), suppress_health_check=FILTERING)  # 11 in ci
@given(data=st.data())
def test_every_layer_matches_central_finite_differences(engine, kind, data):
    """float64, no torch: L = sum(output * delta); dL/dx and every parameter gradient agree with
    (L(v + h) - L(v - h)) / 2h at random coordinates within 1e-6 of max(1, |analytic|).

    Where the central difference misses, a coordinate where some output's two one-sided
    differences disagree (weighted by |delta|) by at least as much sits on a kink (ReLU at 0, a
    max-pool tie): no derivative exists there (smooth functions' one-sided differences differ by
    only h |f''|), so it is passed over. The outputs, not L, are what is tested: at a tie shared
    by two overlapping max-pool windows whose deltas cancel, L's one-sided differences agree.
    Where it misses elsewhere, Richardson's extrapolation from steps h and h/2 is tried before
    the coordinate fails (_richardson: steep curvature, not a wrong gradient)."""
    _require(engine, kind)
    case = _draw(engine, data, kind, "float64")
    note(f"engine={engine.name} case={case!r}")
    h = 1e-6
    net = build_case(engine.module, case)
    state = net.state_dict()

    def loss(x: np.ndarray, params: dict) -> tuple[float, np.ndarray]:
        # A fresh stack every time: the same running statistics and the same dropout mask.
        fresh = build_case(engine.module, case)
        fresh.load_state_dict(params)
        out = engine.to_numpy(fresh.forward(engine.asarray(x, "float64")))
        return float(np.sum(out * case.delta)), out

    net.forward(engine.asarray(case.x, "float64"))
    dx = engine.to_numpy(net.backward(engine.asarray(case.delta, "float64"))).copy()
    grads = {k: engine.to_numpy(v).copy() for k, v in net.grads().items()}
    rng = np.random.default_rng(case.seed)
    targets = [("x", None, dx)] + [(k, k, g) for k, g in grads.items()]
    for name, key, analytic in targets:
        if analytic.size == 0:
            continue
        for flat in rng.choice(analytic.size, size=min(4, analytic.size), replace=False):
            index = np.unravel_index(int(flat), analytic.shape)
            up_x, down_x = case.x.copy(), case.x.copy()
            up_p, down_p = {k: v.copy() for k, v in state.items()}, {k: v.copy() for k, v in state.items()}
            if key is None:
                up_x[index] += h
                down_x[index] -= h
            else:
                up_p[key][index] += h
                down_p[key][index] -= h
            (up, out_up), (down, out_down) = loss(up_x, up_p), loss(down_x, down_p)
            out_c = loss(case.x, state)[1]
            numeric = (up - down) / (2 * h)
            exact = float(analytic[index])
            error = abs(numeric - exact)
            bend = float(np.sum(np.abs(case.delta * ((out_up - out_c) - (out_c - out_down))))) / h
            if error > 1e-6 * max(1.0, abs(exact)) and bend >= error:
                continue  # a kink: no derivative here
            if error > 1e-6 * max(1.0, abs(exact)):
                numeric = _richardson(numeric, loss, case.x, state, key, index, h)
                error = abs(numeric - exact)
            assert error <= 1e-6 * max(1.0, abs(exact)), (
                f"{engine.name}: {case.spec!r}: d L / d {name}{list(index)}: finite difference {numeric!r}, "
                f"analytic {exact!r}")


def _richardson(central: float, loss, x: np.ndarray, state: dict, key: str | None, index: tuple, h: float) -> float:
    """Richardson's extrapolation (4 D(h/2) - D(h)) / 3 of the central difference D: its error is
    O(h^4) where D's is O(h^2). Where D(h) misses, the step may be too coarse for the curvature
    rather than the gradient wrong: a LayerNorm over a (near-)constant row multiplies by
    1/sqrt(eps) = 316, twice in a post-LN encoder layer, and a step of 1e-6 in x moves the second
    norm's input far past sqrt(eps). A wrong gradient stays wrong here (D converges to the true
    derivative, not to it)."""
    half = h / 2
    up_x, down_x = x.copy(), x.copy()
    up_p, down_p = {k: v.copy() for k, v in state.items()}, {k: v.copy() for k, v in state.items()}
    if key is None:
        up_x[index] += half
        down_x[index] -= half
    else:
        up_p[key][index] += half
        down_p[key][index] -= half
    finer = (loss(up_x, up_p)[0] - loss(down_x, down_p)[0]) / (2 * half)
    return (4 * finer - central) / 3


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=max(2, settings().max_examples // 5), suppress_health_check=FILTERING)  # 9 in ci
@given(data=st.data())
def test_no_layer_modifies_the_callers_input_or_delta(engine, kind, data):
    """numpy-ml's and MyGrad's check: forward and backward leave x and delta as they were."""
    _require(engine, kind)
    case = _draw(engine, data, kind)
    net = build_case(engine.module, case)
    x, delta = engine.asarray(case.x, case.dtype), engine.asarray(case.delta, case.dtype)
    x_before, delta_before = engine.to_numpy(x).copy(), engine.to_numpy(delta).copy()
    net.forward(x)
    net.backward(delta)
    assert np.array_equal(engine.to_numpy(x), x_before), f"{case.spec!r} modified its input"
    assert np.array_equal(engine.to_numpy(delta), delta_before), f"{case.spec!r} modified the delta"


ARGUMENTS = [(kind, name) for kind in KINDS for name, default in specs.KINDS[kind].defaults.items()
             if default is not specs.REQUIRED]


@pytest.mark.parametrize(("kind", "argument"), ARGUMENTS, ids=[f"{k}-{a}" for k, a in ARGUMENTS])
def test_every_argument_is_taken_with_torchs_default(engine, kind, argument):
    """Every optional argument of torch's layer (engine_core.specs' catalog) is a keyword of the
    engine's layer class, with torch's default. An engine whose class lacks it is reported as
    skipped, naming the class and the argument (the property tests then leave out the cases that
    set it)."""
    _require(engine, kind)
    info = specs.KINDS[kind]
    if argument in engine.missing_arguments(kind):
        pytest.skip(f"{engine.name}.{info.class_name} takes no {argument!r} (an argument of torch.nn."
                    f"{info.class_name}; cases that set it are left out of the other tests)")
    cls = getattr(engine.module, info.class_name)
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return
    if argument in parameters and parameters[argument].default is not inspect.Parameter.empty:
        default = parameters[argument].default
        assert default == info.defaults[argument] and type(default) is type(info.defaults[argument]), (
            f"{engine.name}.{info.class_name}: {argument} defaults to {default!r}; torch's default is "
            f"{info.defaults[argument]!r}")

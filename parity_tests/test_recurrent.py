"""Properties of the recurrent layers (RNN, LSTM, GRU) and LastStep beyond the catalog's layer-by-
layer checks (test_layers.py runs those on them: output, dL/dx, every parameter gradient, finite
differences, no mutation): the final states h_n and c_n, one layer object called again on another
sequence length and batch size, parameters() as the live arrays, torch's parameter names and
shapes, and random stacks of recurrent layers ending in LastStep and a Linear, against torch
autograd with the softmax cross-entropy loss, for one pass and two SGD steps.

Every recurrent layer starts from the catalog's drawn state (catalog._recurrent_state: every
weight and bias U(-1.5, 1.5), no two gate blocks alike). Tolerances: float64 1e-10; float32 the
catalog's rtol for the recurrent layers, argued where the entries are defined (the error grows
with T).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine_core.specs import LayerSpec, build, output_shape

from .catalog import CATALOG, LayerCase, build_case, layer_cases, recurrent_state
from .compare import Mismatch, check_close, compare_trajectories, gradient_scale, max_abs, run_pass, train_steps
from .engines import Engine, oracle
from .strategies import DTYPES, Batch, sgd_specs

ORACLE = oracle()
RECURRENT = ("rnn", "lstm", "gru")
RTOL32 = CATALOG["lstm"].rtol32
assert RTOL32 == CATALOG["rnn"].rtol32 == CATALOG["gru"].rtol32
# Per property, kind and engine: a quarter of the profile's (11 in ci; each example runs torch and the
# engine through time), at least 2.
MAX_EXAMPLES = max(2, settings().max_examples // 4)


def _rtol(dtype: str) -> float:
    return 1e-10 if dtype == "float64" else RTOL32


def _require(engine: Engine, *kinds: str) -> None:
    engine.require_layers(*kinds, why="recurrent layers are optional in the protocol")


def _draw(engine: Engine, data: st.DataObject, kind: str, dtype: str | None = None) -> LayerCase:
    """A catalog case of ``kind`` the engine can build (test_layers reports the arguments it lacks)."""
    case = data.draw(layer_cases(CATALOG[kind], dtype))
    assume(not engine.unsupported(case.spec))
    return case


def _batch_and_steps(spec: LayerSpec, shape: tuple[int, ...]) -> tuple[int, int]:
    return (shape[0], shape[1]) if spec.args["batch_first"] else (shape[1], shape[0])


def _sequences(batch_first: bool, steps: int, batch: int, width: int, bound: float) -> st.SearchStrategy[np.ndarray]:
    """Inputs (T, B, width), or (B, T, width) with batch_first, in [-bound, bound]."""
    shape = (batch, steps, width) if batch_first else (steps, batch, width)
    return arrays(np.float64, shape, elements=st.floats(-bound, bound, allow_nan=False, allow_subnormal=False))


def _pass(engine: Engine, net: Any, x: np.ndarray, delta: np.ndarray, dtype: str) -> dict[str, Any]:
    """Forward x and backward delta through ``net`` (a one-layer stack); the results as float64
    NumPy, with the layer's h_n and c_n (None where it has none) and the dtypes that came out."""
    out = net.forward(engine.asarray(x, dtype))
    dx = net.backward(engine.asarray(delta, dtype))
    layer = net.leaves()[0]
    result: dict[str, Any] = {"out": engine.to_numpy(out), "dx": engine.to_numpy(dx),
                              "grads": {k: engine.to_numpy(v) for k, v in net.grads().items()}}
    for name in ("h_n", "c_n"):
        result[name] = engine.to_numpy(getattr(layer, name, None))
    result["dtypes"] = {k: str(result[k].dtype) for k in ("out", "dx", "h_n", "c_n") if result[k] is not None}
    for key in ("out", "dx", "h_n", "c_n"):
        if result[key] is not None:
            result[key] = result[key].astype(np.float64)
    result["grads"] = {k: v.astype(np.float64) for k, v in result["grads"].items()}
    return result


def _compare(got: dict[str, Any], want: dict[str, Any], x: np.ndarray, delta: np.ndarray, dtype: str,
             what: str) -> None:
    """test_layers' comparison (normwise: the forward's scale is x and every value it produced,
    the backward's delta and every gradient), plus h_n and c_n in the forward's scale."""
    rtol = _rtol(dtype)
    floor = float(np.finfo(dtype).tiny) / rtol
    finals = [want[k] for k in ("h_n", "c_n") if want[k] is not None]
    scale_out = max(max_abs([want["out"], x, *finals]), floor)
    scale_back = max(max_abs([want["dx"], delta, *want["grads"].values()]), floor)
    for key in ("out", "h_n", "c_n"):
        if want[key] is not None:
            if got[key] is None:
                raise Mismatch(f"{what}: no {key} attribute after forward")
            check_close(f"{what}: {key}", got[key], want[key], scale_out, "float64", rtol=rtol)
    check_close(f"{what}: dL/dx", got["dx"], want["dx"], scale_back, "float64", rtol=rtol)
    assert sorted(got["grads"]) == sorted(want["grads"]), f"{what}: gradient keys {sorted(got['grads'])}"
    for key, value in want["grads"].items():
        check_close(f"{what}: grads[{key!r}]", got["grads"][key], value, scale_back, "float64", rtol=rtol)


@pytest.mark.parametrize("kind", RECURRENT)
@settings(max_examples=MAX_EXAMPLES)
@given(data=st.data())
def test_the_final_states_h_n_and_c_n_are_torchs(engine, kind, data):
    """h_n (and the LSTM's c_n) after a forward: torch's values (normwise in the forward's scale)
    and shape (num_layers, B, H) whichever batch_first; output, h_n, c_n and dL/dx of the
    layer's dtype."""
    _require(engine, kind)
    case = _draw(engine, data, kind)
    note(f"engine={engine.name} case={case!r}")
    got = _pass(engine, build_case(engine.module, case), case.x, case.delta, case.dtype)
    want = _pass(ORACLE, build_case(ORACLE.module, case), case.x, case.delta, case.dtype)
    batch, _ = _batch_and_steps(case.spec, case.input_shape)
    shape = (case.spec.args["num_layers"], batch, case.spec.args["hidden_size"])
    what = f"{engine.name}: {case.spec!r} ({case.dtype})"
    assert want["h_n"].shape == shape and (kind != "lstm" or want["c_n"].shape == shape)
    assert got["h_n"] is not None and got["h_n"].shape == shape, f"{what}: h_n shape, expected {shape}"
    if kind == "lstm":
        assert got["c_n"] is not None and got["c_n"].shape == shape, f"{what}: c_n shape, expected {shape}"
    assert set(got["dtypes"].values()) == {case.dtype}, f"{what}: dtypes {got['dtypes']}"
    _compare(got, want, case.x, case.delta, case.dtype, what)


@pytest.mark.parametrize("kind", [*RECURRENT, "laststep"])
@settings(max_examples=MAX_EXAMPLES)
@given(data=st.data())
def test_one_layer_called_again_with_another_length_and_batch_gives_torchs_results(engine, kind, data):
    """One layer object, two forward/backward calls on sequences of different lengths T and/or
    batch sizes B (longer or shorter, in either order): each call equals a fresh torch layer's,
    states, dL/dx and gradients (the second call's replace the first's, as the engines declare),
    so nothing sized or accumulated by the first call leaks into the second."""
    _require(engine, kind)
    case = _draw(engine, data, kind)
    batch, steps = _batch_and_steps(case.spec, case.input_shape)
    other = data.draw(st.tuples(st.integers(1, 4), st.integers(1, 8)).filter(lambda bt: bt != (batch, steps)),
                      label="(B, T) of the second call")
    width = case.input_shape[2]
    x2 = data.draw(_sequences(case.spec.args["batch_first"], other[1], other[0], width, CATALOG[kind].bound),
                   label="x of the second call")
    delta2 = data.draw(arrays(np.float64, output_shape(case.spec, x2.shape),
                              elements=st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False)),
                       label="delta of the second call")
    note(f"engine={engine.name} case={case!r}")
    net = build_case(engine.module, case)
    for call, (x, delta) in enumerate([(case.x, case.delta), (x2, delta2)], start=1):
        got = _pass(engine, net, x, delta, case.dtype)
        want = _pass(ORACLE, build_case(ORACLE.module, case), x, delta, case.dtype)
        _compare(got, want, x, delta, case.dtype, f"{engine.name}: {case.spec!r} ({case.dtype}), call {call} "
                                                  f"on x of shape {x.shape}")


@pytest.mark.parametrize("kind", RECURRENT)
@settings(max_examples=MAX_EXAMPLES)
@given(data=st.data())
def test_a_layer_fed_its_own_output_gives_torchs_results(engine, kind, data):
    """o1 = layer(x), then layer(o1) with o1 the very array the first call returned (no copy;
    input_size == hidden_size), then backward: the second call's output, states, dL/dx and
    gradients are a fresh torch layer's on o1. An engine that returns a view of a reused buffer
    and keeps x by reference for backward overwrites its own cached input here."""
    _require(engine, kind)
    size = data.draw(st.integers(1, 5), label="input_size = hidden_size")
    args: dict[str, Any] = {"input_size": size, "hidden_size": size, "num_layers": data.draw(st.integers(1, 2)),
                            "bias": data.draw(st.booleans()), "batch_first": data.draw(st.booleans())}
    if kind == "rnn":
        args["nonlinearity"] = data.draw(st.sampled_from(["tanh", "relu"]))
    spec = LayerSpec(kind, args)
    assume(not engine.unsupported(spec))
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    batch, steps = data.draw(st.integers(1, 4), label="B"), data.draw(st.integers(1, 6), label="T")
    x = data.draw(_sequences(args["batch_first"], steps, batch, size, CATALOG[kind].bound), label="x")
    delta = data.draw(arrays(np.float64, x.shape, elements=st.floats(-1.0, 1.0, allow_nan=False,
                                                                      allow_subnormal=False)), label="delta")
    case = LayerCase(spec, x.shape, dtype, True, data.draw(st.integers(0, 2**32 - 1)), x, delta,
                     recurrent_state(spec, data.draw(st.integers(0, 2**32 - 1))))
    note(f"engine={engine.name} case={case!r}")
    # The layer on its own: a Sequential's root hands out a fresh output, a layer its own array.
    layer = getattr(engine.module, spec.class_name)(**args, dtype=dtype)
    for key, value in layer.parameters().items():
        _set(value, case.state[f"0.{key}"])
    o1 = layer.forward(engine.asarray(x, dtype))
    first = engine.to_numpy(o1).astype(np.float64)  # what the second call should see
    out = engine.to_numpy(layer.forward(o1)).astype(np.float64)  # o1 itself, not a copy
    got: dict[str, Any] = {"out": out, "dx": engine.to_numpy(layer.backward(engine.asarray(delta, dtype)))}
    got["dx"] = got["dx"].astype(np.float64)
    got["grads"] = {f"0.{k}": engine.to_numpy(v).astype(np.float64) for k, v in layer.gradients().items()}
    for name in ("h_n", "c_n"):
        final = getattr(layer, name, None)
        got[name] = None if final is None else engine.to_numpy(final).astype(np.float64)
    want = _pass(ORACLE, build_case(ORACLE.module, case), first, delta, dtype)
    _compare(got, want, first, delta, dtype, f"{engine.name}: {spec!r} ({dtype}) fed its own output")


def _set(value: Any, new: np.ndarray) -> None:
    """p[...] = v for a NumPy array, p.copy_(v) for a tensor: the interface's two ways."""
    if isinstance(value, np.ndarray):
        value[...] = new
    else:
        import torch

        value.copy_(torch.from_numpy(np.ascontiguousarray(new)))


@pytest.mark.parametrize("kind", RECURRENT)
@settings(max_examples=max(2, MAX_EXAMPLES * 3 // 5))
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_parameters_are_the_live_arrays(engine, kind, data, seed):
    """parameters() returns the arrays the layer computes with: a value written into one
    (p[...] = v in NumPy, p.copy_(v) in torch) reads back from parameters() and state_dict(),
    and the next forward and backward are torch's with the new values, for a layer on its own
    and for one inside a Sequential (which may move its parameters into one flat buffer)."""
    _require(engine, kind)
    case = _draw(engine, data, kind)
    note(f"engine={engine.name} case={case!r} seed={seed}")
    new = recurrent_state(case.spec, seed)
    # A layer inside a Sequential, written through the network's parameters() and read back through
    # the layer's own, the network's and the state dict.
    net = build_case(engine.module, case)
    parameters = net.parameters()
    assert sorted(parameters) == sorted(new), f"{engine.name}: parameters() keys {sorted(parameters)}"
    for key, value in parameters.items():
        _set(value, new[key])
    layer = net.leaves()[0]
    cast = {key: value.astype(case.dtype).astype(np.float64) for key, value in new.items()}
    for key, value in layer.parameters().items():
        assert np.array_equal(engine.to_numpy(value), cast[f"0.{key}"]), f"{engine.name}: layer's {key} after the write"
    for key, value in net.state_dict().items():
        assert np.array_equal(np.asarray(value, np.float64), cast[key]), f"{engine.name}: state_dict()[{key!r}]"
    reference = LayerCase(case.spec, case.input_shape, case.dtype, case.training, case.seed, case.x, case.delta, new)
    want = _pass(ORACLE, build_case(ORACLE.module, reference), case.x, case.delta, case.dtype)
    what = f"{engine.name}: {case.spec!r} ({case.dtype})"
    _compare(_pass(engine, net, case.x, case.delta, case.dtype), want, case.x, case.delta, case.dtype,
             f"{what} in a Sequential, after writing through parameters()")
    # The layer on its own, constructed by hand.
    alone = getattr(engine.module, case.spec.class_name)(**case.spec.args, dtype=case.dtype)
    for key, value in alone.parameters().items():
        _set(value, new[f"0.{key}"])
    for key, value in alone.parameters().items():
        assert np.array_equal(engine.to_numpy(value), cast[f"0.{key}"]), f"{what} alone: {key} after the write"
    out = alone.forward(engine.asarray(case.x, case.dtype))
    rtol = _rtol(case.dtype)
    check_close(f"{what} alone, after writing through parameters(): output", engine.to_numpy(out).astype(np.float64),
                want["out"], max(max_abs([want["out"], case.x]), float(np.finfo(case.dtype).tiny) / rtol),
                "float64", rtol=rtol)


@pytest.mark.parametrize("kind", RECURRENT)
@settings(max_examples=max(2, MAX_EXAMPLES * 6 // 5))
@given(data=st.data())
def test_parameter_names_and_shapes_are_torchs_named_parameters(engine, kind, data):
    """parameters() and gradients() of a layer: exactly torch.nn.RNN/LSTM/GRU's named_parameters()
    names, shapes and order (no bias entries with bias=False); in a Sequential, prefixed "0."."""
    from torch import nn

    _require(engine, kind)
    spec, _ = CATALOG[kind].draw(data.draw)
    assume(not engine.unsupported(spec))
    note(f"engine={engine.name} spec={spec!r}")
    expected = [(name, tuple(p.shape)) for name, p in getattr(nn, spec.class_name)(**spec.args).named_parameters()]
    if not spec.args["bias"]:
        assert not any("bias" in name for name, _ in expected)
    layer = getattr(engine.module, spec.class_name)(**spec.args, dtype="float64")
    for method in ("parameters", "gradients"):
        got = [(name, tuple(engine.to_numpy(value).shape)) for name, value in getattr(layer, method)().items()]
        assert got == expected, f"{engine.name}: {spec!r}.{method}(): {got}, torch's {expected}"
    net = build(engine.module, [spec], "float64")
    assert [(name, tuple(value.shape)) for name, value in net.state_dict().items()] == [
        (f"0.{name}", shape) for name, shape in expected], f"{engine.name}: {spec!r} in a Sequential: state_dict()"


# -- random stacks ----------------------------------------------------------------------------------
BETWEEN = ("relu", "tanh", "sigmoid", "gelu", "leakyrelu", "identity", "dropout")
USED = (*RECURRENT, "laststep", "linear", *BETWEEN)


@dataclass(frozen=True)
class SequenceStack:
    """A stack of layer specs for sequence inputs, all with one batch_first; builds in any engine
    from one seed, then loads ``state`` (every recurrent layer's drawn parameters)."""

    layers: tuple[LayerSpec, ...]
    seed: int
    dtype: str
    state: dict[str, np.ndarray] = field(default_factory=dict, compare=False)

    def build(self, engine: Engine) -> Any:
        net = build(engine.module, self.layers, self.dtype, seed=self.seed)
        net.load_state_dict({**net.state_dict(), **self.state})
        return net

    def __repr__(self) -> str:
        layers = ",\n    ".join(repr(spec) for spec in self.layers)
        with np.printoptions(precision=17, threshold=100_000):
            state = ", ".join(f"{k!r}: np.array({v.tolist()})" for k, v in self.state.items())
        return f"SequenceStack(seed={self.seed}, dtype={self.dtype!r}, state={{{state}}}, layers=[\n    {layers}])"


def _between(draw: st.DrawFn) -> LayerSpec:
    kind = draw(st.sampled_from(BETWEEN))
    if kind == "dropout":
        return LayerSpec(kind, {"p": draw(st.sampled_from([0.2, 0.5])), "seed": draw(st.integers(0, 2**32 - 1))})
    if kind == "leakyrelu":
        return LayerSpec(kind, {"negative_slope": draw(st.sampled_from([0.01, -0.5]))})
    return LayerSpec(kind)


@st.composite
def sequence_problems(draw: st.DrawFn, dtype: str | None = None, steps: int = 1) -> tuple[SequenceStack, list[Batch]]:
    """Sequential(recurrent, [an activation or dropout], recurrent ..., LastStep, [an activation],
    Linear): 1-3 recurrent layers of any kind (1-2 stacked layers each, hidden 1-5, bias either
    way), one batch_first throughout; ``steps`` batches, each of its own T (1-8) and B (1-4), with
    labels."""
    dtype = dtype or draw(st.sampled_from(DTYPES))
    batch_first = draw(st.sampled_from([False, True]))
    features = draw(st.integers(1, 4))
    width, layers, state = features, [], {}
    for _ in range(draw(st.integers(1, 3))):
        hidden = draw(st.integers(1, 5))
        kind = draw(st.sampled_from(RECURRENT))
        args: dict[str, Any] = {"input_size": width, "hidden_size": hidden, "num_layers": draw(st.integers(1, 2)),
                "bias": draw(st.booleans()), "batch_first": batch_first}
        if kind == "rnn":
            args["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
        layers.append(LayerSpec(kind, args))
        state.update(recurrent_state(layers[-1], draw(st.integers(0, 2**32 - 1)), str(len(layers) - 1)))
        if draw(st.booleans()):
            layers.append(_between(draw))
        width = hidden
    layers.append(LayerSpec("laststep", {"batch_first": batch_first}))
    if draw(st.booleans()):
        layers.append(_between(draw))
    classes = draw(st.integers(2, 4))
    layers.append(LayerSpec("linear", {"in_features": width, "out_features": classes}))
    spec = SequenceStack(tuple(layers), draw(st.integers(0, 2**32 - 1)), dtype, state)
    batches = []
    for _ in range(steps):
        batch, length = draw(st.integers(1, 4)), draw(st.integers(1, 8))
        batches.append(Batch(x=draw(_sequences(batch_first, length, batch, features, 2.0)),
                             y=draw(arrays(np.int64, (batch,), elements=st.integers(0, classes - 1)))))
    return spec, batches


def _forward_scale(spec: SequenceStack, x: np.ndarray) -> float:
    """x and every layer's output in a fresh copy of the oracle's stack."""
    import torch

    net = spec.build(ORACLE)
    h, outputs = ORACLE.asarray(x, spec.dtype), [x]
    with torch.no_grad():
        for layer in net.leaves():
            h = layer.module(h)
            outputs.append(ORACLE.to_numpy(h))
    return max(max_abs(outputs), np.finfo(np.float64).tiny)


def _stack_require(engine: Engine, spec: SequenceStack) -> None:
    _require(engine, *USED)
    assume(not any(engine.unsupported(layer) for layer in spec.layers))


@settings(max_examples=MAX_EXAMPLES)
@given(sequence_problems())
def test_random_recurrent_stacks_agree_with_autograd(engine, problem):
    """One forward and backward with the softmax cross-entropy loss, both dtypes: logits, loss,
    dL/dlogits, the Linear's delta, every gradient (every recurrent layer's, through LastStep,
    activations and dropout masks) and dL/dx."""
    spec, (batch,) = problem
    _stack_require(engine, spec)
    note(f"engine={engine.name} spec={spec!r} batch={batch!r}")
    ref = run_pass(ORACLE, spec.build(ORACLE), spec, batch)
    got = run_pass(engine, spec.build(engine), spec, batch)
    rtol, name = _rtol(spec.dtype), f"{engine.name} (a recurrent stack, {spec.dtype})"
    fs, gs = _forward_scale(spec, batch.x), gradient_scale(ref)

    def close(what: str, a: Any, b: Any, scale: float) -> None:
        check_close(f"{name}: {what}", a, b, scale, spec.dtype, rtol=rtol)

    close("logits", got.logits, ref.logits, fs)
    close("loss", got.loss, ref.loss, max(fs, abs(ref.loss)))
    close("dL/dlogits", got.dlogits, ref.dlogits, gs)
    assert len(got.deltas) == len(ref.deltas) == 1, f"{name}: {len(got.deltas)} deltas, expected one (the Linear)"
    close("deltas[0] (dL/dz of the Linear)", got.deltas[0], ref.deltas[0], gs)
    assert sorted(got.grads) == sorted(ref.grads), f"{name}: gradient keys {sorted(got.grads)}"
    for key in ref.grads:
        close(f"grads[{key!r}]", got.grads[key], ref.grads[key], gs)
    close("dL/dx", got.dx, ref.dx, max(gs, max_abs([ref.dx])))


@settings(max_examples=MAX_EXAMPLES // 2)  # two steps an example
@given(sequence_problems(dtype="float64", steps=2), sgd_specs())
def test_two_sgd_steps_on_a_random_recurrent_stack_follow_torch_optim(engine, problem, sgd):
    """Backprop and torch.optim.SGD (every option), two steps on batches of different lengths and
    sizes, float64: the parameters and momentum buffers after each step agree
    (test_optimizers' comparison)."""
    spec, batches = problem
    _stack_require(engine, spec)
    note(f"engine={engine.name} spec={spec!r} sgd={sgd} batches={batches!r}")
    compare_trajectories(train_steps(engine, spec, sgd, batches), train_steps(ORACLE, spec, sgd, batches), spec,
                         sgd.lr, engine.name)

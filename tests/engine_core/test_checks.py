"""Every validator stated once (engine_core/checks.py), held identically by numpy_net, torch_net and
the oracle: bad input, labels, seeds, sizes and hyper-parameters, optimizer and layer state,
backward checks, each refused alike with the same words and nothing changed."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import numpy_net
import torch_net
from engine_core.naming import ACTIVATION_NAMES
from engine_core.specs import LayerSpec, build
from parity_tests.engines import Engine
from tests.layer_stacks import EVERY_ENGINE, EVERY_ID, HAND_IDS, HAND_WRITTEN, linear, outcome
from torch_net import autograd


def _batch(engine: Engine, dtype: str = "float64", batch: int = 6):
    rng = np.random.default_rng(0)
    return engine.asarray(rng.standard_normal((batch, 5)), dtype), engine.labels(rng.integers(0, 3, batch))


def _adam_after_one_step(engine: Engine, amsgrad: bool = False):
    net = engine.MLP([5, 4, 3], activation="tanh", seed=1, dtype="float64")
    opt = engine.Adam(net, lr=0.01, amsgrad=amsgrad)
    _train_step(engine, net, opt)
    return net, opt


def _train_step(engine: Engine, net, opt) -> None:
    """One step on _batch: forward, loss, zero_grad, backward, optimizer step."""
    x, y = _batch(engine)
    loss = engine.SoftmaxCrossEntropy()
    loss.forward(net.forward(x), y)
    opt.zero_grad()
    net.backward(loss.backward())
    opt.step()



def _same_state(a: dict, b: dict) -> bool:
    if a["step"] != b["step"] or a["lr"] != b["lr"] or sorted(a["state"]) != sorted(b["state"]):
        return False
    return all(np.array_equal(a["state"][k][n], b["state"][k][n]) for k in a["state"] for n in a["state"][k])


def _mutations():
    def drop(buffer):
        return lambda s: s["state"].pop(buffer)

    def set_param(buffer, name, value):
        return lambda s: s["state"][buffer].__setitem__(name, value)

    return {
        "no max_exp_avg_sq (amsgrad)": (True, lambda s: None, "ValueError", "missing buffer 'max_exp_avg_sq'"),
        "exp_avg_sq deleted": (False, drop("exp_avg_sq"), "ValueError", "missing buffer 'exp_avg_sq'"),
        "extra buffer": (False, lambda s: s["state"].__setitem__("momentum_buffer", s["state"]["exp_avg"]),
                         "ValueError", "unexpected buffer 'momentum_buffer'"),
        "amsgrad buffer into plain Adam": (
            False, lambda s: s["state"].__setitem__("max_exp_avg_sq", s["state"]["exp_avg_sq"]),
            "ValueError", "unexpected buffer 'max_exp_avg_sq'"),
        "parameter missing": (False, lambda s: s["state"]["exp_avg"].pop("2.bias"), "ValueError",
                              "buffer 'exp_avg': missing parameter '2.bias'"),
        "mis-shaped": (False, set_param("exp_avg", "0.weight", np.zeros((4, 5))), "ValueError",
                       "exp_avg['0.weight']: expected shape (5, 4), got (4, 5)"),
        "mis-typed (ints)": (False, set_param("exp_avg", "2.bias", np.zeros(3, np.int64)), "TypeError",
                             "exp_avg['2.bias']: expected a floating-point array"),
        "mis-typed (a list)": (False, set_param("exp_avg_sq", "2.bias", [0.0, 0.0, 0.0]), "TypeError",
                               "exp_avg_sq['2.bias']: expected an array, got list"),
        "NaN": (False, set_param("exp_avg", "0.bias", np.array([0, np.nan, 0, 0.0])), "ValueError",
                "exp_avg['0.bias']: contains NaN or Inf"),
        "negative second moment": (False, set_param("exp_avg_sq", "0.bias", np.array([0, -1, 0, 0.0])),
                                   "ValueError", "exp_avg_sq['0.bias']: a second moment must be >= 0"),
        "step 0 with buffers": (False, lambda s: s.__setitem__("step", 0), "ValueError",
                                "at step 0 (the state says no step was taken yet)"),
        "a step without buffers": (False, lambda s: s.__setitem__("state", {}), "ValueError",
                                   "missing buffer 'exp_avg' (after 1 steps"),
        "step not an int": (False, lambda s: s.__setitem__("step", 1.5), "TypeError", "'step' must be an int"),
        "negative lr": (False, lambda s: s.__setitem__("lr", -0.1), "ValueError", "'lr' must be a finite number"),
        "not a dict": (False, lambda s: s.__setitem__("state", [1]), "TypeError", "'state' must be a dict"),
        "missing key": (False, lambda s: s.pop("lr"), "ValueError", "missing key 'lr'"),
    }


MUTATIONS = _mutations()


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_a_bad_optimizer_state_is_refused_alike_in_every_engine_and_changes_nothing(case):
    amsgrad_target, mutate, kind, text = MUTATIONS[case]
    outcomes = []
    for engine in EVERY_ENGINE:
        _, source = _adam_after_one_step(engine)
        state = source.state_dict()
        mutate(state)
        net, target = _adam_after_one_step(engine, amsgrad=amsgrad_target)
        before, params = target.state_dict(), net.state_dict()
        result = outcome(lambda target=target, state=state: target.load_state_dict(state))
        assert result[0] == kind and text in result[1], f"{engine.name}: {result}"
        assert _same_state(before, target.state_dict()), f"{engine.name}: a refused load changed the state"
        assert all(np.array_equal(v, net.state_dict()[k]) for k, v in params.items())
        target.step()  # still usable
        outcomes.append(outcome)
    assert outcomes[0] == outcomes[1] == outcomes[2], outcomes


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_sgd_state_buffers_follow_momentum_and_step(subject):
    net = subject.MLP([5, 3], seed=0, dtype="float64")
    plain = subject.SGD(net, lr=0.1)
    with pytest.raises(ValueError, match=r"unexpected buffer 'momentum_buffer' at step 1 .*momentum=0"):
        plain.load_state_dict({"step": 1, "lr": 0.1, "state": {"momentum_buffer": net.state_dict()}})
    heavy = subject.SGD(net, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="missing buffer 'momentum_buffer'"):
        heavy.load_state_dict({"step": 3, "lr": 0.1, "state": {}})
    heavy.load_state_dict({"step": 0, "lr": 0.2, "state": {}})
    assert heavy.lr == 0.2


# -- layers refuse a backward that does not match their forward ----------------------------------
@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_backward_before_forward_names_the_layer_and_the_shapes(subject):
    net = subject.MLP([5, 4, 3], seed=0, dtype="float64")
    delta = subject.asarray(np.zeros((2, 3)), "float64")
    with pytest.raises(RuntimeError, match=r"layer 2 Linear\(in_features=4, out_features=3\): backward\(\) called "
                                           r"before forward\(\) \(got a delta of shape \(2, 3\)"):
        net.backward(delta)


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_a_delta_of_another_batch_size_is_refused_and_changes_no_gradient(subject):
    net = subject.MLP([5, 4, 3], seed=0, dtype="float64")
    x, y = _batch(subject, batch=6)
    loss = subject.SoftmaxCrossEntropy()
    loss.forward(net.forward(x), y)
    net.backward(loss.backward())
    grads = {k: subject.to_numpy(v).copy() for k, v in net.grads().items()}
    with pytest.raises(ValueError, match=r"layer 2 Linear\(in_features=4, out_features=3\): delta: expected shape "
                                         r"\(6, 3\) .*got \(5, 3\)"):
        net.backward(subject.asarray(np.ones((5, 3)), "float64"))
    with pytest.raises(TypeError, match="delta: expected dtype float64"):
        net.backward(subject.asarray(np.ones((6, 3)), "float32"))
    for key, value in net.grads().items():
        assert np.array_equal(subject.to_numpy(value), grads[key]), key


@pytest.mark.parametrize("module", [numpy_net, torch_net], ids=["numpy_net", "torch_net"])
@pytest.mark.parametrize("layer", ["Linear", *ACTIVATION_NAMES])
def test_every_layer_checks_its_own_backward(module, layer):
    engine = Engine(module)
    instance = module.Linear(4, 3, dtype="float64") if layer == "Linear" else module.ACTIVATIONS[layer]()
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
        instance.backward(engine.asarray(np.zeros((2, 3)), "float64"))
    instance.forward(engine.asarray(np.zeros((2, 4 if layer == "Linear" else 3)), "float64"))
    with pytest.raises(ValueError, match="delta: expected shape"):
        instance.backward(engine.asarray(np.zeros((7, 3)), "float64"))


# -- the oracle speaks the same interface ------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.uint8])
def test_every_engine_accepts_any_integer_label_dtype_and_agrees(dtype):
    rng = np.random.default_rng(1)
    logits, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6).astype(dtype)
    losses, deltas = [], []
    for engine in EVERY_ENGINE:
        loss = engine.SoftmaxCrossEntropy()
        labels = y if engine.module is numpy_net else torch.from_numpy(y)
        losses.append(loss.forward(engine.asarray(logits, "float64"), labels))
        deltas.append(engine.to_numpy(loss.backward()))
    np.testing.assert_allclose(losses, losses[0], rtol=1e-14)
    for delta in deltas:
        np.testing.assert_allclose(delta, deltas[0], rtol=0, atol=1e-16)


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_loss_backward_before_forward_is_a_clear_error(subject):
    with pytest.raises(RuntimeError, match=r"SoftmaxCrossEntropy.backward\(\) called before forward\(\)"):
        subject.SoftmaxCrossEntropy().backward()


# -- found by review: each a kind of fault, checked in every engine ------------------------------
def _trained_pass(subject: Engine, batch: int = 5):
    net = subject.MLP([3, 4, 2], seed=0, dtype="float64")
    x, y = _batch3(subject, batch)
    loss = subject.SoftmaxCrossEntropy()
    loss.forward(net.forward(x), y)
    return net, loss.backward()


def _batch3(subject: Engine, batch: int):
    rng = np.random.default_rng(7)
    return subject.asarray(rng.standard_normal((batch, 3)), "float64"), subject.labels(rng.integers(0, 2, batch))


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_forward_without_gradients_works_in_every_engine(subject):
    net = subject.MLP([3, 4, 2], seed=0, dtype="float64")
    x, _ = _batch3(subject, 5)
    with torch.no_grad():
        inside = subject.to_numpy(net.forward(x)).copy()
    with torch.inference_mode():
        assert np.array_equal(subject.to_numpy(net.forward(x)), inside)


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_a_second_backward_on_one_forward_gives_the_same_input_gradient(subject):
    net, delta = _trained_pass(subject)
    first = subject.to_numpy(net.backward(delta)).copy()
    assert np.array_equal(subject.to_numpy(net.backward(delta)), first)


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_a_refused_forward_leaves_nothing_to_differentiate_and_no_gradient_changes(subject):
    net, delta = _trained_pass(subject)
    net.backward(delta)
    grads = {k: subject.to_numpy(v).copy() for k, v in net.grads().items()}
    bad = np.zeros((5, 3))
    bad[1, 2] = np.nan
    with pytest.raises(FloatingPointError):
        net.forward(subject.asarray(bad, "float64"))
    with pytest.raises(RuntimeError, match=r"backward\(\) called before forward\(\)"):
        net.backward(delta)
    for key, value in net.grads().items():
        assert np.array_equal(subject.to_numpy(value), grads[key]), key


@pytest.mark.parametrize("module", [numpy_net, torch_net], ids=["numpy_net", "torch_net"])
@pytest.mark.parametrize("layer", ACTIVATION_NAMES)
def test_activations_take_any_float_input_and_name_a_wrong_one(module, layer):
    engine = Engine(module)
    x = np.linspace(-3, 3, 15).reshape(5, 3)
    xs = x.astype(">f8") if module is numpy_net else engine.asarray(x, "float64").requires_grad_(True)
    instance = module.ACTIVATIONS[layer]()
    instance.forward(xs)
    dx = instance.backward(engine.asarray(np.ones((5, 3)), "float64"))
    reference = module.ACTIVATIONS[layer]()
    reference.forward(engine.asarray(x, "float64"))
    assert np.array_equal(engine.to_numpy(dx), engine.to_numpy(reference.backward(engine.asarray(np.ones((5, 3)),
                                                                                               "float64"))))
    with pytest.raises(TypeError, match="x: expected a"):
        module.ACTIVATIONS[layer]().forward([[1.0, 2.0]])


@pytest.mark.parametrize("value, kind, words", [
    (np.zeros(2, np.longdouble), "TypeError", "expected dtype float16, float32, float64"),
    (np.full(2, 1e300), "ValueError", "beyond float32's range"),
    (torch.zeros(2, dtype=torch.bfloat16), "TypeError", "NumPy cannot hold"),
])
def test_state_values_no_engine_can_hold_are_refused_alike_before_anything_is_copied(value, kind, words):
    outcomes = []
    for subject in EVERY_ENGINE:
        net = subject.MLP([3, 4, 2], seed=0)
        before = net.state_dict()
        state = dict(before)
        state["2.bias"] = value
        result = outcome(lambda net=net, state=state: net.load_state_dict(state))
        assert result[0] == kind and words in result[1], (subject.name, result)
        assert all(np.array_equal(v, net.state_dict()[k]) for k, v in before.items())
        outcomes.append(outcome)
    assert outcomes[0] == outcomes[1] == outcomes[2]


@pytest.mark.parametrize("mutate, words", [
    (lambda s: s["state"]["exp_avg"].__setitem__("0.bias", np.full(4, 1e300)), "beyond float32's range"),
    (lambda s: s.__setitem__("lr", 10**400), "'lr' must be a finite number"),
    (lambda s: s["state"]["exp_avg"].__setitem__("0.bias", np.zeros(4, np.longdouble)), "expected dtype"),
])
def test_optimizer_values_no_engine_can_hold_are_refused_alike(mutate, words):
    outcomes = []
    for subject in EVERY_ENGINE:
        net = subject.MLP([5, 4, 3], seed=0)
        opt = subject.Adam(net)
        _, source = _adam_after_one_step(subject)
        state = source.state_dict()
        mutate(state)
        result = outcome(lambda opt=opt, state=state: opt.load_state_dict(state))
        assert result[0] in ("TypeError", "ValueError") and words in result[1], (subject.name, result)
        assert opt.state_dict()["state"] == {}
        outcomes.append(outcome)
    assert outcomes[0] == outcomes[1] == outcomes[2]


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_a_loaded_optimizer_state_never_shares_memory_with_the_callers_arrays(subject):
    net, opt = _adam_after_one_step(subject)
    state = opt.state_dict()
    kept = {b: {k: v.copy() for k, v in per.items()} for b, per in state["state"].items()}
    opt.load_state_dict(state)
    _train_step(subject, net, opt)
    for buffer, per in kept.items():
        for key, value in per.items():
            assert np.array_equal(state["state"][buffer][key], value), (buffer, key)


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
@pytest.mark.parametrize("setting", ["lr", "eps", "weight_decay"])
def test_adam_refuses_nan_settings_as_torch_does(subject, setting):
    with pytest.raises(ValueError, match="Invalid"):
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], **{setting: float("nan")})
    with pytest.raises(ValueError, match="Invalid"):
        subject.Adam(subject.MLP([3, 2]), **{setting: float("nan")})


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
@pytest.mark.parametrize("labels, kind, words", [
    (np.array([0.0, 1.7]), TypeError, "expected integer class labels, got dtype float64"),
    (np.array([True, False]), TypeError, "got dtype bool"),
    (np.array(["1", "2"]), TypeError, "expected integer class labels"),
    (np.array([0, 2, 1, 2**64 - 1], np.uint64), ValueError, "label 18446744073709551615 at position 3"),
])
def test_labels_refuses_what_a_cast_would_hide(subject, labels, kind, words):
    with pytest.raises(kind, match=re.escape(words)):
        subject.labels(labels)


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
@pytest.mark.parametrize("seed, kind", [(-1, ValueError), (1.5, TypeError), ("a", TypeError), (None, TypeError),
                                        (True, TypeError)])
def test_a_seed_that_is_not_an_int_from_zero_up_is_refused(subject, seed, kind):
    with pytest.raises(kind, match="seed: expected an int >= 0"):
        subject.MLP([3, 2], seed=seed)


PROJECT_ERRORS = (ValueError, TypeError, FloatingPointError)


# NaN and Inf are fed in on purpose by the tests of bad input below; NumPy's RuntimeWarnings about
# them are expected noise.
EXPECTED_NOISE = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _to_torch(array):
    return torch.from_numpy(np.array(array, copy=True)) if isinstance(array, np.ndarray) else array


def _engine_outcome(module, call):
    """('ok', None) or (exception class name, message with the engine's array type neutralised)."""
    try:
        call(module)
    except PROJECT_ERRORS as error:
        message = re.sub(r"numpy\.ndarray|torch\.Tensor", "ARRAY", str(error))
        return type(error).__name__, message
    return "ok", None


def _forward(x, dtype="float32"):
    def call(module):
        net = module.MLP([4, 3, 2], seed=0, dtype=dtype)
        net.forward(x if module is numpy_net else _to_torch(x))

    return call


def _loss(logits, y):
    def call(module):
        loss_fn = module.SoftmaxCrossEntropy()
        if module is numpy_net:
            loss_fn.forward(logits, y)
        else:
            loss_fn.forward(_to_torch(logits), _to_torch(y))

    return call


CASES = {
    "wrong width": (_forward(np.zeros((2, 5), np.float32)), "ValueError", "x: expected shape (batch, 4), got (2, 5)"),
    # A Linear takes torch's (*, in_features): one row (4,) or any leading dimensions, not a 0-D array.
    "0-D": (_forward(np.zeros((), np.float32)), "ValueError",
            "x: expected an array of shape (batch, 4) (or (*, 4): any leading dimensions), got a 0-D array"),
    "wrong width, 3-D": (_forward(np.zeros((2, 3, 5), np.float32)), "ValueError",
                         "x: expected shape (*, 4) (its last dimension), got (2, 3, 5)"),
    "wrong width, 1-D": (_forward(np.zeros(5, np.float32)), "ValueError", "x: expected shape (*, 4) (its last "
                         "dimension), got (5,)"),
    "empty, 3-D": (_forward(np.zeros((2, 0, 4), np.float32)), "ValueError", "x: empty input (shape (2, 0, 4))"),
    "wrong dtype, 3-D": (_forward(np.zeros((2, 3, 4), np.float64)), "TypeError",
                         "x: expected dtype float32 (the network's dtype), got float64"),
    "empty batch": (_forward(np.zeros((0, 4), np.float32)), "ValueError", "x: empty batch"),
    "other dtype": (_forward(np.zeros((2, 4), np.float64)), "TypeError", "x: expected dtype float32"),
    "NaN input": (_forward(np.array([[0, 0, 0, 0], [0, np.nan, 0, 0]], np.float32)), "NonFiniteError",
                  "x: contains NaN or Inf (first at row 1, column 1)"),
    "Inf input": (_forward(np.array([[np.inf, 0, 0, 0]], np.float32)), "NonFiniteError",
                  "x: contains NaN or Inf (first at row 0, column 0)"),
    "a list": (_forward([[0.0] * 4]), "TypeError", "x: expected a ARRAY, got list"),
    "labels of the wrong length": (_loss(np.zeros((3, 2), np.float32), np.zeros(2, np.int64)), "ValueError",
                                   "y: expected 3 labels (one per row of logits), got 2"),
    "label too large": (_loss(np.zeros((3, 2), np.float32), np.array([0, 2, 1])), "ValueError",
                        "y: labels must lie in [0, 2), got 2 at position 1"),
    "negative label": (_loss(np.zeros((3, 2), np.float32), np.array([0, 1, -1])), "ValueError",
                       "y: labels must lie in [0, 2), got -1 at position 2"),
    "float labels": (_loss(np.zeros((2, 2), np.float32), np.zeros(2, np.float32)), "TypeError",
                     "y: expected integer class labels, got dtype float32"),
    "bool labels": (_loss(np.zeros((2, 2), np.float32), np.zeros(2, bool)), "TypeError",
                    "y: expected integer class labels, got dtype bool"),
    "2-D labels": (_loss(np.zeros((2, 2), np.float32), np.zeros((2, 1), np.int64)), "ValueError",
                   "y: expected a 1-D array of 2 labels, got shape (2, 1)"),
    "NaN logits": (_loss(np.array([[0, np.nan]], np.float32), np.array([0])), "NonFiniteError",
                   "logits: contains NaN or Inf (first at row 0, column 1)"),
    "Inf logits": (_loss(np.array([[np.inf, 0]], np.float32), np.array([1])), "NonFiniteError",
                   "logits: contains NaN or Inf (first at row 0, column 0)"),
}


@EXPECTED_NOISE
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_the_same_specific_error_in_both_engines(case):
    call, kind, text = CASES[case]
    outcomes = [_engine_outcome(module, call) for module in (numpy_net, torch_net)]
    for module, (got_kind, message) in zip(("numpy_net", "torch_net"), outcomes):
        assert got_kind == kind, f"{module}: {got_kind}: {message}"
        assert text in message, f"{module}: {message!r} lacks {text!r}"
    assert outcomes[0] == outcomes[1]


@EXPECTED_NOISE
def test_an_array_of_the_other_engine_is_refused_by_name():
    with pytest.raises(TypeError, match=r"x: expected a numpy\.ndarray, got torch\.Tensor"):
        numpy_net.MLP([4, 2]).forward(torch.zeros(1, 4))
    with pytest.raises(TypeError, match=r"x: expected a torch\.Tensor, got numpy\.ndarray"):
        torch_net.MLP([4, 2]).forward(np.zeros((1, 4), np.float32))


@EXPECTED_NOISE
@pytest.mark.parametrize("module", [numpy_net, torch_net, autograd], ids=["numpy_net", "torch_net", "autograd"])
@pytest.mark.parametrize("sizes, error", [([4, 0, 2], "sizes\\[1\\]"), ([4, -3], "sizes\\[1\\]"), ([4], "at least"),
                                          ([4, 2.5], "sizes\\[1\\]"), ("42", "sizes")])
def test_invalid_sizes_are_rejected_when_constructed(module, sizes, error):
    with pytest.raises((ValueError, TypeError), match=error):
        module.MLP(sizes)


@EXPECTED_NOISE
@pytest.mark.parametrize("module", [numpy_net, torch_net], ids=["numpy_net", "torch_net"])
def test_invalid_hyper_parameters_follow_torchs_rules(module):
    net = module.MLP([3, 2])
    for kwargs, word in [({"lr": -0.1}, "learning rate"), ({"momentum": -1}, "momentum"),
                         ({"weight_decay": -1}, "weight_decay"), ({"nesterov": True}, "Nesterov"),
                         ({"nesterov": True, "momentum": 0.9, "dampening": 0.5}, "Nesterov")]:
        with pytest.raises(ValueError, match=word):
            module.SGD(net, **{"lr": 0.1, **kwargs})
        params = [torch.zeros(1, requires_grad=True)]
        with pytest.raises(ValueError, match=word):  # torch itself agrees, in the same words
            torch.optim.SGD(params, **{"lr": 0.1, **kwargs})
    for kwargs, word in [({"lr": -1}, "Invalid learning rate: -1"), ({"eps": -1}, "Invalid epsilon value: -1"),
                         ({"betas": (1.0, 0.9)}, "Invalid beta parameter at index 0: 1.0"),
                         ({"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
                         ({"weight_decay": -1}, "Invalid weight_decay value: -1")]:
        with pytest.raises(ValueError, match=re.escape(word)):
            module.Adam(net, **kwargs)
        with pytest.raises(ValueError, match=re.escape(word)):  # torch's own words
            torch.optim.Adam([torch.zeros(1, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match="activation"):
        module.MLP([3, 2, 2], activation="gelu")
    with pytest.raises(ValueError, match="init"):
        module.MLP([3, 2], init="orthogonal")
    with pytest.raises(ValueError, match="dtype"):
        module.MLP([3, 2], dtype="float16")


@st.composite
def malformed_batches(draw):
    shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.bool_]))
    x = draw(arrays(dtype, shape))
    y = draw(arrays(draw(st.sampled_from([np.int64, np.int32, np.float32, np.bool_])),
                    draw(array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6))))
    return x, y


@EXPECTED_NOISE
@given(malformed_batches())
def test_any_array_either_trains_or_raises_a_project_error_identically_in_both_engines(batch):
    """Whatever arrays arrive (any shape, dtype, NaN, labels of any kind), each engine either
    runs or raises ValueError/TypeError/FloatingPointError - never an IndexError or a
    broadcasting error from inside NumPy or torch - and both engines answer alike."""
    x, y = batch
    note(f"x={x!r} y={y!r}")

    def step(module):
        net = module.MLP([4, 3, 2], seed=0)
        loss_fn = module.SoftmaxCrossEntropy()
        xs, ys = (x, y) if module is numpy_net else (_to_torch(x), _to_torch(y))
        logits = net.forward(xs)
        loss_fn.forward(logits, ys)
        net.backward(loss_fn.backward())

    outcomes = [_engine_outcome(module, step) for module in (numpy_net, torch_net)]
    assert outcomes[0] == outcomes[1], outcomes


@pytest.mark.parametrize("module", ["numpy_net", "torch_net"])
def test_every_engine_refuses_the_same_tampered_layer_state_alike(module):
    """The checks live once in engine_core: a layer's own load_state_dict / set_rng_state refuse
    what a checkpoint's validator refuses, with the same words, and keep their state."""
    engine = __import__(module)
    norm = build(engine, [LayerSpec("batchnorm1d", {"num_features": 3})], "float64")
    before = {k: np.array(v) for k, v in norm.state_dict().items()}
    with pytest.raises(ValueError, match=r"'0.running_var'\]: a running variance must be >= 0, got -1 at position 2"):
        norm.load_state_dict({**before, "0.running_var": np.array([1.0, 0.0, -1.0])})
    assert all(np.array_equal(np.asarray(v), before[k]) for k, v in norm.state_dict().items())
    dropout = engine.Dropout(0.5, seed=1)
    state = dropout.rng_state()
    for bad, words in [({**state, "state": {**state["state"], "state": 2**200}}, "state.state: expected an integer"),
                       ({**state, "state": {**state["state"], "state": "abc"}}, "state.state: expected an integer"),
                       ({**state, "has_uint32": 2}, "has_uint32: expected 0 or 1")]:
        with pytest.raises(ValueError, match=re.escape(f"rng state: {words}")):
            dropout.set_rng_state(bad)
        assert dropout.rng_state() == state


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=HAND_IDS)
def test_a_linear_alone_checks_its_delta_against_the_leading_dimensions(subject):
    layer = build(subject.module, [linear(5, 4)], "float64").layers[0]
    layer.forward(subject.asarray(np.ones((2, 3, 5)), "float64"))
    with pytest.raises(ValueError, match=r"Linear\(in_features=5, out_features=4\): delta: expected shape \(2, 3, 4\)"):
        layer.backward(subject.asarray(np.ones((6, 4)), "float64"))

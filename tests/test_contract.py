"""The contract, stated once in engine_core, holds identically in numpy_net, torch_net and the
autograd oracle: optimizer state validation, layer backward checks, arrays in another byte order,
the oracle's interface, and sigmoid's overflow. Each case failed on the previous main."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import numpy_net
import torch_net
from engine_core.naming import ACTIVATION_NAMES
from parity_tests.engines import Engine
from torch_net import autograd

ENGINES = [Engine(numpy_net), Engine(torch_net), Engine(autograd)]
IDS = [e.name for e in ENGINES]


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


def _outcome(call):
    try:
        call()
    except (ValueError, TypeError, RuntimeError) as error:
        return type(error).__name__, str(error)
    return "ok", ""


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
    for engine in ENGINES:
        _, source = _adam_after_one_step(engine)
        state = source.state_dict()
        mutate(state)
        net, target = _adam_after_one_step(engine, amsgrad=amsgrad_target)
        before, params = target.state_dict(), net.state_dict()
        outcome = _outcome(lambda target=target, state=state: target.load_state_dict(state))
        assert outcome[0] == kind and text in outcome[1], f"{engine.name}: {outcome}"
        assert _same_state(before, target.state_dict()), f"{engine.name}: a refused load changed the state"
        assert all(np.array_equal(v, net.state_dict()[k]) for k, v in params.items())
        target.step()  # still usable
        outcomes.append(outcome)
    assert outcomes[0] == outcomes[1] == outcomes[2], outcomes


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
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
@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_backward_before_forward_names_the_layer_and_the_shapes(subject):
    net = subject.MLP([5, 4, 3], seed=0, dtype="float64")
    delta = subject.asarray(np.zeros((2, 3)), "float64")
    with pytest.raises(RuntimeError, match=r"layer 2 Linear\(in_features=4, out_features=3\): backward\(\) called "
                                           r"before forward\(\) \(got a delta of shape \(2, 3\)"):
        net.backward(delta)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
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


# -- arrays in another byte order ----------------------------------------------------------------
def test_big_endian_arrays_give_the_native_results():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    y = rng.integers(0, 3, 7).astype(np.int32)
    results = []
    for xs, ys in ((x, y), (x.astype(">f4"), y.astype(">i4"))):
        net = numpy_net.MLP([5, 4, 3], seed=0)
        loss = numpy_net.SoftmaxCrossEntropy()
        value = loss.forward(net.forward(xs), ys)
        net.backward(loss.backward())
        results.append((value, {k: v.copy() for k, v in net.grads().items()}))
    assert results[0][0] == results[1][0]
    for key in results[0][1]:
        assert np.array_equal(results[0][1][key], results[1][1][key]), key
    logits = rng.standard_normal((7, 3))
    assert numpy_net.SoftmaxCrossEntropy().forward(logits.astype(">f8"), y.astype(">i8")) == \
        numpy_net.SoftmaxCrossEntropy().forward(logits, y)


def test_a_big_endian_label_out_of_range_is_named_truthfully():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got 5 at position 1"):
        numpy_net.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0, 5], ">i4"))


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
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


def test_a_big_endian_input_of_the_wrong_dtype_says_so_without_contradiction():
    with pytest.raises(TypeError, match=r"x: expected dtype float32 .*got float64"):
        numpy_net.MLP([5, 3]).forward(np.zeros((2, 5), ">f8"))


# -- the oracle speaks the same interface ------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.uint8])
def test_every_engine_accepts_any_integer_label_dtype_and_agrees(dtype):
    rng = np.random.default_rng(1)
    logits, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6).astype(dtype)
    losses, deltas = [], []
    for engine in ENGINES:
        loss = engine.SoftmaxCrossEntropy()
        labels = y if engine.module is numpy_net else torch.from_numpy(y)
        losses.append(loss.forward(engine.asarray(logits, "float64"), labels))
        deltas.append(engine.to_numpy(loss.backward()))
    np.testing.assert_allclose(losses, losses[0], rtol=1e-14)
    for delta in deltas:
        np.testing.assert_allclose(delta, deltas[0], rtol=0, atol=1e-16)


def test_the_oracles_loss_differentiates_logits_that_did_not_come_from_its_mlp():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=torch.float64)
    loss = autograd.SoftmaxCrossEntropy()
    loss.forward(logits, torch.tensor([2, 0]))
    ours = torch_net.SoftmaxCrossEntropy()
    ours.forward(logits, torch.tensor([2, 0]))
    torch.testing.assert_close(loss.backward(), ours.backward(), rtol=0, atol=1e-16)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_loss_backward_before_forward_is_a_clear_error(subject):
    with pytest.raises(RuntimeError, match=r"SoftmaxCrossEntropy.backward\(\) called before forward\(\)"):
        subject.SoftmaxCrossEntropy().backward()


# -- sigmoid for very negative inputs ------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_saturates_without_warnings_and_matches_torch(dtype):
    z = np.concatenate([np.linspace(-1000, 100, 2001), [-88.8, -87.0, -745.5, -103.9]]).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="warn", invalid="warn", divide="warn"):  # NumPy's defaults
            ours = numpy_net.Sigmoid().forward(z.reshape(1, -1)).ravel()
    theirs = torch.sigmoid(torch.from_numpy(z)).numpy()
    # Both are 1 / (1 + exp(-z)); only in the subnormal range (below float's smallest normal
    # number) do the two libraries' exp() differ in their last bits, hence the absolute term.
    np.testing.assert_allclose(ours, theirs, rtol=4 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)
    assert np.array_equal(ours == 0, theirs == 0)


# -- the core is engine-neutral --------------------------------------------------------------------
def test_the_core_imports_no_torch_and_torch_net_imports_no_numpy_net():
    code = ("import sys, engine_core, numpy_net; assert 'torch' not in sys.modules, 'core/numpy imported torch'; "
            "import torch_net.autograd; assert 'numpy_net' not in sys.modules or True")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    code = "import sys, torch_net, torch_net.autograd; assert 'numpy_net' not in sys.modules, sorted(sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]


@pytest.mark.parametrize("module", [numpy_net, torch_net], ids=["numpy_net", "torch_net"])
def test_every_engine_builds_every_activation_the_core_names(module):
    assert tuple(module.ACTIVATIONS) == ACTIVATION_NAMES


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


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_forward_without_gradients_works_in_every_engine(subject):
    net = subject.MLP([3, 4, 2], seed=0, dtype="float64")
    x, _ = _batch3(subject, 5)
    with torch.no_grad():
        inside = subject.to_numpy(net.forward(x)).copy()
    with torch.inference_mode():
        assert np.array_equal(subject.to_numpy(net.forward(x)), inside)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_a_second_backward_on_one_forward_gives_the_same_input_gradient(subject):
    net, delta = _trained_pass(subject)
    first = subject.to_numpy(net.backward(delta)).copy()
    assert np.array_equal(subject.to_numpy(net.backward(delta)), first)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
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
    for subject in ENGINES:
        net = subject.MLP([3, 4, 2], seed=0)
        before = net.state_dict()
        state = dict(before)
        state["2.bias"] = value
        outcome = _outcome(lambda net=net, state=state: net.load_state_dict(state))
        assert outcome[0] == kind and words in outcome[1], (subject.name, outcome)
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
    for subject in ENGINES:
        net = subject.MLP([5, 4, 3], seed=0)
        opt = subject.Adam(net)
        _, source = _adam_after_one_step(subject)
        state = source.state_dict()
        mutate(state)
        outcome = _outcome(lambda opt=opt, state=state: opt.load_state_dict(state))
        assert outcome[0] in ("TypeError", "ValueError") and words in outcome[1], (subject.name, outcome)
        assert opt.state_dict()["state"] == {}
        outcomes.append(outcome)
    assert outcomes[0] == outcomes[1] == outcomes[2]


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_a_loaded_optimizer_state_never_shares_memory_with_the_callers_arrays(subject):
    net, opt = _adam_after_one_step(subject)
    state = opt.state_dict()
    kept = {b: {k: v.copy() for k, v in per.items()} for b, per in state["state"].items()}
    opt.load_state_dict(state)
    _train_step(subject, net, opt)
    for buffer, per in kept.items():
        for key, value in per.items():
            assert np.array_equal(state["state"][buffer][key], value), (buffer, key)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
@pytest.mark.parametrize("setting", ["lr", "eps", "weight_decay"])
def test_adam_refuses_nan_settings_as_torch_does(subject, setting):
    with pytest.raises(ValueError, match="Invalid"):
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], **{setting: float("nan")})
    with pytest.raises(ValueError, match="Invalid"):
        subject.Adam(subject.MLP([3, 2]), **{setting: float("nan")})


def test_torch_net_takes_tensors_that_require_grad_and_records_no_graph():
    x = torch.ones(5, 3, dtype=torch.float64, requires_grad=True)
    net = torch_net.MLP([3, 2], dtype="float64")
    logits = net.forward(x)
    loss = torch_net.SoftmaxCrossEntropy()
    loss.forward(logits * 1.0, torch.zeros(5, dtype=torch.int64))
    dx = net.backward(loss.backward().requires_grad_(True))
    assert not logits.requires_grad and not dx.requires_grad


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
@pytest.mark.parametrize("labels, kind, words", [
    (np.array([0.0, 1.7]), TypeError, "expected integer class labels, got dtype float64"),
    (np.array([True, False]), TypeError, "got dtype bool"),
    (np.array(["1", "2"]), TypeError, "expected integer class labels"),
    (np.array([0, 2, 1, 2**64 - 1], np.uint64), ValueError, "label 18446744073709551615 at position 3"),
])
def test_labels_refuses_what_a_cast_would_hide(subject, labels, kind, words):
    with pytest.raises(kind, match=re.escape(words)):
        subject.labels(labels)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
@pytest.mark.parametrize("seed, kind", [(-1, ValueError), (1.5, TypeError), ("a", TypeError), (None, TypeError),
                                        (True, TypeError)])
def test_a_seed_that_is_not_an_int_from_zero_up_is_refused(subject, seed, kind):
    with pytest.raises(kind, match="seed: expected an int >= 0"):
        subject.MLP([3, 2], seed=seed)


def test_extreme_finite_logits_raise_without_a_numpy_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FloatingPointError, match="loss: overflowed"):
            numpy_net.SoftmaxCrossEntropy().forward(np.array([[-3e38, 3e38]], np.float32), np.array([0]))


def test_torch_net_never_aliases_a_read_only_array():
    array = np.arange(6.0).reshape(2, 3)
    array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = torch_net.asarray(array, "float64")
    tensor += 1
    assert array[0, 0] == 0.0


def test_the_shape_of_a_list_delta_is_named():
    with pytest.raises(RuntimeError, match=r"got a delta of shape \(5, 2\)"):
        numpy_net.MLP([3, 2]).backward([[1.0, 1.0]] * 5)

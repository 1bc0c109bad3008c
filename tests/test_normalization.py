"""BatchNorm1d/2d, Dropout, LeakyReLU and GELU beyond the per-layer catalog: the same arguments
and inputs refused alike by numpy_net, torch_net and the oracle (a batch of one in train mode as
torch does), running statistics over many batches, backward after a mode switch, dropout masks
shared across engines and resumable from a saved generator state, in-place activations."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import numpy_net
import torch_net
from engine_core.specs import LayerSpec, build
from parity_tests.engines import Engine
from torch_net import autograd

ENGINES = [Engine(numpy_net), Engine(torch_net), Engine(autograd)]
IDS = [e.name for e in ENGINES]
HAND = ENGINES[:2]  # the engines whose layers are written by hand (and whose messages name the layer)


def _outcome(call) -> tuple[str, str]:
    try:
        call()
    except (ValueError, TypeError, RuntimeError) as error:
        return type(error).__name__, re.sub(r"numpy\.ndarray|torch\.Tensor", "ARRAY", str(error))
    return "ok", ""


def _net(engine: Engine, spec: LayerSpec, dtype: str = "float64", state: dict | None = None):
    net = build(engine.module, [spec], dtype, seed=0)
    if state:
        net.load_state_dict({**net.state_dict(), **state})
    return net


BN1 = LayerSpec("batchnorm1d", {"num_features": 3})
BN2 = LayerSpec("batchnorm2d", {"num_features": 2, "momentum": 0.3})


# -- arguments and inputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("make, kind, words", [
    (lambda m: m.BatchNorm1d(0), "ValueError", "num_features: expected a positive int, got 0"),
    (lambda m: m.BatchNorm2d(2.5), "TypeError", "num_features: expected a positive int"),
    (lambda m: m.BatchNorm1d(3, eps=-1e-5), "ValueError", "eps: must be > 0"),
    # eps = 0 divides 0 by 0 on a constant feature (variance 0): refused at construction, by choice.
    (lambda m: m.BatchNorm1d(3, eps=0), "ValueError", "eps: must be > 0 and finite, got 0.0 (a feature that is "
                                                      "constant over a batch has variance 0"),
    (lambda m: m.BatchNorm2d(3, eps=0.0), "ValueError", "eps: must be > 0"),
    (lambda m: m.BatchNorm2d(3, eps=float("inf")), "ValueError", "eps: must be > 0 and finite"),
    (lambda m: m.BatchNorm1d(3, momentum=None), "ValueError", "momentum=None"),
    (lambda m: m.BatchNorm2d(3, momentum=1.5), "ValueError", "momentum: expected a number in [0, 1], got 1.5"),
    (lambda m: m.Dropout(1.5), "ValueError", "dropout probability has to be between 0 and 1, but got 1.5"),
    (lambda m: m.Dropout(-0.1), "ValueError", "dropout probability has to be between 0 and 1, but got -0.1"),
    (lambda m: m.Dropout(0.5, seed=-1), "ValueError", "seed: expected an int >= 0, got -1"),
    (lambda m: m.LeakyReLU("0.1"), "TypeError", "negative_slope: expected a real number"),
    (lambda m: m.LeakyReLU(float("inf")), "ValueError", "negative_slope: expected a finite number"),
    (lambda m: m.GELU("erf"), "ValueError", "approximate: expected one of none, tanh, got 'erf'"),
])
def test_bad_arguments_are_refused_alike_in_every_engine(make, kind, words):
    outcomes = {engine.name: _outcome(lambda engine=engine: make(engine.module)) for engine in ENGINES}
    for name, (got_kind, message) in outcomes.items():
        assert got_kind == kind and words in message, (name, got_kind, message)
    assert len({message for _, message in outcomes.values()}) == 1, outcomes


@pytest.mark.parametrize("subject", HAND, ids=[e.name for e in HAND])
@pytest.mark.parametrize("spec, shape", [(BN1, (1, 3)), (BN2, (1, 2, 1, 1))])
def test_a_single_value_per_channel_in_train_mode_is_refused_as_torch_refuses_it(subject, spec, shape):
    oracle = _net(Engine(autograd), spec)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        oracle.forward(autograd.asarray(np.ones(shape), "float64"))
    net = _net(subject, spec)
    before = net.state_dict()
    with pytest.raises(ValueError, match=re.escape(
            f"layer 0 {spec.class_name}(") + r".*\): expected more than 1 value per channel when training, "
            + re.escape(f"got input shape {shape}")):
        net.forward(subject.asarray(np.ones(shape), "float64"))
    assert all(np.array_equal(v, before[k]) for k, v in net.state_dict().items())  # no statistic moved
    # Eval mode normalises by the running statistics: one sample is fine, and torch's result.
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) - 0.5
    state = {"0.running_mean": np.full(spec.args["num_features"], 0.25), "0.running_var": np.full(
        spec.args["num_features"], 2.0), "0.weight": np.full(spec.args["num_features"], -1.5)}
    got = subject.to_numpy(_net(subject, spec, state=state).eval().forward(subject.asarray(x, "float64")))
    want = autograd.to_numpy(_net(Engine(autograd), spec, state=state).eval().forward(autograd.asarray(x, "float64")))
    np.testing.assert_allclose(got, want, rtol=1e-14)
    # A batch of one with more than one pixel per channel is a valid train-mode batch for BatchNorm2d.
    if spec.kind == "batchnorm2d":
        _net(subject, spec).forward(subject.asarray(np.arange(4.0).reshape(1, 2, 2, 1), "float64"))


@pytest.mark.parametrize("subject", HAND, ids=[e.name for e in HAND])
def test_batch_norm_inputs_are_checked_naming_the_layer(subject):
    net = _net(subject, BN1)
    cases = [
        (np.zeros((4, 2)), "float64", "ValueError", "layer 0 BatchNorm1d(3, eps=1e-05, momentum=0.1): x: "
                                                    "expected a 2-D input (batch, 3), got shape (4, 2)"),
        (np.zeros((4, 3, 1)), "float64", "ValueError", "x: expected a 2-D input (batch, 3), got shape (4, 3, 1)"),
        (np.zeros((0, 3)), "float64", "ValueError", "x: empty input (shape (0, 3))"),
        (np.zeros((4, 3)), "float32", "TypeError", "x: expected dtype float64 (the layer's dtype), got float32"),
    ]
    for x, dtype, kind, words in cases:
        got_kind, message = _outcome(lambda x=x, dtype=dtype: net.forward(subject.asarray(x, dtype)))
        assert got_kind == kind and words in message, (x.shape, dtype, message)
    kind, message = _outcome(lambda: net.forward([[1.0, 2.0, 3.0]]))
    assert kind == "TypeError" and "BatchNorm1d(3, eps=1e-05, momentum=0.1): x: expected a ARRAY" in message
    kind, message = _outcome(lambda: _net(subject, BN2).forward(subject.asarray(np.zeros((4, 2)), "float64")))
    assert kind == "ValueError" and "x: expected a 4-D input (batch, 2, height, width), got shape (4, 2)" in message


@pytest.mark.parametrize("subject", HAND, ids=[e.name for e in HAND])
@pytest.mark.parametrize("spec", [BN1, LayerSpec("dropout", {"p": 0.5})], ids=["batchnorm1d", "dropout"])
def test_backward_before_forward_and_a_wrong_delta_name_the_layer(subject, spec):
    layer = build(subject.module, [spec], "float64").layers[0]
    kind, message = _outcome(lambda: layer.backward(subject.asarray(np.ones((4, 3)), "float64")))
    assert kind == "RuntimeError" and "backward() called before forward()" in message and spec.class_name in message
    layer.forward(subject.asarray(np.ones((4, 3)) + np.arange(3), "float64"))
    kind, message = _outcome(lambda: layer.backward(subject.asarray(np.ones((5, 3)), "float64")))
    assert kind == "ValueError" and "delta: expected shape (4, 3)" in message and spec.class_name in message


# -- batch norm across batches and modes --------------------------------------------------------------
@pytest.mark.parametrize("subject", HAND, ids=[e.name for e in HAND])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_running_statistics_follow_torch_over_many_batches_then_eval_uses_them(subject, dtype):
    rng = np.random.default_rng(3)
    oracle = _net(Engine(autograd), BN2, dtype)
    net = _net(subject, BN2, dtype)
    for step in range(6):
        x = rng.normal(2.0, 3.0, (3 + step % 2, 2, 3, 2))
        for engine, model in ((Engine(autograd), oracle), (subject, net)):
            model.forward(engine.asarray(x, dtype))
    rtol = 1e-12 if dtype == "float64" else 1e-5
    want_state = oracle.state_dict()
    for key, value in net.state_dict().items():
        np.testing.assert_allclose(value, want_state[key], rtol=rtol, err_msg=key)
    x = rng.normal(0.0, 1.0, (2, 2, 3, 2))
    got = subject.to_numpy(net.eval().forward(subject.asarray(x, dtype)))
    want = autograd.to_numpy(oracle.eval().forward(autograd.asarray(x, dtype)).detach())
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("subject", HAND, ids=[e.name for e in HAND])
def test_backward_differentiates_the_forward_as_it_ran_whatever_the_mode_is_now(subject):
    rng = np.random.default_rng(4)
    x, delta = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    results = []
    for engine in (subject, Engine(autograd)):
        net = _net(engine, BN1)
        net.forward(engine.asarray(x, "float64"))
        net.eval()  # after the train-mode forward: backward still differentiates batch statistics
        results.append(engine.to_numpy(net.backward(engine.asarray(delta, "float64"))))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-12)
    assert np.abs(results[0].sum(axis=0)).max() < 1e-12  # train-mode dL/dx sums to 0 over the batch


# -- dropout ----------------------------------------------------------------------------------------
def _dropout(engine: Engine, p: float, seed: int = 0):
    return _net(engine, LayerSpec("dropout", {"p": p, "seed": seed}))


def _masks(engine: Engine, net, shape: tuple[int, ...], count: int, dtype: str = "float64") -> list[np.ndarray]:
    ones = engine.asarray(np.ones(shape), dtype)
    return [engine.to_numpy(net.forward(ones)).copy() for _ in range(count)]


def test_every_engine_draws_the_same_dropout_masks_from_the_same_seed():
    masks = [_masks(e, _dropout(e, 0.3, seed=11), (4, 5), 3) for e in ENGINES]
    for other in masks[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(masks[0], other))
    first = masks[0][0]
    assert set(np.unique(first)) <= {0.0, 1 / 0.7} and not np.array_equal(masks[0][0], masks[0][1])
    expected = (np.random.default_rng(11).random((4, 5)) >= 0.3) / 0.7  # the documented draw
    assert np.array_equal(first, expected)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
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
        kind, message = _outcome(lambda bad=bad: resumed.set_rng_state(bad))
        assert kind == "ValueError" and "rng state" in message and "Dropout" in message, message
    assert resumed.rng_state() == state  # a refused state changes nothing


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_dropout_p_one_zero_and_eval(subject):
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero
        assert not subject.to_numpy(_dropout(subject, 1.0).forward(subject.asarray(x, "float32"))).any()
    assert np.array_equal(subject.to_numpy(_dropout(subject, 0.0).forward(subject.asarray(x, "float32"))),
                          x.astype(np.float32))
    net = _dropout(subject, 0.9).eval()
    assert np.array_equal(subject.to_numpy(net.forward(subject.asarray(x, "float64"))), x)
    assert np.array_equal(subject.to_numpy(net.backward(subject.asarray(x, "float64"))), x)


# -- activations --------------------------------------------------------------------------------------
@pytest.mark.parametrize("subject", HAND, ids=[e.name for e in HAND])
@pytest.mark.parametrize("make", [lambda m, **k: m.LeakyReLU(-0.5, **k), lambda m, **k: m.GELU("none", **k),
                                  lambda m, **k: m.GELU("tanh", **k)], ids=["leakyrelu", "gelu", "gelu-tanh"])
def test_in_place_activations_give_the_same_output_and_gradient(subject, make):
    x = np.linspace(-4, 4, 18).reshape(6, 3)
    delta = np.cos(x)
    results = []
    for inplace in (False, True):
        layer = make(subject.module, inplace=inplace)
        out = subject.to_numpy(layer.forward(subject.asarray(x, "float64"))).copy()
        results.append((out, subject.to_numpy(layer.backward(subject.asarray(delta, "float64"))).copy()))
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])


def test_torch_net_layers_take_tensors_that_require_grad_and_record_no_graph():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    for layer in (torch_net.BatchNorm1d(3, dtype="float64"), torch_net.Dropout(0.5), torch_net.LeakyReLU(),
                  torch_net.GELU()):
        out = layer.forward(x)
        assert not out.requires_grad and out.grad_fn is None, layer


def test_importing_numpy_net_does_not_import_scipy_until_a_gelu_needs_it():
    code = ("import sys, numpy_net; assert 'scipy' not in sys.modules; numpy_net.GELU('tanh'); "
            "assert 'scipy' not in sys.modules; numpy_net.GELU(); assert 'scipy.special' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

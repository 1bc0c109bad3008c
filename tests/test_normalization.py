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
from torch.nn import functional

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
    (lambda m: m.BatchNorm1d(3, momentum=-0.1), "ValueError", "momentum: expected a number in [0, 1] or None"),
    (lambda m: m.BatchNorm2d(3, momentum=1.5), "ValueError", "momentum: expected a number in [0, 1] or None (the "
                                                             "cumulative average), got 1.5"),
    (lambda m: m.BatchNorm2d(3, momentum="0.1"), "TypeError", "momentum: expected a real number"),
    (lambda m: m.BatchNorm1d(3, affine=1), "TypeError", "affine: expected True or False, got int 1"),
    (lambda m: m.BatchNorm2d(3, track_running_stats=None), "TypeError", "track_running_stats: expected True or "
                                                                        "False, got None"),
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
        (np.zeros((4, 2)), "float64", "ValueError", "layer 0 BatchNorm1d(3, eps=1e-05, momentum=0.1): x: expected a "
                                                    "2-D (batch, 3) or 3-D (batch, 3, length) input, got shape (4, 2)"),
        (np.zeros((4, 3, 1, 1)), "float64", "ValueError", "x: expected a 2-D (batch, 3) or 3-D (batch, 3, length) "
                                                          "input, got shape (4, 3, 1, 1)"),
        (np.zeros((4, 3, 0)), "float64", "ValueError", "x: empty input (shape (4, 3, 0))"),
        (np.zeros((1, 3, 1)), "float64", "ValueError", "expected more than 1 value per channel when training, got "
                                                       "input shape (1, 3, 1)"),
        (np.zeros((0, 3)), "float64", "ValueError", "x: empty input (shape (0, 3))"),
        (np.zeros((4, 3)), "float32", "TypeError", "x: expected dtype float64 (the layer's dtype), got float32"),
    ]
    for x, dtype, kind, words in cases:
        got_kind, message = _outcome(lambda x=x, dtype=dtype: net.forward(subject.asarray(x, dtype)))
        assert got_kind == kind and words in message, (x.shape, dtype, message)
    kind, message = _outcome(lambda: net.forward([[1.0, 2.0, 3.0]]))
    assert kind == "TypeError" and "BatchNorm1d(3, eps=1e-05, momentum=0.1): x: expected a ARRAY" in message
    kind, message = _outcome(lambda: _net(subject, BN2).forward(subject.asarray(np.zeros((4, 2)), "float64")))
    assert kind == "ValueError" and "x: expected a 4-D (batch, 2, height, width) input, got shape (4, 2)" in message


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


def test_every_engine_shows_batch_norms_arguments_as_torch_names_them():
    for make, text in [
        (lambda m: m.BatchNorm1d(3), "BatchNorm1d(3, eps=1e-05, momentum=0.1)"),
        (lambda m: m.BatchNorm2d(4, eps=1e-3, momentum=None, affine=False, track_running_stats=False),
         "BatchNorm2d(4, eps=0.001, momentum=None, affine=False, track_running_stats=False)"),
    ]:
        assert [repr(make(engine.module)) for engine in ENGINES] == [text] * 3


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_momentum_none_is_the_cumulative_average_of_every_batch_counted_by_num_batches_tracked(subject, dtype):
    """torch's _BatchNorm.forward: num_batches_tracked += 1, then running = (1 - f) running + f batch
    with f = 1 / num_batches_tracked: the plain average of every batch's statistics so far (the
    running variance of the unbiased ones), whatever the batch sizes; torch's too, to its rounding.
    Eval-mode forwards and refused inputs count nothing."""
    rng = np.random.default_rng(5)
    spec = LayerSpec("batchnorm1d", {"num_features": 2, "momentum": None})
    net, oracle = _net(subject, spec, dtype), _net(Engine(autograd), spec, dtype)
    layer = net.layers[0]
    assert layer.num_batches_tracked == 0
    batches = [rng.normal(3.0, 2.0, (2 + step, 2, 4 - step)) for step in range(4)]  # (N, C, L), other sizes
    for x in batches:
        for engine, model in ((subject, net), (Engine(autograd), oracle)):
            model.forward(engine.asarray(x, dtype))
    assert layer.num_batches_tracked == oracle.layers[0].num_batches_tracked == 4
    rtol = 1e-13 if dtype == "float64" else 1e-5
    state, want = net.state_dict(), oracle.state_dict()
    np.testing.assert_allclose(state["0.running_mean"], np.mean([x.mean(axis=(0, 2)) for x in batches], axis=0),
                               rtol=rtol)
    np.testing.assert_allclose(state["0.running_var"], np.mean([x.var(axis=(0, 2), ddof=1) for x in batches], axis=0),
                               rtol=rtol)
    for key in want:
        np.testing.assert_allclose(state[key], want[key], rtol=rtol, err_msg=key)
    net.eval()
    net.forward(subject.asarray(batches[0], dtype))
    net.train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        net.forward(subject.asarray(np.ones((1, 2)), dtype))
    assert layer.num_batches_tracked == 4 and _same(net.state_dict(), state)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_setting_num_batches_tracked_resumes_the_cumulative_average_exactly(subject):
    rng = np.random.default_rng(6)
    spec = LayerSpec("batchnorm2d", {"num_features": 2, "momentum": None})
    batches = [rng.normal(size=(3, 2, 2, 2)) for _ in range(5)]
    straight = _net(subject, spec)
    for x in batches:
        straight.forward(subject.asarray(x, "float64"))
    first = _net(subject, spec)
    for x in batches[:2]:
        first.forward(subject.asarray(x, "float64"))
    resumed = _net(subject, spec, state=first.state_dict())  # a fresh layer: the counter starts at 0
    resumed.layers[0].num_batches_tracked = first.layers[0].num_batches_tracked
    for x in batches[2:]:
        resumed.forward(subject.asarray(x, "float64"))
    assert _same(resumed.state_dict(), straight.state_dict()) and resumed.layers[0].num_batches_tracked == 5
    # A counter set to anything else averages otherwise.
    other = _net(subject, spec, state=first.state_dict())
    for x in batches[2:]:
        other.forward(subject.asarray(x, "float64"))
    assert not np.array_equal(other.state_dict()["0.running_mean"], straight.state_dict()["0.running_mean"])


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_num_batches_tracked_is_an_int_that_counts_train_mode_forwards_and_refuses_bad_values(subject):
    nets = [_net(subject, BN1), _net(subject, LayerSpec("batchnorm1d", {"num_features": 3,
                                                                       "track_running_stats": False}))]
    x = subject.asarray(np.arange(12.0).reshape(4, 3), "float64")
    for net in nets:
        net.forward(x)
        net.forward(x)
    tracking, free = (net.layers[0] for net in nets)
    assert (tracking.num_batches_tracked, free.num_batches_tracked) == (2, 0)  # torch's: None without running stats
    tracking.num_batches_tracked = np.int64(7)
    assert tracking.num_batches_tracked == 7 and type(tracking.num_batches_tracked) is int
    free.num_batches_tracked = 0
    for layer, value, kind, words in [
        (tracking, -1, "ValueError", "num_batches_tracked: expected an integer in [0, 2**63)"),
        (tracking, 1.5, "TypeError", "num_batches_tracked: expected an integer >= 0, got float 1.5"),
        (tracking, True, "TypeError", "num_batches_tracked: expected an integer >= 0, got bool True"),
        (free, 3, "ValueError", "num_batches_tracked: a layer with track_running_stats=False keeps no counter"),
    ]:
        got_kind, message = _outcome(lambda layer=layer, value=value: setattr(layer, "num_batches_tracked", value))
        assert got_kind == kind and words in message and "BatchNorm1d(3, " in message, message
    assert (tracking.num_batches_tracked, free.num_batches_tracked) == (7, 0)  # a refused value changes nothing


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
@pytest.mark.parametrize("spec, shape", [
    (LayerSpec("batchnorm1d", {"num_features": 3, "affine": False}), (5, 3)),
    (LayerSpec("batchnorm1d", {"num_features": 3, "affine": False, "track_running_stats": False}), (2, 3, 4)),
    (LayerSpec("batchnorm2d", {"num_features": 3, "affine": False, "momentum": None}), (2, 3, 2, 2)),
], ids=["(N, C)", "(N, C, L) without running statistics", "(N, C, H, W) momentum=None"])
def test_affine_false_has_no_parameters_and_outputs_xhat(subject, spec, shape):
    """torch.nn.BatchNorm1d(affine=False): weight and bias are None, y = (x - mean) / sqrt(var + eps)."""
    rng = np.random.default_rng(7)
    x, delta = rng.normal(1.0, 2.0, shape), rng.normal(size=shape)
    net = _net(subject, spec)
    assert net.parameters() == {} and net.grads() == {}
    assert list(net.state_dict()) == (["0.running_mean", "0.running_var"] if spec.args["track_running_stats"] else [])
    y = subject.to_numpy(net.forward(subject.asarray(x, "float64")))
    axes = (0, *range(2, len(shape)))
    xhat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, xhat, rtol=1e-12, atol=1e-12)
    dx = subject.to_numpy(net.backward(subject.asarray(delta, "float64")))
    torch_x = torch.from_numpy(x).requires_grad_(True)
    torch_y = functional.batch_norm(torch_x, None, None, training=True, eps=1e-5)
    torch_y.backward(torch.from_numpy(delta))
    np.testing.assert_allclose(dx, torch_x.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("subject", ENGINES, ids=IDS)
def test_without_running_statistics_eval_mode_normalises_by_the_batch_as_torch(subject):
    """track_running_stats=False: no buffers, batch statistics in eval mode too (torch's
    bn_training), and so more than one value per channel needed there too."""
    spec = LayerSpec("batchnorm2d", {"num_features": 2, "track_running_stats": False})
    state = {"0.weight": np.array([1.5, -0.5]), "0.bias": np.array([0.25, 2.0])}
    x = np.random.default_rng(8).normal(size=(2, 2, 3, 1))
    net = _net(subject, spec, state=state)
    assert list(net.state_dict()) == ["0.weight", "0.bias"]
    train = subject.to_numpy(net.forward(subject.asarray(x, "float64"))).copy()
    evaluated = subject.to_numpy(net.eval().forward(subject.asarray(x, "float64")))
    np.testing.assert_array_equal(evaluated, train)
    dx = subject.to_numpy(net.backward(subject.asarray(x, "float64")))
    assert np.abs(dx.sum(axis=(0, 2, 3))).max() < 1e-12  # the batch statistics' dL/dx sums to 0 per channel
    with pytest.raises(ValueError, match=r"[Ee]xpected more than 1 value per channel when training"):
        net.forward(subject.asarray(np.ones((1, 2, 1, 1)), "float64"))


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

"""Batch normalisation and dropout (numpy_net/normalization.py, and its twin torch_net/normalization.py
where a test runs in both): running statistics as torch keeps them, momentum=None's cumulative
average, affine=False, eval mode, dropout's p."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.nn import functional

from engine_core.specs import LayerSpec
from parity_tests.engines import Engine
from tests.layer_stacks import BN1, BN2, EVERY_ENGINE, EVERY_ID, HAND_WRITTEN, ORACLE, one_layer, outcome
from torch_net import autograd


# -- batch norm across batches and modes --------------------------------------------------------------
@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=[e.name for e in HAND_WRITTEN])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_running_statistics_follow_torch_over_many_batches_then_eval_uses_them(subject, dtype):
    rng = np.random.default_rng(3)
    oracle = one_layer(ORACLE, BN2, dtype)
    net = one_layer(subject, BN2, dtype)
    for step in range(6):
        x = rng.normal(2.0, 3.0, (3 + step % 2, 2, 3, 2))
        for engine, model in ((ORACLE, oracle), (subject, net)):
            model.forward(engine.asarray(x, dtype))
    rtol = 1e-12 if dtype == "float64" else 1e-5
    want_state = oracle.state_dict()
    for key, value in net.state_dict().items():
        np.testing.assert_allclose(value, want_state[key], rtol=rtol, err_msg=key)
    x = rng.normal(0.0, 1.0, (2, 2, 3, 2))
    got = subject.to_numpy(net.eval().forward(subject.asarray(x, dtype)))
    want = autograd.to_numpy(oracle.eval().forward(autograd.asarray(x, dtype)).detach())
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=[e.name for e in HAND_WRITTEN])
def test_backward_differentiates_the_forward_as_it_ran_whatever_the_mode_is_now(subject):
    rng = np.random.default_rng(4)
    x, delta = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    results = []
    for engine in (subject, ORACLE):
        net = one_layer(engine, BN1)
        net.forward(engine.asarray(x, "float64"))
        net.eval()  # after the train-mode forward: backward still differentiates batch statistics
        results.append(engine.to_numpy(net.backward(engine.asarray(delta, "float64"))))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-12)
    assert np.abs(results[0].sum(axis=0)).max() < 1e-12  # train-mode dL/dx sums to 0 over the batch


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_momentum_none_is_the_cumulative_average_of_every_batch_counted_by_num_batches_tracked(subject, dtype):
    """torch's _BatchNorm.forward: num_batches_tracked += 1, then running = (1 - f) running + f batch
    with f = 1 / num_batches_tracked: the plain average of every batch's statistics so far (the
    running variance of the unbiased ones), whatever the batch sizes; torch's too, to its rounding.
    Eval-mode forwards and refused inputs count nothing."""
    rng = np.random.default_rng(5)
    spec = LayerSpec("batchnorm1d", {"num_features": 2, "momentum": None})
    net, oracle = one_layer(subject, spec, dtype), one_layer(ORACLE, spec, dtype)
    layer = net.layers[0]
    assert layer.num_batches_tracked == 0
    batches = [rng.normal(3.0, 2.0, (2 + step, 2, 4 - step)) for step in range(4)]  # (N, C, L), other sizes
    for x in batches:
        for engine, model in ((subject, net), (ORACLE, oracle)):
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


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_setting_num_batches_tracked_resumes_the_cumulative_average_exactly(subject):
    rng = np.random.default_rng(6)
    spec = LayerSpec("batchnorm2d", {"num_features": 2, "momentum": None})
    batches = [rng.normal(size=(3, 2, 2, 2)) for _ in range(5)]
    straight = one_layer(subject, spec)
    for x in batches:
        straight.forward(subject.asarray(x, "float64"))
    first = one_layer(subject, spec)
    for x in batches[:2]:
        first.forward(subject.asarray(x, "float64"))
    resumed = one_layer(subject, spec, state=first.state_dict())  # a fresh layer: the counter starts at 0
    resumed.layers[0].num_batches_tracked = first.layers[0].num_batches_tracked
    for x in batches[2:]:
        resumed.forward(subject.asarray(x, "float64"))
    assert _same(resumed.state_dict(), straight.state_dict()) and resumed.layers[0].num_batches_tracked == 5
    # A counter set to anything else averages otherwise.
    other = one_layer(subject, spec, state=first.state_dict())
    for x in batches[2:]:
        other.forward(subject.asarray(x, "float64"))
    assert not np.array_equal(other.state_dict()["0.running_mean"], straight.state_dict()["0.running_mean"])


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_num_batches_tracked_is_an_int_that_counts_train_mode_forwards_and_refuses_bad_values(subject):
    nets = [one_layer(subject, BN1), one_layer(subject, LayerSpec("batchnorm1d", {"num_features": 3,
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
        got_kind, message = outcome(lambda layer=layer, value=value: setattr(layer, "num_batches_tracked", value))
        assert got_kind == kind and words in message and "BatchNorm1d(3, " in message, message
    assert (tracking.num_batches_tracked, free.num_batches_tracked) == (7, 0)  # a refused value changes nothing


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
@pytest.mark.parametrize("spec, shape", [
    (LayerSpec("batchnorm1d", {"num_features": 3, "affine": False}), (5, 3)),
    (LayerSpec("batchnorm1d", {"num_features": 3, "affine": False, "track_running_stats": False}), (2, 3, 4)),
    (LayerSpec("batchnorm2d", {"num_features": 3, "affine": False, "momentum": None}), (2, 3, 2, 2)),
], ids=["(N, C)", "(N, C, L) without running statistics", "(N, C, H, W) momentum=None"])
def test_affine_false_has_no_parameters_and_outputs_xhat(subject, spec, shape):
    """torch.nn.BatchNorm1d(affine=False): weight and bias are None, y = (x - mean) / sqrt(var + eps)."""
    rng = np.random.default_rng(7)
    x, delta = rng.normal(1.0, 2.0, shape), rng.normal(size=shape)
    net = one_layer(subject, spec)
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


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_without_running_statistics_eval_mode_normalises_by_the_batch_as_torch(subject):
    """track_running_stats=False: no buffers, batch statistics in eval mode too (torch's
    bn_training), and so more than one value per channel needed there too."""
    spec = LayerSpec("batchnorm2d", {"num_features": 2, "track_running_stats": False})
    state = {"0.weight": np.array([1.5, -0.5]), "0.bias": np.array([0.25, 2.0])}
    x = np.random.default_rng(8).normal(size=(2, 2, 3, 1))
    net = one_layer(subject, spec, state=state)
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
    return one_layer(engine, LayerSpec("dropout", {"p": p, "seed": seed}))


@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
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

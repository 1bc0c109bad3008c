"""Arguments and inputs of the layers beyond Linear (engine_core/layer_checks.py: batch norm, dropout,
activations' inplace=), refused and shown alike by numpy_net, torch_net and the oracle."""

from __future__ import annotations

import re

import numpy as np
import pytest

from engine_core.specs import LayerSpec, build
from tests.layer_stacks import BN1, BN2, EVERY_ENGINE, EVERY_ID, HAND_WRITTEN, ORACLE, one_layer, outcome
from torch_net import autograd


# -- the argument itself -----------------------------------------------------------------------------
@pytest.mark.parametrize("subject", EVERY_ENGINE, ids=EVERY_ID)
def test_inplace_is_torchs_argument_shown_in_the_repr_and_checked(subject):
    assert repr(subject.ReLU(inplace=True)) == "ReLU(inplace=True)" and repr(subject.ReLU()) == "ReLU()"
    assert repr(subject.LeakyReLU(0.1, True)) == "LeakyReLU(negative_slope=0.1, inplace=True)"
    assert repr(subject.LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"
    assert repr(subject.Dropout(0.2, True, 3)) == "Dropout(p=0.2, inplace=True, seed=3)"
    assert repr(subject.Dropout()) == "Dropout(p=0.5, seed=0)"
    for make in (lambda: subject.ReLU(inplace=1), lambda: subject.LeakyReLU(0.1, "yes"),
                 lambda: subject.Dropout(0.5, inplace=None)):
        with pytest.raises(TypeError, match="inplace: expected True or False"):
            make()
    for cls in ("Sigmoid", "Tanh", "GELU", "Identity"):  # torch's take no inplace either
        with pytest.raises(TypeError):
            getattr(subject, cls)(inplace=True)



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
    outcomes = {engine.name: outcome(lambda engine=engine: make(engine.module)) for engine in EVERY_ENGINE}
    for name, (got_kind, message) in outcomes.items():
        assert got_kind == kind and words in message, (name, got_kind, message)
    assert len({message for _, message in outcomes.values()}) == 1, outcomes


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=[e.name for e in HAND_WRITTEN])
@pytest.mark.parametrize("spec, shape", [(BN1, (1, 3)), (BN2, (1, 2, 1, 1))])
def test_a_single_value_per_channel_in_train_mode_is_refused_as_torch_refuses_it(subject, spec, shape):
    oracle = one_layer(ORACLE, spec)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        oracle.forward(autograd.asarray(np.ones(shape), "float64"))
    net = one_layer(subject, spec)
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
    got = subject.to_numpy(one_layer(subject, spec, state=state).eval().forward(subject.asarray(x, "float64")))
    want = autograd.to_numpy(one_layer(ORACLE, spec, state=state).eval().forward(autograd.asarray(x, "float64")))
    np.testing.assert_allclose(got, want, rtol=1e-14)
    # A batch of one with more than one pixel per channel is a valid train-mode batch for BatchNorm2d.
    if spec.kind == "batchnorm2d":
        one_layer(subject, spec).forward(subject.asarray(np.arange(4.0).reshape(1, 2, 2, 1), "float64"))


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=[e.name for e in HAND_WRITTEN])
def test_batch_norm_inputs_are_checked_naming_the_layer(subject):
    net = one_layer(subject, BN1)
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
        got_kind, message = outcome(lambda x=x, dtype=dtype: net.forward(subject.asarray(x, dtype)))
        assert got_kind == kind and words in message, (x.shape, dtype, message)
    kind, message = outcome(lambda: net.forward([[1.0, 2.0, 3.0]]))
    assert kind == "TypeError" and "BatchNorm1d(3, eps=1e-05, momentum=0.1): x: expected a ARRAY" in message
    kind, message = outcome(lambda: one_layer(subject, BN2).forward(subject.asarray(np.zeros((4, 2)), "float64")))
    assert kind == "ValueError" and "x: expected a 4-D (batch, 2, height, width) input, got shape (4, 2)" in message


@pytest.mark.parametrize("subject", HAND_WRITTEN, ids=[e.name for e in HAND_WRITTEN])
@pytest.mark.parametrize("spec", [BN1, LayerSpec("dropout", {"p": 0.5})], ids=["batchnorm1d", "dropout"])
def test_backward_before_forward_and_a_wrong_delta_name_the_layer(subject, spec):
    layer = build(subject.module, [spec], "float64").layers[0]
    kind, message = outcome(lambda: layer.backward(subject.asarray(np.ones((4, 3)), "float64")))
    assert kind == "RuntimeError" and "backward() called before forward()" in message and spec.class_name in message
    layer.forward(subject.asarray(np.ones((4, 3)) + np.arange(3), "float64"))
    kind, message = outcome(lambda: layer.backward(subject.asarray(np.ones((5, 3)), "float64")))
    assert kind == "ValueError" and "delta: expected shape (4, 3)" in message and spec.class_name in message


def test_every_engine_shows_batch_norms_arguments_as_torch_names_them():
    for make, text in [
        (lambda m: m.BatchNorm1d(3), "BatchNorm1d(3, eps=1e-05, momentum=0.1)"),
        (lambda m: m.BatchNorm2d(4, eps=1e-3, momentum=None, affine=False, track_running_stats=False),
         "BatchNorm2d(4, eps=0.001, momentum=None, affine=False, track_running_stats=False)"),
    ]:
        assert [repr(make(engine.module)) for engine in EVERY_ENGINE] == [text] * 3

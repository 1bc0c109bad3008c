"""Gradient-flow tracking (backprop/gradflow.py): the numbers mean what the docstring says, every
engine gives the same ones in float64, and tracking leaves the trajectory alone."""

from __future__ import annotations

import numpy as np
import pytest

import engine_core.specs as specs
from backprop import gradflow
from backprop.engines import load_engine
from backprop.gradflow import METRICS, GradientTracker
from backprop.training import make_step

ENGINES = ("numpy", "torch", "autograd")


CNN = [specs.LayerSpec("conv2d", {"in_channels": 1, "out_channels": 3, "kernel_size": 3, "stride": 2,
                                  "padding": 1}),
       specs.LayerSpec("relu"), specs.LayerSpec("maxpool2d", {"kernel_size": 2}), specs.LayerSpec("flatten"),
       specs.LayerSpec("linear", {"in_features": 12, "out_features": 10})]


def _data(shape: tuple[int, ...], n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), rng.integers(0, 10, n)


def _train(engine_name: str, net_of, x, y, epochs: int = 2, batch: int = 16, track: bool = True,
           optimizer: str = "sgd", lr: float = 0.1, momentum: float = 0.9):
    engine = load_engine(engine_name)
    net = net_of(engine)
    opt = engine.build_optimizer(net, optimizer, lr, momentum=momentum)
    step = make_step(engine, net, opt, engine.loss())
    tracker = GradientTracker(net, engine.to_numpy) if track else None
    if tracker is not None:
        step = tracker.wrap(step)
    for epoch in range(1, epochs + 1):
        for start in range(0, len(y), batch):
            step(engine.asarray(x[start : start + batch], "float64"), engine.labels(y[start : start + batch]))
        if tracker is not None:
            tracker.end_epoch(epoch)
    return net, tracker


def _mlp(engine):
    return engine.build_net(specs.mlp([20, 12, 12, 12, 10], "sigmoid"), "xavier_normal", 3, "float64", training=True)


def _cnn(engine):
    return specs.build(engine.module, CNN, dtype="float64", seed=2)


def _table(tracker: GradientTracker) -> np.ndarray:
    return np.array([[row[m] for m in METRICS] for row in tracker.rows])


@pytest.mark.parametrize("net_of, shape", [(_mlp, (20,)), (_cnn, (1, 8, 8))], ids=["mlp", "cnn"])
def test_every_engine_records_the_same_norms_in_float64(net_of, shape):
    """The same problem on numpy, torch and autograd: identical layers and steps, norms equal to
    1e-12 relative (float64 rounding is ~1e-16 per operation; a wrong delta or a missed update
    would differ by O(1))."""
    x, y = _data(shape)
    trackers = {name: _train(name, net_of, x, y)[1] for name in ENGINES}
    reference = trackers["numpy"]
    assert len(reference.rows) == 2 * len(reference.keys)
    for name in ("torch", "autograd"):
        tracker = trackers[name]
        assert [(r["epoch"], r["layer"], r["shape"], r["steps"]) for r in tracker.rows] == \
               [(r["epoch"], r["layer"], r["shape"], r["steps"]) for r in reference.rows]
        np.testing.assert_allclose(_table(tracker), _table(reference), rtol=1e-12, atol=0, err_msg=name)
    assert np.all(_table(reference) > 0)


def test_the_norms_are_the_documented_quantities_averaged_over_the_epoch():
    """Two plain SGD steps in one epoch, recomputed by hand: delta of the last layer is
    (softmax(z) - onehot(y)) / B, the update ratio is lr ||dL/dW|| / ||W||, the row their mean."""
    x, y = _data((20,), n=8)
    engine = load_engine("numpy")
    net = _mlp(engine)
    lr = 0.5
    opt = engine.build_optimizer(net, "sgd", lr)
    tracker = GradientTracker(net)
    step = tracker.wrap(make_step(engine, net, opt, engine.loss()))
    expected = []
    for half in (slice(0, 4), slice(4, 8)):
        before = net.state_dict()
        logits = net.forward(x[half].copy())
        step(x[half], y[half])
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(4), y[half]] -= 1
        last = tracker.keys[-1]
        grad = net.grads()[last]
        expected.append([np.linalg.norm(grad), np.linalg.norm(p / 4),
                         lr * np.linalg.norm(grad) / np.linalg.norm(before[last])])
    (row,) = [r for r in tracker.end_epoch(1) if r["layer"] == "6"]
    assert row["steps"] == 2 and row["shape"] == "12x10"
    np.testing.assert_allclose([row[m] for m in METRICS], np.mean(expected, axis=0), rtol=1e-12)
    assert tracker.end_epoch(2) == []  # no step recorded: no row


def test_tracking_changes_nothing_in_the_trajectory():
    x, y = _data((20,))
    with_tracking, _ = _train("numpy", _mlp, x, y, track=True, optimizer="adam", lr=1e-2)
    without, _ = _train("numpy", _mlp, x, y, track=False, optimizer="adam", lr=1e-2)
    for key, value in without.state_dict().items():
        np.testing.assert_array_equal(with_tracking.state_dict()[key], value, err_msg=key)


def test_the_oracle_is_switched_to_keep_its_deltas():
    engine = load_engine("autograd")
    net = _mlp(engine)
    assert net.keep_deltas is False  # what the trainer builds, to save work
    GradientTracker(net, engine.to_numpy)
    assert net.keep_deltas is True


def test_a_net_without_weights_to_track_is_refused():
    net = specs.build(load_engine("numpy").module, [specs.LayerSpec("flatten")], dtype="float64")
    with pytest.raises(ValueError, match="no Linear or Conv2d weight"):
        GradientTracker(net)


@pytest.mark.rendered  # figures drawn for real (tests/conftest.py: rendered_figures)
def test_the_csv_round_trips_and_a_resumed_run_keeps_earlier_epochs(tmp_path):
    x, y = _data((20,))
    _, tracker = _train("numpy", _mlp, x, y, epochs=3)
    csv_path, png_path = tracker.write(str(tmp_path), title="t")
    rows = gradflow.read_csv(csv_path)
    assert rows == tracker.rows  # repr(float) keeps every bit
    with open(png_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    resumed = GradientTracker(_mlp(load_engine("numpy")))
    resumed.load(csv_path, epochs=2)
    assert [r["epoch"] for r in resumed.rows] == [1] * 4 + [2] * 4
    resumed.load(str(tmp_path / "absent.csv"), epochs=2)
    assert resumed.rows == []


def test_the_plot_has_one_log_scale_line_per_layer_in_each_panel(tmp_path, monkeypatch):
    import backprop.plots

    x, y = _data((20,))
    _, tracker = _train("numpy", _mlp, x, y, epochs=2)
    seen = {}

    def capture(fig, path):
        seen["axes"] = list(fig.axes)

    monkeypatch.setattr(backprop.plots, "save_figure", capture)
    gradflow.plot_gradients(tracker.rows, str(tmp_path / "g.png"))
    axes = seen["axes"]
    assert len(axes) == len(METRICS)
    for ax, metric in zip(axes, METRICS):
        assert ax.get_yscale() == "log"
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["0 (20x12)", "2 (12x12)", "4 (12x12)", "6 (12x10)"]
        first = [r[metric] for r in tracker.rows if r["layer"] == "0"]
        np.testing.assert_array_equal(lines[0].get_ydata(), first)

"""Figures (backprop/plots.py): bench ticks at the batch sizes run, integer epoch ticks, the confusion
matrix's classes and colour bar, long titles wrapped inside the figure."""

from __future__ import annotations

import numpy as np
import pytest

from backprop import plots
from backprop.config import new_config
from backprop.datasets import class_names
from backprop.training import curves_title


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save (instead of writing them)."""
    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.append(fig))
    return saved


def _bench_rows(batches):
    return [{"workload": "notebook", "engine": engine, "batch_size": b, "dtype": "float32", "samples_per_s": 1e3 * b,
             "floor_library": "numpy", "floor_samples_per_s": 2e3 * b, "ratio_to_floor": 2.0, "steps_timed": 100,
             "repeats": 5}
            for b in batches for engine in ("numpy", "torch")]


def test_bench_png_is_ticked_at_the_batch_sizes_run(figures):
    plots.plot_bench(_bench_rows([8, 48, 640]), "unused.png")
    speed, ratio = figures[0].axes  # samples/s, and time as a multiple of the floor
    for ax in (speed, ratio):
        assert list(ax.get_xticks()) == [8, 48, 640]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "48", "640"]
        assert len(ax.xaxis.get_minorticklocs()) == 0
    assert [list(line.get_ydata()) for line in ratio.lines[:2]] == [[2.0, 2.0, 2.0]] * 2


def test_with_one_batch_size_the_gemm_floor_is_still_a_visible_point(figures):
    plots.plot_bench(_bench_rows([8]), "unused.png")
    speed = figures[0].axes[0]
    floor = [line for line in speed.lines if line.get_label() == "GEMM floor (numpy)"]
    assert len(floor) == 1 and list(floor[0].get_xydata()[:, 0]) == [8]
    # One point draws nothing as a line (dashed or not): only a marker makes it visible.
    assert floor[0].get_marker() not in (None, "", " ", "None") and floor[0].get_markersize() > 0
    assert floor[0].get_marker() != speed.lines[0].get_marker()  # told apart from the engines' points
    assert "GEMM floor (numpy)" in [t.get_text() for t in speed.get_legend().get_texts()]


def test_curves_have_integer_epoch_ticks_and_a_title_that_says_what_was_trained(figures):
    rows = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1 / e, "train_acc": 0.5, "test_acc": 0.5}
            for e in range(1, 4)]
    config = new_config("default", optimizer="adam")
    title = curves_title(config, ["numpy"], "fashion-mnist")
    plots.plot_curves(rows, "unused.png", title=title)
    fig = figures[0]
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert fig._suptitle.get_text() == title
    for words in ("fashion-mnist", "default preset", "784-256-128-10 relu", "numpy engine", "adam lr 0.001"):
        assert words in title, (words, title)


def test_the_confusion_matrix_names_the_classes_and_labels_its_colour_bar(figures):
    names = class_names("fashion-mnist")
    assert names[:2] == ["T-shirt/top", "Trouser"] and len(names) == 10
    plots.plot_confusion(np.eye(10, dtype=np.int64) * 7, "unused.png", classes=names)
    image_ax, bar_ax = figures[0].axes
    assert [t.get_text() for t in image_ax.get_xticklabels()] == names
    assert [t.get_text() for t in image_ax.get_yticklabels()] == names
    assert bar_ax.get_ylabel() == "test images"
    assert image_ax.get_xlabel() == "predicted class" and image_ax.get_ylabel() == "true class"


LENET_TITLE = ("fashion-mnist, first 2000 samples, lenet preset: layers conv2d(1, 6, 5, padding=2), relu, "
               "maxpool2d(2), conv2d(6, 16, 5), relu, maxpool2d(2), flatten, linear(400, 120), relu, "
               "linear(120, 84), relu, linear(84, 10), numpy engine\nsgd lr 0.05 momentum 0.9, batch 64")


@pytest.mark.parametrize("draw", ["curves", "confusion", "gradients", "bench"])
def test_a_layer_stack_title_is_wrapped_inside_the_figure(figures, draw):
    from backprop import gradflow

    if draw == "curves":
        plots.plot_curves([{"epoch": 1, "train_loss": 1.0, "test_loss": 1.0, "train_acc": 0.5, "test_acc": 0.5}],
                          "unused.png", title=LENET_TITLE)
    elif draw == "confusion":
        plots.plot_confusion(np.eye(10, dtype=np.int64), "unused.png", title=LENET_TITLE)
    elif draw == "gradients":
        rows = [{"layer": "0", "shape": "6x1x5x5", "epoch": 1, "steps": 1, **{m: 0.5 for m in gradflow.METRICS}}]
        gradflow.plot_gradients(rows, "unused.png", title=LENET_TITLE)
    else:
        plots.plot_bench(_bench_rows([8]), "unused.png", title=LENET_TITLE)
    fig = figures[0]
    title = fig._suptitle if fig._suptitle is not None else fig.axes[0].title
    assert title.get_text().replace("\n", " ") == LENET_TITLE.replace("\n", " ")  # wrapped, nothing lost
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the plot functions closed the figure: draw it afresh
    canvas.draw()
    box = title.get_window_extent(canvas.get_renderer())
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1, (box, fig.bbox)

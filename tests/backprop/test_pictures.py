"""Pictures of what was learned (backprop/pictures.py): the right images, in the right order, with the
right titles."""

from __future__ import annotations

import numpy as np
import pytest

import engine_core.specs as specs
import numpy_net
from backprop import pictures
from backprop.architecture import parse_layers
from backprop.engines import load_engine
from engine_core.specs import build
from tests.networks import RECURRENT_STACKS, TINY_LSTM

NAMES = [f"class{i}" for i in range(10)]


def test_linear_weights_become_one_28x28_image_per_unit():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((784, 5))
    state = {"0.weight": weight, "0.bias": np.zeros(5), "2.weight": rng.standard_normal((5, 10))}
    images, titles, key = pictures.weight_images(state)
    assert key == "0.weight" and images.shape == (5, 28, 28)
    for j in range(5):  # column j of the (in, out) weight is unit j's input weights, row-major pixels
        np.testing.assert_array_equal(images[j], weight[:, j].reshape(28, 28))
    assert titles == [f"unit {j}" for j in range(5)]
    assert pictures.weight_images(state, limit=3)[0].shape == (3, 28, 28)


def test_conv_filters_are_drawn_per_output_and_input_channel():
    net = specs.build(load_engine("numpy").module, [
        specs.LayerSpec("batchnorm2d", {"num_features": 2}),  # 1-D weight first: skipped
        specs.LayerSpec("conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": 5})], dtype="float64")
    state = net.state_dict()
    images, titles, key = pictures.weight_images(state)
    assert key == "1.weight" and images.shape == (6, 5, 5)
    np.testing.assert_array_equal(images[3], state["1.weight"][1, 1])
    assert titles[:3] == ["filter 0, ch 0", "filter 0, ch 1", "filter 1, ch 0"]


def test_weights_that_are_no_square_image_or_absent_are_refused():
    with pytest.raises(ValueError, match="no square image"):
        pictures.weight_images({"0.weight": np.zeros((10, 3))})
    with pytest.raises(ValueError, match="no Linear or Conv2d weight"):
        pictures.weight_images({"0.weight": np.ones(3)})


def test_mistakes_are_the_wrong_predictions_most_confident_first():
    probabilities = np.array([
        [0.90, 0.05, 0.05],  # 0: predicts 0, label 0: right
        [0.10, 0.80, 0.10],  # 1: predicts 1, label 0: wrong at 0.8
        [0.20, 0.20, 0.60],  # 2: predicts 2, label 1: wrong at 0.6
        [0.05, 0.05, 0.90],  # 3: predicts 2, label 0: wrong at 0.9
        [0.10, 0.80, 0.10],  # 4: predicts 1, label 2: wrong at 0.8, ties with 1: after it
        [0.30, 0.60, 0.10],  # 5: predicts 1, label 1: right
    ])
    labels = np.array([0, 0, 1, 0, 2, 1])
    np.testing.assert_array_equal(pictures.confident_mistakes(probabilities, labels), [3, 1, 4, 2])
    np.testing.assert_array_equal(pictures.confident_mistakes(probabilities, labels, count=2), [3, 1])
    assert pictures.confident_mistakes(probabilities, probabilities.argmax(1)).size == 0


def test_mistake_images_are_the_selected_test_images_undone_from_normalisation():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (6, 784))
    labels = np.array([0, 1, 2, 3, 4, 5])
    probabilities = np.full((6, 10), 0.01)
    probabilities[np.arange(6), [0, 7, 2, 9, 8, 5]] = [0.91, 0.5, 0.91, 0.7, 0.91, 0.91]
    images, titles, indices = pictures.mistake_images(x, labels, probabilities, NAMES)
    np.testing.assert_array_equal(indices, [4, 3, 1])
    np.testing.assert_allclose(images, (x[[4, 3, 1]].reshape(3, 28, 28) + 1) / 2)
    assert titles == ["true class4\npred class8 0.91", "true class3\npred class9 0.70",
                      "true class1\npred class7 0.50"]


def test_the_grid_draws_exactly_the_given_images_in_order():
    rng = np.random.default_rng(2)
    images = rng.uniform(-1, 1, (10, 4, 4))
    fig = pictures.image_grid(images, [f"t{i}" for i in range(10)], cmap="RdBu_r", symmetric=True)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 10 and len(fig.axes) == 16  # 8 per row: two rows, six empty panels hidden
    for i, ax in enumerate(drawn):
        np.testing.assert_array_equal(ax.images[0].get_array(), images[i])
        assert ax.get_title() == f"t{i}"
        m = np.abs(images).max()  # one scale for every panel
        assert ax.images[0].get_clim() == (-m, m)
    pictures.pyplot().close(fig)


def test_probabilities_are_the_softmax_of_the_networks_logits():
    engine = load_engine("torch")
    net = engine.build_net(specs.mlp([784, 10], "relu"), "xavier_normal", 0, "float64")
    x = np.random.default_rng(3).uniform(-1, 1, (7, 784))
    probabilities = pictures.predict_probabilities(engine, net, x, chunk=3)
    logits = engine.to_numpy(net.forward(engine.asarray(x, "float64")))
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-12)


LENET_TITLE = ("fashion-mnist, first 2000 samples, lenet preset: layers conv2d(1, 6, 5, padding=2), relu, "
               "maxpool2d(2), conv2d(6, 16, 5), relu, maxpool2d(2), flatten, linear(400, 120), relu, "
               "linear(120, 84), relu, linear(84, 10), numpy engine\n")


def _extents(fig):
    """(figure box, suptitle box, [(panel box, panel title box)] of the drawn panels) in pixels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = [(ax.get_window_extent(renderer), ax.title.get_window_extent(renderer))
              for ax in fig.axes if ax.images]
    return fig.bbox, fig._suptitle.get_window_extent(renderer), panels


@pytest.mark.parametrize("count, lines", [(6, 1), (24, 2)])  # lenet's conv1 filters; the mistakes
def test_a_long_title_fits_the_figure_and_panel_titles_clear_the_row_above(count, lines):
    titles = ["true Ankle boot\npred Sneaker 1.00" if lines == 2 else "filter 0"] * count
    fig = pictures.image_grid(np.zeros((count, 28, 28)), titles, title=LENET_TITLE + "the mistakes")
    figure, title, panels = _extents(fig)
    assert figure.x0 <= title.x0 and title.x1 <= figure.x1 and title.y1 <= figure.y1, (title, figure)
    assert "conv2d(6, 16, 5)" in fig._suptitle.get_text()  # broken between layers, not inside one
    for panel, label in panels:
        # Nothing drawn above a panel's title: the figure title for the first row, else the row above.
        above = [p for p, _ in panels if p.y0 > panel.y1] or [title]
        assert label.y1 <= min(p.y0 for p in above), (label, above)
        assert label.y0 >= panel.y1 - 1  # the title sits on its own image, not over it
    pictures.pyplot().close(fig)


def test_the_first_weight_drawn_is_the_recurrent_input_weight_one_image_per_gate():
    from backprop import pictures

    net = build(numpy_net, parse_layers(TINY_LSTM), "float64", seed=3)
    images, titles, key = pictures.weight_images(net.state_dict())
    assert key == "0.weight_ih_l0" and titles == ["gate i", "gate f", "gate g", "gate o"]
    np.testing.assert_array_equal(images[2], net.state_dict()["0.weight_ih_l0"][8:12])  # g's rows: (H, 28)
    gru = build(numpy_net, parse_layers(RECURRENT_STACKS[0]), "float64")
    assert pictures.weight_images(gru.state_dict())[1] == ["gate r", "gate z", "gate n"]


@pytest.mark.parametrize("p, shown", [(0.5, "0.50"), (0.9912, "0.99"), (0.9991, "0.99910"), (0.99971, "0.99971"),
                                      (0.999994, "0.999994"), (0.9999996, ">0.999999"), (1.0, ">0.999999")])
def test_a_mistakes_confidence_is_never_shown_as_1(p, shown):
    from backprop.pictures import confidence_text

    assert confidence_text(p) == shown


def test_a_grid_of_mistakes_shows_every_confidence_to_one_precision():
    """The most a panel needs, for all of them: 0.99918, 0.99810, 0.99000 read as descending,
    where 0.99918, 0.9981, 0.99 did not."""
    from backprop.pictures import mistake_images

    probabilities = np.array([[0.00082, 0.99918], [0.0019, 0.9981], [0.01, 0.99]])
    _, titles, _ = mistake_images(np.zeros((3, 784)), np.zeros(3, np.int64), probabilities, ["a", "b"], count=3)
    assert [title.split()[-1] for title in titles] == ["0.99918", "0.99810", "0.99000"]


def test_the_weights_picture_has_one_colour_scale_with_a_bar():
    from backprop import pictures

    images = np.random.default_rng(0).uniform(-1, 1, (5, 4, 4)) * np.arange(1, 6)[:, None, None]
    fig = pictures.image_grid(images, [str(i) for i in range(5)], cmap="RdBu_r", symmetric=True, colorbar="weight")
    drawn = [ax for ax in fig.axes if ax.images]
    m = float(np.abs(images).max())
    assert all(ax.images[0].get_clim() == (-m, m) for ax in drawn)  # one scale for every panel
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "weight"]
    assert len(bars) == 1
    pictures.pyplot().close(fig)

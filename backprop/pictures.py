"""Pictures of what a network learned: its first layer's weights as images, and the test images
it got most confidently wrong. ``backprop evaluate`` writes both next to confusion.png.

Selection and image arrays are plain functions (weight_images, confident_mistakes,
mistake_images) so what is drawn can be checked without reading a PNG back.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from engine_core.naming import is_layer_weight
from engine_core.recurrent_checks import GATES

from .engines import Engine, inference_mode, set_mode
from .plots import fitted, pyplot, save_figure

WEIGHTS_PNG = "weights.png"
MISTAKES_PNG = "mistakes.png"


def _input_weight(key: str) -> bool:
    """A recurrent layer's weights on its input: ``*.weight_ih_l0`` (the first stacked layer's)."""
    return key.rpartition(".")[2] == "weight_ih_l0"


def _projection(key: str) -> bool:
    """A MultiheadAttention's packed input projection: ``*.in_proj_weight`` (3E, E), rows Q, K, V."""
    return key.rpartition(".")[2] == "in_proj_weight"


def first_weight(state: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    """(key, array) of the first Linear, Conv2d or recurrent input weight in state-dict order (the
    first ``*.weight`` with two or more dimensions, batch norm's being 1-D, or ``*.weight_ih_l0``).
    ValueError if there is none."""
    for key, value in state.items():
        if is_layer_weight(key, np.ndim(value)) or _input_weight(key) or _projection(key):
            return key, np.asarray(value)
    raise ValueError("the network has no Linear or Conv2d weight, nor a recurrent one, to draw")


def weight_images(state: dict[str, np.ndarray], limit: int = 64) -> tuple[np.ndarray, list[str], str]:
    """(images (n, h, w) float64, titles, key) for the first layer's weights, at most ``limit``.

    Linear weight W (in, out), the engines' layout: image j is W[:, j] reshaped to a square
    (28x28 for MNIST's 784 inputs), titled "unit j". Conv2d weight (C_out, C_in, kH, kW):
    image o*C_in + c is filter o on input channel c, titled "filter o" (", ch c" when C_in > 1).
    A recurrent layer's weight_ih_l0 (G H, in), torch's layout: image g is gate g's block
    (H, in), a row per hidden unit and a column per input feature (a pixel of the image's row),
    titled "gate i" (torch's gate names: i, f, g, o for an LSTM, r, z, n for a GRU, h for an RNN).
    A MultiheadAttention's in_proj_weight (3E, E): its Q, K and V blocks, titled so.
    Raises ValueError when there is no such weight or a Linear's fan_in is not a square number.
    """
    key, weight = first_weight(state)
    weight = weight.astype(np.float64)
    if _projection(key):  # the Q, K and V blocks, (E, E) each: a row per output, a column per input
        return weight.reshape(3, -1, weight.shape[1])[:limit], ["Q", "K", "V"][:limit], key
    if _input_weight(key):
        gates = _gate_names(weight.shape[0], state, key)
        images = weight.reshape(len(gates), -1, weight.shape[1])
        return images[:limit], [f"gate {name}" for name in gates][:limit], key
    if weight.ndim == 2:
        side = math.isqrt(weight.shape[0])
        if side * side != weight.shape[0]:
            raise ValueError(f"{key}: {weight.shape[0]} inputs per unit are no square image")
        images = weight.T.reshape(-1, side, side)
        titles = [f"unit {j}" for j in range(len(images))]
    else:
        out_channels, in_channels = weight.shape[:2]
        images = weight.reshape(out_channels * in_channels, *weight.shape[2:])
        titles = [f"filter {o}" + (f", ch {c}" if in_channels > 1 else "")
                  for o in range(out_channels) for c in range(in_channels)]
    return images[:limit], titles[:limit], key


def _gate_names(rows: int, state: dict[str, np.ndarray], key: str) -> tuple[str, ...]:
    """The gates stacked in a recurrent weight of ``rows`` = G H rows, told apart by G = rows / H,
    H being the width of weight_hh_l0 beside it."""
    hidden = np.shape(state[key.replace("weight_ih_l0", "weight_hh_l0")])[1]
    gates = rows // hidden
    names = {len(names): names for names in GATES.values()}  # 1, 4 and 3 gates: rnn, lstm, gru
    return names.get(gates, tuple(str(g) for g in range(gates)))


def predict_probabilities(engine: Engine, net: Any, x: np.ndarray, chunk: int = 1000) -> np.ndarray:
    """softmax(net(x)) as float64 (N, classes), forward only and in eval mode (the net's mode is
    restored after), ``chunk`` samples at a time (the max is subtracted first, so large logits
    cannot overflow). x: (N, F), (N, C, H, W) or (N, T, F), as the net takes it."""
    parts = []
    training = bool(getattr(net, "training", False))
    set_mode(net, False)
    try:
        with inference_mode():
            for start in range(0, len(x), chunk):
                rows = np.ascontiguousarray(x[start : start + chunk])
                logits = engine.to_numpy(net.forward(engine.asarray(rows, rows.dtype.name))).astype(np.float64)
                logits -= logits.max(axis=1, keepdims=True)
                np.exp(logits, out=logits)
                parts.append(logits / logits.sum(axis=1, keepdims=True))
    finally:
        if training:
            set_mode(net, True)
    return np.concatenate(parts) if parts else np.empty((0, 0))


def confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, count: int = 24) -> np.ndarray:
    """Indices of the misclassified rows (argmax != label), most confident first: by the
    predicted class's probability, descending; equal confidences in index order. At most ``count``."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = np.lexsort((wrong, -confidence))  # last key first: confidence, then index
    return wrong[order][:count]


def confidence_digits(p: float) -> int:
    """The decimals that tell the probability ``p`` from 1: two, or more (0.99971 needs 5), up to 6."""
    if p < 0.995:
        return 2
    if 1 - p < 1e-6:
        return 6
    return min(6, 1 - math.floor(math.log10(1 - p)))


def confidence_text(p: float, digits: int | None = None) -> str:
    """A probability as a panel shows it: to ``digits`` decimals (default confidence_digits(p)), so
    never as 1 (0.99971, not 1.00); ">0.999999" beyond 6. A grid passes the most any of its panels
    needs, so that its descending confidences read as descending (0.99918, 0.99810, 0.99000)."""
    if 1 - p < 1e-6:
        return ">0.999999"
    return f"{p:.{confidence_digits(p) if digits is None else digits}f}"


def mistake_images(x: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, names: list[str],
                   count: int = 24) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(images (n, 28, 28) in [0, 1], titles, indices) of confident_mistakes: x's normalised rows
    ((x + 1) / 2 undoes Normalize(0.5, 0.5)) titled "true <name>\\npred <name> <p>"."""
    indices = confident_mistakes(probabilities, labels, count)
    side = math.isqrt(int(np.prod(x.shape[1:])))
    images = (np.asarray(x[indices], np.float64).reshape(len(indices), side, side) + 1) / 2
    predicted = probabilities[indices].argmax(axis=1)
    shown = [float(probabilities[i, p]) for i, p in zip(indices, predicted)]
    digits = max((confidence_digits(p) for p in shown), default=2)  # one precision for the whole grid
    titles = [f"true {names[labels[i]]}\npred {names[p]} {confidence_text(q, digits)}"
              for i, p, q in zip(indices, predicted, shown)]
    return images, titles, indices


def image_grid(images: np.ndarray, titles: list[str], title: str = "", cmap: str = "gray",
               symmetric: bool = False, colorbar: str | None = None) -> Any:
    """A figure with one small panel per image (row-major, up to 8 per row), each titled. With
    ``symmetric`` all images share the colour range [-m, m], m = max |images|, so 0 is the colour
    map's middle (weights: red positive, blue negative) and a colour means one value in every
    panel; otherwise [0, 1]. ``colorbar``: the label of a colour bar showing that scale (None: no
    bar). ``title`` is
    wrapped to the figure's width; each row is as tall as its panel plus its titles' lines, so
    multi-line panel titles do not run into the row above."""
    plt = pyplot()
    n = max(len(images), 1)
    columns = min(n, 8)
    rows = math.ceil(n / columns)
    panel, panel_font, title_font = 1.45, 6, 9  # inches a panel; points
    width = max(panel * columns, 6.0)  # room for the title above even a single panel
    title_lines = max((label.count("\n") + 1 for label in titles), default=1)
    row_height = panel + title_lines * panel_font * 1.5 / 72
    wrapped = fitted(title, width, title_font) if title else ""
    head = (wrapped.count("\n") + 1) * title_font * 1.5 / 72 + 0.1 if wrapped else 0.0
    # Constrained layout places the panel titles and the figure title in the space they need.
    fig, axes = plt.subplots(rows, columns, figsize=(width, row_height * rows + head + 0.2), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    m = float(np.max(np.abs(images))) if len(images) else 0.0
    limits = (-(m or 1.0), m or 1.0) if symmetric else (0.0, 1.0)
    drawn = None
    for ax, image, label in zip(axes.ravel(), images, titles):
        drawn = ax.imshow(image, cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest")
        ax.set_title(label, fontsize=panel_font)
    if colorbar and drawn is not None:
        bar = fig.colorbar(drawn, ax=axes, shrink=min(1.0, 2.5 / rows), aspect=30, pad=0.01)
        bar.set_label(colorbar, fontsize=panel_font + 1)
        bar.ax.tick_params(labelsize=panel_font)
    if wrapped:
        fig.suptitle(wrapped, fontsize=title_font)
    return fig


def write_pictures(engine: Engine, net: Any, x: np.ndarray, y: np.ndarray, names: list[str], out_dir: str,
                   title: str = "", count: int = 24) -> list[str]:
    """Write weights.png (the first layer's weights, weight_images) and mistakes.png (the ``count``
    most confident mistakes on x, y) into ``out_dir``, atomically; returns the paths written."""
    plt = pyplot()
    images, titles, key = weight_images(net.state_dict())
    paths = [os.path.join(out_dir, WEIGHTS_PNG), os.path.join(out_dir, MISTAKES_PNG)]
    shown = "a row per hidden unit, a column per input feature" if _input_weight(key) else f"first {len(images)}"
    # The bar's label stays one word: a long one ran past the figure's edge beside one row of panels.
    fig = image_grid(images, titles, title=f"{title}{key}: {shown}; one colour scale for every panel, 0 white",
                     cmap="RdBu_r", symmetric=True, colorbar="weight")
    save_figure(fig, paths[0])
    plt.close(fig)
    probabilities = predict_probabilities(engine, net, x)
    images, titles, _ = mistake_images(x, y, probabilities, names, count)
    fig = image_grid(images, titles, title=f"{title}the {len(images)} most confident mistakes "
                                            f"of {int(np.sum(probabilities.argmax(1) != y))}")
    save_figure(fig, paths[1])
    plt.close(fig)
    return paths

"""Gradient flow: per layer and per epoch, the sizes that tell vanishing from exploding gradients.

For every layer with a weight matrix or filter bank (Linear and Conv2d: the parameters named
``<layer>.weight`` with two or more dimensions, in state-dict order) and every training step:

- ``weight_grad_norm`` = ||dL/dW||_F, the Frobenius norm of the layer's weight gradient (after
  --clip-grad-norm's clipping, when the run clips: the gradient the step used);
- ``delta_norm`` = ||delta||_F with delta = dL/dz, z the layer's own output before any
  activation ((B, out) for Linear, (B, C_out, H_out, W_out) for Conv2d), over the whole batch.
  L is the batch's mean loss, so delta carries the 1/B; it is what the engine's ``deltas()``
  returns for that layer (the engines' backprop deltas, autograd's retained z.grad; clipping
  scales parameter gradients only, so this is never clipped);
- ``update_ratio`` = ||W_after - W_before||_F / ||W_before||_F, the optimizer step's size
  relative to the weight (about 1e-3 is the usual rule of thumb for a healthy SGD step).

All three are computed in float64 NumPy from the engine's arrays, so every engine gives the
same numbers to rounding. An epoch's row is the **mean over that epoch's steps** of the per-step
values (``steps`` says how many were averaged: fewer than the epoch's when a run was resumed
in the middle of it). Tracking reads the network after each step and copies its state dict
before it; a run without a tracker does none of this.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from engine_core.naming import is_layer_weight

from .fileio import atomic_write_text
from .legacy import state_key

CSV_NAME = "gradients.csv"
PNG_NAME = "gradients.png"
COLUMNS = ("epoch", "layer", "shape", "weight_grad_norm", "delta_norm", "update_ratio", "steps")
METRICS = ("weight_grad_norm", "delta_norm", "update_ratio")
LABELS = {
    "weight_grad_norm": "||dL/dW||  (weight gradient)",
    "delta_norm": "||dL/dz||  (delta at the layer's output)",
    "update_ratio": "||W_after - W_before|| / ||W_before||",
}


def _norm(array: np.ndarray) -> float:
    """Frobenius norm in float64, whatever the array's dtype and layout."""
    return float(np.linalg.norm(np.asarray(array, dtype=np.float64).ravel()))


def weight_keys(net: Any) -> list[str]:
    """State-dict keys of the weights tracked: ``*.weight`` gradients with >= 2 dimensions (Linear,
    Conv2d), in the order of ``net.grads()``, which is the order of ``net.deltas()``."""
    return [key for key, value in net.grads().items() if is_layer_weight(key, len(value.shape))]


class GradientTracker:
    """Records the module docstring's three norms for ``net`` (any engine's MLP or Sequential).

    ``to_numpy`` turns the engine's arrays into NumPy ones (``Engine.to_numpy``). Use it as
    ``step = tracker.wrap(step)`` around a training step (``make_step``'s closure), then
    ``tracker.end_epoch(epoch)`` after each epoch; ``rows`` holds every epoch's rows. An oracle
    net that drops its deltas to save work (``keep_deltas=False``) is switched to keep them.
    Raises ValueError when the net has no weight to track or its deltas do not match its layers.
    """

    def __init__(self, net: Any, to_numpy: Callable[[Any], np.ndarray] = np.asarray) -> None:
        self.net = net
        self.to_numpy = to_numpy
        self.keys = weight_keys(net)
        if not self.keys:
            raise ValueError("gradient tracking: the network has no Linear or Conv2d weight to track")
        if getattr(net, "keep_deltas", True) is False:
            net.keep_deltas = True  # autograd retains dL/dz only when asked
        shapes = {key: tuple(int(n) for n in value.shape) for key, value in net.grads().items()}
        self.shapes = {key: shapes[key] for key in self.keys}
        self.rows: list[dict[str, Any]] = []
        self._sums = np.zeros((len(self.keys), len(METRICS)))
        self._steps = 0

    @staticmethod
    def layer_name(key: str) -> str:
        """'3.weight' -> '3', '1.0.weight' -> '1.0'."""
        return key[: -len(".weight")]

    def wrap(self, step: Callable[[Any, Any], tuple[float, int]]) -> Callable[[Any, Any], tuple[float, int]]:
        """``step`` (x, y) -> (loss, hits), recording the norms of every call."""

        def tracked_step(x: Any, y: Any) -> tuple[float, int]:
            before = self.net.state_dict()
            result = step(x, y)
            self.record(before)
            return result

        return tracked_step

    def record(self, before: dict[str, np.ndarray]) -> None:
        """Add one step's norms: ``before`` is the state dict taken before the optimizer step;
        gradients and deltas are read from the net as the step left them."""
        grads = self.net.grads()
        deltas = self.net.deltas()
        if len(deltas) != len(self.keys):
            raise ValueError(f"gradient tracking: the network returned {len(deltas)} deltas for "
                             f"{len(self.keys)} Linear/Conv2d layers")
        after = self.net.state_dict()
        for row, (key, delta) in enumerate(zip(self.keys, deltas)):
            w0 = np.asarray(before[key], dtype=np.float64)
            moved = _norm(np.asarray(after[key], dtype=np.float64) - w0)
            size = _norm(w0)
            self._sums[row] += (_norm(self.to_numpy(grads[key])), _norm(self.to_numpy(delta)),
                                moved / size if size else math.inf)
        self._steps += 1

    def end_epoch(self, epoch: int) -> list[dict[str, Any]]:
        """Close epoch ``epoch`` (1-based): append its rows (means over its recorded steps) and
        return them; nothing when no step was recorded. Starts the next epoch's sums."""
        if not self._steps:
            return []
        new = self._rows(epoch, self._steps, self._sums / self._steps)
        self.rows.extend(new)
        self._sums[...] = 0
        self._steps = 0
        return new

    def _rows(self, epoch: int, steps: int, means: Any) -> list[dict[str, Any]]:
        """One epoch's CSV rows: per tracked weight, its (3,) row of ``means`` (METRICS order)."""
        return [{"epoch": epoch, "layer": self.layer_name(key), "shape": "x".join(map(str, self.shapes[key])),
                 **dict(zip(METRICS, (float(v) for v in means[row]))), "steps": steps}
                for row, key in enumerate(self.keys)]

    def state(self) -> dict[str, Any]:
        """JSON-ready for a checkpoint: {"layers": the weight keys, "steps": steps recorded in the
        epoch in progress, "sums": its (layers, 3) running sums of the METRICS, "history": one
        [epoch, steps, (layers, 3) means] per finished epoch} (floats are repr-exact in JSON, so a
        resumed run's rows equal an uninterrupted run's bit for bit, in whatever --out it writes)."""
        history: dict[int, list[Any]] = {}
        for row in self.rows:
            entry = history.setdefault(row["epoch"], [row["epoch"], row["steps"], []])
            entry[2].append([float(row[m]) for m in METRICS])
        return {"layers": list(self.keys), "steps": self._steps, "sums": self._sums.tolist(),
                "history": list(history.values())}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue the epoch in progress from ``state`` (state()'s dict, as a checkpoint holds it);
        ValueError when its layers are not this net's."""
        if list(state["layers"]) != self.keys:
            raise ValueError(f"the checkpoint's gradient sums are for the weights {list(state['layers'])}, "
                             f"this network has {self.keys}")
        sums = np.asarray(state["sums"], dtype=np.float64)
        if sums.shape != self._sums.shape:
            raise ValueError(f"the checkpoint's gradient sums have shape {sums.shape}, expected {self._sums.shape}")
        self._sums[...] = sums
        self._steps = int(state["steps"])
        if "history" in state:  # the finished epochs' rows travel with the checkpoint
            self.rows = [row for epoch, steps, means in state["history"] for row in self._rows(epoch, steps, means)]

    def load(self, path: str, epochs: int) -> None:
        """Keep the rows of epochs 1..``epochs`` from an earlier session's ``gradients.csv`` (a
        resumed run), so the file goes on covering the whole run; a missing file keeps none. A
        file written before the tree names an MLP's layers fc0, fc1, ...: they become 0, 2, ..."""
        rows = [row for row in read_csv(path) if row["epoch"] <= epochs] if os.path.exists(path) else []
        self.rows = [{**row, "layer": self.layer_name(state_key(f"{row['layer']}.weight"))} for row in rows]

    def write(self, out_dir: str, title: str = "") -> tuple[str, str]:
        """Write ``gradients.csv`` and ``gradients.png`` into ``out_dir`` (atomically); returns their paths."""
        csv_path, png_path = os.path.join(out_dir, CSV_NAME), os.path.join(out_dir, PNG_NAME)
        atomic_write_text(csv_path, gradients_csv(self.rows))
        plot_gradients(self.rows, png_path, title=title)
        return csv_path, png_path


def gradients_csv(rows: list[dict[str, Any]]) -> str:
    """gradients.csv's text: COLUMNS, one row per epoch and layer (norms to 17 significant digits)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, **{m: repr(float(row[m])) for m in METRICS}})
    return buffer.getvalue()


def read_csv(path: str) -> list[dict[str, Any]]:
    """gradients.csv's rows with numbers as numbers (epoch, steps int; the norms float)."""
    with open(path, newline="") as f:
        return [{**row, "epoch": int(row["epoch"]), "steps": int(row["steps"]),
                 **{m: float(row[m]) for m in METRICS}} for row in csv.DictReader(f)]


def plot_gradients(rows: list[dict[str, Any]], path: str, title: str = "") -> None:
    """Three panels (weight gradient, delta, relative update) against the epoch, log y, one line
    per layer, first layer darkest-to-lightest so depth reads off the colour; one legend for all
    three panels, on the right, clear of the lines."""
    from .plots import epoch_axis, pyplot, save_figure, suptitle

    plt = pyplot()
    layers = list(dict.fromkeys(row["layer"] for row in rows))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(layers), 1)))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(15, 4.3))
    for ax, metric in zip(axes, METRICS):
        for colour, layer in zip(colours, layers):
            points = [row for row in rows if row["layer"] == layer]
            # A zero (a layer that got no gradient at all) has no place on a log axis: left blank.
            values = [row[metric] if row[metric] > 0 else math.nan for row in points]
            ax.plot([row["epoch"] for row in points], values, marker="o", color=colour,
                    label=f"{layer} ({points[0]['shape']})")
        ax.set(yscale="log", xlabel="epoch", title=LABELS[metric])
        epoch_axis(ax, [row["epoch"] for row in rows])
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, title="layer (weight shape)", title_fontsize=8)
    suptitle(fig, title)
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    save_figure(fig, path)
    plt.close(fig)

"""Figures written next to a run (matplotlib, Agg backend, written atomically): training curves,
confusion matrices, bench throughput and compare divergence."""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterable
from typing import Any

import numpy as np

from .fileio import atomic_write


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def fitted(text: str, width_in: float, fontsize: float) -> str:
    """``text`` with each of its lines broken at spaces into lines that fit ``width_in`` inches at
    ``fontsize`` points: at most width_in * 72 / (0.6 * fontsize) characters a line (0.6 em is
    wider than DejaVu Sans's average character, so a line fits even when rich in wide letters).
    Never inside parentheses (a layer such as "conv2d(6, 16, 5)" stays on one line), and a word
    longer than a line is kept whole rather than split."""
    chars = max(int(width_in * 72 / (0.6 * fontsize)), 10)
    def hold(match: re.Match[str]) -> str:
        # textwrap breaks only at ASCII whitespace: no-break spaces hold a parenthesis together.
        return match.group(0).replace(" ", "\u00a0")

    lines = []
    for line in text.splitlines():
        held = re.sub(r"\([^()]*\)", hold, line)
        lines.append(textwrap.fill(held, chars, break_long_words=False, break_on_hyphens=False))
    return "\n".join(lines).replace("\u00a0", " ")


def suptitle(fig: Any, text: str, fontsize: float = 10) -> None:
    """The figure's title, wrapped to the figure's width (fitted) so a long one (a layer stack)
    is not cut off at the figure's edges."""
    if text:
        fig.suptitle(fitted(text, fig.get_figwidth(), fontsize), fontsize=fontsize)


def epoch_axis(ax: Any, epochs: Iterable[int]) -> None:
    """Integer epoch ticks; a single epoch gets one tick at it, not fractions of an epoch around it."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    distinct = sorted(set(epochs))
    if len(distinct) == 1:
        ax.set_xlim(distinct[0] - 1, distinct[0] + 1)


def finish(fig: Any, axes: Iterable[Any], path: str) -> None:
    """Grid and legend on every axis, then write the figure atomically and free it."""
    plt = pyplot()
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_curves(rows: list[dict[str, Any]], path: str, title: str = "") -> None:
    """Loss and accuracy per epoch, train vs test (rows: metrics.csv's), on integer epoch ticks."""
    plt = pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4.3))
    for key in ("train", "test"):
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in rows], marker="o", label=key)
        ax_acc.plot(epochs, [r[f"{key}_acc"] for r in rows], marker="o", label=key)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        epoch_axis(ax, epochs)
    suptitle(fig, title)
    finish(fig, (ax_loss, ax_acc), path)


def plot_confusion(matrix: np.ndarray, path: str, title: str = "", classes: list[str] | None = None) -> None:
    """A (k, k) count matrix, rows the true class, columns the predicted one, labelled with the
    ``classes`` names (default 0..k-1) and a colour bar of image counts."""
    plt = pyplot()
    names = classes if classes is not None else [str(i) for i in range(len(matrix))]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(matrix, cmap="Blues")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("test images")
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, names)
    ax.set(xlabel="predicted class", ylabel="true class")
    # Wrapped to the image's width (the figure less the colour bar): a layer stack is longer.
    ax.set_title(fitted(title, fig.get_figwidth() - 1.5, 11), fontsize=11)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > threshold else "black")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_bench(rows: list[dict[str, Any]], path: str, title: str = "") -> None:
    """Two rows of panels, one column per workload: samples/s against batch size per engine
    (GEMM floors dashed, hollow squares) and, below, each engine's time as a ratio to its floor
    (1 = at the floor, the dotted line; a point below it ran faster than its floor), the median
    with error bars from the first to the third quartile over the repeats (rows that have them),
    and an unstable row drawn hollow. The x axes are ticked at exactly the batch sizes that were run."""
    plt = pyplot()
    from matplotlib.ticker import NullLocator, ScalarFormatter

    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(2, len(workloads), figsize=(6 * len(workloads), 8), squeeze=False)
    for column, workload in enumerate(workloads):
        ax, ax_ratio = axes[0][column], axes[1][column]
        subset = [r for r in rows if r["workload"] == workload]
        for engine in dict.fromkeys(r["engine"] for r in subset):
            pts = [r for r in subset if r["engine"] == engine]
            line = ax.plot([r["batch_size"] for r in pts], [r["samples_per_s"] for r in pts], marker="o",
                           label=engine)[0]
            ratios = [r["ratio_to_floor"] for r in pts]
            quartiles = [[max(0.0, m - r.get("ratio_q1", m)) for r, m in zip(pts, ratios)],
                         [max(0.0, r.get("ratio_q3", m) - m) for r, m in zip(pts, ratios)]]
            ax_ratio.errorbar([r["batch_size"] for r in pts], ratios, yerr=quartiles, marker="o", capsize=3,
                              color=line.get_color(), label=f"{engine} / {pts[0]['floor_library']} floor")
            shaky = [r for r in pts if r.get("unstable")]
            # Above the error bars' own markers (zorder 3): drawn at the default level they were hidden.
            ax_ratio.plot([r["batch_size"] for r in shaky], [r["ratio_to_floor"] for r in shaky], linestyle="none",
                          marker="o", markerfacecolor="white", color=line.get_color(), zorder=3)
        for library in dict.fromkeys(r["floor_library"] for r in subset):
            floor = {r["batch_size"]: r for r in subset if r["floor_library"] == library}
            xs = sorted(floor)
            # Markers too: with one batch size the floor is a single point, and a dashed line
            # through one point draws nothing at all.
            ax.plot(xs, [floor[b]["floor_samples_per_s"] for b in xs], linestyle="--", marker="s",
                    fillstyle="none", label=f"GEMM floor ({library})")
        ax_ratio.axhline(1.0, color="black", linestyle=":", label="floor")
        batches = sorted({r["batch_size"] for r in subset})
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="samples / s",
               title=f"{workload} network, {subset[0]['dtype']}")
        ax_ratio.set(xscale="log", yscale="log", xlabel="batch size", ylabel="time / GEMM floor",
                     title=f"{workload}: time as a multiple of the floor (hollow: unstable)")
        ax_ratio.yaxis.set_major_formatter(ScalarFormatter())
        for a in (ax, ax_ratio):
            a.set_xticks(batches, [str(b) for b in batches])
            a.xaxis.set_minor_locator(NullLocator())
            if len(batches) == 1:
                a.set_xlim(batches[0] / 2, batches[0] * 2)
    suptitle(fig, title)
    finish(fig, [*axes[0], *axes[1]], path)


def plot_divergence(rows: list[dict[str, Any]], path: str, tol: float, title: str = "") -> None:
    """compare's rows: the worst relative parameter difference and the loss difference per step."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (ax_p, ax_l) = plt.subplots(1, 2, figsize=(11, 4.3))
    for engine in dict.fromkeys(r["engine"] for r in rows):
        pts = [r for r in rows if r["engine"] == engine]
        steps = [r["step"] for r in pts]
        label = f"{engine} vs {pts[0]['reference']}"
        # Exact agreement (0) has no place on a log axis: those steps are left blank.
        params = [r["max_rel_diff"] or math.nan for r in pts]
        losses = [r["loss_diff"] or math.nan for r in pts]
        ax_p.plot(steps, params, marker="." if len(steps) < 50 else None, label=label)
        ax_l.plot(steps, losses, ".", markersize=2 if len(steps) >= 50 else 5, label=label)
    ax_p.axhline(tol, color="red", linestyle="--", label=f"--tol {tol:g}")
    ax_p.set(yscale="log", xlabel="step", ylabel="max relative parameter difference", title="parameters")
    ax_l.set(yscale="log", xlabel="step", ylabel="|loss difference|", title="loss (steps with equal losses blank)")
    for ax in (ax_p, ax_l):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    suptitle(fig, title)
    finish(fig, (ax_p, ax_l), path)

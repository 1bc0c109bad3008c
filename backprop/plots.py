"""Figures written next to a run (matplotlib, Agg backend, written atomically): training curves,
confusion matrices, bench throughput and compare divergence."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .fileio import atomic_write


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def finish(fig: Any, axes: Iterable[Any], path: str) -> None:
    """Grid and legend on every axis, then write the figure atomically and free it."""
    plt = _pyplot()
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_curves(rows: list[dict[str, Any]], path: str, title: str = "") -> None:
    """Loss and accuracy per epoch, train vs test (rows: metrics.csv's)."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train", "test"):
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in rows], marker="o", label=key)
        ax_acc.plot(epochs, [r[f"{key}_acc"] for r in rows], marker="o", label=key)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    if title:
        fig.suptitle(title)
    finish(fig, (ax_loss, ax_acc), path)


def plot_confusion(matrix: np.ndarray, path: str, title: str = "") -> None:
    """A (10, 10) count matrix, rows the true class, columns the predicted one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", xticks=range(10), yticks=range(10), title=title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > threshold else "black")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_bench(rows: list[dict[str, Any]], path: str) -> None:
    """Samples/s against batch size per engine, one panel per workload, GEMM floors dashed."""
    plt = _pyplot()
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(1, len(workloads), figsize=(6 * len(workloads), 4.5), squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        subset = [r for r in rows if r["workload"] == workload]
        for engine in dict.fromkeys(r["engine"] for r in subset):
            pts = [r for r in subset if r["engine"] == engine]
            ax.plot([r["batch_size"] for r in pts], [r["samples_per_s"] for r in pts], marker="o", label=engine)
        for library in dict.fromkeys(r["floor_library"] for r in subset):
            floor = {r["batch_size"]: r for r in subset if r["floor_library"] == library}
            xs = sorted(floor)
            ax.plot(xs, [floor[b]["floor_samples_per_s"] for b in xs], linestyle="--",
                    label=f"GEMM floor ({library})")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="samples / s",
               title=f"{workload} network, {subset[0]['dtype']}")
    finish(fig, axes[0], path)


def plot_divergence(rows: list[dict[str, Any]], path: str, tol: float) -> None:
    """compare's rows: the worst relative parameter difference and the loss difference per step."""
    plt = _pyplot()
    fig, (ax_p, ax_l) = plt.subplots(1, 2, figsize=(11, 4))
    for engine in dict.fromkeys(r["engine"] for r in rows):
        pts = [r for r in rows if r["engine"] == engine]
        steps = [r["step"] for r in pts]
        label = f"{engine} vs {pts[0]['reference']}"
        # Exact agreement (0) has no place on a log axis: those steps are left blank.
        params = [r["max_rel_diff"] or math.nan for r in pts]
        losses = [r["loss_diff"] or math.nan for r in pts]
        ax_p.plot(steps, params, label=label)
        ax_l.plot(steps, losses, ".", markersize=2, label=label)
    ax_p.axhline(tol, color="red", linestyle="--", label=f"--tol {tol:g}")
    ax_p.set(yscale="log", xlabel="step", ylabel="max relative parameter difference", title="parameters")
    ax_l.set(yscale="log", xlabel="step", ylabel="|loss difference|", title="loss (steps with equal losses blank)")
    finish(fig, (ax_p, ax_l), path)

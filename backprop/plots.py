"""Figures written next to a run: training curves and confusion matrices (matplotlib, Agg)."""

from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str) -> None:
    from .checkpoint import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def finish(fig, axes, path: str) -> None:
    """Grid and legend on every axis, then write the figure atomically and free it."""
    plt = _pyplot()
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_curves(rows: list[dict], path: str, title: str = "") -> None:
    """Loss and accuracy per epoch, train vs test."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train", "train"), ("test", "test")):
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in rows], marker="o", label=label)
        ax_acc.plot(epochs, [r[f"{key}_acc"] for r in rows], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, path: str, title: str = "") -> None:
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

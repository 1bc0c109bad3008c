"""A small synthetic dataset in the real files' format, for tests and the walkthrough notebook
when no real data is at hand: the four IDX files torchvision reads, under <root>/<Dataset>/raw/."""

from __future__ import annotations

import os

import numpy as np

from .idx import RAW_FILES, write_idx
from .mnist import DATASETS


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 28, 28) and labels (n,) 0-9: class k is a bright horizontal band at rows
    2 + 2k .. 4 + 2k (columns 4-23) over uniform noise in 0-59, so a network can learn it."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 2 + 2 * int(label)
        images[i, row : row + 3, 4:24] = 200
    return images, labels


def write_synthetic_dataset(root: str, dataset: str = "fashion-mnist", n_train: int = 256, n_test: int = 64,
                            seed: int = 0) -> str:
    """Write synthetic_images as the four IDX files under ``root/<Dataset>/raw/`` (train from
    ``seed``, test from ``seed + 1``), so load_dataset(dataset, root) reads them; returns that folder."""
    folder = os.path.join(root, DATASETS[dataset], "raw")
    os.makedirs(folder, exist_ok=True)
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = synthetic_images(n, seed + offset)
        write_idx(os.path.join(folder, RAW_FILES[f"{split}_images"]), images)
        write_idx(os.path.join(folder, RAW_FILES[f"{split}_labels"]), labels)
    return folder

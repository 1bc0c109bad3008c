"""Small MNIST-format datasets written as real files (IDX, or torchvision's legacy .pt), for tests
that go through torchvision."""

from __future__ import annotations

import os

import numpy as np

from backprop.datasets import DATASETS, LEGACY_FILES, RAW_FILES, processed_dir, write_idx


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 28, 28) images whose class (0-9) is a bright horizontal band, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 2 + 2 * int(label)
        images[i, row : row + 3, 4:24] = 200
    return images, labels


def write_dataset(root: str, dataset: str = "fashion-mnist", n_train: int = 256, n_test: int = 64,
                  seed: int = 0) -> str:
    """Write the four IDX files under root/<Dataset>/raw/ and return that folder."""
    folder = os.path.join(root, DATASETS[dataset], "raw")
    os.makedirs(folder, exist_ok=True)
    train_images, train_labels = synthetic_images(n_train, seed)
    test_images, test_labels = synthetic_images(n_test, seed + 1)
    write_idx(os.path.join(folder, RAW_FILES["train_images"]), train_images)
    write_idx(os.path.join(folder, RAW_FILES["train_labels"]), train_labels)
    write_idx(os.path.join(folder, RAW_FILES["test_images"]), test_images)
    write_idx(os.path.join(folder, RAW_FILES["test_labels"]), test_labels)
    return folder


def write_legacy_dataset(root: str, dataset: str = "mnist", n_train: int = 40, n_test: int = 10,
                         seed: int = 0) -> str:
    """Write root/<Dataset>/processed/training.pt and test.pt as torchvision < 0.9 did:
    torch.save((images uint8 (N, 28, 28), labels int64 (N,)), path). Returns that folder."""
    import torch

    folder = processed_dir(root, dataset)
    os.makedirs(folder, exist_ok=True)
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = synthetic_images(n, seed + offset)
        torch.save((torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))),
                   os.path.join(folder, LEGACY_FILES[split]))
    return folder

"""Small MNIST-format datasets written as real files (IDX, or torchvision's legacy .pt), for tests
that go through torchvision."""

from __future__ import annotations

import os

import numpy as np

from backprop.datasets import LEGACY_FILES, RAW_FILES, processed_dir, synthetic_images, write_synthetic_dataset


def write_dataset(root: str, dataset: str = "fashion-mnist", n_train: int = 256, n_test: int = 64,
                  seed: int = 0) -> str:
    """Write the four IDX files under root/<Dataset>/raw/ and return that folder."""
    return write_synthetic_dataset(root, dataset, n_train, n_test, seed)


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


def small_raw_dataset(root: str) -> str:
    """A Fashion-MNIST folder of IDX files (30 training and 10 test images) under ``root``; its path."""
    return write_dataset(root, "fashion-mnist", n_train=30, n_test=10)


def raw_file(folder: str, key: str) -> str:
    """The path of one of a raw folder's IDX files (a key of RAW_FILES, e.g. "train_images")."""
    return os.path.join(folder, RAW_FILES[key])

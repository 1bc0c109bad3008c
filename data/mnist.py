"""MNIST and Fashion-MNIST through torchvision, normalised once into float arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .idx import RAW_FILES, DataError, check_raw_files

# --dataset name -> torchvision class name (also the folder under --data-dir)
DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


@dataclass
class Dataset:
    """x: (N, 784) normalised to [-1, 1] ((x/255 - 0.5) / 0.5); y: (N,) int64 labels 0-9."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def raw_dir(data_dir: str, dataset: str) -> str:
    return os.path.join(data_dir, DATASETS[dataset], "raw")


def _offline_message(data_dir: str, dataset: str, reason: str) -> str:
    folder = raw_dir(data_dir, dataset)
    files = "\n".join(f"  {os.path.join(folder, name)}" for name in RAW_FILES.values())
    return (
        f"{dataset}: no data in {os.path.abspath(data_dir)}, and the download failed ({reason}).\n"
        f"Looked for these four uncompressed IDX files (torchvision's layout):\n{files}\n"
        f"Provide them by copying them there (gunzip the .gz files), or pass --data-dir pointing "
        f"at a folder that holds {DATASETS[dataset]}/raw/, or run once with network access so "
        f"torchvision can download them."
    )


def normalise(images) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 784): ToTensor's x/255, then Normalize(0.5, 0.5)."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    x /= np.float32(255)
    x -= np.float32(0.5)
    x /= np.float32(0.5)
    return x


def load_dataset(dataset: str, data_dir: str, dtype: str = "float32", download: bool = True) -> Dataset:
    """Read both splits through torchvision (downloading when the raw files are absent)."""
    if dataset not in DATASETS:
        raise DataError(f"dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    folder = raw_dir(data_dir, dataset)
    present = [name for name in RAW_FILES.values() if os.path.exists(os.path.join(folder, name))]
    if 0 < len(present) < len(RAW_FILES):
        missing = [name for name in RAW_FILES.values() if name not in present]
        raise DataError(
            f"{folder}: has {', '.join(present)} but not {', '.join(missing)}; "
            "all four uncompressed IDX files are needed"
        )
    if present:
        check_raw_files(folder)
        download = False  # everything is here: no network needed

    import torchvision  # only here: the engines never need it

    cls = getattr(torchvision.datasets, DATASETS[dataset])
    try:
        train = cls(data_dir, train=True, download=download)
        test = cls(data_dir, train=False, download=download)
    except (RuntimeError, OSError) as error:
        # torchvision lists every mirror it tried; the last line holds the actual cause.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(error).__name__
        raise DataError(_offline_message(data_dir, dataset, reason)) from None
    if not present:
        check_raw_files(folder)  # what was just downloaded, checked like everything else
    split = Dataset(
        name=dataset,
        train_x=normalise(train.data.numpy()),
        train_y=train.targets.numpy().astype(np.int64),
        test_x=normalise(test.data.numpy()),
        test_y=test.targets.numpy().astype(np.int64),
    )
    if dtype != "float32":
        split.train_x = split.train_x.astype(dtype)
        split.test_x = split.test_x.astype(dtype)
    return split

"""MNIST and Fashion-MNIST through torchvision, normalised once into float arrays.

Two on-disk layouts under ``<data_dir>/<Dataset>/`` are read, the ones torchvision reads:

- ``raw/``: the four uncompressed IDX files (what torchvision >= 0.9 downloads and reads);
- ``processed/training.pt`` and ``processed/test.pt``: the legacy layout torchvision < 0.9
  wrote, each ``torch.save((images uint8 (N, 28, 28), labels int64 (N,)))``. Today's torchvision
  still reads it, and prefers it when both files are there, so this module does the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .idx import RAW_FILES, DataError, check_raw_files

# --dataset name -> torchvision class name (also the folder under --data-dir)
DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
# split -> file name in <Dataset>/processed/ (torchvision's training_file / test_file)
LEGACY_FILES = {"train": "training.pt", "test": "test.pt"}
EPOCH_SAMPLES = 60_000  # the training split's size in both datasets
IMAGE_SHAPE = (28, 28)


@dataclass
class Dataset:
    """x: (N, 784) normalised to [-1, 1] ((x/255 - 0.5) / 0.5); y: (N,) int64 labels 0-9."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def raw_dir(data_dir: str, dataset: str) -> str:
    """``<data_dir>/<Dataset>/raw``: where the IDX files live."""
    return os.path.join(data_dir, DATASETS[dataset], "raw")


def processed_dir(data_dir: str, dataset: str) -> str:
    """``<data_dir>/<Dataset>/processed``: where torchvision < 0.9 left training.pt and test.pt."""
    return os.path.join(data_dir, DATASETS[dataset], "processed")


def _offline_message(data_dir: str, dataset: str, reason: str) -> str:
    folder = raw_dir(data_dir, dataset)
    files = "\n".join(f"  {os.path.join(folder, name)}" for name in RAW_FILES.values())
    legacy = processed_dir(data_dir, dataset)
    legacy_files = " and ".join(os.path.join(legacy, name) for name in LEGACY_FILES.values())
    return (
        f"{dataset}: no data in {os.path.abspath(data_dir)}, and the download failed ({reason}).\n"
        f"Looked for two layouts. torchvision's: these four uncompressed IDX files\n{files}\n"
        f"or the legacy one torchvision < 0.9 wrote: {legacy_files}.\n"
        f"Provide them by copying them there (gunzip the .gz files), or pass --data-dir pointing "
        f"at a folder that holds {DATASETS[dataset]}/raw/, or run once with network access so "
        f"torchvision can download them."
    )


def normalise(images: Any) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 784): ToTensor's x/255, then Normalize(0.5, 0.5)."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    x /= np.float32(255)
    x -= np.float32(0.5)
    x /= np.float32(0.5)
    return x


def _legacy_present(data_dir: str, dataset: str) -> list[str]:
    folder = processed_dir(data_dir, dataset)
    return [name for name in LEGACY_FILES.values() if os.path.isfile(os.path.join(folder, name))]


def _check_legacy_split(path: str, images: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """The checks check_raw_files makes on IDX files, made on one legacy (images, labels) pair.

    Returns (uint8 images (N, 28, 28), int64 labels (N,)); raises DataError naming ``path``.
    """
    import torch

    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise DataError(
            f"{path}: expected a pair (images, labels) of tensors, got "
            f"({type(images).__name__}, {type(labels).__name__})"
        )
    if images.dtype != torch.uint8 or images.ndim != 3:
        raise DataError(f"{path}: images must be a uint8 tensor (N, 28, 28), got {images.dtype} {tuple(images.shape)}")
    if tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise DataError(f"{path}: images of {images.shape[1]}x{images.shape[2]} pixels, expected 28x28")
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise DataError(f"{path}: labels must be an integer tensor (N,), got {labels.dtype} {tuple(labels.shape)}")
    if len(images) != len(labels):
        raise DataError(f"{path}: holds {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{path}: holds no images")
    y = labels.numpy().astype(np.int64)
    bad = (y < 0) | (y > 9)
    if bad.any():
        position = int(np.argmax(bad))
        raise DataError(f"{path}: label {int(y[position])} at position {position}; labels must be 0-9")
    return images.numpy(), y


def _read_splits(cls: Any, data_dir: str, download: bool) -> tuple[Any, Any]:
    train = cls(data_dir, train=True, download=download)
    test = cls(data_dir, train=False, download=download)
    return train, test


def _read_legacy(cls: Any, data_dir: str, dataset: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Both splits from processed/*.pt through torchvision's own legacy reader."""
    folder = processed_dir(data_dir, dataset)
    out = []
    for split, name in LEGACY_FILES.items():
        path = os.path.join(folder, name)
        try:
            # torchvision reads processed/ with torch.load(weights_only=True): nothing executes.
            data = cls(data_dir, train=split == "train", download=False)
        except Exception as error:  # torch.load's errors have no common base (pickle, zip, unpack)
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise DataError(
                f"{path}: not a readable legacy torchvision file ({type(error).__name__}: {first})"
            ) from None
        out.append(_check_legacy_split(path, data.data, data.targets))
    return tuple(out)


def load_dataset(dataset: str, data_dir: str, dtype: str = "float32", download: bool = True) -> Dataset:
    """Read both splits through torchvision, from raw/ IDX files or the legacy processed/*.pt.

    dtype: "float32" or "float64" for x. Downloads into ``data_dir`` when neither layout is
    there and ``download`` is true. Raises DataError with one message naming the file and the
    problem (bad IDX/legacy file, partial layouts) or, when nothing is there and the download
    fails, both layouts that were looked for.
    """
    if dataset not in DATASETS:
        raise DataError(f"dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    folder = raw_dir(data_dir, dataset)
    present = [name for name in RAW_FILES.values() if os.path.exists(os.path.join(folder, name))]
    legacy = _legacy_present(data_dir, dataset)

    import torchvision  # only here: the engines never need it

    cls = getattr(torchvision.datasets, DATASETS[dataset])
    if len(legacy) == len(LEGACY_FILES):
        (train_images, train_y), (test_images, test_y) = _read_legacy(cls, data_dir, dataset)
        return _dataset(dataset, train_images, train_y, test_images, test_y, dtype)
    if legacy and not present:
        missing = [name for name in LEGACY_FILES.values() if name not in legacy]
        raise DataError(
            f"{processed_dir(data_dir, dataset)}: has {', '.join(legacy)} but not {', '.join(missing)}; "
            f"the legacy layout needs both (or provide the four IDX files in {folder})"
        )
    if 0 < len(present) < len(RAW_FILES):
        missing = [name for name in RAW_FILES.values() if name not in present]
        raise DataError(
            f"{folder}: has {', '.join(present)} but not {', '.join(missing)}; "
            "all four uncompressed IDX files are needed"
        )
    if present:
        check_raw_files(folder)
        download = False  # everything is here: no network needed
    try:
        train, test = _read_splits(cls, data_dir, download)
    except (RuntimeError, OSError) as error:
        # torchvision lists every mirror it tried; the last line holds the actual cause.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(error).__name__
        raise DataError(_offline_message(data_dir, dataset, reason)) from None
    if not present:
        check_raw_files(folder)  # what was just downloaded, checked like everything else
    return _dataset(dataset, train.data.numpy(), train.targets.numpy(), test.data.numpy(),
                    test.targets.numpy(), dtype)


def _dataset(name: str, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
             test_labels: np.ndarray, dtype: str) -> Dataset:
    split = Dataset(
        name=name,
        train_x=normalise(train_images),
        train_y=np.asarray(train_labels).astype(np.int64),
        test_x=normalise(test_images),
        test_y=np.asarray(test_labels).astype(np.int64),
    )
    if dtype != "float32":
        split.train_x = split.train_x.astype(dtype)
        split.test_x = split.test_x.astype(dtype)
    return split


def synthetic_training_set(dtype: str, n: int = EPOCH_SAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images normalised like the real ones, (n, 784) in ``dtype``, and labels (n,) 0-9.

    For measurements that need MNIST's shapes but not its contents (bench, compare).
    """
    rng = np.random.default_rng(seed)
    x = normalise(rng.integers(0, 256, (n, *IMAGE_SHAPE), dtype=np.uint8))
    return x.astype(dtype, copy=False), rng.integers(0, 10, n)


def training_arrays(dataset: str | None, data_dir: str | None, dtype: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(x (N, 784), y (N,), description): the real training split when ``data_dir`` is given
    (``dataset`` defaults to mnist), else synthetic inputs of MNIST shape. Raises DataError."""
    if data_dir:
        split = load_dataset(dataset or "mnist", data_dir, dtype=dtype)
        return split.train_x, split.train_y, f"{split.name} from {data_dir}"
    x, y = synthetic_training_set(dtype)
    return x, y, f"synthetic inputs of MNIST shape ({len(y)} x {x.shape[1]})"

"""MNIST and Fashion-MNIST through torchvision, normalised once into float arrays.

Two on-disk layouts under ``<data_dir>/<Dataset>/`` are read, the ones torchvision reads:

- ``raw/``: the four uncompressed IDX files (what torchvision >= 0.9 downloads and reads);
- ``processed/training.pt`` and ``processed/test.pt``: the legacy layout torchvision < 0.9
  wrote, each ``torch.save((images uint8 (N, 28, 28), labels int64 (N,)))``. Today's torchvision
  still reads it, and prefers it when both files are there, so this module does the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..fileio import missing_dirs
from .idx import RAW_FILES, DataError, check_raw_files, split_files

# --dataset name -> torchvision class name (also the folder under --data-dir)
DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
# split -> file name in <Dataset>/processed/ (torchvision's training_file / test_file)
LEGACY_FILES = {"train": "training.pt", "test": "test.pt"}
EPOCH_SAMPLES = 60_000  # the training split's size in both datasets
SPLITS = ("train", "test")
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


def _offline_message(data_dir: str, dataset: str, reason: str, splits: tuple[str, ...] = SPLITS) -> str:
    """No data, no download: the files that would do (only those of ``splits``, the ones the
    command reads), both layouts, and how to provide them."""
    folder = raw_dir(data_dir, dataset)
    needed = split_files(splits)
    files = "\n".join(f"  {os.path.join(folder, name)}" for name in needed)
    which = "" if len(needed) == len(RAW_FILES) else f" (the {' and '.join(splits)} split's: all this command reads)"
    legacy = processed_dir(data_dir, dataset)
    legacy_files = " and ".join(os.path.join(legacy, name) for name in LEGACY_FILES.values())
    hint = _hint(data_dir, dataset)
    return (
        f"{dataset}: no data in {os.path.abspath(data_dir)}, and the download failed ({reason}).\n"
        + (f"{hint}\n" if hint else "") +
        f"Looked for two layouts. torchvision's: these {'two' if len(needed) == 2 else 'four'} uncompressed "
        f"IDX files{which}\n{files}\n"
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


def _read_legacy(cls: Any, data_dir: str, dataset: str,
                 splits: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The requested splits from processed/*.pt through torchvision's own legacy reader."""
    folder = processed_dir(data_dir, dataset)
    out = {}
    for split in splits:
        path = os.path.join(folder, LEGACY_FILES[split])
        try:
            # torchvision reads processed/ with torch.load(weights_only=True): nothing executes.
            data = cls(data_dir, train=split == "train", download=False)
        except Exception as error:  # torch.load's errors have no common base (pickle, zip, unpack)
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise DataError(
                f"{path}: not a readable legacy torchvision file ({type(error).__name__}: {first})"
            ) from None
        out[split] = _check_legacy_split(path, data.data, data.targets)
    return out


def resolve_data_dir(data_dir: str, dataset: str) -> str:
    """The root torchvision reads, from what a user may pass as --data-dir: the root itself, or
    (understood as its root) the ``<Dataset>`` folder or its ``raw/`` folder. Raises DataError
    when ``data_dir`` exists and is not a directory."""
    name = DATASETS[dataset]
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: not a directory (the data directory is the folder that holds {name}/raw/)")
    path = os.path.abspath(data_dir)
    if os.path.isdir(os.path.join(path, name)):
        return data_dir
    if os.path.basename(path) == "raw" and os.path.basename(os.path.dirname(path)) == name:
        return os.path.dirname(os.path.dirname(path))
    if os.path.basename(path) == name and any(os.path.isdir(os.path.join(path, sub)) for sub in ("raw", "processed")):
        return os.path.dirname(path)
    return data_dir


class TorchvisionError(DataError):
    """torchvision is installed but does not load beside this torch (two builds that are no pair)."""


def torchvision_module() -> Any:
    """torchvision, imported; TorchvisionError (one line: both versions and how to reinstall them as
    a pair) where it fails to load, as a CUDA torchvision beside a CPU-only torch does ("operator
    torchvision::nms does not exist"). The engines never need it: only the data and class names."""
    try:
        import torchvision
    except Exception as error:  # RuntimeError, ImportError, OSError: a mismatched pair, almost always
        from ..versions import installed_version as installed

        detail = " ".join(str(error).split())[:200]
        raise TorchvisionError(
            f"torchvision {installed('torchvision')} does not load beside torch {installed('torch')} "
            f"({type(error).__name__}: {detail}), most often because the two are builds that do not go "
            "together (a CPU-only torch with a CUDA torchvision, or versions of different releases). Install "
            "them again as a pair from one place, e.g. `pip install --force-reinstall torch torchvision` "
            "(or both with the same --index-url)") from None
    return torchvision


def class_names(dataset: str) -> list[str]:
    """The dataset's class names, label order (torchvision's ``classes``: 'T-shirt/top', ...)."""
    return list(getattr(torchvision_module().datasets, DATASETS[dataset]).classes)


@contextlib.contextmanager
def _nothing_left_if_it_fails(folder: str) -> Iterator[None]:
    """Inside: a download into ``folder``. If it fails, the directories it created (torchvision
    makes ``folder`` with all its missing parents before it tries the network) are removed again,
    so a typo in --data-dir leaves nothing behind."""
    missing = missing_dirs(folder)
    top = missing[-1] if missing else None  # the outermost directory the download may create
    try:
        yield
    except BaseException:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        raise


def _hint(data_dir: str, dataset: str) -> str:
    """A sentence on what the data directory holds that the user may have meant, or ''."""
    path = os.path.abspath(data_dir)
    if not os.path.exists(path):
        return f"{path} does not exist (nothing was created)."
    others = [other for other, name in DATASETS.items() if other != dataset and os.path.isdir(os.path.join(path, name))]
    if others:
        return f"{path} holds {DATASETS[others[0]]}/: for that dataset pass --dataset {others[0]}."
    if any(os.path.exists(os.path.join(path, name)) for name in RAW_FILES.values()):
        return (f"{path} holds IDX files directly; torchvision reads them from "
                f"{os.path.join(path, DATASETS[dataset], 'raw')}: move them there.")
    return ""




def load_dataset(dataset: str, data_dir: str, dtype: str = "float32", download: bool = True,
                 splits: tuple[str, ...] = SPLITS) -> Dataset:
    """Read the ``splits`` (default both; "train" and/or "test") through torchvision, from raw/
    IDX files or the legacy processed/*.pt. A split not asked for is left empty ((0, 784)).

    dtype: "float32" or "float64" for x. ``data_dir`` may also name the ``<Dataset>`` folder or
    its ``raw/`` (see resolve_data_dir). Downloads into ``data_dir`` when neither layout is
    there and ``download`` is true; a download that fails leaves no directory behind. Raises
    DataError with one message naming the file and the problem (bad IDX/legacy file, partial
    layouts, a data_dir that is a file) or, when nothing is there and the download fails, both
    layouts that were looked for.
    """
    if dataset not in DATASETS:
        raise DataError(f"dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"splits: expected some of {SPLITS}, got {splits!r}")
    data_dir = resolve_data_dir(data_dir, dataset)
    folder = raw_dir(data_dir, dataset)
    needed = split_files(splits)
    present = [name for name in RAW_FILES.values() if os.path.exists(os.path.join(folder, name))]
    legacy = _legacy_present(data_dir, dataset)

    cls = getattr(torchvision_module().datasets, DATASETS[dataset])
    if len(legacy) == len(LEGACY_FILES):
        return _dataset(dataset, _read_legacy(cls, data_dir, dataset, splits), dtype)
    if legacy and not present:
        missing = [name for name in LEGACY_FILES.values() if name not in legacy]
        raise DataError(
            f"{processed_dir(data_dir, dataset)}: has {', '.join(legacy)} but not {', '.join(missing)}; "
            f"the legacy layout needs both (or provide the four IDX files in {folder})"
        )
    if present and not all(name in present for name in needed):
        missing = [name for name in needed if name not in present]
        which = " and ".join(splits)
        raise DataError(
            f"{folder}: has {', '.join(present)} but not {', '.join(missing)}; "
            f"the {which} split{'s' if len(splits) > 1 else ''} need{'' if len(splits) > 1 else 's'} "
            f"{', '.join(needed)} (uncompressed IDX files)"
        )
    if present:  # everything this command reads is here: read just those files, no network
        check_raw_files(folder, splits)
        from torchvision.datasets.mnist import read_image_file, read_label_file

        return _dataset(dataset, {
            split: (read_image_file(os.path.join(folder, RAW_FILES[f"{split}_images"])).numpy(),
                    read_label_file(os.path.join(folder, RAW_FILES[f"{split}_labels"])).numpy())
            for split in splits}, dtype)
    read = {}
    try:
        with _nothing_left_if_it_fails(folder):
            for split in splits:
                data = cls(data_dir, train=split == "train", download=download)
                read[split] = (data.data.numpy(), data.targets.numpy())
    except (RuntimeError, OSError) as error:
        # torchvision lists every mirror it tried; the last line holds the actual cause.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(error).__name__
        if not download:
            reason = "downloading was not allowed"
        raise DataError(_offline_message(data_dir, dataset, reason, splits)) from None
    check_raw_files(folder)  # what was just downloaded, checked like everything else
    return _dataset(dataset, read, dtype)


def _dataset(name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], dtype: str) -> Dataset:
    def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in splits:
            return np.empty((0, IMAGE_SHAPE[0] * IMAGE_SHAPE[1]), dtype), np.empty(0, np.int64)
        images, labels = splits[split]
        x = normalise(images)
        return (x if dtype == "float32" else x.astype(dtype)), np.asarray(labels).astype(np.int64)

    (train_x, train_y), (test_x, test_y) = arrays("train"), arrays("test")
    return Dataset(name=name, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)


def synthetic_training_set(dtype: str, n: int = EPOCH_SAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images normalised like the real ones, (n, 784) in ``dtype``, and labels (n,) 0-9.

    For measurements that need MNIST's shapes but not its contents (bench, compare).
    """
    rng = np.random.default_rng(seed)
    x = normalise(rng.integers(0, 256, (n, *IMAGE_SHAPE), dtype=np.uint8))
    return x.astype(dtype, copy=False), rng.integers(0, 10, n)


def training_arrays(dataset: str | None, data_dir: str | None, dtype: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(x (N, 784), y (N,), description): the real training split (only that split is read) when
    ``data_dir`` is given (``dataset`` defaults to mnist), else synthetic inputs of MNIST shape
    (the description then starts with "synthetic"). Raises DataError."""
    if data_dir:
        split = load_dataset(dataset or "mnist", data_dir, dtype=dtype, splits=("train",))
        return split.train_x, split.train_y, f"{split.name} from {data_dir}"
    x, y = synthetic_training_set(dtype)
    return x, y, f"synthetic inputs of MNIST shape ({len(y)} x {x.shape[1]})"

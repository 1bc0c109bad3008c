"""MNIST-format data for the trainer: read once by torchvision (from ``<data_dir>/<Dataset>/raw/``
or the legacy ``processed/``), normalised once, fed in batches by indexing a seeded permutation.

The default data directory is ``./data`` (the notebook's ``root='./data'``), a plain folder.
"""

from .batches import BatchFeeder, epoch_order
from .idx import RAW_FILES, DataError, check_raw_files, write_idx
from .mnist import (
    DATASETS,
    EPOCH_SAMPLES,
    LEGACY_FILES,
    SPLITS,
    Dataset,
    TorchvisionError,
    class_names,
    load_dataset,
    normalise,
    processed_dir,
    raw_dir,
    resolve_data_dir,
    synthetic_training_set,
    torchvision_module,
    training_arrays,
)
from .synthetic import synthetic_images, write_synthetic_dataset

__all__ = [
    "DATASETS", "EPOCH_SAMPLES", "LEGACY_FILES", "RAW_FILES", "SPLITS", "BatchFeeder", "DataError", "Dataset",
    "check_raw_files",
    "class_names", "epoch_order", "load_dataset", "normalise", "processed_dir", "raw_dir", "resolve_data_dir",
    "synthetic_images", "synthetic_training_set", "torchvision_module", "training_arrays", "write_idx",
    "write_synthetic_dataset", "TorchvisionError",
]

"""MNIST-format data for the trainer: read once by torchvision, normalised once, fed in
batches by indexing a seeded permutation."""

from .batches import BatchFeeder, epoch_order
from .idx import DataError, check_raw_files, write_idx
from .mnist import DATASETS, Dataset, load_dataset

__all__ = [
    "DATASETS", "BatchFeeder", "DataError", "Dataset", "check_raw_files", "epoch_order",
    "load_dataset", "write_idx",
]

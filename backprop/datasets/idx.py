"""The IDX file format (LeCun's MNIST files): checked before torchvision reads them, so a bad
file ends in one clear message instead of a bare assertion deep inside torchvision.

Layout: 2 zero bytes, a type byte (0x08 = uint8), a byte with the number of dimensions, then
one big-endian uint32 per dimension, then the values.
"""

from __future__ import annotations

import os
import struct

import numpy as np

RAW_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DataError(Exception):
    """A dataset that cannot be used, with a message that says what and where."""


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (used by tests to build small datasets)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as f:
        f.write(header + array.tobytes())


def read_header(path: str, expected_ndim: int) -> tuple[int, ...]:
    """Check magic, type, rank and length of one IDX file; return its shape."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4:
            raise DataError(f"{path}: truncated IDX file ({size} bytes, not even a header)")
        if head[0] != 0 or head[1] != 0:
            raise DataError(
                f"{path}: not an IDX file (wrong magic number {head.hex()}; expected "
                f"000008{expected_ndim:02x}). Is it still gzip-compressed? Decompress it with gunzip."
            )
        if head[2] != 0x08:
            raise DataError(f"{path}: IDX type byte 0x{head[2]:02x}, expected 0x08 (unsigned bytes)")
        if head[3] != expected_ndim:
            raise DataError(f"{path}: {head[3]} dimensions, expected {expected_ndim}")
        dims = f.read(4 * expected_ndim)
        if len(dims) < 4 * expected_ndim:
            raise DataError(f"{path}: truncated IDX header ({size} bytes)")
    shape = struct.unpack(f">{expected_ndim}I", dims)
    expected_size = 4 + 4 * expected_ndim + int(np.prod(shape, dtype=np.int64))
    if size != expected_size:
        kind = "truncated" if size < expected_size else "has extra bytes"
        raise DataError(
            f"{path}: {kind}: the header promises shape {shape} ({expected_size} bytes), "
            f"the file has {size} bytes"
        )
    return shape


def split_files(splits: tuple[str, ...] = ("train", "test")) -> list[str]:
    """The IDX file names the ``splits`` ("train", "test") are read from, images then labels."""
    return [RAW_FILES[f"{split}_{kind}"] for split in splits for kind in ("images", "labels")]


def check_raw_files(raw_dir: str, splits: tuple[str, ...] = ("train", "test")) -> None:
    """The ``splits``' files (default all four) present and consistent: images (N, 28, 28),
    labels (N,) with values 0-9."""
    shapes = {}
    for split in splits:
        for kind in ("images", "labels"):
            key = f"{split}_{kind}"
            shapes[key] = read_header(os.path.join(raw_dir, RAW_FILES[key]), 3 if kind == "images" else 1)
    for split in splits:
        images, labels = shapes[f"{split}_images"], shapes[f"{split}_labels"]
        if images[1:] != (28, 28):
            raise DataError(
                f"{os.path.join(raw_dir, RAW_FILES[split + '_images'])}: images of {images[1]}x{images[2]} "
                "pixels, expected 28x28"
            )
        if images[0] != labels[0]:
            raise DataError(
                f"{raw_dir}: {RAW_FILES[split + '_images']} holds {images[0]} images but "
                f"{RAW_FILES[split + '_labels']} holds {labels[0]} labels"
            )
        if images[0] == 0:
            raise DataError(f"{os.path.join(raw_dir, RAW_FILES[split + '_images'])}: holds no images")
        label_path = os.path.join(raw_dir, RAW_FILES[f"{split}_labels"])
        values = np.fromfile(label_path, dtype=np.uint8, offset=8)
        if values.max() > 9:
            position = int(np.argmax(values > 9))
            raise DataError(
                f"{label_path}: label {int(values[position])} at position {position}; "
                "labels must be 0-9"
            )

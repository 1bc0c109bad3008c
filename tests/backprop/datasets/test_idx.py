"""IDX files (backprop/datasets/idx.py): a bad file ends in one DataError naming the file and the
problem, never an error from inside torchvision."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backprop.datasets import RAW_FILES, DataError, load_dataset, write_idx
from tests.datasets import raw_file, small_raw_dataset


def test_a_truncated_idx_file_is_named(tmp_path):
    folder = small_raw_dataset(str(tmp_path))
    path = raw_file(folder, "train_images")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 100)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated"):
        load_dataset("fashion-mnist", str(tmp_path))


def test_a_wrong_magic_number_is_named(tmp_path):
    folder = small_raw_dataset(str(tmp_path))
    path = raw_file(folder, "test_labels")
    data = bytearray(open(path, "rb").read())
    data[0:2] = b"\x1f\x8b"  # what a still-gzipped file starts with
    open(path, "wb").write(bytes(data))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: not an IDX file .*gunzip"):
        load_dataset("fashion-mnist", str(tmp_path))


def test_image_and_label_counts_must_match(tmp_path):
    folder = small_raw_dataset(str(tmp_path))
    write_idx(raw_file(folder, "train_labels"), np.zeros(29, np.uint8))
    with pytest.raises(DataError, match=r"holds 30 images but train-labels-idx1-ubyte holds 29 labels"):
        load_dataset("fashion-mnist", str(tmp_path))


def test_labels_above_nine_are_named_with_their_position(tmp_path):
    folder = small_raw_dataset(str(tmp_path))
    labels = np.zeros(10, np.uint8)
    labels[7] = 12
    write_idx(raw_file(folder, "test_labels"), labels)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: label 12 at position 7; labels must be 0-9"):
        load_dataset("fashion-mnist", str(tmp_path))


def test_images_of_the_wrong_size_are_named(tmp_path):
    folder = small_raw_dataset(str(tmp_path))
    write_idx(raw_file(folder, "train_images"), np.zeros((30, 14, 14), np.uint8))
    with pytest.raises(DataError, match=r"images of 14x14 pixels, expected 28x28"):
        load_dataset("fashion-mnist", str(tmp_path))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(key=st.sampled_from(list(RAW_FILES)), data=st.data())
def test_a_byte_mutated_idx_file_either_loads_or_raises_data_error(tmp_path_factory, key, data):
    """Flip, cut or append bytes anywhere: the result loads (a changed pixel is still an image)
    or fails with DataError - never a bare assertion or reshape error from inside torchvision."""
    root = str(tmp_path_factory.mktemp("mutated"))
    folder = small_raw_dataset(root)
    path = raw_file(folder, key)
    raw = bytearray(open(path, "rb").read())
    action = data.draw(st.sampled_from(["flip", "truncate", "append"]))
    if action == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, len(raw) - 1))
            raw[position] = data.draw(st.integers(0, 255))
    elif action == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw += bytes(data.draw(st.binary(min_size=1, max_size=16)))
    open(path, "wb").write(bytes(raw))
    try:
        dataset = load_dataset("fashion-mnist", root)
    except DataError as error:
        assert RAW_FILES[key] in str(error) or folder in str(error)
        return
    assert dataset.train_x.shape[1] == 784 and dataset.train_y.max() <= 9 and dataset.test_y.max() <= 9

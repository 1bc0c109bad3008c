"""`backprop evaluate`: test loss, accuracy and confusion matrix of a checkpoint, with any engine."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from ..architecture import evaluation_chunk, image_view
from ..checkpoint import CheckpointError, checkpoint_path, load_checkpoint
from ..config import CLASSES
from ..datasets import DataError, class_names, load_dataset
from ..engines import EngineError, training_numerics
from ..pictures import write_pictures
from ..plots import plot_confusion
from ..training import build_network, evaluate
from .options import (
    DEFAULT_DATA_DIR,
    REMEMBERED_DATA_DIR,
    add_data_options,
    add_engine_options,
    check_data_dir,
    check_writable_dir,
    engine_spec,
    fail,
    open_engine,
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `evaluate` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("evaluate", help="test loss, accuracy and confusion matrix of a checkpoint",
                       description="Evaluate a checkpoint on its dataset's test split (only that split is read).")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.npz, or the run directory holding it")
    add_engine_options(p)
    add_data_options(p, dataset_help="which MNIST-format dataset (default: the one the run was trained on)",
                     data_dir_help="the folder holding <Dataset>/raw/ (default: the one the run was trained "
                                   f"from, else {DEFAULT_DATA_DIR})")
    p.add_argument("--out", metavar="DIR",
                   help="where confusion.png, weights.png (the first layer's weights) and mistakes.png (the most "
                        "confidently misclassified test images) go (default: beside the checkpoint)")
    return p


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int = CLASSES) -> np.ndarray:
    """(classes, classes) int64 counts: row the true class, column the predicted one."""
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def format_confusion(matrix: np.ndarray, names: list[str]) -> list[str]:
    """The matrix as text lines: a numbered header, one row per true class, then the class names."""
    k = len(matrix)
    lines = ["      " + " ".join(f"{j:>5}" for j in range(k))]
    lines += [f"{i:>5} " + " ".join(f"{matrix[i, j]:>5}" for j in range(k)) for i in range(k)]
    lines.append("classes: " + ", ".join(f"{i} {name}" for i, name in enumerate(names)))
    return lines


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Evaluate the checkpoint on the test split; returns the exit status."""
    spec, flag = engine_spec(args.engine)
    engine = open_engine(parser, spec, args.device, flag)
    check_data_dir(parser, args.data_dir)
    if args.out is not None:
        check_writable_dir(parser, "--out", args.out)
    try:
        path = checkpoint_path(args.checkpoint)
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        return fail(str(error))
    out = args.out or os.path.dirname(path) or "."
    if args.out is None:
        check_writable_dir(parser, "--out (default: the checkpoint's directory)", out)
    config = checkpoint.config
    dataset_name = args.dataset or config.dataset
    data_dir = args.data_dir or checkpoint.data_dir or DEFAULT_DATA_DIR
    try:
        dataset = load_dataset(dataset_name, data_dir, dtype=config.dtype, splits=("test",))
    except DataError as error:
        remembered = not args.data_dir and checkpoint.data_dir
        return fail(f"{error}{REMEMBERED_DATA_DIR if remembered else ''}")

    try:
        net = build_network(engine, config)
    except EngineError as error:
        parser.error(f"argument --engine: {error}")
    net.load_state_dict(checkpoint.params)
    test_x = image_view(dataset.test_x, config.network)
    try:
        with training_numerics():  # as the trainer evaluates
            loss, accuracy, predictions = evaluate(engine, net, test_x, dataset.test_y,
                                                   evaluation_chunk(config.network, test_x.dtype.itemsize))
    except FloatingPointError as error:
        return fail(f"{path}: its network gives non-finite outputs on {dataset_name} ({error})")
    matrix = confusion_matrix(dataset.test_y, predictions)
    names = class_names(dataset_name)
    print(f"{path} on {dataset_name} test ({len(dataset.test_y)} images from {data_dir}), {engine.name} engine:")
    print(f"test loss {loss:.4f}  test accuracy {accuracy:.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print("\n".join(format_confusion(matrix, names)))
    os.makedirs(out, exist_ok=True)
    png = os.path.join(out, "confusion.png")
    epochs = checkpoint.progress.epoch
    plot_confusion(matrix, png, classes=names,
                   title=f"{dataset_name} test: accuracy {accuracy:.4f}, loss {loss:.4f}\n"
                         f"{config.network_summary()}, {epochs} epoch{'s' if epochs != 1 else ''}, "
                         f"{engine.name} engine")
    print(f"wrote {png}")
    with training_numerics():
        written = write_pictures(engine, net, test_x, dataset.test_y, names, out,
                                 title=f"{dataset_name}, {config.network_summary()}\n")
    for picture in written:
        print(f"wrote {picture}")
    return 0

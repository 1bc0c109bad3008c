"""`backprop evaluate`: test loss, accuracy and confusion matrix of a checkpoint, with any engine."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from ..checkpoint import CheckpointError, load_checkpoint
from ..config import CLASSES
from ..datasets import DataError, load_dataset
from ..engines import training_numerics
from ..plots import plot_confusion
from ..training import evaluate
from .options import (
    DEFAULT_DATA_DIR,
    add_data_options,
    add_engine_options,
    check_writable_dir,
    engine_spec,
    fail,
    open_engine,
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `evaluate` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("evaluate", help="test loss, accuracy and confusion matrix of a checkpoint")
    p.add_argument("checkpoint")
    add_engine_options(p)
    add_data_options(p)
    p.add_argument("--out", help="where confusion.png goes (default: beside the checkpoint)")
    return p


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int = CLASSES) -> np.ndarray:
    """(classes, classes) int64 counts: row the true class, column the predicted one."""
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Evaluate the checkpoint on the test split; returns the exit status."""
    spec, flag = engine_spec(args.engine)
    engine = open_engine(parser, spec, args.device, flag)
    out = args.out or os.path.dirname(os.path.abspath(args.checkpoint))
    check_writable_dir(parser, "--out", out)
    try:
        checkpoint = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        return fail(str(error))
    config = checkpoint.config
    dataset_name = args.dataset or config.dataset
    try:
        dataset = load_dataset(dataset_name, args.data_dir or DEFAULT_DATA_DIR, dtype=config.dtype)
    except DataError as error:
        return fail(str(error))

    net = engine.build_net(config.sizes, config.activation, config.init, config.seed, config.dtype)
    net.load_state_dict(checkpoint.params)
    try:
        with training_numerics():  # as the trainer evaluates
            loss, accuracy, predictions = evaluate(engine, net, dataset.test_x, dataset.test_y)
    except FloatingPointError as error:
        return fail(f"{args.checkpoint}: its network gives non-finite outputs on {dataset_name} ({error})")
    matrix = confusion_matrix(dataset.test_y, predictions)
    print(f"{args.checkpoint} on {dataset_name} test ({len(dataset.test_y)} images), {engine.name} engine:")
    print(f"test loss {loss:.4f}  test accuracy {accuracy:.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print("      " + " ".join(f"{j:>5}" for j in range(CLASSES)))
    for i in range(CLASSES):
        print(f"{i:>5} " + " ".join(f"{matrix[i, j]:>5}" for j in range(CLASSES)))
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "confusion.png")
    plot_confusion(matrix, path, title=f"{dataset_name} test, accuracy {accuracy:.4f}")
    print(f"wrote {path}")
    return 0

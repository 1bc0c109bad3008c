"""`backprop train`: train an MLP on MNIST-format data, or resume any engine's checkpoint."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ..checkpoint import Checkpoint, CheckpointError, load_checkpoint
from ..config import PRESETS, TrainConfig
from ..datasets import DataError, load_dataset
from ..engines import Engine
from ..training import Trainer, TrainingDiverged, TrainingInterrupted
from .options import (
    DEFAULT_DATA_DIR,
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    add_data_options,
    add_engine_options,
    add_model_options,
    add_optimizer_options,
    add_preset_option,
    check_writable_dir,
    engine_spec,
    fail,
    open_engine,
    positive_int,
)

# Training flags (TrainConfig fields of the same name) that make up a run's configuration;
# resume must not change them.
CONFIG_FLAGS = (
    "hidden", "activation", "init", "dtype", "seed", "batch_size", "optimizer", "lr", "momentum", "nesterov",
    "weight_decay", "lr_schedule", "step_size", "gamma", "limit", "dataset",
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `train` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("train", help="train an MLP on MNIST-format data")
    add_engine_options(p)
    add_data_options(p)
    add_preset_option(p)
    p.add_argument("--epochs", type=positive_int, help="epochs to train (on --resume: the new total)")
    add_model_options(p)
    add_optimizer_options(p)
    p.add_argument("--limit", type=positive_int, help="train on the first N samples only")
    p.add_argument("--out", help="run directory (default runs/<timestamp>-<engine>)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint (any engine's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def train_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    """A new run's configuration: the preset, overridden by the flags given; usage errors for
    combinations that make no sense."""
    preset = args.preset or "default"
    values = {**TrainConfig().__dict__, **PRESETS[preset], "preset": preset}
    for flag in CONFIG_FLAGS:
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    if args.epochs is not None:
        values["epochs"] = args.epochs
    values["t_max"] = values["epochs"]  # the cosine period is fixed now, at creation
    if values["optimizer"] != "sgd" and args.momentum is None:
        values["momentum"] = 0.0  # the preset's SGD momentum means nothing to Adam
    config = TrainConfig(**values)
    if config.nesterov and config.momentum <= 0:
        parser.error("--nesterov needs a --momentum above 0")
    if config.optimizer != "sgd" and (args.momentum or args.nesterov):
        parser.error(f"--momentum/--nesterov apply to --optimizer sgd, not {config.optimizer}")
    return config


def resumed_config(args: argparse.Namespace, parser: argparse.ArgumentParser, checkpoint: Checkpoint) -> TrainConfig:
    """The checkpoint's configuration, with only --epochs changed; a usage error for any flag
    that would change the rest."""
    config = checkpoint.config
    for flag in CONFIG_FLAGS:
        given = getattr(args, flag)
        if given is not None and given != getattr(config, flag):
            parser.error(f"--{flag.replace('_', '-')} {given} conflicts with the checkpoint's "
                         f"{getattr(config, flag)}: a resumed run keeps its configuration")
    if args.preset is not None:
        parser.error("--preset cannot be combined with --resume (the checkpoint holds the configuration)")
    if args.epochs is not None:
        config.epochs = args.epochs  # t_max stays: the schedule keeps the period it was created with
    return config


def _engine(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Engine:
    spec, flag = engine_spec(args.engine)
    return open_engine(parser, spec, args.device, flag)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Train (or resume); returns the exit status."""
    engine = _engine(args, parser)
    checkpoint = None
    if args.resume:
        out = args.out or os.path.dirname(os.path.abspath(args.resume))
    else:
        out = args.out or os.path.join("runs", f"{time.strftime('%Y%m%d-%H%M%S')}-{engine.name}")
    check_writable_dir(parser, "--out", out)
    existing = os.path.join(out, "checkpoint.npz")
    if not args.resume and os.path.exists(existing):
        parser.error(f"--out {out} already holds a run ({existing}); continue it with --resume {existing}, "
                     "or choose another --out (nothing was overwritten)")
    if args.resume:
        try:
            checkpoint = load_checkpoint(args.resume)
        except CheckpointError as error:
            return fail(str(error))
        config = resumed_config(args, parser, checkpoint)
    else:
        config = train_config(args, parser)
    if not engine.has_optimizer(config.optimizer):
        parser.error(f"argument --engine: engine {engine.spec!r} has no optimizer {config.optimizer!r}")

    try:
        dataset = load_dataset(config.dataset, args.data_dir or DEFAULT_DATA_DIR, dtype=config.dtype)
    except DataError as error:
        return fail(str(error))
    if config.limit is not None and config.limit > len(dataset.train_y):
        return fail(f"--limit {config.limit} exceeds the {len(dataset.train_y)} training samples")

    try:
        trainer = Trainer(config, engine, dataset, out, quiet=args.quiet, resume=checkpoint)
    except (ValueError, TypeError) as error:
        return fail(f"{args.resume}: cannot resume: {error}" if checkpoint else str(error))
    if checkpoint is not None:
        p = trainer.progress
        print(f"resuming {args.resume} (written by the {checkpoint.engine} engine) at epoch "
              f"{p.epoch + 1}, batch {p.step}, with the {engine.name} engine")
    if trainer.progress.epoch >= config.epochs:
        print(f"nothing to do: the checkpoint already finished {trainer.progress.epoch} epochs "
              f"(pass --epochs N with N > {trainer.progress.epoch} to train on)")
        return 0
    print(f"training {config.sizes} ({config.activation}, {config.dtype}) on {config.dataset} "
          f"with the {engine.name} engine -> {out}")
    try:
        trainer.run()
    except TrainingDiverged as error:
        return fail(str(error), EXIT_DIVERGED)
    except TrainingInterrupted as error:
        print(f"\n{error}", file=sys.stderr)
        print(f"resume with: backprop train --resume {trainer.checkpoint_path} --engine {engine.spec}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"done: {os.path.join(out, 'metrics.csv')}, {os.path.join(out, 'curves.png')}, "
          f"{trainer.checkpoint_path}")
    return 0

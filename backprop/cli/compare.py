"""`backprop compare`: train engines in lockstep and report how far apart they drift."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from typing import Any

from ..config import CLASSES, IN_FEATURES, PRESETS, TrainConfig, default_lr, default_momentum
from ..datasets import DataError, training_arrays
from ..fileio import atomic_write_text
from ..lockstep import LockstepSettings, rows_csv, run_lockstep, steps_per_epoch, summary
from ..plots import plot_divergence
from .options import (
    EXIT_OVER_TOLERANCE,
    add_data_options,
    add_engine_options,
    add_model_options,
    add_optimizer_options,
    add_preset_option,
    check_data_dir,
    claim_out,
    default_stem,
    fail,
    non_negative_float,
    open_engine,
    positive_int,
    require_optimizer,
)

PRESET = "notebook"  # compare's default: the original notebook's run


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `compare` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("compare", help="train engines in lockstep and measure how far apart they drift",
                       description="Train engines in lockstep from the same seed on the same batches (constant "
                                   "lr) and measure, after every step, how far their losses and parameters "
                                   "drift apart. Only the training split is read.")
    add_engine_options(p, multiple="numpy,torch")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="steps to train (default: --epochs epochs, else one epoch)")
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N", help="epochs to train (default: 1)")
    p.add_argument("--tol", type=non_negative_float, default=1e-6, metavar="X",
                   help="largest allowed relative parameter difference (exit 1 beyond it)")
    add_preset_option(p, default=PRESET)
    add_model_options(p, dtype_default="float64")
    add_optimizer_options(p, schedules=False)
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="use the first N training samples only (default: all of them)")
    add_data_options(p, data_dir_help="real data: the folder holding <Dataset>/raw/, e.g. ../shared/datasets "
                                      "(default: none, synthetic inputs of MNIST shape)")
    p.add_argument("--out", metavar="DIR", help="a new (or empty) directory for compare.csv and compare.png "
                                                "(default: runs/compare-<date>-<time>)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (default: a bar on stderr when it is a terminal)")
    return p


def settings_from(args: argparse.Namespace, n: int) -> LockstepSettings:
    """The lockstep run the flags describe: the preset, overridden by the flags given, on n
    samples (the learning rate and momentum default as in `train`: config.default_lr)."""
    name = args.preset or PRESET
    preset = PRESETS[name]
    optimizer = args.optimizer or preset["optimizer"]
    batch = args.batch_size or preset["batch_size"]
    total = args.steps or (args.epochs or 1) * steps_per_epoch(n, batch)
    layers = args.layers if args.layers is not None else preset.get("layers")
    return LockstepSettings(
        layers=layers,
        sizes=[IN_FEATURES, *(args.hidden if args.hidden is not None else preset["hidden"]), CLASSES],
        activation=args.activation or preset["activation"],
        init=args.init or preset["init"],
        dtype=args.dtype,
        batch_size=batch,
        seed=args.seed if args.seed is not None else 0,
        optimizer=optimizer,
        lr=args.lr if args.lr is not None else default_lr(name, optimizer),
        momentum=args.momentum if args.momentum is not None else default_momentum(name, optimizer),
        steps=total,
    )


def _network(settings: LockstepSettings) -> str:
    config = TrainConfig(hidden=settings.sizes[1:-1], activation=settings.activation, layers=settings.layers)
    return config.network_summary()


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Compare; returns 0, or EXIT_OVER_TOLERANCE when --tol was exceeded."""
    if not 2 <= len(args.engines) <= 3 or len(set(args.engines)) != len(args.engines):
        parser.error("--engines: give two or three different engines, e.g. numpy,torch")
    engines = [open_engine(parser, spec, args.device, "--engines") for spec in args.engines]
    optimizer = args.optimizer or PRESETS[args.preset or PRESET]["optimizer"]
    require_optimizer(parser, engines, optimizer, "--engines")
    if optimizer != "sgd" and args.momentum:
        parser.error(f"--momentum applies to --optimizer sgd only; {optimizer} has no momentum")
    mlp_flags = [flag for flag, value in (("--hidden", args.hidden), ("--activation", args.activation),
                                          ("--init", args.init)) if value is not None]
    if args.layers is not None and mlp_flags:
        parser.error(f"--layers cannot be combined with {', '.join(mlp_flags)}: --layers describes the whole "
                     "network, and --hidden, --activation and --init describe an MLP")
    preset_name = args.preset or PRESET
    if PRESETS[preset_name].get("layers") is not None and args.layers is None and mlp_flags:
        parser.error(f"{', '.join(mlp_flags)} cannot be combined with --preset {preset_name}: its network is a "
                     "layer stack; change it with --layers")
    if args.hidden == [] and args.activation:
        parser.error(f"--activation {args.activation}: a network without hidden layers (--hidden none) has no "
                     "activation")
    batch = args.batch_size or PRESETS[args.preset or PRESET]["batch_size"]
    if args.limit is not None and batch > args.limit:
        parser.error(f"--batch-size {batch} is larger than --limit {args.limit}; give --batch-size "
                     f"{args.limit} or less")
    check_data_dir(parser, args.data_dir)
    with claim_out(parser, args.out, default_stem("compare")) as run_dir:
        out = run_dir.path
        try:
            x, y, source = training_arrays(args.dataset, args.data_dir, args.dtype)
        except DataError as error:
            return fail(str(error))
        if args.limit:
            if args.limit > len(y):
                return fail(f"--limit {args.limit} exceeds the {len(y)} training samples")
            x, y = x[: args.limit], y[: args.limit]
        if batch > len(y):
            parser.error(f"--batch-size {batch} is larger than the {len(y)} training samples")
        settings = settings_from(args, len(y))
        names = [e.spec for e in engines]
        header = (f"{' vs '.join(names)}, {_network(settings)}, {settings.dtype}, batch {settings.batch_size}, "
                  f"{settings.optimizer} lr {settings.lr:g}"
                  + (f" momentum {settings.momentum:g}" if settings.momentum else "")
                  + f", {settings.steps} step{'s' if settings.steps != 1 else ''} on {source}")
        print(f"compare: {header}, tol {args.tol:g}", flush=True)
        if source.startswith("synthetic"):
            print("compare: no --data-dir given, so the engines trained on synthetic inputs (random pixels); "
                  "pass --dataset and --data-dir for real data", file=sys.stderr)

        def progress(steps: Iterable[int]) -> Iterable[int]:
            from tqdm import tqdm

            # disable=None: only when stderr is a terminal.
            return tqdm(steps, disable=True if args.quiet else None, leave=False, unit="step")

        try:
            rows = run_lockstep(engines, x, y, settings, progress=progress)
        except FloatingPointError as error:
            return fail(f"the engines' training diverged ({error}); try a smaller --lr (now {settings.lr:g})")
        csv_path, png_path = os.path.join(out, "compare.csv"), os.path.join(out, "compare.png")
        atomic_write_text(csv_path, rows_csv(rows))
        plot_divergence(rows, png_path, args.tol, title=header)

        exceeded = False
        for name in names[1:]:
            lines, over = summary(rows, name, names[0], args.tol)
            print("\n".join(lines))
            exceeded = exceeded or over
        print(f"wrote {csv_path} and {png_path}")
    if exceeded:
        print(f"backprop: tolerance {args.tol:g} exceeded", file=sys.stderr)
        return EXIT_OVER_TOLERANCE
    return 0

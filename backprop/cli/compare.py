"""`backprop compare`: train engines in lockstep and report how far apart they drift."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from ..config import CLASSES, IN_FEATURES, PRESETS
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
    check_writable_dir,
    fail,
    non_negative_float,
    open_engine,
    positive_int,
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `compare` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("compare", help="train engines in lockstep and measure how far apart they drift")
    add_engine_options(p, multiple="numpy,torch")
    p.add_argument("--steps", type=positive_int, default=None, help="default: one epoch")
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--tol", type=non_negative_float, default=1e-6,
                   help="largest allowed relative parameter difference (exit 1 beyond it)")
    add_preset_option(p, default="notebook")
    add_model_options(p, dtype_default="float64")
    add_optimizer_options(p, schedules=False)
    p.add_argument("--limit", type=positive_int, help="use the first N training samples only")
    add_data_options(p, data_dir_help="real data; without it synthetic inputs of MNIST shape")
    p.add_argument("--out", default=None, help="where compare.csv and compare.png go (default runs/compare-<time>)")
    p.add_argument("--quiet", action="store_true")
    return p


def settings_from(args: argparse.Namespace, n: int) -> LockstepSettings:
    """The lockstep run the flags describe: the preset, overridden by the flags given, on n samples."""
    preset = PRESETS[args.preset]
    optimizer = args.optimizer or preset["optimizer"]
    batch = args.batch_size or preset["batch_size"]
    total = args.steps or (args.epochs or 1) * steps_per_epoch(n, batch)
    return LockstepSettings(
        sizes=[IN_FEATURES, *(args.hidden if args.hidden is not None else preset["hidden"]), CLASSES],
        activation=args.activation or preset["activation"],
        init=args.init or preset["init"],
        dtype=args.dtype,
        batch_size=batch,
        seed=args.seed if args.seed is not None else 0,
        optimizer=optimizer,
        lr=args.lr if args.lr is not None else (preset["lr"] if optimizer == "sgd" else 1e-3),
        momentum=args.momentum if args.momentum is not None else (preset["momentum"] if optimizer == "sgd" else 0.0),
        steps=total,
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Compare; returns 0, or EXIT_OVER_TOLERANCE when --tol was exceeded."""
    if not 2 <= len(args.engines) <= 3 or len(set(args.engines)) != len(args.engines):
        parser.error("--engines: give two or three different engines, e.g. numpy,torch")
    engines = [open_engine(parser, spec, args.device, "--engines") for spec in args.engines]
    optimizer = args.optimizer or PRESETS[args.preset]["optimizer"]
    for engine in engines:
        if not engine.has_optimizer(optimizer):
            parser.error(f"argument --engines: engine {engine.spec!r} has no optimizer {optimizer!r}")
    out = args.out or os.path.join("runs", f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    check_writable_dir(parser, "--out", out)
    try:
        x, y, _ = training_arrays(args.dataset, args.data_dir, args.dtype)
    except DataError as error:
        return fail(str(error))
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    settings = settings_from(args, len(y))
    names = [e.spec for e in engines]
    print(f"compare: {' vs '.join(names)}, {settings.sizes} {settings.activation}, {settings.dtype}, "
          f"batch {settings.batch_size}, {settings.optimizer} lr {settings.lr:g}, {settings.steps} steps, "
          f"tol {args.tol:g}", flush=True)

    def progress(steps: Iterable[int]) -> Iterable[int]:
        from tqdm import tqdm

        return tqdm(steps, disable=args.quiet, leave=False, unit="step")

    try:
        rows = run_lockstep(engines, x, y, settings, progress=progress)
    except FloatingPointError as error:
        return fail(f"the engines' training diverged ({error}); try a smaller --lr")
    os.makedirs(out, exist_ok=True)
    csv_path, png_path = os.path.join(out, "compare.csv"), os.path.join(out, "compare.png")
    atomic_write_text(csv_path, rows_csv(rows))
    plot_divergence(rows, png_path, args.tol)

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

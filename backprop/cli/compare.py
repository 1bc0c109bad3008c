"""`backprop compare`: train engines in lockstep and report how far apart they drift."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from typing import Any

from engine_core.specs import as_network

from .. import threads as gemm_threads
from ..architecture import RECURRENT
from ..config import ConfigError, TrainConfig, new_config
from ..datasets import DataError, training_arrays
from ..fileio import atomic_write_text
from ..gemms import gemm_library
from ..lockstep import LockstepSettings, rows_csv, run_lockstep, steps_per_epoch, summary
from ..plots import plot_divergence
from ..threads import apply_threads, training_threads
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
    limit_error,
    non_negative_float,
    open_engine,
    positive_int,
    require_clipping,
    require_optimizer,
)
from .threads import AUTO_RULE_HELP, add_threads_option, blas_threads, warn_oversubscribed

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
    add_threads_option(p, f"{AUTO_RULE_HELP}; and 1 when NumPy's BLAS and torch both run, whose waiting threads "
                          "would take each other's cores")
    return p


def settings_from(config: TrainConfig, args: argparse.Namespace, n: int) -> LockstepSettings:
    """The lockstep run of ``config`` (config.new_config of the flags, as `train` makes it) for
    --steps, or --epochs (default 1) of n samples."""
    return LockstepSettings(
        network=config.network, init=config.init,
        dtype=config.dtype, batch_size=config.batch_size, seed=config.seed, optimizer=config.optimizer,
        lr=config.lr, momentum=config.momentum,
        steps=args.steps or (args.epochs or 1) * steps_per_epoch(n, config.batch_size),
        clip_grad_norm=config.clip_grad_norm,
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Compare; returns 0, or EXIT_OVER_TOLERANCE when --tol was exceeded."""
    if not 2 <= len(args.engines) <= 3 or len(set(args.engines)) != len(args.engines):
        parser.error("--engines: give two or three different engines, e.g. numpy,torch")
    engines = [open_engine(parser, spec, args.device, "--engines") for spec in args.engines]
    try:  # the flags' combinations are checked as `train` checks them, with its words
        config = new_config(args.preset or PRESET, layers=args.layers, hidden=args.hidden,
                            activation=args.activation, init=args.init, dtype=args.dtype, seed=args.seed,
                            batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                            momentum=args.momentum, limit=args.limit, clip_grad_norm=args.clip_grad_norm)
    except ConfigError as error:
        parser.error(str(error))
    require_optimizer(parser, engines, config.optimizer, "--engines")
    require_clipping(parser, engines, config.clip_grad_norm, "--engines")
    check_data_dir(parser, args.data_dir)
    with claim_out(parser, args.out, default_stem("compare")) as run_dir:
        out = run_dir.path
        try:
            x, y, source = training_arrays(args.dataset, args.data_dir, args.dtype)
        except DataError as error:
            return fail(str(error))
        if refused := limit_error(args.limit, len(y)):
            return fail(refused)
        x, y = x[: args.limit], y[: args.limit]
        if config.batch_size > len(y):
            parser.error(f"--batch-size {config.batch_size} is larger than the {len(y)} training samples")
        settings = settings_from(config, args, len(y))
        libraries = sorted({gemm_library(engine) for engine in engines})
        threads = training_threads(blas_threads(args), config, gemm_threads.current_load(),
                                   mixed_pools=len(libraries) > 1)
        warn_oversubscribed(threads.count, "compare")
        for library in libraries:  # process-wide, before the first step
            apply_threads(library, threads.count)
        names = [e.spec for e in engines]
        header = (f"{' vs '.join(names)}, {config.network_summary()}, {settings.dtype}, batch {settings.batch_size}, "
                  f"{settings.optimizer} lr {settings.lr:g}"
                  + (f" momentum {settings.momentum:g}" if settings.momentum else "")
                  + ("" if settings.clip_grad_norm is None else f", clip grad norm {settings.clip_grad_norm:g}")
                  + f", {settings.steps} step{'s' if settings.steps != 1 else ''} on {source}")
        pools = " and ".join("BLAS" if library == "numpy" else "torch" for library in libraries)
        print(f"compare: {header}, tol {args.tol:g}; {threads.describe(pools)}", flush=True)
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
        if any(spec.kind in RECURRENT for _, spec in as_network(config.network).leaves()):
            print("backprop: training a recurrent network is chaotic: a difference of one rounding grows to a "
                  "large one within a few hundred steps, between two torch runs whose weights differ in one "
                  "element's last bit too (docs/network.md, \"Recurrent networks on the command line\"); read the "
                  "steps before it grows (with --dtype float64, --steps 100 stays within 1e-13)", file=sys.stderr)
        return EXIT_OVER_TOLERANCE
    return 0

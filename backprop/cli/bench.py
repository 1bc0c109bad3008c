"""`backprop bench`: training throughput of every engine, side by side, against the GEMM floor."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from typing import Any

from ..benchmark import WORKLOADS, BenchSettings, bench_case, format_table, machine_info, noise_warning
from ..config import DTYPE_NAMES, OPTIMIZER_NAMES
from ..datasets import DataError, training_arrays
from ..engines import training_numerics
from ..fileio import atomic_write_text
from ..plots import plot_bench
from .options import (
    add_data_options,
    add_engine_options,
    check_data_dir,
    claim_out,
    comma_list,
    default_stem,
    fail,
    open_engine,
    positive_float,
    positive_int,
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `bench` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("bench", help="throughput of each engine vs the matmul floor",
                       description="Time every engine's training step side by side, against the GEMM floor. "
                                   "Only the training split is read.")
    add_engine_options(p, multiple="numpy,torch,autograd")
    p.add_argument("--workloads", type=comma_list(str), default=list(WORKLOADS), metavar="W1,W2",
                   help=f"comma-separated, from {', '.join(WORKLOADS)} (the presets' networks)")
    p.add_argument("--batch-sizes", type=comma_list(positive_int), default=[32, 128, 1024], metavar="B1,B2,...")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32")
    p.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="sgd",
                   help="sgd at the workload preset's lr; adam and adamw at torch's default lr")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="timed steps per repeat (default: a quarter epoch of the training split)")
    p.add_argument("--epochs", type=positive_float, default=None, metavar="X",
                   help="timed epochs per repeat instead of --steps (default: unused)")
    p.add_argument("--repeats", type=positive_int, default=5, metavar="N", help="timed rounds, medians reported")
    p.add_argument("--warmup", type=positive_int, default=20, metavar="N", help="untimed steps first")
    add_data_options(p, data_dir_help="real data: the folder holding <Dataset>/raw/, e.g. ../shared/datasets "
                                      "(default: none, synthetic inputs of MNIST shape)")
    p.add_argument("--out", metavar="DIR", help="a new (or empty) directory for bench.json and bench.png "
                                                "(default: runs/bench-<date>-<time>)")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Benchmark; returns the exit status."""
    for name in args.workloads:
        if name not in WORKLOADS:
            guess = difflib.get_close_matches(name, list(WORKLOADS), n=1)
            parser.error(f"--workloads: unknown workload {name!r} (choose from {', '.join(WORKLOADS)})"
                         + (f"; did you mean {guess[0]!r}?" if guess else ""))
    if not args.workloads:
        parser.error("--workloads: give at least one workload, e.g. notebook")
    if not args.engines or len(set(args.engines)) != len(args.engines):
        parser.error("--engines: give one or more different engines, e.g. numpy,torch")
    if not args.batch_sizes or len(set(args.batch_sizes)) != len(args.batch_sizes):
        parser.error("--batch-sizes: give one or more different batch sizes, e.g. 32,128")
    engines = [open_engine(parser, spec, args.device, "--engines") for spec in args.engines]
    for engine in engines:
        if not engine.has_optimizer(args.optimizer):
            parser.error(f"argument --engines: engine {engine.spec!r} has no optimizer {args.optimizer!r}")
    check_data_dir(parser, args.data_dir)
    with claim_out(parser, args.out, default_stem("bench")) as run_dir:
        try:
            x, y, source = training_arrays(args.dataset, args.data_dir, args.dtype)
        except DataError as error:
            return fail(str(error))
        too_big = [b for b in args.batch_sizes if b > len(y)]
        if too_big:
            parser.error(f"--batch-sizes: {too_big[0]} is larger than the {len(y)} training samples")
        settings = BenchSettings(dtype=args.dtype, optimizer=args.optimizer, steps=args.steps, epochs=args.epochs,
                                 repeats=args.repeats, warmup=args.warmup, device=args.device)
        info = machine_info()
        print(f"bench: {', '.join(args.engines)} on {source}; {args.dtype}, {args.optimizer}; "
              f"{info.get('cpu_count')} cores, numpy {info['numpy']} ({info.get('numpy_blas', '?')}), "
              f"torch {info.get('torch', '-')} ({info.get('torch_threads', '-')} threads)", flush=True)
        rows: list[dict[str, Any]] = []
        try:
            for workload in args.workloads:
                for batch in args.batch_sizes:
                    with training_numerics():  # as `backprop train` runs
                        case = bench_case(engines, workload, batch, settings, x, y)
                    print(format_table(case, header=not rows), flush=True)  # the table, a case at a time
                    rows.extend(case)
        except FloatingPointError as error:
            return fail(f"an engine's training diverged while timing ({error})")
        warning = noise_warning(rows)
        if warning:
            print(f"bench: warning: {warning}", file=sys.stderr)
        json_path, png_path = os.path.join(run_dir.path, "bench.json"), os.path.join(run_dir.path, "bench.png")
        atomic_write_text(json_path, json.dumps(
            {"machine": info, "source": source, "command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n")
        plot_bench(rows, png_path, title=f"{', '.join(args.engines)} on {source}; {args.optimizer}, "
                                         f"{info.get('cpu_count')} cores")
        print(f"wrote {json_path} and {png_path}")
    return 0

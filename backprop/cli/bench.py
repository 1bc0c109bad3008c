"""`backprop bench`: training throughput of every engine, side by side, against the GEMM floor."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from ..benchmark import WORKLOADS, BenchSettings, bench_case, format_table, machine_info
from ..config import DTYPE_NAMES, OPTIMIZER_NAMES
from ..datasets import DataError, training_arrays
from ..engines import training_numerics
from ..fileio import atomic_write_text
from ..plots import plot_bench
from .options import (
    add_data_options,
    add_engine_options,
    check_writable_dir,
    comma_list,
    fail,
    open_engine,
    positive_float,
    positive_int,
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `bench` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("bench", help="throughput of each engine vs the matmul floor")
    add_engine_options(p, multiple="numpy,torch,autograd")
    p.add_argument("--workloads", type=comma_list(str), default=list(WORKLOADS),
                   help=f"comma-separated, from {', '.join(WORKLOADS)} (default all)")
    p.add_argument("--batch-sizes", type=comma_list(positive_int), default=[32, 128, 1024])
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32")
    p.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="sgd")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="timed steps per repeat (default: 1/4 epoch of the training split)")
    p.add_argument("--epochs", type=positive_float, default=None, help="timed epochs per repeat instead of --steps")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--warmup", type=positive_int, default=20, help="untimed steps first")
    add_data_options(p, data_dir_help="real data; without it synthetic inputs of MNIST shape")
    p.add_argument("--out", default=None, help="where bench.json and bench.png go (default runs/bench-<time>)")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Benchmark; returns the exit status."""
    for name in args.workloads:
        if name not in WORKLOADS:
            parser.error(f"--workloads: unknown workload {name!r} (choose from {', '.join(WORKLOADS)})")
    if not args.engines or len(set(args.engines)) != len(args.engines):
        parser.error("--engines: give one or more different engines, e.g. numpy,torch")
    if not args.batch_sizes:
        parser.error("--batch-sizes: give at least one batch size, e.g. 32,128")
    engines = [open_engine(parser, spec, args.device, "--engines") for spec in args.engines]
    for engine in engines:
        if not engine.has_optimizer(args.optimizer):
            parser.error(f"argument --engines: engine {engine.spec!r} has no optimizer {args.optimizer!r}")
    out = args.out or os.path.join("runs", f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    check_writable_dir(parser, "--out", out)
    try:
        x, y, source = training_arrays(args.dataset, args.data_dir, args.dtype)
    except DataError as error:
        return fail(str(error))
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
                print(format_table(case, header=not rows), flush=True)
                rows.extend(case)
    except FloatingPointError as error:
        return fail(f"an engine's training diverged while timing ({error})")
    os.makedirs(out, exist_ok=True)
    json_path, png_path = os.path.join(out, "bench.json"), os.path.join(out, "bench.png")
    atomic_write_text(json_path, json.dumps(
        {"machine": info, "source": source, "command": " ".join(sys.argv), "rows": rows}, indent=2))
    plot_bench(rows, png_path)
    print(f"\n{format_table(rows)}\n\nwrote {json_path} and {png_path}")
    return 0

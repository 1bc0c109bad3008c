"""`backprop bench`: training throughput of every engine, side by side, against the GEMM floor."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..config import DTYPE_NAMES, OPTIMIZER_NAMES
from ..datasets import DataError, training_arrays
from ..engines import EngineError, load_engine, training_numerics
from ..fileio import atomic_write_text
from ..plots import plot_bench
from ..workloads import DEFAULT_WORKLOADS, WORKLOADS
from .options import (
    add_data_options,
    add_engine_options,
    check_data_dir,
    claim_out,
    close_match,
    comma_list,
    default_stem,
    fail,
    open_engine,
    positive_float,
    positive_int,
    require_optimizer,
)
from .threads import add_threads_option, warn_oversubscribed


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `bench` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("bench", help="throughput of each engine vs the matmul floor",
                       description="Time every engine's training step side by side, against the GEMM floor. "
                                   "Each workload and batch size runs in its own process; each row gives the "
                                   "median over the repeats of the engine's time over its floor's and the spread "
                                   "of that ratio (interquartile range over median), marked ? when over 10% "
                                   "(unstable). Only the training split is read.")
    add_engine_options(p, multiple="numpy,torch,autograd")
    p.add_argument("--workloads", type=comma_list(str), default=list(DEFAULT_WORKLOADS), metavar="W1,W2",
                   help=f"comma-separated, from {', '.join(WORKLOADS)} (notebook, default, lenet, lstm, vit: the "
                        f"presets' networks, lstm's floor its 28 steps' products, vit's its attention's; wide: "
                        f"784-1024-1024-10 relu) "
                        f"(default: {','.join(DEFAULT_WORKLOADS)})")
    p.add_argument("--batch-sizes", type=comma_list(positive_int), default=None, metavar="B1,B2,...",
                   help="for every workload (default: 32,128,1024 for the MLPs, 64 for lenet and lstm, 128 for vit)")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32")
    p.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="sgd",
                   help="sgd at the workload preset's lr; adam and adamw at torch's default lr")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="timed steps per repeat (default: a quarter epoch of the training split, but at most "
                        "about a second of the slowest engine, and at least 10)")
    p.add_argument("--epochs", type=positive_float, default=None, metavar="X",
                   help="timed epochs per repeat instead of --steps (default: unused)")
    p.add_argument("--repeats", type=positive_int, default=5, metavar="N", help="timed rounds, medians reported")
    p.add_argument("--warmup", type=positive_int, default=20, metavar="N",
                   help="untimed steps first (at most; warm-up stops after a second, at 2 steps or more)")
    add_threads_option(p, "default: auto, the fastest count for each workload and batch size, measured at "
                          "start-up on its floor's matrix products; the table's `thr`, and bench.json also "
                          "gives train's auto rule (threads_rule)")
    p.add_argument("--no-compile", action="store_true",
                   help="leave out the rows of torch.compile: autograd+compile (torch.nn and torch.optim) and "
                        "torch+compile (the torch engine's hand-written step) (default: included when "
                        "torch.compile works on this machine; compiling takes a while and is not timed)")
    p.add_argument("--isolation", choices=("process", "none"), default="process",
                   help="process: each workload and batch size timed in a fresh Python process, so that no case "
                        "depends on the ones timed before it; none: every case in this process (faster to start, "
                        "for quick looks) (default: process)")
    p.add_argument("--no-phases", action="store_true",
                   help="skip the per-phase pass (feed, forward, loss, backward, update) and the per-layer pass "
                        "(the hand-written engines' layers, forward and backward) of bench.json (default: run them)")
    add_data_options(p, data_dir_help="real data: the folder holding <Dataset>/raw/, e.g. ../shared/datasets "
                                      "(default: none, synthetic inputs of MNIST shape)")
    p.add_argument("--out", metavar="DIR", help="a new (or empty) directory for bench.json and bench.png "
                                                "(default: runs/bench-<date>-<time>)")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # The benchmark's timing code (and the floor's) is imported only when a bench runs: no other
    # command depends on it.
    from ..benchmark import (
        BenchSettings,
        CaseRequest,
        CompiledReference,
        bench_case,
        floor_warnings,
        format_table,
        formulation_summary,
        machine_info,
        noise_warning,
        run_isolated,
        unstable_warnings,
    )

    """Benchmark; returns the exit status."""
    for name in args.workloads:
        if name not in WORKLOADS:
            guess = close_match(name, list(WORKLOADS))
            parser.error(f"--workloads: unknown workload {name!r} (choose from {', '.join(WORKLOADS)})"
                         + (f"; did you mean {guess!r}?" if guess else ""))
    if not args.workloads:
        parser.error("--workloads: give at least one workload, e.g. notebook")
    if not args.engines or len(set(args.engines)) != len(args.engines):
        parser.error("--engines: give one or more different engines, e.g. numpy,torch")
    if args.batch_sizes is not None and (not args.batch_sizes or len(set(args.batch_sizes)) != len(args.batch_sizes)):
        parser.error("--batch-sizes: give one or more different batch sizes, e.g. 32,128")
    engines = [open_engine(parser, spec, args.device, "--engines") for spec in args.engines]
    require_optimizer(parser, engines, args.optimizer, "--engines")
    check_data_dir(parser, args.data_dir)
    warn_oversubscribed(args.blas_threads, "bench")
    with claim_out(parser, args.out, default_stem("bench")) as run_dir:
        try:
            x, y, source = training_arrays(args.dataset, args.data_dir, args.dtype)
        except DataError as error:
            return fail(str(error))
        too_big = [b for w in args.workloads for b in (args.batch_sizes or WORKLOADS[w]["batch_sizes"]) if b > len(y)]
        if too_big:
            parser.error(f"--batch-sizes: {too_big[0]} is larger than the {len(y)} training samples")
        settings = BenchSettings(dtype=args.dtype, optimizer=args.optimizer, steps=args.steps, epochs=args.epochs,
                                 repeats=args.repeats, warmup=args.warmup, device=args.device,
                                 blas_threads=args.blas_threads, phases=not args.no_phases)
        info = machine_info()
        cores, torch_threads = info.get("cpu_count"), info.get("torch_threads", "-")
        print(f"bench: {', '.join(args.engines)} on {source}; {args.dtype}, {args.optimizer}; "
              f"{cores} core{'s' if cores != 1 else ''}, numpy {info['numpy']} ({info.get('numpy_blas', '?')}), "
              f"torch {info.get('torch', '-')} ({torch_threads} thread{'s' if torch_threads != 1 else ''})", flush=True)
        compiled = None
        if not args.no_compile:
            compiled = CompiledReference(load_engine("autograd", args.device), load_engine("torch", args.device))
            if not compiled.available():
                print(f"bench: no compiled rows: {compiled.reason}", flush=True)
        with_compiled = compiled is not None and compiled.available()
        rows: list[dict[str, Any]] = []
        try:
            for workload in args.workloads:
                for batch in args.batch_sizes or WORKLOADS[workload]["batch_sizes"]:
                    if args.isolation == "process":
                        case = run_isolated(CaseRequest(tuple(args.engines), args.device, workload, batch, settings,
                                                        args.dataset, args.data_dir, with_compiled))
                    else:
                        with training_numerics():  # as `backprop train` runs
                            case = bench_case(engines, workload, batch, settings, x, y, compiled)
                    print(format_table(case, header=not rows), flush=True)  # the table, a case at a time
                    rows.extend(case)
        except FloatingPointError as error:
            return fail(f"an engine's training diverged while timing ({error})")
        except EngineError as error:  # an engine without a layer a workload needs (lenet's Conv2d, lstm's LSTM)
            return fail(f"--workloads: {error}")
        except (DataError, RuntimeError) as error:  # the data changed under us, or a case's process died
            return fail(str(error))
        print("floor formulations (the fastest per product; bench.json has every candidate's time):")
        for line in formulation_summary(rows):
            print(f"  {line}")
        below = floor_warnings(rows)
        for line in below:  # loudly: a floor that an engine beats is the number this table rests on
            print(f"bench: WARNING: {line}", file=sys.stderr)
        shaky = unstable_warnings(rows)
        for line in shaky:
            print(f"bench: warning: {line}", file=sys.stderr)
        warning = noise_warning(rows)
        if warning:
            print(f"bench: warning: {warning}", file=sys.stderr)
        json_path, png_path = os.path.join(run_dir.path, "bench.json"), os.path.join(run_dir.path, "bench.png")
        compile_report = {"requested": not args.no_compile,
                          "available": compiled is not None and compiled.available(),
                          "reason": compiled.reason if compiled is not None else "--no-compile"}
        atomic_write_text(json_path, json.dumps(
            {"machine": info, "source": source, "command": " ".join(sys.argv), "threads_setting": args.blas_threads,
             "compiled": compile_report, "isolation": args.isolation, "below_floor": below, "unstable": shaky,
             "rows": rows}, indent=2) + "\n")
        plot_bench(rows, png_path, title=f"{', '.join(args.engines)} on {source}; {args.optimizer}, "
                                         f"{cores} core{'s' if cores != 1 else ''}")
        print(f"wrote {json_path} and {png_path}")
    return 0

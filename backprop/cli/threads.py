"""--blas-threads, shared by `train` and `bench` (the choice itself: backprop.threads)."""

from __future__ import annotations

import argparse
from typing import Any

from ..threads import AUTO, parse_threads


def threads_value(text: str) -> int | str:
    """argparse type of --blas-threads: a positive integer or "auto"."""
    try:
        return parse_threads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_threads_option(p: argparse.ArgumentParser, what: str) -> None:
    """Add --blas-threads N|auto (default auto) to ``p``; ``what`` says where auto measures."""
    p.add_argument("--blas-threads", type=threads_value, default=AUTO, metavar="N|auto",
                   help="threads for NumPy's BLAS and torch's GEMMs, for the whole process (default: auto, the "
                        f"fastest count for {what}, measured once at start-up on the step's matrix products)")


def blas_threads(args: argparse.Namespace) -> Any:
    """The --blas-threads value of ``args`` ("auto" when the parser has no such option)."""
    return getattr(args, "blas_threads", AUTO)

"""--blas-threads, shared by `train`, `compare` and `bench` (the choice itself: backprop.threads)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..threads import AUTO, oversubscription_warning, parse_threads


def threads_value(text: str) -> int | str:
    """argparse type of --blas-threads: a positive integer or "auto"."""
    try:
        return parse_threads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_threads_option(p: argparse.ArgumentParser, auto_help: str, default: Any = AUTO) -> None:
    """Add --blas-threads N|auto to ``p``; ``auto_help`` says what auto does there (train and
    compare: a rule on the step's products and the load; bench: a measurement). ``default`` None
    lets a command tell "not given" from auto."""
    p.add_argument("--blas-threads", type=threads_value, default=default, metavar="N|auto",
                   help=f"threads for NumPy's BLAS and torch's GEMMs, for the whole process ({auto_help})")


AUTO_RULE_HELP = ("default: auto, one thread per MFLOP of the step's largest matrix product, at least 1, at most "
                  "the cores no other process is using now (the cores less the load: the 1-minute load average, "
                  "or the processes running now if fewer); the "
                  "header line says which set the count. float32 results are bitwise reproducible only at "
                  "equal counts: give N where that matters")


def blas_threads(args: argparse.Namespace) -> Any:
    """The --blas-threads value of ``args`` ("auto" when the parser has no such option or it was
    not given)."""
    value = getattr(args, "blas_threads", AUTO)
    return AUTO if value is None else value


def warn_oversubscribed(count: int | str | None, command: str) -> None:
    """One stderr line when ``count`` (an applied or requested count; "auto" and None pass)
    exceeds the cores (threads.oversubscription_warning)."""
    if isinstance(count, int):
        warning = oversubscription_warning(count)
        if warning:
            print(f"{command}: warning: {warning}", file=sys.stderr)

"""What every command shares: argument types, option groups, exit codes, how errors are reported.

A bad flag is argparse's usage error (exit 2), raised before any data is read; a problem with
the data or a checkpoint is one line ``backprop: error: ...`` and exit 1 (see ``fail``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from ..config import (
    ACTIVATION_NAMES,
    DATASET_NAMES,
    DTYPE_NAMES,
    INIT_NAMES,
    OPTIMIZER_NAMES,
    PRESET_NAMES,
    SCHEDULE_NAMES,
)
from ..engines import ENGINES, Engine, EngineError, load_engine

# Exit statuses (the README's "Errors and recovery" table).
EXIT_OK = 0
EXIT_DATA = 1  # a data or checkpoint problem
EXIT_OVER_TOLERANCE = 1  # compare: the engines drifted apart beyond --tol
EXIT_USAGE = 2  # argparse's own status for a bad flag
EXIT_DIVERGED = 3  # the loss became NaN/Inf
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), after saving a checkpoint

DEFAULT_DATA_DIR = "./data"  # the notebook's root='./data'
ENGINE_VARIABLE = "BACKPROP_ENGINE"
DEFAULT_ENGINE = "numpy"

T = TypeVar("T")


# -- argument types: each rejects a bad value with argparse's usage error (exit 2) ----------
def positive_int(text: str) -> int:
    """An integer >= 1 (an epoch count, a batch size, a sample limit)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a seed: NumPy's generators take no negative seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a learning rate, a momentum, a tolerance)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a fraction of an epoch)."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def width_list(text: str) -> list[int]:
    """'64,64' -> [64, 64]; 'none' or '' -> [] (a linear classifier)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [positive_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive widths such as 64,64, got {text!r}"
        ) from None


def comma_list(kind: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argument type: 'a,b,c' -> [kind('a'), kind('b'), kind('c')], empty parts skipped."""

    def parse(text: str) -> list[T]:
        return [kind(part) for part in text.split(",") if part]

    parse.__name__ = f"comma-separated {getattr(kind, '__name__', 'value')}"
    return parse


# -- shared option groups ---------------------------------------------------------------------
def add_data_options(parser: argparse.ArgumentParser, dataset_default: str | None = None,
                     data_dir_default: str | None = None, data_dir_help: str | None = None) -> None:
    """--dataset and --data-dir."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASET_NAMES, default=dataset_default,
                       help="which MNIST-format dataset (default mnist)")
    group.add_argument("--data-dir", default=data_dir_default, help=data_dir_help or (
        f"root holding <Dataset>/raw/ or the legacy <Dataset>/processed/ (default {DEFAULT_DATA_DIR}; "
        "downloaded there if absent)"))


def add_engine_options(parser: argparse.ArgumentParser, multiple: str | None = None) -> None:
    """--engine (or, with ``multiple`` as the default list, --engines) and --device."""
    group = parser.add_argument_group("engine")
    names = " | ".join(ENGINES)
    if multiple is None:
        group.add_argument("--engine", default=None, metavar="ENGINE",
                           help=f"{names} | a module path such as mypkg.my_engine "
                                f"(default: ${ENGINE_VARIABLE}, then {DEFAULT_ENGINE})")
    else:
        group.add_argument("--engines", type=comma_list(str), default=multiple.split(","), metavar="E1,E2,...",
                           help=f"comma-separated engines: {names} or module paths (default {multiple})")
    group.add_argument("--device", default="cpu",
                       help="cpu (default) or cuda: any device the engine declares in its DEVICES")


def add_model_options(parser: argparse.ArgumentParser, dtype_default: str | None = None) -> None:
    """--hidden, --activation, --init, --dtype, --seed (defaults None: the preset decides)."""
    group = parser.add_argument_group("model")
    group.add_argument("--hidden", type=width_list, help="hidden widths, e.g. 64,64 ('none': no hidden layer)")
    group.add_argument("--activation", choices=ACTIVATION_NAMES)
    group.add_argument("--init", choices=INIT_NAMES)
    group.add_argument("--dtype", choices=DTYPE_NAMES, default=dtype_default)
    group.add_argument("--seed", type=non_negative_int, help="weights and batch order (default 0)")


def add_optimizer_options(parser: argparse.ArgumentParser, schedules: bool = True) -> None:
    """--batch-size, --optimizer, --lr, --momentum; with ``schedules`` also --nesterov,
    --weight-decay and the learning-rate schedule's flags (defaults None: the preset decides)."""
    group = parser.add_argument_group("optimizer")
    group.add_argument("--batch-size", type=positive_int)
    group.add_argument("--optimizer", choices=OPTIMIZER_NAMES)
    group.add_argument("--lr", type=non_negative_float, help="learning rate")
    group.add_argument("--momentum", type=non_negative_float, help="SGD's momentum")
    if not schedules:
        return
    group.add_argument("--nesterov", action="store_true", default=None)
    group.add_argument("--weight-decay", type=non_negative_float)
    group.add_argument("--lr-schedule", choices=SCHEDULE_NAMES,
                       help="per-epoch schedule: constant, step (StepLR) or cosine (CosineAnnealingLR)")
    group.add_argument("--step-size", type=positive_int, help="StepLR's step_size in epochs (default 5)")
    group.add_argument("--gamma", type=non_negative_float, help="StepLR's gamma (default 0.1)")


def add_preset_option(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """--preset: notebook (the original notebook's run) or default (a ReLU net that beats it)."""
    parser.add_argument("--preset", choices=PRESET_NAMES, default=default,
                        help="notebook (the original notebook's run) or default (a ReLU net that beats it)")


# -- checks that end in a usage error ---------------------------------------------------------
def engine_spec(engine: str | None) -> tuple[str, str]:
    """(the engine to load, the flag it came from): --engine, else $BACKPROP_ENGINE, else numpy."""
    if engine:
        return engine, "--engine"
    variable = os.environ.get(ENGINE_VARIABLE)
    if variable:
        return variable, f"--engine (or {ENGINE_VARIABLE})"
    return DEFAULT_ENGINE, "--engine"


def open_engine(parser: argparse.ArgumentParser, spec: str, device: str, flag: str = "--engine") -> Engine:
    """load_engine, with any EngineError (and an unavailable CUDA) as a usage error naming ``flag``."""
    try:
        engine = load_engine(spec, device)
    except EngineError as error:
        parser.error(f"argument {flag}: {error}")
    check_device_available(parser, device)
    return engine


def check_device_available(parser: argparse.ArgumentParser, device: str) -> None:
    """A usage error when ``device`` is a CUDA device and torch sees no GPU."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error(f"--device {device}: CUDA is not available on this machine (torch sees no GPU)")


def writable_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be an output directory, or None if it can (it is created when missing)."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} exists and is not a directory"
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def check_writable_dir(parser: argparse.ArgumentParser, flag: str, path: str) -> None:
    """A usage error naming ``flag`` unless ``path`` can be (or become) a writable directory."""
    problem = writable_dir_problem(path)
    if problem:
        parser.error(f"{flag}: {problem}")


def fail(message: str, code: int = EXIT_DATA) -> int:
    """Print ``backprop: error: <message>`` to stderr and return ``code`` (for ``return fail(...)``)."""
    print(f"backprop: error: {message}", file=sys.stderr)
    return code

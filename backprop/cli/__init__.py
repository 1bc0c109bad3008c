"""`backprop`: train, evaluate, export, compare and bench, with any engine.

Exit status: 0 done, 1 a data or checkpoint problem (or compare's --tol exceeded), 2 a usage
error (before any data is read), 3 training diverged, 130 interrupted by Ctrl-C (a checkpoint
was saved).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from . import bench, compare, evaluate, export, train
from .options import EXIT_DATA, EXIT_INTERRUPTED

Command = Callable[[argparse.Namespace, argparse.ArgumentParser], int]
# One module per command, each with add_parser(sub) and run(args, parser) -> exit status.
COMMANDS = {"train": train, "evaluate": evaluate, "export": export, "compare": compare, "bench": bench}


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `backprop` parser, and each command's own parser by command name."""
    parser = argparse.ArgumentParser(prog="backprop", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    return parser, {name: module.add_parser(sub) for name, module in COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    """The `backprop` parser with every command's subparser."""
    return build_parsers()[0]


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default sys.argv[1:]); returns the exit status.

    Usage errors exit through argparse (SystemExit 2); Ctrl-C outside training returns 130.
    """
    parser, commands = build_parsers()
    args = parser.parse_args(argv)
    run: Command = COMMANDS[args.command].run
    try:
        # The command's own parser: its usage errors show that command's usage line.
        return run(args, commands[args.command])
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`backprop evaluate ... | head`): nothing left to say.
        # Python's documented recipe: point stdout at devnull so its flush at exit stays silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_DATA

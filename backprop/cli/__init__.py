"""`backprop`: train, evaluate, export, compare and bench, with any engine.

Exit status: 0 done, 1 a data, checkpoint or file problem (or compare's --tol exceeded), 2 a
usage error (before any data is read), 3 training diverged, 130 interrupted by Ctrl-C (a
checkpoint was saved), 141 the reader of the output went away (``| head``).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable

from ..datasets import TorchvisionError
from ..versions import installed_version
from . import bench, compare, evaluate, export, import_torch, train
from .options import EXIT_BROKEN_PIPE, EXIT_DATA, EXIT_INTERRUPTED, Parser, fail

Command = Callable[[argparse.Namespace, argparse.ArgumentParser], int]
# One module per command, each with add_parser(sub) and run(args, parser) -> exit status.
COMMANDS = {"train": train, "evaluate": evaluate, "export": export, "import": import_torch, "compare": compare,
            "bench": bench}
DISTRIBUTION = "backprop-by-hand"


def version() -> str:
    """``backprop 0.2.0 (numpy 2.4.6, torch 2.14.1, python 3.11.7)``, from the installed metadata
    (nothing is imported)."""
    installed = installed_version
    python = ".".join(map(str, sys.version_info[:3]))
    return (f"backprop {installed(DISTRIBUTION)} (numpy {installed('numpy')}, torch {installed('torch')}, "
            f"torchvision {installed('torchvision')}, python {python})")


class _Version(argparse.Action):
    """--version: version() on one line (argparse's own action wraps it at the terminal's width)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(version())
        parser.exit()


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `backprop` parser, and each command's own parser by command name."""
    parser = Parser(prog="backprop", description=(__doc__ or "").split("\n")[0],
                    epilog="`backprop COMMAND --help` shows a command's flags and their defaults.")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the versions in use and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    return parser, {name: module.add_parser(sub) for name, module in COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    """The `backprop` parser with every command's subparser."""
    return build_parsers()[0]


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null, so that nothing more (not even the flush at exit)
    tries to write to a pipe whose reader has gone: Python's documented recipe for EPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default sys.argv[1:]); returns the exit status.

    ``backprop`` alone prints the help. Usage errors exit through argparse (SystemExit 2);
    Ctrl-C outside training returns 130; a reader that goes away (``| head``) ends the program
    quietly with 141; an OSError (a full disk, a file that cannot be written) is one line naming
    the file, exit 1.
    """
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # lines reach a pipe (`| tee log`) as they are printed
    parser, commands = build_parsers()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        run: Command = COMMANDS[args.command].run
        # The command's own parser: its usage errors show that command's usage line.
        return run(args, commands[args.command])
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_output()
        return EXIT_BROKEN_PIPE
    except TorchvisionError as error:  # wherever torchvision is first needed (data, class names)
        return fail(str(error), EXIT_DATA)
    except OSError as error:
        where = error.filename or "backprop"
        return fail(f"{where}: {error.strerror or error}", EXIT_DATA)

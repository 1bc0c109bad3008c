"""Commands the program prints for the user to run next (resume, a smaller learning rate, ...),
spelled so that they work when copied: the program as it was started, every argument quoted for
the shell."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Sequence

PROGRAM = "backprop"


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def program(argv0: str | None = None, executable: str | None = None) -> str:
    """How to start this program again from the current directory, as a shell word or two.

    ``backprop`` when that name on $PATH is this very program; the path it was started by
    otherwise (``.venv/bin/backprop``); for ``python -m backprop``, that python (``python`` when it
    is the one on $PATH, else its full path) with ``-m backprop``.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    if os.path.basename(argv0) == "__main__.py" and os.path.basename(os.path.dirname(argv0)) == PROGRAM:
        for name in ("python", "python3"):
            found = shutil.which(name)
            if found and os.path.abspath(found) == os.path.abspath(executable):
                return f"{name} -m {PROGRAM}"
        return f"{shlex.quote(executable)} -m {PROGRAM}"
    if os.path.basename(argv0) != PROGRAM:
        return PROGRAM  # called as a library (tests, a notebook): the installed command
    found = shutil.which(PROGRAM)
    if found and _same_file(found, argv0):
        return PROGRAM
    return shlex.quote(argv0)


def command(*args: str, argv0: str | None = None) -> str:
    """``<program> ARGS``, each argument quoted for a POSIX shell."""
    return f"{program(argv0)} {shlex.join(args)}"


def flags(values: Sequence[tuple[str, object]]) -> list[str]:
    """[("--lr", 0.01), ("--quiet", True), ("--out", None)] -> ["--lr", "0.01", "--quiet"]:
    None and False are left out, True is the bare flag, lists are comma-joined."""
    out: list[str] = []
    for flag, value in values:
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [flag, ",".join(map(str, value)) if value else "none"]
        elif isinstance(value, float):
            out += [flag, repr(value)]  # the shortest text that reads back as the same float
        else:
            out += [flag, str(value)]
    return out

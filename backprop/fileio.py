"""Files that survive a crash: every output of a run is written to a temporary file beside its
target, flushed to disk and renamed over it, so an observer (or a resumed run) sees the old file
or the new one, never a torn one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def fsync_dir(directory: str) -> None:
    """Flush a directory's entries (a rename inside it) to disk; a no-op where that is unsupported.

    Without it a power cut right after os.replace can still lose the rename on some filesystems.
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # e.g. directories that cannot be fsynced on this filesystem
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temporary binary file beside ``path``, fsync it, then
    ``os.replace`` it in and fsync the directory.

    A crash at any instant leaves either the old file or the new one, never a torn one. Any
    exception from ``write`` (or a signal) removes the temporary file and propagates unchanged;
    an OSError is raised when the directory is not writable.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)


def atomic_write_text(path: str, text: str) -> None:
    """``atomic_write`` of a UTF-8 string."""
    atomic_write(path, lambda f: f.write(text.encode()))

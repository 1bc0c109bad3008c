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


def missing_dirs(path: str) -> list[str]:
    """``path`` (made absolute) and its ancestors that do not exist, innermost first, up to the
    first that does: [] when ``path`` exists; the last item's parent is the nearest existing one."""
    missing, probe = [], os.path.abspath(path)
    while not os.path.exists(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return missing


def current_umask() -> int:
    """The process's umask (read from /proc where it is shown, else set and restored at once)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # the only portable way to read it: set it, and put it back at once
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from open(): 0o666 less the umask (0o644 under umask 022)."""
    return 0o666 & ~current_umask()


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temporary binary file beside ``path``, fsync it, then
    ``os.replace`` it in and fsync the directory.

    A crash at any instant leaves either the old file or the new one, never a torn one. The file
    gets the mode any new file gets (0o666 less the umask; mkstemp alone would make it 0o600).
    Any exception from ``write`` (or a signal) removes the temporary file and propagates
    unchanged, except an OSError, which is raised again naming ``path`` (never the temporary
    file): a missing or unwritable directory, a full disk.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    except OSError as error:
        raise _naming(error, path) from None
    try:
        os.chmod(tmp, file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise _naming(error, path) from None
        raise
    fsync_dir(directory)


def _naming(error: OSError, path: str) -> OSError:
    """The same error (errno, message, subclass), about ``path``."""
    if error.errno is None:
        named = OSError(str(error))
        named.filename = path
        return named
    return OSError(error.errno, error.strerror or str(error), path)


def atomic_write_text(path: str, text: str) -> None:
    """``atomic_write`` of a UTF-8 string."""
    atomic_write(path, lambda f: f.write(text.encode()))

"""Run directories that no two runs share: a default name that is new, and an exclusive claim.

A run (train, compare, bench) writes into one directory. It claims it first: the directory is
created with ``os.mkdir`` (atomic: of two processes creating the same name, one fails), and a
lock file ``.backprop.lock`` is created in it with ``O_CREAT | O_EXCL`` (atomic too) holding the
claimant's pid and host. The lock is removed when the run ends; one left by a run that was killed
(its pid gone, same host) is taken over. A directory that holds files and is not the run's own is
refused, so nothing is ever overwritten.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import socket
import time
from dataclasses import dataclass, field

from .fileio import missing_dirs

LOCK_NAME = ".backprop.lock"


class RunDirError(Exception):
    """A directory that cannot be claimed for a run; the message is one line naming it and why."""


@dataclass
class RunDir:
    """A claimed run directory. ``created``: the directories the claim created (outermost
    first), removed again by ``release`` when the run left nothing in them."""

    path: str
    created: list[str] = field(default_factory=list)
    _locked: bool = True
    fresh: bool = False  # new or empty when claimed: everything in it is this run's

    def discard(self) -> list[str]:
        """Delete what this run wrote into its fresh directory (a run that ended with nothing worth
        keeping: no checkpoint), then release it (the directory goes too when the claim created
        it). Returns the names deleted; nothing is deleted from a directory that was not fresh."""
        if not self.fresh:
            return []
        names = sorted(name for name in os.listdir(self.path) if name != LOCK_NAME)
        for name in names:
            target = os.path.join(self.path, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)
        self.release()
        return names

    @property
    def lock_path(self) -> str:
        return os.path.join(self.path, LOCK_NAME)

    def release(self) -> None:
        """Remove the lock, and the directories the claim created if they are still empty."""
        if self._locked:
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                pass
            self._locked = False
        for directory in reversed(self.created):
            try:
                os.rmdir(directory)
            except OSError:  # not empty (the run wrote into it), or gone: keep it
                break
        self.created = []

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _makedirs(path: str) -> list[str]:
    """os.makedirs(path)'s parents, recording which it created (outermost first); ``path``
    itself is not created. OSError as os.makedirs raises it."""
    created = []
    for directory in reversed(missing_dirs(os.path.dirname(os.path.abspath(path)))):
        try:
            os.mkdir(directory)
            created.append(directory)
        except FileExistsError:
            pass
    return created


def _lock_owner(lock: str) -> tuple[int | None, str]:
    try:
        with open(lock) as f:
            parts = f.read().split()
        return int(parts[0]), parts[1] if len(parts) > 1 else ""
    except (OSError, ValueError, IndexError):
        return None, ""


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no safe liveness probe (os.kill would terminate it): treat as held
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _take_lock(path: str) -> None:
    lock = os.path.join(path, LOCK_NAME)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            pid, host = _lock_owner(lock)
            if pid is not None and host == socket.gethostname() and not _alive(pid):
                try:  # its run was killed: take the directory over
                    os.unlink(lock)
                except FileNotFoundError:
                    pass
                continue
            owner = f"pid {pid} on {host}" if pid is not None else "a process that is starting"
            raise RunDirError(f"{path} is in use by another backprop run ({owner}); wait for it to end or "
                              f"choose another directory (if no such run exists, delete {lock})") from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
        return
    raise RunDirError(f"{path}: could not take its lock {lock}")


def claim(path: str, own_run: bool = False) -> RunDir:
    """Claim ``path`` for a run, creating it (and its parents) when missing.

    The directory must be new or empty, or, with ``own_run`` (a resumed run continuing in its
    own directory), may hold that run's files. Raises RunDirError when another run holds it, when
    it holds files and is not ``own_run``, or when it cannot be a writable directory.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError(f"{path} exists and is not a directory")
    try:
        created = _makedirs(path)
    except OSError as error:
        raise RunDirError(f"{path}: cannot create {error.filename or 'its parent'}: "
                          f"{error.strerror or error}") from None
    run = RunDir(path, created, _locked=False)
    try:
        os.mkdir(path)
        run.created.append(os.path.abspath(path))
    except FileExistsError:
        if not os.path.isdir(path):
            run.release()
            raise RunDirError(f"{path} exists and is not a directory") from None
    except OSError as error:
        run.release()
        reason = "not writable" if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else error.strerror
        raise RunDirError(f"{path}: cannot create it ({reason})") from None
    try:
        _take_lock(path)
    except RunDirError:
        run.release()
        raise
    except OSError as error:
        run.release()
        reason = "not writable" if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else error.strerror
        raise RunDirError(f"{path}: {reason}") from None
    run._locked = True
    if not own_run:
        others = sorted(name for name in os.listdir(path) if name != LOCK_NAME)
        if others:
            run.release()
            shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
            raise RunDirError(f"{path} already holds files ({shown}); a run writes only into a new or empty "
                              "directory (nothing was overwritten): choose another directory, or delete this one "
                              f"if it holds nothing you need (rm -r -- {shlex.quote(path)})")
        run.fresh = True
    return run


def claim_new(parent: str, stem: str) -> RunDir:
    """Claim a new directory ``parent/stem``, or ``parent/stem-2``, ``-3``, ... when that name is
    taken: two runs started in the same second get different directories."""
    for attempt in range(1, 10_000):
        path = os.path.join(parent, stem if attempt == 1 else f"{stem}-{attempt}")
        if os.path.lexists(path):
            continue
        try:
            return claim(path)
        except RunDirError:
            if os.path.lexists(path):
                continue  # another run took this name between the check and the claim
            raise
    raise RunDirError(f"{parent}: no free name {stem}-N")


def timestamp() -> str:
    """``YYYYmmdd-HHMMSS`` in local time: the start of a default run directory's name."""
    return time.strftime("%Y%m%d-%H%M%S")

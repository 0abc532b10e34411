"""The journal's files on disk: created readable and writable by their owner only, and the batch lock.

A journal holds merchant references, Jumio scan references and verification results, so its files are
created with mode ``0600``: the database itself here, before SQLite opens it; SQLite gives its ``-wal`` and
``-shm`` files the mode of the database file; the ``.lock`` file is created ``0600`` too. A file that already
exists keeps its mode (a journal shared with a receiver that runs as another user may be ``0660`` on
purpose). On Windows the mode bits do not apply; the files inherit the directory's ACL.
"""

from __future__ import annotations

import os
import sys
from typing import IO

__all__ = ["PRIVATE_FILE_MODE", "FileLock", "create_private_file"]

#: Owner read and write, nothing for the group or others.
PRIVATE_FILE_MODE = 0o600


def create_private_file(path: str) -> bool:
    """Create ``path`` empty with mode ``0600`` unless it exists; True if it was created.

    Not for SQLite's special names (``:memory:``, ``file:`` URIs), which are left alone.
    """
    if path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return False
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False  # another process created it first; it has decided the mode
    os.close(fd)
    return True


def _open_private(path: str) -> IO[bytes]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)
    return os.fdopen(fd, "r+b")


class FileLock:
    """An exclusive, non-blocking advisory lock on ``path`` that the OS drops when the process dies."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def acquire(self) -> bool:
        fh = _open_private(self.path)  # kept open while the lock is held
        try:
            if sys.platform == "win32":
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            if sys.platform == "win32":
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        finally:
            fh.close()

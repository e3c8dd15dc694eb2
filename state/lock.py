"""The apply lock: one apply at a time per state directory.

An flock on a file in the state directory (providers/files/locking.py). The
kernel drops it when the holder's process ends, however it ends, so a
killed apply leaves no stale lock. The file is opened below a checked
descriptor of the directory, never through a link, and only a regular file
of ours with one name is ever truncated: a lock file swapped for a link to
/etc/shadow is refused.
"""

from __future__ import annotations

import os

from hardsnap.providers.files import locking
from hardsnap.state.directory import StateError, open_entry, open_state_directory

LOCK_FILE = "apply.lock"


class ApplyLock:
    """Hold the apply lock of a directory for the duration of a `with` block."""

    def __init__(self, directory: str, file_name: str = LOCK_FILE) -> None:
        self.directory = directory
        self.file_name = file_name
        self.path = os.path.join(directory, file_name)
        self._fd: int | None = None

    def __enter__(self) -> ApplyLock:
        """Take the lock. Raise locking.Busy when another hardsnap apply
        holds it, locking.HeldByOther when something else does; StateError
        (UnsafeStateDirectory) when the directory or the lock file is not
        safe to use."""
        directory_fd = open_state_directory(self.directory, create=False)
        if directory_fd is None:
            raise StateError(f"state directory {self.directory} is missing: cannot lock it")
        try:
            fd = open_entry(self.file_name, directory_fd, self.path, writable=True, create=True)
        except OSError as error:
            raise StateError(f"cannot open the lock {self.path}: {error.strerror}") from None
        finally:
            os.close(directory_fd)
        try:
            locking.hold(fd, self.path, f"holds the lock {self.path}")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            locking.release(self._fd)
            self._fd = None

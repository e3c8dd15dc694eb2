"""Files hardsnap writes outside its state and target (the metrics file).

Such a directory often belongs to another user (a textfile collector's
directory is the exporter's), who may rename a file of ours away and plant a
symlink under its name at any moment. So once the directory is open nothing
in it is reached by a path: the new file is created exclusively beside its
final name, its mode set on its descriptor, and renamed into place, each
relative to the directory's descriptor.
"""

from __future__ import annotations

import contextlib
import os
import secrets

from hardsnap.providers import platform
from hardsnap.providers.files import trust

# Random names: one another user made first is tried again under a new one.
NAME_ATTEMPTS = 10


def open_to_others(info: os.stat_result) -> bool:
    """Whether a user other than root and us may replace entries of the
    directory `info` describes (see trust.directory_weakness)."""
    return trust.directory_weakness(info) is not None


def open_directory(path: str) -> tuple[int, str | None]:
    """Open the directory at absolute `path` one component at a time from
    /, following no symlink (resolve it first); return its descriptor and
    the first directory on the way that another user can write, or None."""
    fd = platform.open_directory("/")
    reached = "/"
    exposed = None
    try:
        for part in [part for part in path.split("/") if part]:
            if exposed is None and open_to_others(os.fstat(fd)):
                exposed = reached
            next_fd = platform.open_directory(part, fd)
            os.close(fd)
            fd = next_fd
            reached = os.path.join(reached, part)
        if exposed is None and open_to_others(os.fstat(fd)):
            exposed = reached
    except BaseException:
        os.close(fd)
        raise
    return fd, exposed


def replace_file(directory_fd: int, name: str, data: bytes, mode: int, prefix: str) -> None:
    """Make `name` in the directory hold `data` with permission bits `mode`,
    atomically: a new file named `prefix` and random letters is written,
    given its mode, flushed, then renamed over `name`. Raise OSError."""
    fd, temporary = _create_new(directory_fd, prefix)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        platform.set_mode(fd, mode)
        os.fsync(fd)
        # Whatever holds the temporary name by now is what gets renamed: a
        # rename never follows a symlink, so at worst another user's link
        # stands as the file, in a directory that is theirs anyway.
        platform.rename_at(temporary, name, directory_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            platform.unlink_at(temporary, directory_fd)
        raise
    finally:
        os.close(fd)


def _create_new(directory_fd: int, prefix: str) -> tuple[int, str]:
    """Create a new empty file named `prefix` and random letters; return its
    descriptor and name."""
    for _ in range(NAME_ATTEMPTS - 1):
        temporary = prefix + secrets.token_hex(6)
        with contextlib.suppress(FileExistsError):
            return platform.create_new(temporary, directory_fd), temporary
    temporary = prefix + secrets.token_hex(6)
    return platform.create_new(temporary, directory_fd), temporary

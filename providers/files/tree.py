"""Walking and removing whole trees below a directory descriptor.

Whoever can write in a target may swap a directory for a symlink, a FIFO or
a device node at any moment. So every directory is opened with O_NOFOLLOW
and O_NONBLOCK below its parent's descriptor, and checked to be one after
it is open; every change (unlink, rmdir, chmod) is made relative to a
descriptor, on the name alone: nothing is ever reached through a link, no
open waits on a FIFO, no device is opened. (shutil.rmtree and os.fwalk
open each directory without O_NOFOLLOW and check it after, which opens
whatever was swapped in.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from hardsnap.providers import platform
from hardsnap.providers.files.compact import IntTable
from hardsnap.providers.files.descend import Descent, Level, Moved

# What opening a name that is no longer a directory fails with.
NOT_A_DIRECTORY = (errno.ELOOP, errno.ENOTDIR)
# One tree, which must have the directory entered.
REQUIRED = (True,)


def _list(fd: int, pending: list[str]) -> Iterator[tuple[str, os.stat_result]]:
    """Yield the entries of a directory other than subdirectories, which
    are queued on `pending` instead; streamed, whatever its width."""
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                pending.append(entry.name)
            else:
                yield entry.name, info


def _fd(level: Level) -> int:
    fd = level.fds[0]
    assert fd is not None
    return fd


def entries_below(dir_fd: int, name: str) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (path relative to `dir_fd`, lstat) of every entry but
    directories below directory `name` of `dir_fd`. A directory that
    cannot be opened (gone, swapped for something else) is passed over;
    so is what is left of one moved away while it was walked."""
    descent = Descent([dir_fd])
    try:
        try:
            level = descent.descend(name, REQUIRED)
        except OSError:
            return
        for entry_name, info in _list(_fd(level), level.pending):
            yield f"{name}/{entry_name}", info
        while len(descent.levels) > 1:
            level = descent.top
            if not level.pending:
                try:
                    descent.ascend()
                except Moved:
                    return
                continue
            child = level.pending.pop()
            try:
                opened = descent.descend(child, REQUIRED)
            except OSError:
                continue
            path = descent.path()
            with contextlib.suppress(OSError):
                for entry_name, info in _list(_fd(opened), opened.pending):
                    yield f"{path}/{entry_name}", info
    finally:
        descent.close()


def bytes_freed(parent_fd: int, names: list[str]) -> int:
    """Return the bytes of regular files that removing the directories
    `names` in the directory open as `parent_fd` would free: the blocks
    allocated to those with no link left outside them (a sparse file frees
    what it occupies, not its apparent size)."""
    freed = 0
    # Inodes with several links -> links seen inside so far (-1 once every
    # link was: counted as freed). Kept compact: a snapshot of a wide
    # directory has as many as it has files.
    shared = IntTable()
    for name in names:
        for _, info in entries_below(parent_fd, name):
            if not stat.S_ISREG(info.st_mode):
                continue
            allocated = platform.stored_bytes(info)
            if info.st_nlink == 1:
                freed += allocated
                continue
            key = hash((info.st_dev, info.st_ino))
            seen = shared.get(key) or 0
            if seen < 0:
                continue
            if seen + 1 >= info.st_nlink:
                freed += allocated
                shared.set(key, -1)
            else:
                shared.set(key, seen + 1)
    return freed


def remove_tree(name: str, dir_fd: int) -> None:
    """Remove the directory `name` in `dir_fd` and all below it. Raise the
    first error that left something behind."""
    failures = remove_what_can_be(name, dir_fd)
    if failures:
        raise failures[0]


def remove_what_can_be(name: str, dir_fd: int) -> list[OSError]:
    """Remove the directory `name` in `dir_fd` and all below it, going on
    past what cannot be removed (an immutable file); return the errors,
    each naming its path relative to `dir_fd`. A directory whose entries
    may not be removed (read-only, kept from the source) is made writable
    through its own descriptor first. An entry swapped for something else
    than a directory is removed as it is: its name, never what it names.
    Any depth is removed in a bounded number of descriptors (descend.py)."""
    failures: list[OSError] = []
    descent = Descent([dir_fd])
    try:
        try:
            _empty(descent.descend(name, REQUIRED), name, failures)
        except FileNotFoundError:
            return failures
        except OSError as error:
            if error.errno in NOT_A_DIRECTORY:
                _unlink(name, dir_fd, name, failures)
            else:
                failures.append(OSError(error.errno, error.strerror, name))
            return failures
        while len(descent.levels) > 1:
            level = descent.top
            if level.pending:
                child = level.pending.pop()
                path = f"{descent.path()}/{child}"
                try:
                    opened = descent.descend(child, REQUIRED)
                except FileNotFoundError:
                    continue
                except OSError as error:
                    if error.errno in NOT_A_DIRECTORY:
                        _unlink(child, _fd(level), path, failures)
                    else:
                        failures.append(OSError(error.errno, error.strerror, path))
                    continue
                _empty(opened, path, failures)
                continue
            path = descent.path()
            try:
                descent.ascend()
            except Moved as moved:
                # Its parent was moved away meanwhile: what is left stays,
                # reported, for the next prune.
                failures.append(moved)
                return failures
            _rmdir(level.name, _fd(descent.top), path, failures)
    finally:
        descent.close()
    return failures


def _empty(level: Level, path: str, failures: list[OSError]) -> None:
    """Remove what a directory holds but its subdirectories (queued)."""
    fd = _fd(level)
    try:
        for entry_name, _ in _list(fd, level.pending):
            _unlink(entry_name, fd, f"{path}/{entry_name}", failures, fd)
    except OSError as error:
        failures.append(OSError(error.errno, error.strerror, path))


def _unlink(
    name: str, dir_fd: int, path: str, failures: list[OSError], writable_fd: int | None = None
) -> None:
    """Remove one entry; when its directory refuses (read-only), make the
    directory `writable_fd` writable and try once more."""
    try:
        platform.unlink_at(name, dir_fd)
    except FileNotFoundError:
        pass
    except PermissionError as error:
        if writable_fd is not None and _make_writable(writable_fd):
            _unlink(name, dir_fd, path, failures)
        else:
            failures.append(OSError(error.errno, error.strerror, path))
    except OSError as error:
        failures.append(OSError(error.errno, error.strerror, path))


def _rmdir(
    name: str, parent_fd: int, path: str, failures: list[OSError], retry: bool = True
) -> None:
    try:
        platform.rmdir_at(name, parent_fd)
    except FileNotFoundError:
        pass
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST) and failures:
            return  # left because something inside it was
        if isinstance(error, PermissionError) and retry and _make_writable(parent_fd):
            _rmdir(name, parent_fd, path, failures, retry=False)
            return
        failures.append(OSError(error.errno, error.strerror, path))


def _make_writable(fd: int) -> bool:
    """Give a directory we are emptying owner write and search permission,
    through its descriptor; return whether that changed anything."""
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o700 == 0o700:
            return False
        platform.set_mode(fd, mode | 0o700)
    except OSError:
        return False
    return True

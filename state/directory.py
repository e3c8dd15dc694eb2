"""The state directory as root may trust it: ours, private, nothing followed.

hardsnap runs as root from a timer. Whoever can change its state directory
could make root truncate or overwrite a file of their choosing (a symlink
or hard link planted in it), or choose what root loads from it. So the
directory is opened once with O_NOFOLLOW and checked through that
descriptor, and every entry in it is checked without following it, before
anything in it is opened. Once the directory is a real one, owned by this
user and writable by nobody else, nobody else can swap its entries either.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from hardsnap.providers import platform
from hardsnap.providers.files.fs import make_private_directory

# Entries that hardsnap (through SQLite) writes: each must be a regular file.
STATE_FILES = ("cache.db", "cache.db-wal", "cache.db-shm", "cache.db-journal", "apply.lock")


class StateError(Exception):
    """The state directory cannot be used; the message says how to recover."""


class UnsafeStateDirectory(StateError):
    """The state directory, or an entry in it, could let another user
    choose what hardsnap does as root: it is refused, nothing in it is
    followed, truncated or loaded."""


def open_state_directory(directory: str, create: bool) -> int | None:
    """Given the state directory's path, return a descriptor of it, checked
    to be a real directory owned by this user and writable by no other.
    Return None when it is missing and `create` is false; create it (0700)
    when it is missing and `create` is true. Raise StateError if it cannot
    be used, UnsafeStateDirectory if it is not safe to."""
    path = directory.rstrip("/") or "/"
    for attempt in range(2):
        try:
            fd = platform.open_directory(path)
            break
        except FileNotFoundError:
            if not create or attempt:
                return None
            try:
                make_private_directory(path)
            except OSError as error:
                raise StateError(
                    f"cannot create state directory {directory}: {error.strerror}; "
                    f"choose another with --state-dir"
                ) from None
        except NotADirectoryError:
            if _is_symlink(path):
                raise UnsafeStateDirectory(
                    f"state directory {directory} is a symlink: hardsnap follows no link to or "
                    f"in its state; give the real directory with --state-dir"
                ) from None
            raise StateError(not_a_directory(directory)) from None
        except OSError as error:
            owner = _owner_of(path)
            raise StateError(
                f"cannot read state directory {directory}: {error.strerror}"
                f"{f' (owned by uid {owner})' if owner is not None else ''}; run as its owner "
                f"or choose another with --state-dir"
            ) from None
    return _checked(fd, lambda info: _check_directory(info, directory))


def check_entries(fd: int, directory: str) -> None:
    """Check every entry of the state directory `fd`, none followed: raise
    UnsafeStateDirectory for a symlink, another user's entry, one writable
    by group or others, a hard-linked file, or a FIFO, socket or device;
    StateError for a directory where SQLite or the lock keep a file."""
    for name in sorted(platform.list_directory(fd)):
        try:
            info = platform.stat_at(name, fd)
        except FileNotFoundError:  # SQLite removed a companion file meanwhile
            continue
        check_entry(info, os.path.join(directory, name))
        if stat.S_ISDIR(info.st_mode) and name in STATE_FILES:
            raise StateError(
                f"{os.path.join(directory, name)} is a directory, not a file: move it aside, "
                f"or choose another state directory with --state-dir (snapshots on disk are "
                f"kept and found again)"
            )


def check_entry(info: os.stat_result, path: str) -> None:
    """Given the lstat of an entry of the state directory, raise
    UnsafeStateDirectory unless it is a directory or a regular file with a
    single name, owned by this user and writable by no other."""
    kind = _kind(info.st_mode)
    if kind == "symlink":
        raise UnsafeStateDirectory(
            f"{path} in the state directory is a symlink: hardsnap follows no link there; put "
            f"the real file in its place or move the link aside, or choose another state "
            f"directory with --state-dir"
        )
    if kind not in ("regular file", "directory"):
        raise UnsafeStateDirectory(
            f"{path} in the state directory is a {kind}, not a regular file: move it aside, or "
            f"choose another state directory with --state-dir"
        )
    if info.st_uid != platform.effective_uid():
        raise UnsafeStateDirectory(
            f"{path} in the state directory is owned by uid {info.st_uid}, not by this user "
            f"(uid {platform.effective_uid()}): chown it if it is yours, or move it aside"
        )
    if info.st_mode & 0o022:
        raise UnsafeStateDirectory(
            f"{path} in the state directory is {_writable_by(info.st_mode)}: chmod go-w {path}"
        )
    if kind == "regular file" and info.st_nlink > 1:
        raise UnsafeStateDirectory(
            f"{path} in the state directory has {info.st_nlink} hard links: it may be another "
            f"file's name too, which hardsnap would write; replace it by a copy of its own, or "
            f"move it aside"
        )


def open_entry(name: str, dir_fd: int, path: str, writable: bool, create: bool = False) -> int:
    """Open the regular file `name` of the state directory `dir_fd`, never
    following a link nor opening a FIFO or device; check it before and
    after (check_entry). With `create`, a missing one is created 0600.
    Raise UnsafeStateDirectory or OSError."""
    try:
        before: os.stat_result | None = platform.stat_at(name, dir_fd)
    except FileNotFoundError:
        if not create:
            raise
        before = None
    if before is not None:
        check_entry(before, path)
        if not stat.S_ISREG(before.st_mode):
            raise UnsafeStateDirectory(f"{path} in the state directory is not a regular file")
    try:
        fd = platform.open_private(name, dir_fd, writable, create)
    except OSError as error:
        if error.errno == errno.ELOOP:
            check_entry(platform.stat_at(name, dir_fd), path)
        raise
    try:
        after = os.fstat(fd)
        check_entry(after, path)
        if not stat.S_ISREG(after.st_mode) or (
            before is not None and not os.path.samestat(before, after)
        ):
            raise UnsafeStateDirectory(f"{path} in the state directory changed while it was opened")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_entry_directory(name: str, dir_fd: int, path: str) -> int:
    """Open the directory `name` of the state directory `dir_fd` (or of a
    directory below it) without following a link, and check it like an
    entry. Raise UnsafeStateDirectory or OSError."""
    try:
        fd = platform.open_directory(name, dir_fd)
    except NotADirectoryError:
        check_entry(platform.stat_at(name, dir_fd), path)
        raise
    return _checked(fd, lambda info: check_entry(info, path))


def not_a_directory(directory: str) -> str:
    return (
        f"state directory {directory} is not a directory; move it aside or choose another "
        f"with --state-dir (snapshots on disk are kept and found again)"
    )


def _check_directory(info: os.stat_result, directory: str) -> None:
    if info.st_uid != platform.effective_uid():
        raise UnsafeStateDirectory(
            f"state directory {directory} is owned by uid {info.st_uid}, not by this user "
            f"(uid {platform.effective_uid()}): another user could change what hardsnap does; "
            f"chown it if it is yours, or choose another with --state-dir"
        )
    if info.st_mode & 0o022:
        raise UnsafeStateDirectory(
            f"state directory {directory} is {_writable_by(info.st_mode)}: chmod 700 "
            f"{directory}, or choose another with --state-dir"
        )


def _writable_by(mode: int) -> str:
    who = "others" if mode & 0o002 else "group"
    return f"writable by {who} (mode {stat.S_IMODE(mode):04o})"


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return kind
    return "device"


def _is_symlink(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _owner_of(path: str) -> int | None:
    try:
        return os.lstat(path).st_uid
    except OSError:
        return None


def _checked(fd: int, check: Callable[[os.stat_result], None]) -> int:
    """`fd`, once `check` accepts what it is open on; closed when it does not."""
    try:
        check(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd

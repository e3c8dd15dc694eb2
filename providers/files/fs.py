"""Filesystem primitives: the one module that knows how bytes move on disk."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from hardsnap.providers import platform
from hardsnap.providers.files.capabilities import ALL, Keeps

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


# Errors that say this process ran out of something, not that an entry is
# unreadable: they fail the run, never skip what they hit.
EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOMEM)


def unreadable(error: OSError, what: str = "unreadable") -> str:
    """Why an entry is skipped after `error`; raise the error instead when
    it is not the entry's fault (out of descriptors or memory): that fails
    the run, it never drops a subtree with a warning."""
    if error.errno in EXHAUSTED:
        raise error
    return f"{what}: {error.strerror}"


class OutOfSpace(Exception):
    """The target filesystem is full, or below the configured free-space floor."""


def make_private_directory(path: str) -> None:
    """Create directory `path` with mode 0700 if missing. Missing parents get
    at most 0755 whatever the umask, so no other user can swap them."""
    previous = os.umask(0o077)
    try:
        os.umask(previous | 0o022)
        os.makedirs(path, mode=0o700, exist_ok=True)
    finally:
        os.umask(previous)


def open_absolute(path: str, make: bool = False) -> int:
    """Open the directory at absolute `path` one component at a time from
    /, never following a symlink: a path made real by realpath names only
    directories, and one swapped for a link since is refused (ELOOP or
    ENOTDIR). With `make`, missing directories are made (open_below)."""
    root_fd = platform.open_directory("/")
    try:
        return open_below(root_fd, path.strip("/"), make)
    finally:
        os.close(root_fd)


def open_below(root_fd: int, relative: str, make: bool = False) -> int:
    """Open directory `relative` ("" for the root itself) below `root_fd`,
    one component at a time, never following a symlink. With `make`,
    missing directories are made on the way: the last 0700, the others at
    most 0755, so no other user can swap them."""
    fd = os.dup(root_fd)
    try:
        parts = relative.split("/") if relative else []
        for index, part in enumerate(parts):
            try:
                next_fd = platform.open_directory(part, fd)
            except FileNotFoundError:
                if not make:
                    raise
                with contextlib.suppress(FileExistsError):
                    platform.mkdir_at(part, fd, 0o700 if index == len(parts) - 1 else 0o755)
                next_fd = platform.open_directory(part, fd)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def link_below(root_fd: int, relative: str, target_fd: int, name: str) -> None:
    """Hard-link the file at `relative` below directory `root_fd` as `name`
    in `target_fd`. A path longer than the kernel takes is followed one
    directory at a time."""
    try:
        platform.link_at(relative, root_fd, name, target_fd)
        return
    except OSError as error:
        if error.errno != errno.ENAMETOOLONG:
            raise
    *directories, file_name = relative.split("/")
    fd = os.dup(root_fd)
    try:
        for directory in directories:
            next_fd = platform.open_directory(directory, fd)
            os.close(fd)
            fd = next_fd
        platform.link_at(file_name, fd, name, target_fd)
    finally:
        os.close(fd)


def same_xattrs(first_dir_fd: int, second_dir_fd: int, name: str) -> bool:
    """Whether the regular file `name` has the same extended attributes in
    two directories (the first's each asked of the second by name when the
    second does not list it: ntfs-3g keeps trusted.* and security.* unlisted).
    Each is opened without following a symlink; one that cannot be opened
    or read counts as different (the file is then copied, which reports it
    if it cannot be read)."""
    try:
        with _opened(name, first_dir_fd) as first_fd, _opened(name, second_dir_fd) as second_fd:
            first = platform.extended_attributes(first_fd)
            second = platform.extended_attributes(second_fd)
            if first == second:
                return True
            return set(second) <= set(first) and all(
                (second[key] if key in second else platform.extended_attribute(second_fd, key))
                == value
                for key, value in first.items()
            )
    except OSError:
        return False


@contextlib.contextmanager
def _opened(name: str, dir_fd: int) -> Iterator[int]:
    fd = platform.open_read(name, dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def existing_ancestor(path: str) -> str:
    """Return `path` or its nearest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


# What a directory, or the smallest file with data, takes on disk.
DIRECTORY_BYTES = BLOCK_BYTES = 4096


def allocated_bytes(info: os.stat_result) -> int:
    """The space a copy of a regular file takes: its allocated blocks, not
    its apparent size (a sparse file costs what it occupies), and at least
    a block when it holds data (some filesystems keep small files inline)."""
    allocated = platform.stored_bytes(info)
    if info.st_size > 0 and allocated < BLOCK_BYTES:
        return BLOCK_BYTES
    return allocated


def copy_xattrs(source_fd: int, target_fd: int) -> None:
    """Copy the extended attributes (user.*; as root also security.*, trusted.*
    and ACLs) of one open file to another. Names the target filesystem or our
    privileges refuse are left out; a full disk is raised."""
    try:
        attributes = platform.extended_attributes(source_fd)
    except OSError:
        return
    for name, value in attributes.items():
        try:
            platform.set_extended_attribute(target_fd, name, value)
        except OSError as error:
            if error.errno in NO_SPACE:
                raise


def apply_metadata(
    fd: int, info: os.stat_result, source_fd: int | None = None, keeps: Keeps = ALL
) -> None:
    """Give an open file or directory the owner (as root), extended
    attributes (from `source_fd`), permission bits and times of `info`,
    as far as the target filesystem keeps them (`keeps`: exFAT refuses
    owners and setuid bits outright).

    Order matters: chown clears setuid/setgid bits and file capabilities,
    and an ACL rewrites the group permission bits.
    """
    if platform.IS_ROOT and keeps.owners:
        platform.set_owner(fd, info.st_uid, info.st_gid)
    if source_fd is not None and keeps.xattrs:
        copy_xattrs(source_fd, fd)
    if keeps.modes:
        platform.set_mode(fd, stat.S_IMODE(info.st_mode))
    os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))
    # Where no call flushes a whole filesystem, each file and directory is
    # flushed as it is finished.
    platform.flush_file(fd)


def named(error: OSError, relative: str) -> OSError:
    """An error about one entry that names no file (an fchown, an fchmod on
    a descriptor), given the entry's path in the source so that the failure
    says where."""
    return OSError(error.errno, error.strerror, relative)


@contextlib.contextmanager
def naming(relative: str) -> Iterator[None]:
    """Give an OSError of the block that names no file the path `relative`."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise named(error, relative) from error

"""What every POSIX system offers through Python alone: the portable path
of each call an operating system may do better (linux.py, darwin.py and
freebsd.py override what theirs does better). Each function here works,
more slowly or with less detail, wherever Python runs on POSIX.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable

# Where SEEK_DATA and SEEK_HOLE exist, lseek tells a file's holes; Linux and
# FreeBSD number them 3 and 4, macOS 4 and 3 (Python knows them there).
SEEK_DATA: int | None = getattr(os, "SEEK_DATA", None)
SEEK_HOLE: int | None = getattr(os, "SEEK_HOLE", None)
NOT_SUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def copy_in_kernel(source_fd: int, target_fd: int, offset: int, length: int) -> int | None:
    """Copy up to `length` bytes at `offset` between open files without them
    passing through this process; return the bytes copied (0: the source
    ended), or None when this system cannot (the caller reads and writes)."""
    return None


def clone_at(source_fd: int, directory_fd: int, name: str) -> bool:
    """Make `name` in `directory_fd` a clone of an open file, sharing its
    blocks (APFS clonefile); False when this system or filesystem cannot."""
    return False


def next_data(fd: int, offset: int, size: int) -> int:
    """Where the next data begins at or after `offset` (`size`: none left)."""
    if SEEK_DATA is None:
        return offset
    try:
        return min(os.lseek(fd, offset, SEEK_DATA), size)
    except OSError as error:
        if error.errno == errno.ENXIO:  # only a hole is left
            return size
        if error.errno in NOT_SUPPORTED:
            return offset
        raise


def next_hole(fd: int, offset: int, size: int) -> int:
    """Where the next hole begins at or after `offset` (`size`: none before
    the end)."""
    if SEEK_HOLE is None:
        return size
    try:
        return min(os.lseek(fd, offset, SEEK_HOLE), size)
    except OSError as error:
        if error.errno in NOT_SUPPORTED or error.errno == errno.ENXIO:
            return size
        raise


def syncs_whole_filesystem() -> bool:
    """Whether sync_filesystem flushes every file written on a filesystem
    (else each file is flushed as it is finished, with flush_file)."""
    return False


def sync_filesystem(fd: int) -> None:
    """Make what was written on the filesystem of `fd` durable. Without a
    call for a whole filesystem, each file was flushed when it was
    finished: this flushes the directory `fd` itself."""
    os.fsync(fd)


def flush_file(fd: int) -> None:
    """Make a file just written durable, where sync_filesystem will not."""
    if not syncs_whole_filesystem():
        os.fsync(fd)


def has_extended_attributes() -> bool:
    """Whether this system has calls for extended attributes at all."""
    return False


def extended_attributes(fd: int) -> dict[str, bytes]:
    """The extended attributes (and ACLs) of an open file, by name; empty
    where this system keeps none. Raise OSError when they cannot be read."""
    return {}


def extended_attribute(fd: int, name: str) -> bytes | None:
    """One extended attribute of an open file asked for by name (None when
    it has none of that name): some filesystems keep names they do not
    list (ntfs-3g: trusted.* and security.*)."""
    return extended_attributes(fd).get(name)


def set_extended_attribute(fd: int, name: str, value: bytes) -> None:
    """Set one extended attribute (or ACL) as extended_attributes named it."""
    raise OSError(errno.ENOTSUP, "this system keeps no extended attributes")


def death_signal() -> bool:
    """In a forked child: have the kernel kill it when its parent dies;
    False when this system cannot (a Lifeline pipe does it then)."""
    return False


def close_descriptors_except(keep: set[int], listing: str = "/dev/fd") -> None:
    """Close every inherited descriptor not in `keep` (in a forked worker):
    those `listing` names, when it names them all, else every number up
    to the descriptor limit."""
    listed = listed_descriptors(listing)
    if listed is not None:
        for fd in listed - keep:
            with contextlib.suppress(OSError):
                os.close(fd)
        return
    # Close the ranges between the kept ones, up to the descriptor limit.
    limit = os.sysconf("SC_OPEN_MAX")
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    if low < limit:
        os.closerange(low, limit)


def listed_descriptors(directory: str) -> set[int] | None:
    """The open descriptors as `directory` lists them (/dev/fd, /proc/self/fd),
    or None when it does not list them all: FreeBSD's /dev/fd without
    fdescfs shows only 0, 1 and 2, so a descriptor opened for the purpose
    must be among them."""
    probe = os.open(os.devnull, os.O_RDONLY)
    try:
        listed = {int(name) for name in os.listdir(directory)}
    except (OSError, ValueError):
        return None
    finally:
        os.close(probe)
    if probe not in listed:
        return None
    listed.discard(probe)
    return listed


def cpu_count() -> int:
    """How many CPUs this process may use."""
    return os.cpu_count() or 1


def mount_types() -> dict[int, str] | None:
    """The filesystem type of each device mounted on this host, when the
    system lists its mounts in one place; None when it does not."""
    return None


def filesystem_type(fd: int) -> str | None:
    """The type of the filesystem holding an open file (ext4, apfs, proc),
    or None when this system cannot tell."""
    return None


def lock_holder(fd: int) -> int | None:
    """The pid holding an flock on an open file, or None when this system
    cannot tell."""
    return None


def process_name(pid: int) -> str | None:
    """A process's command name, or None when this system cannot tell."""
    return None


def describe_filesystem_by(path: str, type_of: Callable[[int], str | None]) -> str:
    """'TYPE at MOUNTPOINT' for the filesystem holding `path`, its type as
    `type_of` tells it for an open directory and its mount point found as
    df finds it without a mount table: the highest directory on the same
    device."""
    try:
        real = os.path.realpath(path)
        device = os.stat(real).st_dev
        mount_point = real
        while mount_point != "/":
            parent = os.path.dirname(mount_point)
            if os.stat(parent).st_dev != device:
                break
            mount_point = parent
        fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return "an unknown filesystem"
    try:
        kind = type_of(fd)
    finally:
        os.close(fd)
    return f"{kind or 'a filesystem'} at {mount_point}"


def describe_filesystem(path: str) -> str:
    """'TYPE at MOUNTPOINT' for the filesystem holding `path`."""
    return describe_filesystem_by(path, filesystem_type)


def snapshot_subvolume(source_fd: int, directory_fd: int, name: str) -> None:
    """Make `name` in `directory_fd` a read-only snapshot of the subvolume
    open as `source_fd` (btrfs); this system cannot."""
    raise OSError(errno.ENOTSUP, "read-only subvolume snapshots are made on Linux (btrfs) only")


def delete_subvolume(directory_fd: int, name: str) -> None:
    """Delete subvolume `name` of `directory_fd` (btrfs); this system cannot."""
    raise OSError(errno.ENOTSUP, "subvolumes are deleted on Linux (btrfs) only")

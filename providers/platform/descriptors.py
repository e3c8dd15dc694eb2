"""Descriptor-relative calls: every open, stat, link, rename and unlink
below a directory hardsnap writes into goes through one of these, relative
to an open directory and never following a symlink in the last component
(the directory itself was opened the same way, so none on the way either).

POSIX offers all of them on Linux, macOS and FreeBSD alike.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import stat
from collections.abc import Iterator

# O_NONBLOCK: a FIFO swapped in for a directory or file is never waited on.
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NEW_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_STATE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def effective_uid() -> int:
    """The user this process acts as."""
    return os.geteuid()


IS_ROOT = effective_uid() == 0
# Reading leaves a file's atime alone where the system has the flag (Linux),
# for root or the file's owner alone.
_NO_ATIME = getattr(os, "O_NOATIME", 0)


def open_directory(name: str, at: int | None = None) -> int:
    """Open directory `name` (relative to directory `at`, or absolute),
    never following a symlink in its last component."""
    return os.open(name, DIRECTORY_FLAGS, dir_fd=at)


def open_read(name: str, at: int | None = None) -> int:
    """Open file `name` for reading, never following a symlink and never
    waiting on a FIFO."""
    return os.open(name, _READ_FLAGS, dir_fd=at)


def open_source(name: str, at: int) -> int:
    """open_read a file to back up or check: as root, leaving its atime alone."""
    return os.open(name, _READ_FLAGS | (_NO_ATIME if IS_ROOT else 0), dir_fd=at)


def open_own(name: str, at: int) -> int:
    """open_read a file this process wrote, leaving its atime (just set) alone."""
    return os.open(name, _READ_FLAGS | _NO_ATIME, dir_fd=at)


def create_new(name: str, at: int | None, mode: int = 0o600, readable: bool = False) -> int:
    """Create file `name` (it must not exist, not even as a symlink) and
    open it for writing, or for reading and writing."""
    access = os.O_RDWR if readable else os.O_WRONLY
    return os.open(name, access | _NEW_FLAGS, mode, dir_fd=at)


def open_private(name: str, at: int, writable: bool, create: bool = False) -> int:
    """Open file `name` of a private directory (state, locks): never
    through a symlink, never waiting on a FIFO, made 0600 with `create`."""
    flags = (os.O_RDWR if writable else os.O_RDONLY) | _STATE_FLAGS
    return os.open(name, flags | (os.O_CREAT if create else 0), 0o600, dir_fd=at)


def stat_at(name: str, at: int) -> os.stat_result:
    """lstat `name` in directory `at`."""
    return os.stat(name, dir_fd=at, follow_symlinks=False)


def unlink_at(name: str, at: int) -> None:
    os.unlink(name, dir_fd=at)


def rmdir_at(name: str, at: int) -> None:
    os.rmdir(name, dir_fd=at)


def mkdir_at(name: str, at: int, mode: int = 0o700) -> None:
    os.mkdir(name, mode, dir_fd=at)


def rename_at(old: str, new: str, at: int, new_at: int | None = None) -> None:
    """Rename `old` in directory `at` to `new` (in `new_at`, else the same)."""
    os.rename(old, new, src_dir_fd=at, dst_dir_fd=at if new_at is None else new_at)


def link_at(old: str, old_at: int, new: str, new_at: int) -> None:
    """Hard-link `old` in `old_at` as `new` in `new_at`; a symlink is linked
    itself, never followed."""
    os.link(old, new, src_dir_fd=old_at, dst_dir_fd=new_at, follow_symlinks=False)


def symlink_at(text: str, name: str, at: int) -> None:
    os.symlink(text, name, dir_fd=at)


def readlink_at(name: str, at: int) -> str:
    return os.readlink(name, dir_fd=at)


def make_node_at(name: str, at: int, mode: int, device: int) -> None:
    """Make a FIFO or device node `name` in `at`."""
    os.mknod(name, mode, device, dir_fd=at)


def chmod_at(name: str, at: int, mode: int) -> None:
    """Set the permission bits of `name` in `at` (a special file), never
    through a symlink. Where the C library cannot do that by itself
    (glibc needs /proc for it), the entry is checked to be no symlink
    first."""
    try:
        os.chmod(name, mode, dir_fd=at, follow_symlinks=False)
        return
    except (NotImplementedError, ValueError):
        pass
    except OSError as error:
        if error.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
    if stat.S_ISLNK(stat_at(name, at).st_mode):
        raise OSError(errno.ELOOP, "a symlink took the place of the entry", name)
    os.chmod(name, mode, dir_fd=at)


def chown_at(name: str, at: int, uid: int, gid: int) -> None:
    """Set the owner of `name` in `at` itself, a symlink included."""
    os.chown(name, uid, gid, dir_fd=at, follow_symlinks=False)


def set_times_at(name: str, at: int, ns: tuple[int, int]) -> None:
    """Set the (atime, mtime) of `name` in `at` itself, a symlink included."""
    os.utime(name, ns=ns, dir_fd=at, follow_symlinks=False)


def set_owner(fd: int, uid: int, gid: int) -> None:
    os.fchown(fd, uid, gid)


def set_mode(fd: int, mode: int) -> None:
    os.fchmod(fd, mode)


def scan_directory(fd: int) -> Iterator[os.DirEntry[str]]:
    """The entries of an open directory (scandir of a descriptor)."""
    with os.scandir(fd) as entries:
        yield from entries


def list_directory(fd: int) -> list[str]:
    """The names in an open directory."""
    return os.listdir(fd)


def free_bytes(fd_or_path: int | str) -> int:
    """The bytes an unprivileged writer may still use on a filesystem."""
    info = os.fstatvfs(fd_or_path) if isinstance(fd_or_path, int) else os.statvfs(fd_or_path)
    return info.f_bavail * info.f_frsize


def is_read_only(fd: int) -> bool:
    """Whether the filesystem of an open file is mounted read-only."""
    return bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)


def device_parts(device: int) -> tuple[int, int]:
    """A device number's (major, minor)."""
    return os.major(device), os.minor(device)


def device_number(major: int, minor: int) -> int:
    return os.makedev(major, minor)


def try_lock(fd: int) -> bool:
    """Take an exclusive flock on an open file without waiting; False when
    another holder has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def read_at(fd: int, size: int, offset: int) -> bytes:
    """Read up to `size` bytes at `offset`, the file's position untouched
    (forked walkers share it)."""
    return os.pread(fd, size, offset)


def write_at(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write at `offset`, the file's position untouched; return the bytes written."""
    return os.pwrite(fd, data, offset)


def stored_bytes(info: os.stat_result) -> int:
    """The bytes a file's allocated blocks hold (less than its size when it
    has holes, or when the filesystem compresses it)."""
    return info.st_blocks * 512


def device_of(info: os.stat_result) -> int:
    """The device number of a device node."""
    return info.st_rdev


def user_name(uid: int) -> str | None:
    """The login name of a user, or None when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None

"""Filesystem primitives: the one module that knows how bytes move on disk."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Iterator

# O_NONBLOCK: a FIFO swapped in for a directory is never waited on.
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
IS_ROOT = os.geteuid() == 0
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# Reading a source file as root leaves its atime alone (only an owner or
# root may ask for that).
NO_ATIME = os.O_NOATIME if IS_ROOT else 0


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


def open_directory(name: str, dir_fd: int | None = None) -> int:
    """Open a directory without following a symlink in its last component."""
    return os.open(name, DIRECTORY_FLAGS, dir_fd=dir_fd)


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
    root_fd = os.open("/", DIRECTORY_FLAGS)
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
                next_fd = open_directory(part, fd)
            except FileNotFoundError:
                if not make:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700 if index == len(parts) - 1 else 0o755, dir_fd=fd)
                next_fd = open_directory(part, fd)
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
        os.link(relative, name, src_dir_fd=root_fd, dst_dir_fd=target_fd, follow_symlinks=False)
        return
    except OSError as error:
        if error.errno != errno.ENAMETOOLONG:
            raise
    *directories, file_name = relative.split("/")
    fd = os.dup(root_fd)
    try:
        for directory in directories:
            next_fd = open_directory(directory, fd)
            os.close(fd)
            fd = next_fd
        os.link(file_name, name, src_dir_fd=fd, dst_dir_fd=target_fd, follow_symlinks=False)
    finally:
        os.close(fd)


def same_xattrs(first_dir_fd: int, second_dir_fd: int, name: str) -> bool:
    """Whether the regular file `name` has the same extended attributes in
    two directories. Each is opened without following a symlink; one that
    cannot be opened counts as different (the file is then copied, which
    reports it if it cannot be read)."""

    def attributes(dir_fd: int) -> dict[str, bytes] | None:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | NO_ATIME
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except OSError:
            return None
        try:
            return {key: os.getxattr(fd, key) for key in os.listxattr(fd)}
        except OSError:
            return None
        finally:
            os.close(fd)

    first = attributes(first_dir_fd)
    return first is not None and first == attributes(second_dir_fd)


def free_bytes(fd_or_path: int | str) -> int:
    """Return the bytes an unprivileged writer may still use on a filesystem."""
    info = os.fstatvfs(fd_or_path) if isinstance(fd_or_path, int) else os.statvfs(fd_or_path)
    return info.f_bavail * info.f_frsize


def existing_ancestor(path: str) -> str:
    """Return `path` or its nearest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def describe_filesystem(path: str) -> str:
    """Return 'TYPE at MOUNTPOINT' for the filesystem holding `path`."""
    try:
        device = os.stat(path).st_dev
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            lines = mounts.read().splitlines()
    except OSError:
        return "an unknown filesystem"
    wanted = f"{os.major(device)}:{os.minor(device)}"
    real = os.path.realpath(path)
    best: tuple[str, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[2] != wanted:
            continue
        mount_point = fields[4].replace("\\040", " ")
        fs_type = fields[fields.index("-") + 1] if "-" in fields else "?"
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) > len(best[0])):
            best = (mount_point, fs_type)
    if best is None:
        return f"device {wanted}"
    return f"{best[1]} at {best[0]}"


# What a directory, or the smallest file with data, takes on disk.
DIRECTORY_BYTES = BLOCK_BYTES = 4096


def allocated_bytes(info: os.stat_result) -> int:
    """The space a copy of a regular file takes: its allocated blocks, not
    its apparent size (a sparse file costs what it occupies), and at least
    a block when it holds data (some filesystems keep small files inline)."""
    allocated = info.st_blocks * 512
    if info.st_size > 0 and allocated < BLOCK_BYTES:
        return BLOCK_BYTES
    return allocated


def copy_xattrs(source_fd: int, target_fd: int) -> None:
    """Copy the extended attributes (user.*; as root also security.*, trusted.*
    and ACLs) of one open file to another. Names the target filesystem or our
    privileges refuse are left out; a full disk is raised."""
    try:
        names = os.listxattr(source_fd)
    except OSError:
        return
    for name in names:
        try:
            os.setxattr(target_fd, name, os.getxattr(source_fd, name))
        except OSError as error:
            if error.errno in NO_SPACE:
                raise


def apply_metadata(fd: int, info: os.stat_result, source_fd: int | None = None) -> None:
    """Give an open file or directory the owner (as root), extended
    attributes (from `source_fd`), permission bits and times of `info`.

    Order matters: chown clears setuid/setgid bits and file capabilities,
    and an ACL rewrites the group permission bits.
    """
    if IS_ROOT:
        os.fchown(fd, info.st_uid, info.st_gid)
    if source_fd is not None:
        copy_xattrs(source_fd, fd)
    os.fchmod(fd, stat.S_IMODE(info.st_mode))
    os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))


def flock_holder(fd: int) -> int | None:
    """Return the pid holding an flock on the file open as `fd`, from
    /proc/locks, or None when it cannot be told."""
    info = os.fstat(fd)
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == wanted:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None


PR_SET_PDEATHSIG = 1
# The C library, for the two calls Python's os module lacks. CDLL(None) is
# the running program's own symbols, libc's included: no library search,
# which matters in a freshly forked worker.
LIBC = ctypes.CDLL(None, use_errno=True)


def sync_filesystem(fd: int) -> None:
    """Flush everything written to the filesystem holding `fd` (syncfs(2))."""
    if LIBC.syncfs(fd) != 0:
        os.sync()


def die_with_parent(signum: int) -> None:
    """Have the kernel send `signum` to this process when its parent dies
    (prctl PR_SET_PDEATHSIG)."""
    LIBC.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


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

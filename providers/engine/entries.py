"""Entries that are neither regular files nor directories, and the
filesystems mounted below a source.

Symlinks are recreated with the same target text, never followed; as root
with their owner, and always with their mtime. One unchanged since the
reference (same text, owner and mtime) is hard-linked to the reference's
copy instead, as an unchanged file is: it costs no inode. FIFOs and, as
root, device nodes are recreated with their mode, owner and mtime (or,
unchanged, linked the same way). Sockets
belong to a running process and are never kept.

A directory whose device differs from its parent's is the mount point of
another filesystem: kernel pseudo-filesystems (proc, sysfs, cgroup...) are
never descended, and with `one_file_system` no other filesystem is either;
the mount point itself is kept as an empty directory, as rsync -x does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable

from hardsnap.providers import platform
from hardsnap.providers.files import fs, tree
from hardsnap.providers.files.capabilities import ALL, Keeps

# Filesystems that hold kernel state, not files: never walked into.
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "proc",
        "procfs",
        "linprocfs",
        "linsysfs",
        "fdescfs",
        "devfs",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "sysfs",
        "tracefs",
    }
)


def unchanged_in_reference(
    name: str, info: os.stat_result, text: str | None, reference_fd: int, keeps: Keeps = ALL
) -> os.stat_result | None:
    """The reference's copy of a symlink or special file when it is the
    same entry (kind, symlink text or permission bits and device number,
    owner, mtime: as far as the target keeps them), else None."""
    try:
        reference = platform.stat_at(name, reference_fd)
        if stat.S_IFMT(reference.st_mode) != stat.S_IFMT(info.st_mode):
            return None
        if text is not None and platform.readlink_at(name, reference_fd) != text:
            return None
    except OSError:
        return None
    mode = (reference.st_mode, info.st_mode) if keeps.modes else (0, 0)
    if text is None and (mode[0], platform.device_of(reference)) != (
        mode[1],
        platform.device_of(info),
    ):
        return None
    same_owner = (
        not platform.IS_ROOT
        or not keeps.owners
        or (reference.st_uid, reference.st_gid) == (info.st_uid, info.st_gid)
    )
    if same_owner and keeps.same_mtime(reference.st_mtime_ns, info.st_mtime_ns):
        return reference
    return None


def make_symlink(name: str, info: os.stat_result, text: str, target_fd: int) -> os.stat_result:
    """Create symlink `name` in `target_fd` pointing at `text`, with the
    owner (as root) and times of `info`; return its stat."""
    platform.symlink_at(text, name, target_fd)
    _set_metadata(name, info, target_fd)
    return platform.stat_at(name, target_fd)


def make_special(name: str, info: os.stat_result, target_fd: int) -> os.stat_result:
    """Create the FIFO or device node `name` in `target_fd` like `info`."""
    kind = stat.S_IFMT(info.st_mode)
    # Created with no permission at all, then given its own: nobody opens
    # it in between.
    platform.make_node_at(name, target_fd, kind, platform.device_of(info))
    _set_metadata(name, info, target_fd)
    platform.chmod_at(name, target_fd, stat.S_IMODE(info.st_mode))
    return platform.stat_at(name, target_fd)


def _set_metadata(name: str, info: os.stat_result, target_fd: int) -> None:
    if platform.IS_ROOT:
        platform.chown_at(name, target_fd, info.st_uid, info.st_gid)
    platform.set_times_at(name, target_fd, (info.st_atime_ns, info.st_mtime_ns))


class Mounts:
    """The filesystem type of each device met below a source: from the
    system's mount table, read once, where it has one (Linux), else asked
    of the mount point itself (statfs)."""

    def __init__(self) -> None:
        self._table: dict[int, str] | None = None
        self._asked: dict[int, str | None] = {}

    def filesystem_of(self, device: int, fd: int) -> str | None:
        """The type of filesystem `device`, whose root is open as `fd`."""
        if self._table is None:
            self._table = platform.mount_types() or {}
        if device in self._table:
            return self._table[device]
        if device not in self._asked:
            self._asked[device] = platform.filesystem_type(fd)
        return self._asked[device]

    def is_pseudo(self, device: int, fd: int) -> bool:
        return self.filesystem_of(device, fd) in PSEUDO_FILESYSTEMS


def place_other(
    name: str,
    info: os.stat_result,
    text: str | None,
    target_fd: int,
    reference_fd: int | None,
    resuming: bool,
    reserve: Callable[[int], None],
    keeps: Keeps = ALL,
) -> os.stat_result:
    """Place a symlink (`text` its target) or special file of the source in
    the snapshot directory `target_fd`: hard-linked to the reference's
    (`reference_fd`, None when not linking) when that is the same, else
    made anew; return its stat there. Resuming, whatever a killed run left
    under the name goes first. `reserve` is told the space a symlink takes."""
    if resuming:
        with contextlib.suppress(FileNotFoundError):
            existing = platform.stat_at(name, target_fd)
            if stat.S_ISDIR(existing.st_mode):
                tree.remove_tree(name, target_fd)
            else:
                platform.unlink_at(name, target_fd)
    if reference_fd is not None:
        reference = unchanged_in_reference(name, info, text, reference_fd, keeps)
        if reference is not None:
            try:
                platform.link_at(name, reference_fd, name, target_fd)
                return reference
            except OSError as error:
                if error.errno in fs.NO_SPACE or error.errno in (errno.EROFS, errno.EIO):
                    raise
    if text is None:
        return make_special(name, info, target_fd)
    reserve(fs.BLOCK_BYTES)
    return make_symlink(name, info, text, target_fd)

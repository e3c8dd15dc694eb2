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
from dataclasses import dataclass

from hardsnap.providers import fs, tree
from hardsnap.providers.fs import IS_ROOT

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
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "sysfs",
        "tracefs",
    }
)
MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class Kinds:
    """What a snapshot keeps besides regular files and directories."""

    symlinks: bool = False
    special_files: bool = False
    one_file_system: bool = False


def kind_of(mode: int) -> str:
    """The name a report gives an entry that is not a file or directory."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def is_kept(mode: int, kinds: Kinds) -> bool:
    """Whether an entry of this (non-file, non-directory) kind goes into
    the snapshot. Devices need root to be made; sockets never are."""
    if stat.S_ISLNK(mode):
        return kinds.symlinks
    if stat.S_ISFIFO(mode):
        return kinds.special_files
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return kinds.special_files and IS_ROOT
    return False


def unchanged_in_reference(
    name: str, info: os.stat_result, text: str | None, reference_fd: int
) -> os.stat_result | None:
    """The reference's copy of a symlink or special file when it is the
    same entry (kind, symlink text or permission bits and device number,
    owner, mtime), else None."""
    try:
        reference = os.stat(name, dir_fd=reference_fd, follow_symlinks=False)
        if stat.S_IFMT(reference.st_mode) != stat.S_IFMT(info.st_mode):
            return None
        if text is not None and os.readlink(name, dir_fd=reference_fd) != text:
            return None
    except OSError:
        return None
    if text is None and (reference.st_mode, reference.st_rdev) != (info.st_mode, info.st_rdev):
        return None
    same_owner = not IS_ROOT or (reference.st_uid, reference.st_gid) == (info.st_uid, info.st_gid)
    if same_owner and reference.st_mtime_ns == info.st_mtime_ns:
        return reference
    return None


def make_symlink(name: str, info: os.stat_result, text: str, target_fd: int) -> os.stat_result:
    """Create symlink `name` in `target_fd` pointing at `text`, with the
    owner (as root) and times of `info`; return its stat."""
    os.symlink(text, name, dir_fd=target_fd)
    _set_metadata(name, info, target_fd)
    return os.stat(name, dir_fd=target_fd, follow_symlinks=False)


def make_special(name: str, info: os.stat_result, target_fd: int) -> os.stat_result:
    """Create the FIFO or device node `name` in `target_fd` like `info`."""
    kind = stat.S_IFMT(info.st_mode)
    # Created with no permission at all, then given its own: nobody opens
    # it in between.
    os.mknod(name, kind, info.st_rdev, dir_fd=target_fd)
    _set_metadata(name, info, target_fd)
    os.chmod(name, stat.S_IMODE(info.st_mode), dir_fd=target_fd, follow_symlinks=False)
    return os.stat(name, dir_fd=target_fd, follow_symlinks=False)


def _set_metadata(name: str, info: os.stat_result, target_fd: int) -> None:
    if IS_ROOT:
        os.chown(name, info.st_uid, info.st_gid, dir_fd=target_fd, follow_symlinks=False)
    os.utime(
        name,
        ns=(info.st_atime_ns, info.st_mtime_ns),
        dir_fd=target_fd,
        follow_symlinks=False,
    )


class Mounts:
    """The filesystem type of each device mounted on this host, read once
    from /proc/self/mountinfo (empty where there is none)."""

    def __init__(self) -> None:
        self._types: dict[int, str] | None = None

    def filesystem_of(self, device: int) -> str | None:
        if self._types is None:
            self._types = _read_mountinfo()
        return self._types.get(device)

    def is_pseudo(self, device: int) -> bool:
        return self.filesystem_of(device) in PSEUDO_FILESYSTEMS


def _read_mountinfo() -> dict[int, str]:
    """device number -> filesystem type, from mountinfo lines such as
    `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`."""
    types: dict[int, str] = {}
    with contextlib.suppress(OSError), open(MOUNTINFO, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            fields = line.split()
            with contextlib.suppress(ValueError, IndexError):
                major, minor = (int(part) for part in fields[2].split(":"))
                filesystem = fields[fields.index("-") + 1]
                types.setdefault(os.makedev(major, minor), filesystem)
    return types


def place_other(
    name: str,
    info: os.stat_result,
    text: str | None,
    target_fd: int,
    reference_fd: int | None,
    resuming: bool,
    reserve: Callable[[int], None],
) -> os.stat_result:
    """Place a symlink (`text` its target) or special file of the source in
    the snapshot directory `target_fd`: hard-linked to the reference's
    (`reference_fd`, None when not linking) when that is the same, else
    made anew; return its stat there. Resuming, whatever a killed run left
    under the name goes first. `reserve` is told the space a symlink takes."""
    if resuming:
        with contextlib.suppress(FileNotFoundError):
            existing = os.stat(name, dir_fd=target_fd, follow_symlinks=False)
            if stat.S_ISDIR(existing.st_mode):
                tree.remove_tree(name, target_fd)
            else:
                os.unlink(name, dir_fd=target_fd)
    if reference_fd is not None:
        reference = unchanged_in_reference(name, info, text, reference_fd)
        if reference is not None:
            try:
                os.link(
                    name, name, src_dir_fd=reference_fd, dst_dir_fd=target_fd, follow_symlinks=False
                )
                return reference
            except OSError as error:
                if error.errno in fs.NO_SPACE or error.errno in (errno.EROFS, errno.EIO):
                    raise
    if text is None:
        return make_special(name, info, target_fd)
    reserve(fs.BLOCK_BYTES)
    return make_symlink(name, info, text, target_fd)

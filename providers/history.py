"""The history of one file or directory across a resource's snapshots.

Cheap, because an unchanged file is one inode in every snapshot that has
it: a new version starts where the inode changes (a file, symlink or
special file was copied or made again), or where the metadata does (a
directory, which every snapshot makes anew). Only the entry itself is
looked at, in each snapshot, below the target's descriptor; nothing is
followed, nothing is read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from hardsnap.providers import fs


@dataclass
class Version:
    """One version of an entry: the first and last snapshots holding it."""

    first: str
    last: str
    info: os.stat_result

    @property
    def kind(self) -> str:
        mode = self.info.st_mode
        if stat.S_ISDIR(mode):
            return "directory"
        if stat.S_ISREG(mode):
            return "file"
        if stat.S_ISLNK(mode):
            return "symlink"
        return "special file"


@dataclass
class History:
    path: str
    versions: list[Version] = field(default_factory=list)


def _same_version(before: os.stat_result, after: os.stat_result) -> bool:
    if stat.S_IFMT(before.st_mode) != stat.S_IFMT(after.st_mode):
        return False
    if not stat.S_ISDIR(after.st_mode):
        return before.st_ino == after.st_ino
    return (before.st_mode, before.st_uid, before.st_gid, before.st_mtime_ns) == (
        after.st_mode,
        after.st_uid,
        after.st_gid,
        after.st_mtime_ns,
    )


def _lookup(snapshot_fd: int, relative: str) -> os.stat_result | None:
    """The stat of `relative` below a snapshot, or None when it has none."""
    if not relative:
        return os.fstat(snapshot_fd)
    parent, _, name = relative.rpartition("/")
    try:
        fd = fs.open_below(snapshot_fd, parent)
    except OSError:
        return None
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(fd)


def history_of(target: str, snapshots: list[str], relative: str) -> History:
    """Given a target, its snapshots oldest first and a path relative to
    the source (`""` for the source itself), return the entry's versions,
    oldest first. A snapshot without the entry ends the version before."""
    result = History(relative)
    try:
        target_fd = fs.open_directory(target)
    except OSError:  # gone since its snapshots were listed: no version
        return result
    try:
        current: Version | None = None
        for snapshot in snapshots:
            try:
                snapshot_fd = fs.open_directory(snapshot, target_fd)
            except OSError:
                continue
            try:
                info = _lookup(snapshot_fd, relative)
            finally:
                os.close(snapshot_fd)
            if info is None:
                current = None
            elif current is not None and _same_version(current.info, info):
                current.last = snapshot
            else:
                current = Version(snapshot, snapshot, info)
                result.versions.append(current)
    finally:
        os.close(target_fd)
    return result

"""The history of one file or directory across a resource's snapshots.

Cheap, because an unchanged file is one inode in every snapshot that has
it: a new version starts where the metadata changes, or where the inode
does (a file, symlink or special file was copied or made again) and the
two snapshots' manifests do not vouch for the same content (versions.py;
every file is copied under `cross_fs: copy` or `warn`). A directory, which
every snapshot makes anew, is compared by its metadata. Only the entry
itself is looked at, in each snapshot, below the target's descriptor, and
its directory's block in the manifests; nothing is followed.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field

from hardsnap.providers import platform
from hardsnap.providers.audit.versions import Witness, changed_copies, metadata_agrees
from hardsnap.providers.files import fs
from hardsnap.providers.files.kinds import kind_of


@dataclass
class Version:
    """One version of an entry: the first and last snapshots holding it."""

    first: str
    last: str
    info: os.stat_result

    @property
    def kind(self) -> str:
        return kind_of(self.info.st_mode, precise=False)


@dataclass
class History:
    path: str
    versions: list[Version] = field(default_factory=list)
    # Why copies were counted as new versions unchecked (a manifest missing
    # or damaged).
    warnings: list[str] = field(default_factory=list)


def _same_directory(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_mode, before.st_uid, before.st_gid, before.st_mtime_ns) == (
        after.st_mode,
        after.st_uid,
        after.st_gid,
        after.st_mtime_ns,
    )


class _Versions:
    """Compares the entry between the snapshots of one target, opening a
    snapshot's manifest the first time a copy there must be checked."""

    def __init__(self, target_fd: int, target: str, relative: str) -> None:
        self.target_fd = target_fd
        self.target = target
        self.parent, _, self.name = relative.rpartition("/")
        # At most the two snapshots being compared: their manifests stay open.
        self.witnesses: dict[str, Witness] = {}
        self.problems: list[str] = []

    def same(self, before: str, was: os.stat_result, after: str, now: os.stat_result) -> bool:
        """Whether the entry is one version in snapshot `before` and `after`."""
        if stat.S_IFMT(was.st_mode) != stat.S_IFMT(now.st_mode):
            return False
        if stat.S_ISDIR(now.st_mode):
            return _same_directory(was, now)
        if was.st_ino == now.st_ino:
            return True
        if not metadata_agrees(was, now):
            return False
        for snapshot in list(self.witnesses):
            if snapshot not in (before, after):
                self._drop(snapshot)
        witnesses = (self._witness(before), self._witness(after))
        with contextlib.ExitStack() as stack:
            try:
                before_fd = self._parent(before, stack)
                after_fd = self._parent(after, stack)
            except OSError:
                return False
            earlier = (witnesses[0], before_fd, {self.name: was})
            later = (witnesses[1], after_fd, {self.name: now})
            return not changed_copies(self.parent, {self.name}, earlier, later)

    def _witness(self, snapshot: str) -> Witness:
        if snapshot not in self.witnesses:
            self.witnesses[snapshot] = Witness(self.target_fd, self.target, snapshot)
        return self.witnesses[snapshot]

    def _parent(self, snapshot: str, stack: contextlib.ExitStack) -> int:
        snapshot_fd = platform.open_directory(snapshot, self.target_fd)
        stack.callback(os.close, snapshot_fd)
        fd = fs.open_below(snapshot_fd, self.parent)
        stack.callback(os.close, fd)
        return fd

    def _drop(self, snapshot: str) -> None:
        witness = self.witnesses.pop(snapshot)
        witness.close()
        if witness.problem and witness.problem not in self.problems:
            self.problems.append(witness.problem)

    def close(self) -> None:
        for snapshot in list(self.witnesses):
            self._drop(snapshot)


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
        return platform.stat_at(name, fd)
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
        target_fd = platform.open_directory(target)
    except OSError:  # gone since its snapshots were listed: no version
        return result
    compare = _Versions(target_fd, target, relative)
    try:
        current: Version | None = None
        latest: os.stat_result | None = None  # the entry in current.last
        for snapshot in snapshots:
            try:
                snapshot_fd = platform.open_directory(snapshot, target_fd)
            except OSError:
                continue
            try:
                info = _lookup(snapshot_fd, relative)
            finally:
                os.close(snapshot_fd)
            if info is None:
                current = None
            elif (
                current is not None
                and latest is not None
                and compare.same(current.last, latest, snapshot, info)
            ):
                current.last = snapshot
            else:
                current = Version(snapshot, snapshot, info)
                result.versions.append(current)
            latest = info
    finally:
        compare.close()
        os.close(target_fd)
    result.warnings = [
        f"{problem}: copies there are counted as new versions, unchecked"
        for problem in compare.problems
    ]
    return result

"""Sources frozen for a run (source_snapshot): the walk reads a read-only
snapshot of the source's filesystem, made just before it, instead of the
live tree, so every file of the hardsnap snapshot is from one instant.

Four steps, the same for every kind: `locate` where the source would be
frozen (or why it cannot be), `freeze` it, walk `Frozen.path`, `thaw` it
when the run ends; `freeze` first removes what a killed run left. Only
btrfs is built (a read-only snapshot of the source's subvolume, made and
deleted through descriptors); LVM and ZFS can follow the same steps.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from hardsnap.providers import platform
from hardsnap.providers.backup.resource import Resource, SourceSnapshot
from hardsnap.providers.engine.excludes import FROZEN_PREFIX as PREFIX
from hardsnap.providers.engine.excludes import SUBVOLUME_ROOT_INODE, is_frozen_copy
from hardsnap.providers.files import fs
from hardsnap.providers.files.report import SnapshotFailed, SnapshotReport


@dataclass(frozen=True)
class Frozen:
    """Where a resource's source is frozen for a run."""

    kind: SourceSnapshot
    # The btrfs subvolume holding the source (its root directory).
    volume: str
    # source_dir relative to the subvolume ("" when it is the root).
    inside: str
    # The snapshot's name in the subvolume's root directory.
    name: str

    @property
    def path(self) -> str:
        """The source as the frozen snapshot holds it."""
        return os.path.join(self.volume, self.name, self.inside).rstrip("/")


def locate(resource: Resource, source: str) -> Frozen | str:
    """Where `resource`'s source (resolved to `source`) would be frozen, or
    why it cannot be."""
    try:
        fd = fs.open_absolute(source)
    except OSError as error:
        return f"source_dir {resource.source_dir} cannot be opened: {error.strerror}"
    try:
        kind = platform.filesystem_type(fd)
        device = os.fstat(fd).st_dev
    finally:
        os.close(fd)
    if kind != "btrfs":
        return (
            f"source_snapshot: btrfs needs source_dir on btrfs, and {resource.source_dir} "
            f"is on {platform.describe_filesystem(source)}"
        )
    volume = source
    while volume != "/":
        parent = os.path.dirname(volume)
        try:
            if os.stat(parent, follow_symlinks=False).st_dev != device:
                break
        except OSError:
            break
        volume = parent
    if os.stat(volume, follow_symlinks=False).st_ino != SUBVOLUME_ROOT_INODE:
        return (
            f"source_snapshot: btrfs: {volume}, the top of source_dir's btrfs subvolume as "
            f"mounted here, is not the subvolume's root (a bind mount of part of it?): "
            f"hardsnap cannot snapshot it"
        )
    inside = os.path.relpath(source, volume)
    return Frozen(
        resource.source_snapshot, volume, "" if inside == "." else inside, PREFIX + resource.name
    )


@contextlib.contextmanager
def frozen(where: Frozen, leftovers: list[str]) -> Iterator[str]:
    """Freeze the source for the block, yielding the path to walk; thaw it
    after, however the block ends (what cannot be removed is said in
    `leftovers`, and removed by the next run)."""
    volume_fd = fs.open_absolute(where.volume)
    try:
        _remove_leftover(volume_fd, where)
        platform.snapshot_subvolume(volume_fd, volume_fd, where.name)
        try:
            yield where.path
        finally:
            try:
                platform.delete_subvolume(volume_fd, where.name)
            except OSError as error:
                leftovers.append(
                    f"cannot remove the source snapshot {where.volume}/{where.name}: "
                    f"{error.strerror} (the next run removes it)"
                )
    finally:
        os.close(volume_fd)


def _remove_leftover(volume_fd: int, where: Frozen) -> None:
    """A snapshot a killed run left is deleted; anything else of that name
    is refused, never removed."""
    try:
        info = platform.stat_at(where.name, volume_fd)
    except FileNotFoundError:
        return
    if not is_frozen_copy(where.name, info, os.fstat(volume_fd).st_dev):
        raise OSError(
            errno.EEXIST,
            f"{where.volume}/{where.name} exists and is no source snapshot hardsnap made: "
            f"move it aside",
        )
    platform.delete_subvolume(volume_fd, where.name)


def walk_frozen(
    resource: Resource, source: str, build: Callable[[str], SnapshotReport]
) -> SnapshotReport:
    """`build` the snapshot from the source frozen for the run (located
    again: a pre_command may have mounted the source since plan)."""
    where = locate(resource, source)
    if isinstance(where, str):
        raise SnapshotFailed(where)
    leftovers: list[str] = []
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(frozen(where, leftovers))
        except OSError as error:
            raise SnapshotFailed(
                f"cannot make a read-only btrfs snapshot of {where.volume} "
                f"(source_snapshot: btrfs): {error.strerror}"
            ) from error
        report = build(path)
    report.leftovers.extend(leftovers)
    return report

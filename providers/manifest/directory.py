"""The manifests directory of a target (`target_path/.hardsnap-manifests`):
opening it without following a symlink, refusing one another user could
write, creating files in it exclusively, removing the manifests of
snapshots that are gone. manifest.py reads manifests, manifest_writer.py
writes them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable

from hardsnap.providers import platform

MANIFEST_DIRECTORY = ".hardsnap-manifests"
PARTIAL_SUFFIX = ".partial"


def check_ours(directory_fd: int) -> None:
    """Refuse a manifests directory that another user owns or may write:
    they could plant what hardsnap then writes through, or reads back."""
    info = os.fstat(directory_fd)
    if info.st_uid != platform.effective_uid() or info.st_mode & 0o022:
        raise PermissionError(
            errno.EPERM,
            f"owned by uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):04o}, not this "
            f"user's alone",
        )


def create_exclusive(name: str, directory_fd: int) -> int:
    """Create a new file for writing in the manifests directory: whatever
    holds the name (a leftover, or a link or FIFO planted there) is
    removed, never written through or waited on."""
    with contextlib.suppress(FileNotFoundError):
        platform.unlink_at(name, directory_fd)
    return platform.create_new(name, directory_fd)


def open_manifest_directory(target_fd: int) -> int:
    """Open the manifests directory of the target open as `target_fd`.
    Raise OSError when it is missing, or is not a real directory (a symlink
    planted there is never followed: ELOOP or ENOTDIR)."""
    return platform.open_directory(MANIFEST_DIRECTORY, target_fd)


def remove_manifests(target_fd: int, doomed: Callable[[str], bool]) -> None:
    """Remove the manifests whose names `doomed` picks. Done below the
    manifests directory opened without following a symlink: one swapped in
    for it is left alone, and so is whatever it points to."""
    try:
        directory_fd = open_manifest_directory(target_fd)
    except OSError:
        return
    try:
        with os.scandir(directory_fd) as entries:
            names = [entry.name for entry in entries if doomed(entry.name)]
        for name in names:
            with contextlib.suppress(OSError):
                platform.unlink_at(name, directory_fd)
    finally:
        os.close(directory_fd)


def remove_manifest(target_fd: int, snapshot: str) -> None:
    """Remove the manifest of one snapshot (a pruned one)."""
    remove_manifests(target_fd, lambda name: name == snapshot)


def remove_orphans(target_fd: int, keep: set[str]) -> None:
    """Remove manifests (and unfinished ones) of snapshots that are gone."""
    remove_manifests(target_fd, lambda name: name not in keep)

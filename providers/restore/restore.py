"""Restore a path of a snapshot to a destination (restorer.py does the
walk): find the newest snapshot holding a path, plan a restore or carry
it out."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from hardsnap.providers import platform
from hardsnap.providers.files import fs
from hardsnap.providers.manifest.reader import ManifestReader
from hardsnap.providers.restore.restorer import Directory, Restorer
from hardsnap.providers.restore.steps import Restoration


def first_holding(target: str, path: str, snapshots: Iterable[str]) -> str | None:
    """The first of `snapshots` of `target` that holds `path` ("" for its
    root), looked for through one descriptor of the target; None if none."""
    try:
        target_fd = fs.open_absolute(target)
    except OSError:
        return None
    parent, name = os.path.split(path)
    try:
        for snapshot in snapshots:
            try:
                directory_fd = fs.open_below(target_fd, os.path.join(snapshot, parent).rstrip("/"))
            except OSError:
                continue
            try:
                if name:
                    platform.stat_at(name, directory_fd)
                return snapshot
            except OSError:
                continue
            finally:
                os.close(directory_fd)
        return None
    finally:
        os.close(target_fd)


def restore(
    target: str,
    snapshot: str,
    path: str,
    destination: str,
    apply: bool,
    delete: bool = False,
    overwrite: bool = False,
) -> Restoration:
    """Restore `path` ("" for all) of `snapshot` in `target` as
    `destination` (absolute); plan only unless `apply`."""
    result = Restoration(snapshot, path or ".", destination, apply, delete, overwrite)
    destination_parent, destination_name = os.path.split(destination.rstrip("/") or "/")
    # Resolved once, then opened one directory at a time following no link.
    destination_parent = os.path.realpath(destination_parent)
    target_fd = fs.open_absolute(target)
    opened = [target_fd]
    try:
        manifest = None
        with contextlib.suppress(Exception):
            manifest = ManifestReader.in_target(target_fd, snapshot, target)
        snapshot_fd = platform.open_directory(snapshot, target_fd)
        opened.append(snapshot_fd)
        parent_path, name = os.path.split(path)
        source_fd = fs.open_below(snapshot_fd, parent_path) if name else target_fd
        if name:
            opened.append(source_fd)
        root_fd = None
        try:
            root_fd = fs.open_absolute(destination_parent, make=apply)
            opened.append(root_fd)
        except FileNotFoundError:
            if apply:
                raise
        restorer = Restorer(result, manifest, root_fd)
        parent = Directory(source_fd, root_fd, parent_path, "", "")
        shown = path or "."
        if name:
            restorer.entry(parent, name, destination_name, shown)
        else:
            restorer.entry(parent, snapshot, destination_name, shown, relative="")
        return result
    finally:
        if manifest is not None:
            manifest.close()
        for fd in reversed(opened):
            os.close(fd)

"""A resource's facts: what is true on disk for it, read without changing
anything (the planner's only view of the world besides recorded state)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass, replace

from hardsnap.providers import platform
from hardsnap.providers.backup import target
from hardsnap.providers.backup.frozen import Frozen, locate
from hardsnap.providers.backup.naming import future_names
from hardsnap.providers.backup.resource import CrossFs, Keep, Resource, SourceSnapshot
from hardsnap.providers.backup.target import Owner
from hardsnap.providers.engine.excludes import Excludes
from hardsnap.providers.files import capabilities, fs, trust
from hardsnap.providers.files.capabilities import Keeps
from hardsnap.providers.files.kinds import Kinds
from hardsnap.providers.manifest.format import ManifestError
from hardsnap.providers.manifest.reader import open_manifest


@dataclass(frozen=True)
class Prediction:
    """What a snapshot would copy and link, from a dry walk."""

    files_to_copy: int
    files_to_link: int
    bytes_to_copy: int
    # Space the copies would take: allocated blocks, not apparent sizes.
    space_needed: int = 0
    # Files an interrupted run finished that the snapshot keeps.
    files_kept: int = 0
    # Symlinks and special files made, and those the settings leave out.
    symlinks: int = 0
    special_files: int = 0
    symlinks_skipped: int = 0
    special_files_skipped: int = 0
    # Directories kept empty but for their marker (exclude_if_present).
    directories_excluded: int = 0


@dataclass(frozen=True)
class Facts:
    """What is true on disk for one resource, read without changing anything."""

    # target_path with symlinks resolved: where snapshots really go.
    target: str
    target_exists: bool
    # Snapshot names found in the target, oldest first, none dated after now.
    snapshots: tuple[str, ...]
    # source_dir with symlinks resolved: what the walk opens, one
    # directory at a time, following no symlink.
    source: str
    source_exists: bool
    # None when the source is missing.
    same_filesystem: bool | None
    source_filesystem: str
    target_filesystem: str
    # Free bytes on the target's filesystem (its nearest existing ancestor's).
    free_bytes: int | None
    # Why the target cannot be read, when it cannot: nothing can be planned.
    target_error: str | None = None
    # Snapshots whose prune was interrupted (renamed away, not yet removed).
    interrupted_prunes: tuple[str, ...] = ()
    # The source exists but holds nothing (the target, if inside, aside).
    source_empty: bool = False
    # Files in the newest snapshot (from its manifest), None when unknown.
    reference_files: int | None = None
    # Whether the newest snapshot holds nothing; None when there is none.
    reference_empty: bool | None = None
    prediction: Prediction | None = None
    # (snapshots, bytes): what pruning exactly those snapshots would free.
    bytes_freed: tuple[tuple[str, ...], int] | None = None
    # Snapshot-named directories dated after now: never used, never pruned.
    future_snapshots: tuple[str, ...] = ()
    # source_dir exists but is not a directory.
    source_not_directory: bool = False
    # The work an interrupted or killed run left, which the next snapshot resumes.
    partial: str | None = None
    # Whom the target serves (its marker, else its newest manifest); None
    # for a new target.
    owner: Owner | None = None
    # Whether `owner` comes from the marker (else from a manifest, which
    # names the source but not the host).
    owner_marked: bool = False
    # Why the marker cannot be trusted, when it cannot.
    owner_error: str | None = None
    # This resource's source on this host: what the target must serve.
    this_source: Owner | None = None
    # Users other than its owner may create entries in the target.
    target_open_to_others: bool = False
    # Users other than its owner may list or enter the target.
    target_readable_by_others: bool = False
    # (directory, why) when a directory on source_dir's path could be
    # written by another user, who could swap the source for another.
    source_path_weakness: tuple[str, str] | None = None
    # source_snapshot: where the source would be frozen, or why it cannot
    # be (None: not asked for, or no source yet).
    frozen: Frozen | str | None = None


def observe(resource: Resource, now: dt.datetime) -> Facts:
    """Return the facts of a resource at time `now`, reading only."""
    resolved = os.path.realpath(resource.target_path)
    # Resolved once: the walk opens this path following no symlink.
    source = os.path.realpath(resource.source_dir)
    source_exists = os.path.isdir(source)
    target_probe = fs.existing_ancestor(resolved)
    same = None
    if source_exists:
        same = os.stat(source).st_dev == os.stat(target_probe).st_dev
    try:
        free: int | None = platform.free_bytes(target_probe)
    except OSError:
        free = None
    facts = Facts(
        target=resolved,
        target_exists=os.path.isdir(resolved),
        snapshots=(),
        source=source,
        source_exists=source_exists,
        source_not_directory=not source_exists and os.path.lexists(resource.source_dir),
        source_empty=source_exists and holds_nothing_but(source, resolved),
        same_filesystem=same,
        source_filesystem=platform.describe_filesystem(source) if source_exists else "",
        target_filesystem=platform.describe_filesystem(target_probe),
        free_bytes=free,
        this_source=target.this_host(resource.source_dir, source),
        source_path_weakness=trust.weak_directory(resource.source_dir),
        frozen=(
            locate(resource, source)
            if source_exists and resource.source_snapshot is not SourceSnapshot.NONE
            else None
        ),
    )
    if not os.path.isdir(target_probe):
        if target_probe == resolved:
            error = f"target_path {resolved} is not a directory"
        else:
            error = f"target_path {resolved} cannot be made: {target_probe} is not a directory"
        return replace(facts, target_error=error)
    if not facts.target_exists:
        return facts
    try:
        target_fd = platform.open_directory(resolved)
    except OSError as error:
        return replace(facts, target_error=f"cannot open target_path {resolved}: {error.strerror}")
    try:
        return observe_target(facts, target_fd, now)
    finally:
        os.close(target_fd)


def observe_target(facts: Facts, target_fd: int, now: dt.datetime) -> Facts:
    """The facts an existing target adds: its snapshots, leftovers, owner."""
    try:
        listing = target.read_listing(target_fd)
    except OSError as error:
        return replace(
            facts, target_error=f"cannot list target_path {facts.target}: {error.strerror}"
        )
    future = future_names(listing.snapshots, now)
    snapshots = tuple(name for name in listing.snapshots if name not in future)
    owner, marked, owner_error = _owner(target_fd, facts.target, snapshots)
    facts = replace(
        facts,
        snapshots=snapshots,
        future_snapshots=future,
        interrupted_prunes=listing.prunings,
        partial=listing.partials[-1] if listing.partials else None,
        owner=owner,
        owner_marked=marked,
        owner_error=owner_error,
        target_open_to_others=target.writable_by_others(target_fd),
        target_readable_by_others=target.readable_by_others(target_fd),
    )
    if not snapshots:
        return facts
    reference_files = _file_count(target_fd, facts.target, snapshots[-1])
    reference_empty = (
        reference_files == 0
        if reference_files is not None
        else _holds_nothing(target_fd, snapshots[-1])
    )
    return replace(facts, reference_files=reference_files, reference_empty=reference_empty)


def _owner(
    target_fd: int, shown: str, snapshots: tuple[str, ...]
) -> tuple[Owner | None, bool, str | None]:
    """Whom a target serves: its marker's owner, else (a target made before
    markers) the source its newest manifest names; and why the marker
    cannot be trusted, when it cannot."""
    try:
        owner = target.read_owner(target_fd)
    except ValueError as error:
        return None, False, f"{shown}/{error}"
    if owner is not None:
        return owner, True, None
    for snapshot in reversed(snapshots):
        manifest = open_manifest(target_fd, snapshot, shown)
        if manifest is not None:
            with manifest, contextlib.suppress(ManifestError):
                return Owner(manifest.source, ""), False, None
    return None, False, None


def holds_nothing_but(directory: str, target: str) -> bool:
    """Whether the source `directory` (a resolved path) holds nothing but,
    maybe, the target directory."""
    try:
        skip = os.stat(target)
    except OSError:
        skip = None
    try:
        fd = fs.open_absolute(directory)
    except OSError:
        return False
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                if skip is None or (info.st_dev, info.st_ino) != (skip.st_dev, skip.st_ino):
                    return False
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _holds_nothing(target_fd: int, snapshot: str) -> bool:
    """Whether a snapshot (below the target open as `target_fd`) is empty."""
    try:
        fd = platform.open_directory(snapshot, target_fd)
    except OSError:
        return False
    try:
        with os.scandir(fd) as entries:
            return next(entries, None) is None
    except OSError:
        return False
    finally:
        os.close(fd)


def _file_count(target_fd: int, shown: str, snapshot: str) -> int | None:
    """Files in a snapshot as its manifest counts them, None without one."""
    manifest = open_manifest(target_fd, snapshot, shown)
    if manifest is None:
        return None
    with manifest:
        return manifest.files


def links_unchanged(resource: Resource, facts: Facts) -> bool:
    """Whether unchanged files are hard-linked (else every file is copied)."""
    return bool(facts.same_filesystem) or resource.cross_fs is CrossFs.LINK


def kinds(resource: Resource) -> Kinds:
    """What the resource's snapshots keep besides files and directories."""
    return Kinds(
        symlinks=resource.symlinks is Keep.KEEP,
        special_files=resource.special_files is Keep.KEEP,
        one_file_system=resource.one_file_system,
    )


def excludes(resource: Resource) -> Excludes:
    """What the resource's snapshots leave out: exclude patterns and the
    directories exclude_if_present keeps empty."""
    return Excludes(resource.exclude, resource.exclude_if_present)


def recorded_keeps(facts: Facts) -> Keeps:
    """What the target kept when an apply last probed it (all, if never)."""
    if facts.owner is None or facts.owner.keeps is None:
        return capabilities.ALL
    return facts.owner.keeps

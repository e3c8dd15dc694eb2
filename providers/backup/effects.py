"""The `backup` provider: predict a snapshot, take it, prune.

`predict` only reads (a dry walk; the facts themselves are observed in
providers/backup/facts.py, the refusals said in providers/backup/refusals.py).
`take_snapshot` and `prune` change things; the applier is their only caller.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

from hardsnap.providers import platform
from hardsnap.providers.backup import target
from hardsnap.providers.backup.facts import (
    Facts,
    Prediction,
    excludes,
    kinds,
    links_unchanged,
    observe,
    observe_target,
    recorded_keeps,
)
from hardsnap.providers.backup.frozen import walk_frozen
from hardsnap.providers.backup.naming import snapshot_in_window, snapshot_time
from hardsnap.providers.backup.refusals import (
    cross_fs_refusal,
    empty_source_refusal,
    keeps_refusal,
    missing_source_refusal,
    missing_target_refusal,
    ownership_refusal,
)
from hardsnap.providers.backup.resource import CrossFs, Resource, SourceSnapshot
from hardsnap.providers.backup.target import PARTIAL_PREFIX, TargetLocks
from hardsnap.providers.engine.snapshot import (
    Progress,
    SnapshotFailed,
    SnapshotReport,
    Walk,
    available_cpus,
)
from hardsnap.providers.files import capabilities, fs, tree
from hardsnap.providers.files.capabilities import Keeps
from hardsnap.providers.files.report import failure_of
from hardsnap.providers.manifest.directory import remove_orphans
from hardsnap.providers.manifest.format import ManifestError
from hardsnap.providers.manifest.reader import ManifestReader, open_manifest
from hardsnap.providers.manifest.writer import ManifestWriter


def predict(resource: Resource, facts: Facts, corrupted: frozenset[int] = frozenset()) -> Facts:
    """Return `facts` with a prediction of the next snapshot's copies and
    links, from a dry walk of the source against the newest snapshot (and
    what an interrupted run left, which it keeps)."""
    if not facts.source_exists:
        return facts
    started, joined = _reference_facts(facts)
    walk = Walk(
        excludes(resource),
        links_unchanged(resource, facts),
        0,
        _identity(facts),
        corrupted=corrupted,
        kinds=kinds(resource),
        reference_started_ns=started,
        joined=joined,
        keeps=recorded_keeps(facts),
    )
    try:
        with _open_roots(resource, facts) as (source_fd, reference_fd, partial_fd):
            walk.run(source_fd, reference_fd, None, partial_fd)
    except OSError:
        # The source cannot be read now; apply will report why.
        return facts
    report = walk.report
    prediction = Prediction(
        report.files_copied,
        report.files_linked,
        report.bytes_copied,
        report.space_needed,
        report.files_kept,
        report.symlinks,
        report.special_files,
        report.symlinks_skipped,
        report.special_files_skipped,
        report.directories_excluded,
    )
    return replace(facts, prediction=prediction)


def _reference_facts(
    facts: Facts, manifest: ManifestReader | None = None
) -> tuple[int, frozenset[int]]:
    """When the reference's walk began and its inodes with several names,
    from its manifest (`manifest`, else opened here). Without one that
    tells: 0 (every file is compared on xattrs) and none."""
    if manifest is None:
        if not facts.snapshots:
            return 0, frozenset()
        try:
            target_fd = platform.open_directory(facts.target)
        except OSError:
            return 0, frozenset()
        try:
            manifest = open_manifest(target_fd, facts.snapshots[-1], facts.target)
        finally:
            os.close(target_fd)
        if manifest is None:
            return 0, frozenset()
        with manifest:
            return _reference_facts(facts, manifest)
    try:
        return manifest.started_ns or 0, manifest.joined()
    except ManifestError:
        return 0, frozenset()


def measure_prune(facts: Facts, names: list[str]) -> Facts:
    """Return `facts` with the bytes that pruning `names` would free."""
    try:
        freed = target.freed_by_pruning(facts.target, names)
    except OSError:
        return facts
    return replace(facts, bytes_freed=(tuple(names), freed))


def _identity(facts: Facts) -> tuple[int, int] | None:
    """(device, inode) of the target, which a walk of the source skips."""
    if not facts.target_exists:
        return None
    info = os.stat(facts.target)
    return (info.st_dev, info.st_ino)


@contextlib.contextmanager
def _open_roots(
    resource: Resource, facts: Facts, target_fd: int | None = None
) -> Iterator[tuple[int, int | None, int | None]]:
    """Open the source, the reference snapshot and (for a dry walk) the work
    an interrupted run left."""
    opened: list[int] = []
    try:
        source_fd = _open_source(resource, facts)
        opened.append(source_fd)
        if target_fd is None and facts.target_exists:
            target_fd = platform.open_directory(facts.target)
            opened.append(target_fd)
        reference_fd = partial_fd = None
        if facts.snapshots and target_fd is not None:
            reference_fd = platform.open_directory(facts.snapshots[-1], target_fd)
            opened.append(reference_fd)
        if facts.partial and target_fd is not None and source_fd is not None:
            with contextlib.suppress(OSError):
                partial_fd = platform.open_directory(facts.partial, target_fd)
                opened.append(partial_fd)
        yield source_fd, reference_fd, partial_fd
    finally:
        for fd in opened:
            os.close(fd)


def _open_source(resource: Resource, facts: Facts) -> int:
    """Open the source at the path it resolved to when observed, one
    directory at a time, following no symlink: a directory on the way
    swapped for a link since is refused, never followed elsewhere."""
    try:
        return fs.open_absolute(facts.source)
    except OSError as error:
        reason = error.strerror
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            reason = "a directory on its path is a symlink or no directory now (never followed)"
        raise OSError(
            error.errno, f"cannot open source_dir {resource.source_dir} at {facts.source}: {reason}"
        ) from None


@dataclass(frozen=True)
class SnapshotRequest:
    """What the plan asked of a snapshot, beyond its name."""

    # Take it even from an empty source (apply --allow-empty-source).
    allow_empty_source: bool = False
    # Snapshots the state records in the target: at least one must be there,
    # else the target is taken for an unmounted disk (unless allowed).
    expected: tuple[str, ...] = ()
    allow_new_target: bool = False
    # Inodes `verify --content` found corrupted: their files are copied.
    corrupted: frozenset[int] = frozenset()
    # Worker processes that share the walk (apply --jobs); None: one per
    # CPU this process may use.
    jobs: int | None = None


def take_snapshot(
    resource: Resource,
    name: str,
    resolved: str,
    progress: Progress | None = None,
    request: SnapshotRequest | None = None,
    locks: TargetLocks | None = None,
) -> SnapshotReport:
    """Make snapshot `name` of the resource's source in the target `resolved`.

    The snapshot is built under a work name and renamed into place only when
    complete and flushed to disk. On a failure the work is removed and
    SnapshotFailed is raised; on an interrupt (KeyboardInterrupt) it is kept
    for the next apply to resume. Earlier snapshots are never touched.
    `locks` hold the target's lock when the caller already took it.
    """
    request = request or SnapshotRequest()
    if locks is None:
        with TargetLocks([resolved]) as own:
            return take_snapshot(resource, name, resolved, progress, request, own)
    moment = snapshot_time(name)
    assert moment is not None
    facts = observe(resource, moment)
    refusal = snapshot_refusal(resource, facts, request)
    if refusal:
        raise SnapshotFailed(refusal)
    try:
        target_fd = target.open_target(resolved, make=True)
    except OSError as error:
        raise SnapshotFailed(str(error.strerror)) from None
    try:
        return _take(resource, name, moment, facts, target_fd, progress, request)
    finally:
        # Nothing stays open on the target's filesystem (a post_command may unmount it).
        os.close(target_fd)


def _take(
    resource: Resource,
    name: str,
    moment: dt.datetime,
    facts: Facts,
    target_fd: int,
    progress: Progress | None,
    request: SnapshotRequest,
) -> SnapshotReport:
    """Take the snapshot in the target open as `target_fd`, under its lock."""
    resolved = facts.target
    facts = observe_target(replace(facts, target_exists=True), target_fd, moment)
    refusal = snapshot_refusal(resource, facts, request)
    if refusal:
        raise SnapshotFailed(refusal)
    # Under the lock, look again: an apply racing ours from another state
    # directory may have just filled this window.
    taken = snapshot_in_window(facts.snapshots, moment, resource.schedule)
    if taken is not None:
        raise SnapshotFailed(
            f"window of {name} already has snapshot {taken}, made by a concurrent apply"
        )
    with contextlib.suppress(FileNotFoundError):
        platform.stat_at(name, target_fd)
        raise SnapshotFailed(
            f"{resolved}/{name} exists but is not a snapshot directory: hardsnap will not "
            f"overwrite it; move it aside"
        )
    assert facts.this_source is not None
    # What the target's filesystem keeps, afresh: a disk keeps more or less
    # as it is mounted.
    keeps = capabilities.probe(target_fd)
    refusal = keeps_refusal(
        resource, links_unchanged(resource, facts), keeps, os.fstat(target_fd).st_mode
    )
    if refusal:
        raise SnapshotFailed(refusal)
    owner = facts.owner
    if not facts.owner_marked or owner is None or owner.resolved is None:
        # A new target, or a marker from before it recorded where the source led.
        owner = facts.this_source
    if owner is facts.this_source or owner.keeps != keeps:
        target.write_owner(target_fd, replace(owner, keeps=keeps))
    if resource.source_snapshot is SourceSnapshot.NONE:
        report = _build(resource, name, facts, target_fd, progress, request, keeps)
    else:
        report = walk_frozen(
            resource,
            facts.source,
            lambda path: _build(
                resource, name, replace(facts, source=path), target_fd, progress, request, keeps
            ),
        )
    report.reference_files = facts.reference_files
    report.not_kept = keeps.dropped()
    return report


def _build(
    resource: Resource,
    name: str,
    facts: Facts,
    target_fd: int,
    progress: Progress | None,
    request: SnapshotRequest,
    keeps: Keeps,
) -> SnapshotReport:
    """Walk the source into the work directory, then give it its name."""
    work = PARTIAL_PREFIX + name
    resume, leftovers = target.adopt_partial(target_fd, facts.target, work)
    reference = facts.snapshots[-1] if facts.snapshots else None
    reference_manifest = open_manifest(target_fd, reference, facts.target) if reference else None
    try:
        writer = ManifestWriter(target_fd, name, resource.source_dir, keeps)
    except BaseException as error:
        if reference_manifest is not None:
            reference_manifest.close()
        if not isinstance(error, OSError):
            raise
        raise SnapshotFailed(
            f"cannot keep manifests in {facts.target}/.hardsnap-manifests: {error.strerror}; "
            f"it must be a directory hardsnap owns (move aside whatever is there)"
        ) from None
    try:
        started, joined = (0, frozenset[int]())
        if reference_manifest is not None:
            started, joined = _reference_facts(facts, reference_manifest)
        walk = Walk(
            excludes(resource),
            links_unchanged(resource, facts),
            resource.min_free_space,
            _identity(facts),
            resume,
            progress,
            writer,
            reference_manifest,
            workers=request.jobs or available_cpus(),
            corrupted=request.corrupted,
            kinds=kinds(resource),
            reference_started_ns=started,
            joined=joined,
            keeps=keeps,
        )
        if not resume:
            platform.mkdir_at(work, target_fd, 0o700)
        work_fd = platform.open_directory(work, target_fd)
        try:
            with _open_roots(resource, facts, target_fd) as (source_fd, reference_fd, _):
                walk.run(source_fd, reference_fd, work_fd)
            writer.finish()
            # The snapshot and its manifest reach the disk at once, before
            # either has its name.
            platform.sync_filesystem(work_fd)
        finally:
            os.close(work_fd)
        writer.publish()
        platform.rename_at(work, name, target_fd)
        os.fsync(target_fd)
    except KeyboardInterrupt:
        # Interrupted: the work stays under its work name, for the next
        # apply to resume (as after a crash).
        writer.discard()
        raise
    except BaseException as error:
        writer.discard()
        tree.remove_what_can_be(work, target_fd)
        raise failure_of(error) from None
    finally:
        writer.close()
        if reference_manifest is not None:
            reference_manifest.close()
    remove_orphans(target_fd, set(target.read_listing(target_fd).snapshots))
    walk.report.leftovers.extend(leftovers)
    walk.report.resumed = resume
    return walk.report


def snapshot_refusal(resource: Resource, facts: Facts, request: SnapshotRequest) -> str | None:
    """Why a snapshot must not start, or None: checked by the plan, and
    again when the snapshot starts (a pre_command may have mounted or
    filled what was missing)."""
    if not facts.source_exists:
        return missing_source_refusal(resource, facts)
    refusal = (
        facts.target_error
        or ownership_refusal(resource, facts)
        or missing_target_refusal(resource, facts, request.expected, request.allow_new_target)
    )
    if refusal:
        return refusal
    if not request.allow_empty_source:
        refusal = empty_source_refusal(resource, facts)
    if refusal is None and facts.same_filesystem is False and resource.cross_fs is CrossFs.FAIL:
        refusal = cross_fs_refusal(resource, facts)
    if refusal is None and facts.owner is not None and facts.owner.keeps is not None:
        # As the last apply found the target's filesystem (apply probes again).
        refusal = keeps_refusal(resource, links_unchanged(resource, facts), facts.owner.keeps, 0)
    return refusal


def prune(
    resolved: str, names: list[str], locks: TargetLocks | None = None
) -> tuple[list[str], int, list[str]]:
    """Remove the named snapshots from the target `resolved`; return those
    removed, the bytes that freed, and warnings about what could not be."""
    if locks is None:
        with TargetLocks([resolved]) as own:
            return prune(resolved, names, own)
    try:
        target_fd = target.open_target(resolved)
    except FileNotFoundError:
        return [], 0, []
    try:
        return target.prune(target_fd, resolved, names)
    finally:
        os.close(target_fd)

"""The `backup` provider: observe a resource's facts, and take its snapshots.

`observe` and `predict` only read. `take_snapshot` changes things (and
`providers.target` prunes); the applier is their only caller.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

from hardsnap.providers import fs, target, tree
from hardsnap.providers.entries import Kinds
from hardsnap.providers.manifest import ManifestError, ManifestWriter, open_manifest, remove_orphans
from hardsnap.providers.naming import future_names, snapshot_in_window, snapshot_time
from hardsnap.providers.snapshot import Excludes, Progress, SnapshotFailed, SnapshotReport, Walk
from hardsnap.providers.target import PARTIAL_PREFIX, Owner, TargetLocks
from hardsnap.reconcile.model import CrossFs, Keep, Resource


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


@dataclass(frozen=True)
class Facts:
    """What is true on disk for one resource, read without changing anything."""

    # target_path with symlinks resolved: where snapshots really go.
    target: str
    target_exists: bool
    # Snapshot names found in the target, oldest first, none dated after now.
    snapshots: tuple[str, ...]
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


def observe(resource: Resource, now: dt.datetime) -> Facts:
    """Return the facts of a resource at time `now`, reading only."""
    resolved = os.path.realpath(resource.target_path)
    source_exists = os.path.isdir(resource.source_dir)
    target_probe = fs.existing_ancestor(resolved)
    same = None
    if source_exists:
        same = os.stat(resource.source_dir).st_dev == os.stat(target_probe).st_dev
    try:
        free: int | None = fs.free_bytes(target_probe)
    except OSError:
        free = None
    facts = Facts(
        target=resolved,
        target_exists=os.path.isdir(resolved),
        snapshots=(),
        source_exists=source_exists,
        source_not_directory=not source_exists and os.path.lexists(resource.source_dir),
        source_empty=source_exists and holds_nothing_but(resource.source_dir, resolved),
        same_filesystem=same,
        source_filesystem=fs.describe_filesystem(resource.source_dir) if source_exists else "",
        target_filesystem=fs.describe_filesystem(target_probe),
        free_bytes=free,
        this_source=target.this_host(resource.source_dir),
    )
    if not facts.target_exists:
        return facts
    try:
        target_fd = fs.open_directory(resolved)
    except OSError as error:
        return replace(facts, target_error=f"cannot open target_path {resolved}: {error.strerror}")
    try:
        return _observe_target(facts, target_fd, now)
    finally:
        os.close(target_fd)


def _observe_target(facts: Facts, target_fd: int, now: dt.datetime) -> Facts:
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
    """Whether the source `directory` holds nothing but, maybe, the target
    directory."""
    try:
        skip = os.stat(target)
    except OSError:
        skip = None
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                if skip is None or (info.st_dev, info.st_ino) != (skip.st_dev, skip.st_ino):
                    return False
    except OSError:
        return False
    return True


def _holds_nothing(target_fd: int, snapshot: str) -> bool:
    """Whether a snapshot (below the target open as `target_fd`) is empty."""
    try:
        fd = fs.open_directory(snapshot, target_fd)
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


def predict(resource: Resource, facts: Facts, corrupted: frozenset[int] = frozenset()) -> Facts:
    """Return `facts` with a prediction of the next snapshot's copies and
    links, from a dry walk of the source against the newest snapshot (and
    what an interrupted run left, which it keeps)."""
    if not facts.source_exists:
        return facts
    walk = Walk(
        Excludes(resource.exclude),
        links_unchanged(resource, facts),
        0,
        _identity(facts),
        corrupted=corrupted,
        kinds=kinds(resource),
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
    )
    return replace(facts, prediction=prediction)


def kinds(resource: Resource) -> Kinds:
    """What the resource's snapshots keep besides files and directories."""
    return Kinds(
        symlinks=resource.symlinks is Keep.KEEP,
        special_files=resource.special_files is Keep.KEEP,
        one_file_system=resource.one_file_system,
    )


def measure_prune(facts: Facts, names: list[str]) -> Facts:
    """Return `facts` with the bytes that pruning `names` would free."""
    try:
        freed = target.freed_by_pruning(facts.target, names)
    except OSError:
        return facts
    return replace(facts, bytes_freed=(tuple(names), freed))


# Below this many files (as the reference counted them) one process walks
# alone: a second one costs more to start than it saves. Without a
# reference, a source with this many top-level directories is taken as big.
PARALLEL_MIN_FILES = 5000
PARALLEL_MIN_DIRECTORIES = 64


def _workers(resource: Resource, facts: Facts) -> int:
    """Walk with both of two cores when the tree is big enough to gain."""
    if (os.cpu_count() or 1) < 2:
        return 1
    if facts.reference_files is not None:
        return 2 if facts.reference_files >= PARALLEL_MIN_FILES else 1
    try:
        with os.scandir(resource.source_dir) as entries:
            directories = sum(1 for entry in entries if entry.is_dir(follow_symlinks=False))
    except OSError:
        return 1
    return 2 if directories >= PARALLEL_MIN_DIRECTORIES else 1


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
        source_fd = os.open(resource.source_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        opened.append(source_fd)
        if target_fd is None and facts.target_exists:
            target_fd = fs.open_directory(facts.target)
            opened.append(target_fd)
        reference_fd = partial_fd = None
        if facts.snapshots and target_fd is not None:
            reference_fd = fs.open_directory(facts.snapshots[-1], target_fd)
            opened.append(reference_fd)
        if facts.partial and target_fd is not None and source_fd is not None:
            with contextlib.suppress(OSError):
                partial_fd = fs.open_directory(facts.partial, target_fd)
                opened.append(partial_fd)
        yield source_fd, reference_fd, partial_fd
    finally:
        for fd in opened:
            os.close(fd)


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
    target_fd = locks.open(resolved)
    facts = _observe_target(replace(facts, target_exists=True), target_fd, moment)
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
        os.stat(name, dir_fd=target_fd, follow_symlinks=False)
        raise SnapshotFailed(
            f"{resolved}/{name} exists but is not a snapshot directory: hardsnap will not "
            f"overwrite it; move it aside"
        )
    if not facts.owner_marked:
        assert facts.this_source is not None
        target.write_owner(target_fd, facts.this_source)
    report = _build(resource, name, facts, target_fd, progress, request)
    report.reference_files = facts.reference_files
    return report


def _build(
    resource: Resource,
    name: str,
    facts: Facts,
    target_fd: int,
    progress: Progress | None,
    request: SnapshotRequest,
) -> SnapshotReport:
    """Walk the source into the work directory, then give it its name."""
    work = PARTIAL_PREFIX + name
    resume, leftovers = target.adopt_partial(target_fd, facts.target, work)
    reference = facts.snapshots[-1] if facts.snapshots else None
    reference_manifest = open_manifest(target_fd, reference, facts.target) if reference else None
    try:
        writer = ManifestWriter(target_fd, name, resource.source_dir)
    except OSError as error:
        if reference_manifest is not None:
            reference_manifest.close()
        raise SnapshotFailed(
            f"cannot keep manifests in {facts.target}/.hardsnap-manifests: {error.strerror}; "
            f"it must be a directory hardsnap owns (move aside whatever is there)"
        ) from None
    walk = Walk(
        Excludes(resource.exclude),
        links_unchanged(resource, facts),
        resource.min_free_space,
        _identity(facts),
        resume,
        progress,
        writer,
        reference_manifest,
        workers=_workers(resource, facts),
        corrupted=request.corrupted,
        kinds=kinds(resource),
    )
    try:
        if not resume:
            os.mkdir(work, 0o700, dir_fd=target_fd)
        work_fd = fs.open_directory(work, target_fd)
        try:
            with _open_roots(resource, facts, target_fd) as (source_fd, reference_fd, _):
                walk.run(source_fd, reference_fd, work_fd)
            fs.sync_filesystem(work_fd)
        finally:
            os.close(work_fd)
        # The manifest is complete on disk before the snapshot has its name.
        writer.publish()
        os.rename(work, name, src_dir_fd=target_fd, dst_dir_fd=target_fd)
        os.fsync(target_fd)
    except KeyboardInterrupt:
        # Interrupted: the work stays under its work name, for the next
        # apply to resume (as after a crash).
        writer.discard()
        raise
    except BaseException as error:
        writer.discard()
        tree.remove_what_can_be(work, target_fd)
        raise _failure(error) from None
    finally:
        writer.close()
        if reference_manifest is not None:
            reference_manifest.close()
    remove_orphans(target_fd, set(target.read_listing(target_fd).snapshots))
    walk.report.leftovers.extend(leftovers)
    return walk.report


def _failure(error: BaseException) -> BaseException:
    """What a failed snapshot raises: its cause, said plainly."""
    if isinstance(error, fs.OutOfSpace):
        return SnapshotFailed(f"{error}; partial snapshot removed")
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return SnapshotFailed(f"{error.strerror}{where}; partial snapshot removed")
    return error


def snapshot_refusal(resource: Resource, facts: Facts, request: SnapshotRequest) -> str | None:
    """Why a snapshot must not start, or None: checked by the plan, and
    again when the snapshot starts (a pre_command may have mounted or
    filled what was missing)."""
    if not facts.source_exists:
        return missing_source_refusal(resource, facts)
    refusal = ownership_refusal(resource, facts) or missing_target_refusal(
        resource, facts, request.expected, request.allow_new_target
    )
    if refusal:
        return refusal
    if not request.allow_empty_source:
        refusal = empty_source_refusal(resource, facts)
    if refusal is None and facts.same_filesystem is False and resource.cross_fs is CrossFs.FAIL:
        refusal = cross_fs_refusal(resource, facts)
    return refusal


def empty_source_refusal(resource: Resource, facts: Facts) -> str | None:
    """Why an empty source must not be snapshotted, or None: the newest
    snapshot has files, so the source is most likely an unmounted disk."""
    if not facts.source_empty or facts.reference_empty is not False:
        return None
    held = f"{facts.reference_files} files" if facts.reference_files else "files"
    return (
        f"source_dir {resource.source_dir} is empty but the newest snapshot holds "
        f"{held}: is its filesystem mounted? Nothing was snapshotted or "
        f"pruned; apply --allow-empty-source takes the empty snapshot deliberately"
    )


def missing_source_refusal(resource: Resource, facts: Facts) -> str:
    if facts.source_not_directory:
        return f"source_dir {resource.source_dir} is not a directory"
    return (
        f"source_dir {resource.source_dir} does not exist: is its filesystem mounted? "
        f"Nothing was snapshotted or pruned"
    )


def ownership_refusal(resource: Resource, facts: Facts) -> str | None:
    """Why the target must not be used, being another source's, or None."""
    if facts.owner_error:
        return (
            f"{facts.owner_error}: it names the source target_path {facts.target} serves; "
            f"fix or remove it (hardsnap then claims the target for {resource.source_dir})"
        )
    mine = facts.this_source
    if facts.owner is None or mine is None:
        return None
    if facts.owner_marked and facts.owner.same_as(mine):
        return None
    if not facts.owner_marked and facts.owner.source == mine.source:
        return None
    theirs = str(facts.owner) if facts.owner_marked else f"{facts.owner.source} (its manifests say)"
    return (
        f"target_path {facts.target} holds the snapshots of {theirs}, not of "
        f"{mine}: two sources must not share a target (one would link against and prune "
        f"the other's history). Give this resource its own target_path"
    )


def missing_target_refusal(
    resource: Resource, facts: Facts, expected: tuple[str, ...], allowed: bool
) -> str | None:
    """Why a target that lost every snapshot the state records there must
    not get a new chain, or None: it is most likely an unmounted disk."""
    if allowed or not expected:
        return None
    present = set(facts.snapshots) | set(facts.future_snapshots)
    if present & set(expected):
        return None
    where = "does not exist" if not facts.target_exists else "holds none of them"
    return (
        f"the state records {len(expected)} snapshot(s) in target_path {facts.target} "
        f"(newest {max(expected)}) but it {where}: is its filesystem mounted? Nothing was "
        f"snapshotted or pruned; apply --allow-new-target starts a new chain there"
    )


def free_space_refusal(resource: Resource, facts: Facts) -> str | None:
    """Return why the target lacks room to start a snapshot, or None."""
    if resource.min_free_space <= 0 or facts.free_bytes is None:
        return None
    if facts.free_bytes < resource.min_free_space:
        return (
            f"only {format_bytes(facts.free_bytes)} free on {facts.target_filesystem}, "
            f"below min_free_space {format_bytes(resource.min_free_space)}"
        )
    after = free_after_snapshot(facts)
    if after is not None and after < resource.min_free_space:
        assert facts.prediction is not None
        return (
            f"the snapshot would take {format_bytes(facts.prediction.space_needed)} on disk, "
            f"leaving {format_bytes(max(after, 0))} free on {facts.target_filesystem}, below "
            f"min_free_space {format_bytes(resource.min_free_space)}"
        )
    return None


def free_after_snapshot(facts: Facts) -> int | None:
    """Return the free bytes the target would keep after the predicted copy."""
    if facts.free_bytes is None or facts.prediction is None:
        return None
    return facts.free_bytes - facts.prediction.space_needed


def cross_fs_refusal(resource: Resource, facts: Facts) -> str:
    return (
        f"source_dir {resource.source_dir} is on {facts.source_filesystem} but target_path "
        f"{resource.target_path} is on {facts.target_filesystem}: hard links cannot cross "
        f"filesystems to the source. Set cross_fs: link (the usual choice for a backup "
        f"disk or NAS: unchanged files are linked to the previous snapshot, on the target's "
        f"own filesystem), or copy (every file copied on every run), or warn (the same, "
        f"warning once)"
    )


def prune(
    resolved: str, names: list[str], locks: TargetLocks | None = None
) -> tuple[list[str], int, list[str]]:
    """Remove the named snapshots from the target `resolved`; return those
    removed, the bytes that freed, and warnings about what could not be."""
    if locks is None:
        with TargetLocks([resolved]) as own:
            return prune(resolved, names, own)
    target_fd = locks.fd(resolved)
    if target_fd is None:
        return [], 0, []
    return target.prune(target_fd, resolved, names)


def format_bytes(count: int) -> str:
    """Return a byte count for humans, 1024-based: '512 B', '1.5 GiB'."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"

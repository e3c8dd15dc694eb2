"""The `backup` provider: observe a resource's facts, and its effects.

`observe` and `predict` only read. `take_snapshot`, `prune` and the hooks
change things; the applier is their only caller.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

from providers import fs
from providers.manifest import ManifestWriter, open_manifest, remove_manifest, remove_orphans
from providers.naming import is_snapshot_name, snapshot_in_window, snapshot_time
from providers.snapshot import Excludes, Progress, SnapshotFailed, SnapshotReport, Walk
from reconcile.model import CrossFs, Resource

# Work in progress carries one of these prefixes, never a snapshot name.
PARTIAL_PREFIX = ".hardsnap-partial."
PRUNING_PREFIX = ".hardsnap-pruning."


@dataclass(frozen=True)
class Prediction:
    """What a snapshot would copy and link, from a dry walk."""

    files_to_copy: int
    files_to_link: int
    bytes_to_copy: int


@dataclass(frozen=True)
class Facts:
    """What is true on disk for one resource, read without changing anything."""

    # target_path with symlinks resolved: where snapshots really go.
    target: str
    target_exists: bool
    # Snapshot names found in the target, oldest first.
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


def list_snapshots(target: str) -> tuple[str, ...]:
    """Return the snapshot-named real directories in `target`, oldest first
    (none when it cannot be listed)."""
    try:
        return read_snapshots(target)
    except OSError:
        return ()


def read_interrupted_prunes(target: str) -> tuple[str, ...]:
    """Return the names of snapshots a killed prune left half-removed."""
    with os.scandir(target) as entries:
        names = [
            entry.name[len(PRUNING_PREFIX) :]
            for entry in entries
            if entry.name.startswith(PRUNING_PREFIX) and entry.is_dir(follow_symlinks=False)
        ]
    return tuple(sorted(names))


def _existing_directory(target: str, name: str) -> str | None:
    """The directory holding snapshot `name` now: the snapshot itself, or
    what an interrupted prune left of it."""
    for candidate in (name, PRUNING_PREFIX + name):
        if os.path.isdir(os.path.join(target, candidate)) and not os.path.islink(
            os.path.join(target, candidate)
        ):
            return candidate
    return None


def read_snapshots(target: str) -> tuple[str, ...]:
    """Return the snapshot-named real directories in `target`, oldest first.
    Raise OSError when it cannot be listed."""
    with os.scandir(target) as entries:
        names = [
            entry.name
            for entry in entries
            if is_snapshot_name(entry.name) and entry.is_dir(follow_symlinks=False)
        ]
    return tuple(sorted(names))


def observe(resource: Resource) -> Facts:
    """Return the facts of a resource, reading only."""
    target = os.path.realpath(resource.target_path)
    target_exists = os.path.isdir(target)
    source_exists = os.path.isdir(resource.source_dir)
    target_probe = fs.existing_ancestor(target)
    same = None
    if source_exists:
        same = os.stat(resource.source_dir).st_dev == os.stat(target_probe).st_dev
    try:
        free: int | None = fs.free_bytes(target_probe)
    except OSError:
        free = None
    snapshots: tuple[str, ...] = ()
    interrupted: tuple[str, ...] = ()
    target_error = None
    if target_exists:
        try:
            snapshots = read_snapshots(target)
            interrupted = read_interrupted_prunes(target)
        except OSError as error:
            target_error = f"cannot list target_path {target}: {error.strerror}"
    reference_files = reference_empty = None
    if snapshots:
        reference_files = _file_count(target, snapshots[-1])
        reference_empty = (
            reference_files == 0
            if reference_files is not None
            else holds_nothing_but(os.path.join(target, snapshots[-1]), target)
        )
    return Facts(
        source_empty=source_exists and holds_nothing_but(resource.source_dir, target),
        reference_files=reference_files,
        reference_empty=reference_empty,
        target=target,
        target_exists=target_exists,
        target_error=target_error,
        snapshots=snapshots,
        interrupted_prunes=interrupted,
        source_exists=source_exists,
        same_filesystem=same,
        source_filesystem=fs.describe_filesystem(resource.source_dir) if source_exists else "",
        target_filesystem=fs.describe_filesystem(target_probe),
        free_bytes=free,
    )


def holds_nothing_but(directory: str, target: str) -> bool:
    """Whether `directory` (a source, or a snapshot) holds nothing but,
    maybe, the target directory."""
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


def _file_count(target: str, snapshot: str) -> int | None:
    """Files in a snapshot as its manifest counts them, None without one."""
    manifest = open_manifest(target, snapshot)
    if manifest is None:
        return None
    with manifest:
        return manifest.files


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


def missing_source_refusal(resource: Resource) -> str:
    return (
        f"source_dir {resource.source_dir} does not exist: is its filesystem mounted? "
        f"Nothing was snapshotted or pruned"
    )


def links_unchanged(resource: Resource, facts: Facts) -> bool:
    """Whether unchanged files are hard-linked (else every file is copied)."""
    return bool(facts.same_filesystem) or resource.cross_fs is CrossFs.LINK


def predict(resource: Resource, facts: Facts) -> Facts:
    """Return `facts` with a prediction of the next snapshot's copies and links,
    from a dry walk of the source against the newest snapshot."""
    if not facts.source_exists:
        return facts
    walk = Walk(Excludes(resource.exclude), links_unchanged(resource, facts), 0, _identity(facts))
    try:
        with _open_roots(resource, facts) as (source_fd, reference_fd):
            walk.run(source_fd, reference_fd, None)
    except OSError:
        # The source cannot be read now; apply will report why.
        return facts
    report = walk.report
    return replace(
        facts,
        prediction=Prediction(report.files_copied, report.files_linked, report.bytes_copied),
    )


def measure_prune(facts: Facts, names: list[str]) -> Facts:
    """Return `facts` with the bytes that pruning `names` would free."""
    try:
        freed = _bytes_freed(facts.target, names)
    except OSError:
        return facts
    return replace(facts, bytes_freed=(tuple(names), freed))


def _bytes_freed(target: str, names: list[str]) -> int:
    directories = [_existing_directory(target, name) for name in names]
    return fs.bytes_freed(target, [name for name in directories if name is not None])


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
def _open_roots(resource: Resource, facts: Facts) -> Iterator[tuple[int, int | None]]:
    source_fd = os.open(resource.source_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    reference_fd = None
    try:
        if facts.snapshots:
            reference_fd = fs.open_directory(os.path.join(facts.target, facts.snapshots[-1]))
        yield source_fd, reference_fd
    finally:
        os.close(source_fd)
        if reference_fd is not None:
            os.close(reference_fd)


@contextlib.contextmanager
def locked_target(target: str) -> Iterator[int]:
    """Create the target (0700) if missing, open it and hold its lock.

    The lock is an flock on the target directory itself, so two applies with
    different state directories still never write one target at once.
    """
    fs.make_private_directory(target)
    target_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(target_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                holder = fs.flock_holder(target_fd)
                who = f"pid {holder}" if holder else "another process"
                raise SnapshotFailed(
                    f"another hardsnap apply ({who}) is writing to {target}"
                ) from None
            raise
        yield target_fd
    finally:
        os.close(target_fd)


def adopt_leftovers(target_fd: int, work: str) -> bool:
    """Deal with what killed runs left in the target: remove half-pruned
    snapshots, and make the newest partial snapshot the work directory
    `work` (removing any older ones), so its finished files are reused.
    Return whether a partial snapshot was adopted."""
    with os.scandir(target_fd) as entries:
        names = sorted(
            entry.name
            for entry in entries
            if entry.name.startswith((PARTIAL_PREFIX, PRUNING_PREFIX))
            and entry.is_dir(follow_symlinks=False)
        )
    partials = [name for name in names if name.startswith(PARTIAL_PREFIX)]
    newest = partials[-1] if partials else None
    for name in names:
        if name != newest:
            fs.remove_tree(name, target_fd)
    if newest is None:
        return False
    if newest != work:
        os.rename(newest, work, src_dir_fd=target_fd, dst_dir_fd=target_fd)
    return True


def take_snapshot(
    resource: Resource,
    name: str,
    target: str,
    progress: Progress | None = None,
    allow_empty_source: bool = False,
) -> SnapshotReport:
    """Make snapshot `name` of the resource's source in `target`.

    The snapshot is built under a work name and renamed into place only when
    complete and flushed to disk. On any failure the work is removed and
    SnapshotFailed is raised: earlier snapshots are never touched.
    """
    facts = observe(resource)
    if not facts.source_exists:
        if os.path.exists(resource.source_dir):
            raise SnapshotFailed(f"source_dir {resource.source_dir} is not a directory")
        raise SnapshotFailed(missing_source_refusal(resource))
    refusal = None if allow_empty_source else empty_source_refusal(resource, facts)
    if refusal:
        raise SnapshotFailed(refusal)
    if facts.same_filesystem is False and resource.cross_fs is CrossFs.FAIL:
        raise SnapshotFailed(cross_fs_refusal(resource, facts))
    with locked_target(target) as target_fd:
        facts = replace(facts, target_exists=True, snapshots=list_snapshots(target))
        # Under the lock, look again: an apply racing ours from another state
        # directory may have just filled this window.
        moment = snapshot_time(name)
        assert moment is not None
        taken = snapshot_in_window(facts.snapshots, moment, resource.schedule)
        if taken is not None:
            raise SnapshotFailed(
                f"window of {name} already has snapshot {taken}, made by a concurrent apply"
            )
        work = PARTIAL_PREFIX + name
        resume = adopt_leftovers(target_fd, work)
        reference = facts.snapshots[-1] if facts.snapshots else None
        reference_manifest = open_manifest(target, reference) if reference else None
        writer = ManifestWriter(target_fd, name, resource.source_dir)
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
        )
        if not resume:
            os.mkdir(work, 0o700, dir_fd=target_fd)
        try:
            work_fd = fs.open_directory(work, target_fd)
            try:
                with _open_roots(resource, facts) as (source_fd, reference_fd):
                    walk.run(source_fd, reference_fd, work_fd)
                fs.sync_filesystem(work_fd)
            finally:
                os.close(work_fd)
            # The manifest is complete on disk before the snapshot has its name.
            writer.publish()
            os.rename(work, name, src_dir_fd=target_fd, dst_dir_fd=target_fd)
            os.fsync(target_fd)
        except BaseException as error:
            writer.discard()
            fs.remove_tree(work, target_fd)
            if isinstance(error, fs.OutOfSpace):
                raise SnapshotFailed(f"{error}; partial snapshot removed") from None
            if isinstance(error, OSError):
                where = f" ({error.filename})" if error.filename else ""
                raise SnapshotFailed(
                    f"snapshot failed: {error.strerror}{where}; partial snapshot removed"
                ) from None
            raise
        finally:
            if reference_manifest is not None:
                reference_manifest.close()
        remove_orphans(target_fd, set(list_snapshots(target)))
    walk.report.reference_files = facts.reference_files
    return walk.report


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
            f"the snapshot would copy {format_bytes(facts.prediction.bytes_to_copy)}, leaving "
            f"{format_bytes(max(after, 0))} free on {facts.target_filesystem}, below "
            f"min_free_space {format_bytes(resource.min_free_space)}"
        )
    return None


def free_after_snapshot(facts: Facts) -> int | None:
    """Return the free bytes the target would keep after the predicted copy."""
    if facts.free_bytes is None or facts.prediction is None:
        return None
    return facts.free_bytes - facts.prediction.bytes_to_copy


def cross_fs_refusal(resource: Resource, facts: Facts) -> str:
    return (
        f"source_dir {resource.source_dir} is on {facts.source_filesystem} but target_path "
        f"{resource.target_path} is on {facts.target_filesystem}: hard links cannot cross "
        f"filesystems. Put target_path on the source's filesystem, or set cross_fs: copy "
        f"(copy every file on every run), warn (the same, warning once) or link (link "
        f"unchanged files to the previous snapshot)"
    )


def prune(target: str, names: list[str]) -> tuple[list[str], int]:
    """Remove the named snapshots from `target`; return those removed and
    the bytes that freed.

    Each is first renamed out of the snapshot namespace, so a prune killed
    half-way never leaves a partly deleted directory under a snapshot name.
    """
    removed = []
    with locked_target(target) as target_fd:
        freed = _bytes_freed(target, names)
        for name in names:
            directory = _existing_directory(target, name)
            if directory is None:
                continue
            doomed = PRUNING_PREFIX + name
            if directory != doomed:
                os.rename(directory, doomed, src_dir_fd=target_fd, dst_dir_fd=target_fd)
            fs.remove_tree(doomed, target_fd)
            remove_manifest(target_fd, name)
            removed.append(name)
        os.fsync(target_fd)
    return removed, freed


def format_bytes(count: int) -> str:
    """Return a byte count for humans, 1024-based: '512 B', '1.5 GiB'."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"

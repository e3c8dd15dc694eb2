"""Read-only audits of snapshots: verify against manifests, diff two snapshots.

Both walk directories one at a time through descriptors opened with
O_NOFOLLOW, so memory follows the largest directory, not the tree, and a
symlink planted in a snapshot is never followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from hardsnap.providers import platform
from hardsnap.providers.audit.metadata import compare
from hardsnap.providers.audit.versions import Witness, changed_copies, metadata_agrees
from hardsnap.providers.files import digest, tree
from hardsnap.providers.files.capabilities import Keeps
from hardsnap.providers.files.compact import IntTable
from hardsnap.providers.files.descend import Descent, Level, Moved
from hardsnap.providers.files.kinds import kind_of
from hardsnap.providers.files.report import PATHS_KEPT
from hardsnap.providers.manifest.format import Entry, ManifestError, join
from hardsnap.providers.manifest.reader import ManifestReader


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a snapshot: `problem` is missing, changed,
    replaced, corrupted, unexpected or manifest."""

    path: str
    problem: str
    detail: str
    # corrupted: the inode whose content is bad (every snapshot linking it
    # shares the damage; the next snapshot copies the file afresh).
    inode: int | None = None


@dataclass
class Verification:
    snapshot: str
    content: bool
    files: int = 0
    findings: list[Finding] = field(default_factory=list)
    # Metadata of the source that the target's filesystem did not keep:
    # no damage, but never "clean" without saying so.
    not_kept: list[Finding] = field(default_factory=list)
    not_kept_total: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings


# Content digests already computed, by (inode, ctime, sparse digest or not).


def verify_snapshot(
    target: str, snapshot: str, content: bool, hashes: IntTable | None = None
) -> Verification:
    """Check one snapshot against its manifest: metadata of every file, and
    with `content` its digest too. `hashes` caches content digests across
    snapshots that share files."""
    result = Verification(snapshot, content)
    hashes = IntTable() if hashes is None else hashes
    try:
        target_fd = platform.open_directory(target)
    except OSError as error:
        result.findings.append(Finding("", "missing", f"target {target}: {error.strerror}"))
        return result
    try:
        manifest = ManifestReader.in_target(target_fd, snapshot, target)
    except ManifestError as error:
        os.close(target_fd)
        result.findings.append(Finding("", "manifest", str(error)))
        return result
    try:
        root_fd = platform.open_directory(snapshot, target_fd)
    except OSError as error:
        manifest.close()
        result.findings.append(Finding("", "missing", f"snapshot {snapshot}: {error.strerror}"))
        return result
    finally:
        os.close(target_fd)
    if content:
        # Room for every file at once (snapshots verified together share most).
        hashes.reserve(manifest.files)
    descent = Descent([root_fd])
    try:
        keeps = Keeps.from_json(manifest.header().get("keeps"))
        for directory in manifest.directories():
            try:
                fd = descent.goto(directory, REQUIRED).fds[0]
            except OSError as error:
                result.findings.append(
                    Finding(directory, "missing", f"directory: {error.strerror}")
                )
                result.findings.extend(
                    Finding(entry.path, "missing", "") for entry in manifest.entries_of(directory)
                )
                if isinstance(error, Moved):
                    descent.close()  # start again from the snapshot's root
                continue
            assert fd is not None
            _verify_directory(result, fd, directory, manifest, hashes, keeps)
    except ManifestError as error:
        result.findings.append(Finding("", "manifest", str(error)))
    finally:
        descent.close()
        os.close(root_fd)
        manifest.close()
    return result


def _verify_directory(
    result: Verification,
    fd: int,
    directory: str,
    manifest: ManifestReader,
    hashes: IntTable,
    keeps: Keeps,
) -> None:
    """Check one directory against its manifest block, streamed: each entry
    is looked up by name, then the directory is listed for what the block
    lacks (known by the hashes of its names): memory does not grow with
    the directory's width."""
    listed = IntTable(manifest.count_lines(directory))
    for entry in manifest.entries_of(directory):
        name = entry.path.rpartition("/")[2] if directory else entry.path
        listed.set(hash(name), 1)
        result.files += 1
        try:
            info = platform.stat_at(name, fd)
        except FileNotFoundError:
            info = None
        if info is None or stat.S_IFMT(info.st_mode) != entry.kind:
            result.findings.append(Finding(entry.path, "missing", ""))
            continue
        if info.st_ino != entry.inode:
            result.findings.append(
                Finding(entry.path, "replaced", f"inode {entry.inode} -> {info.st_ino}")
            )
            continue
        drift, dropped = compare(entry, info, keeps)
        if dropped:
            result.not_kept_total += 1
            if len(result.not_kept) < PATHS_KEPT:
                result.not_kept.append(Finding(entry.path, "not kept", dropped))
        if entry.target is not None and not drift:
            text = platform.readlink_at(name, fd)
            if text != entry.target:
                drift = f"symlink target {entry.target!r} -> {text!r}"
        if drift:
            shared = f"; shared by {info.st_nlink} links" if info.st_nlink > 1 else ""
            result.findings.append(Finding(entry.path, "changed", drift + shared))
            continue
        if result.content and entry.sha256 is not None:
            _check_content(result, fd, name, entry, info, hashes)
    with os.scandir(fd) as scan:
        for found in scan:
            if hash(found.name) in listed:
                continue
            path = join(directory, found.name)
            try:
                info = found.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                if not manifest.has_directory(path):
                    result.findings.append(Finding(path, "unexpected", "directory"))
            else:
                kind = "file" if stat.S_ISREG(info.st_mode) else kind_of(info.st_mode)
                result.findings.append(Finding(path, "unexpected", kind))


def _check_content(
    result: Verification,
    fd: int,
    name: str,
    entry: Entry,
    info: os.stat_result,
    hashes: IntTable,
) -> None:
    """Hash a file and compare it with its manifest's digest; `hashes`
    remembers (compactly: hashes of both) what each inode hashed to, so a
    file shared by several snapshots is read once."""
    assert entry.sha256 is not None
    # A manifest older than the sparse digest recorded a file with holes
    # by its whole SHA-256: checked as it was recorded.
    sparse = digest.is_sparse_digest(entry.sha256)
    key = hash((info.st_ino, info.st_ctime_ns, sparse))
    known = hashes.get(key)
    if known is None:
        hashed = digest.hash_file(name, fd, sparse)
        if hashed is None:
            result.findings.append(Finding(entry.path, "missing", "unreadable"))
            return
        known = hash(hashed)
        hashes.set(key, known)
    if known != hash(entry.sha256):
        result.findings.append(
            Finding(entry.path, "corrupted", "content differs from its SHA-256", info.st_ino)
        )


@dataclass(frozen=True)
class Change:
    """A file added, removed or changed between two snapshots."""

    path: str
    change: str
    size_before: int | None
    size_after: int | None


@dataclass
class Difference:
    before: str
    after: str
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0
    # Why files copied anew were shown as changed unchecked (a manifest
    # missing or damaged).
    warnings: list[str] = field(default_factory=list)

    def count(self, change: str) -> int:
        return sum(1 for item in self.changes if item.change == change)


# Both snapshots must have a directory the diff enters; the snapshot one
# that verify enters.
BOTH = (True, True)
REQUIRED = (True,)


def diff_snapshots(target: str, before: str, after: str) -> Difference:
    """Files added, removed and changed from snapshot `before` to `after`.
    Hard-linked (same inode) means unchanged, so only directory listings
    are read; a file copied anew is unchanged when the two manifests vouch
    for the same content and metadata (versions.py). Any depth in a
    bounded number of descriptors."""
    result = Difference(before, after)
    target_fd = platform.open_directory(target)
    try:
        before_root = platform.open_directory(before, target_fd)
        try:
            after_root = platform.open_directory(after, target_fd)
        except BaseException:
            os.close(before_root)
            raise
        witnesses = (Witness(target_fd, target, before), Witness(target_fd, target, after))
    finally:
        os.close(target_fd)
    descent = Descent([before_root, after_root])
    try:
        _diff_directory(result, descent.top, "", witnesses)
        while True:
            level = descent.top
            if level.pending:
                opened = descent.descend(level.pending.pop(), BOTH)
                _diff_directory(result, opened, descent.path(), witnesses)
            elif len(descent.levels) > 1:
                descent.ascend()
            else:
                break
    finally:
        descent.close()
        os.close(before_root)
        os.close(after_root)
        for witness in witnesses:
            witness.close()
    result.changes.sort(key=lambda item: item.path)
    result.warnings = [
        f"{witness.problem}: files copied anew are shown as changed, unchecked"
        for witness in witnesses
        if witness.problem
    ]
    return result


def _diff_directory(
    result: Difference, level: Level, directory: str, witnesses: tuple[Witness, Witness]
) -> None:
    """Compare one directory of both snapshots; queue the subdirectories
    both have on `level`. Streamed: each entry of the newer snapshot is
    looked up in the older by name, then the older's listed for what is
    gone, so memory does not grow with the directory's width."""
    before_fd, after_fd = level.fds
    assert before_fd is not None and after_fd is not None
    # Files whose inode differs but metadata agrees: the manifests decide.
    copies: dict[str, tuple[os.stat_result, os.stat_result]] = {}
    for name, now in _entries(after_fd):
        was = _lstat(name, before_fd)
        _compare(result, level, directory, name, was, now, copies)
    for name, was in _entries(before_fd):
        if _lstat(name, after_fd) is None:
            _compare(result, level, directory, name, was, None, copies)
    if copies:
        before, after = witnesses
        old = {name: pair[0] for name, pair in copies.items()}
        new = {name: pair[1] for name, pair in copies.items()}
        changed = changed_copies(
            directory, set(copies), (before, before_fd, old), (after, after_fd, new)
        )
        result.unchanged += len(copies) - len(changed)
        result.changes.extend(
            Change(join(directory, name), "changed", old[name].st_size, new[name].st_size)
            for name in changed
        )


def _compare(
    result: Difference,
    level: Level,
    directory: str,
    name: str,
    was: os.stat_result | None,
    now: os.stat_result | None,
    copies: dict[str, tuple[os.stat_result, os.stat_result]],
) -> None:
    """Count one name of a directory: unchanged, changed, added, removed,
    a copy for the manifests to judge, or a subdirectory to enter."""
    path = join(directory, name)
    # Files, symlinks and special files alike: one inode each.
    was_file = was is not None and not stat.S_ISDIR(was.st_mode)
    now_file = now is not None and not stat.S_ISDIR(now.st_mode)
    was_dir = was is not None and stat.S_ISDIR(was.st_mode)
    now_dir = now is not None and stat.S_ISDIR(now.st_mode)
    before_fd, after_fd = level.fds
    assert before_fd is not None and after_fd is not None
    if was_file and now_file:
        assert was is not None and now is not None
        if was.st_ino == now.st_ino:
            result.unchanged += 1
        elif metadata_agrees(was, now):
            copies[name] = (was, now)
        else:
            result.changes.append(Change(path, "changed", was.st_size, now.st_size))
    elif was_file:
        assert was is not None
        result.changes.append(Change(path, "removed", was.st_size, None))
    elif now_file:
        assert now is not None
        result.changes.append(Change(path, "added", None, now.st_size))
    if was_dir and now_dir:
        level.pending.append(name)
    elif was_dir:
        result.changes.extend(_whole_directory(before_fd, name, directory, "removed"))
    elif now_dir:
        result.changes.extend(_whole_directory(after_fd, name, directory, "added"))


def _entries(fd: int) -> Iterator[tuple[str, os.stat_result]]:
    """Each entry of an open directory with its lstat, streamed."""
    with os.scandir(fd) as scan:
        for entry in scan:
            try:
                yield entry.name, entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return platform.stat_at(name, dir_fd)
    except FileNotFoundError:
        return None


def _whole_directory(parent_fd: int, name: str, directory: str, change: str) -> list[Change]:
    """A directory only one snapshot has: every file below it added or removed."""
    return [
        Change(
            join(directory, path),
            change,
            None if change == "added" else info.st_size,
            info.st_size if change == "added" else None,
        )
        for path, info in tree.entries_below(parent_fd, name)
    ]

"""The snapshot engine: walk the source once, link what is unchanged, copy the rest.

Everything is done relative to open directory descriptors (opened with
O_NOFOLLOW below the roots), so a symlink swapped in mid-run is never
followed and path length never limits the depth of a tree. The walk streams
each directory with os.scandir; nothing holds the whole tree in memory.

The same walk also runs dry, to predict for `plan` how many files a
snapshot will copy and link.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fnmatch
import json
import mmap
import os
import re
import signal
import stat
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn

from hardsnap.providers import fs, tree
from hardsnap.providers.entries import (
    Kinds,
    Mounts,
    is_kept,
    kind_of,
    make_special,
    make_symlink,
    unchanged_in_reference,
)
from hardsnap.providers.manifest import ManifestError, ManifestReader, ManifestWriter

# Free space is re-read from the filesystem at least this often while copying.
SPACE_RECHECK_BYTES = 256 << 20
# Progress is reported after this many files, or this many bytes copied.
PROGRESS_FILES = 512
PROGRESS_BYTES = 16 << 20

# Copies this big or bigger are hashed by helper threads while the walk
# goes on (pread and hashlib let go of the GIL), so copying and hashing
# overlap and two cores hash at once: what a tree of big files, or reflinks
# that copy nothing, is bound by.
HASH_IN_THREAD_BYTES = 1 << 20
HASH_THREADS = 2
# At most this many copies wait for their hash (each holds a descriptor).
HASH_BACKLOG = 32

# Every this many bytes copied, a thread starts flushing the target
# filesystem, so the disk writes while the walk goes on and the sync that
# must come before the snapshot is named has little left to do.
FLUSH_AHEAD_BYTES = 64 << 20

# Told (files done, bytes copied) as a walk goes.
Progress = Callable[[int, int], None]
# A file's SHA-256: known, being computed, or None when no manifest is kept.
Sha256 = str | Future[str] | None
# A file placed in the snapshot: its stat there, and its SHA-256.
Placed = tuple[os.stat_result, Sha256]


@dataclass(frozen=True)
class Skip:
    """An entry of the source left out of the snapshot, and why."""

    path: str
    reason: str


@dataclass
class SnapshotReport:
    """What a snapshot walk did (or, dry, would do)."""

    files_copied: int = 0
    files_linked: int = 0
    bytes_copied: int = 0
    skipped: list[Skip] = field(default_factory=list)
    # Files that kept changing while they were copied: kept, but reported.
    unstable: list[str] = field(default_factory=list)
    # Files in the reference snapshot, when its manifest tells.
    reference_files: int | None = None
    # Files a killed or interrupted run had finished, kept (counted in the
    # copies and links above too).
    files_kept: int = 0
    # Space the copies take on disk: allocated blocks, not apparent sizes
    # (a sparse file costs what it occupies, a small file a whole block).
    space_needed: int = 0
    # Files the reference had unchanged but that could not be linked to it
    # (an immutable inode, too many links...), copied instead: how many,
    # and the first one with its reason.
    link_failures: int = 0
    link_failure: str | None = None
    # Warnings about leftovers of earlier runs that could not be removed.
    leftovers: list[str] = field(default_factory=list)
    # Symlinks and special files (FIFOs, devices) kept, and those left out
    # by the resource's settings (sockets are always left out).
    symlinks: int = 0
    special_files: int = 0
    symlinks_skipped: int = 0
    special_files_skipped: int = 0

    def add(self, other: SnapshotReport) -> None:
        """Count in what another walker of the same snapshot did."""
        self.files_copied += other.files_copied
        self.files_linked += other.files_linked
        self.bytes_copied += other.bytes_copied
        self.skipped.extend(other.skipped)
        self.unstable.extend(other.unstable)
        self.files_kept += other.files_kept
        self.space_needed += other.space_needed
        self.link_failures += other.link_failures
        self.link_failure = self.link_failure or other.link_failure
        self.symlinks += other.symlinks
        self.special_files += other.special_files
        self.symlinks_skipped += other.symlinks_skipped
        self.special_files_skipped += other.special_files_skipped

    def to_json(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["skipped"] = [[skip.path, skip.reason] for skip in self.skipped]
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> SnapshotReport:
        skipped = [Skip(path, reason) for path, reason in document.pop("skipped")]
        return cls(skipped=skipped, **document)

    def link_failure_warning(self) -> str | None:
        """One warning for every file that could not be linked to the reference."""
        if not self.link_failures:
            return None
        return (
            f"{self.link_failures} unchanged file(s) could not be hard-linked to the "
            f"reference snapshot and were copied instead (first: {self.link_failure})"
        )

    def shrink_warning(self) -> str | None:
        """A warning when the source lost more than half its files."""
        files = self.files_copied + self.files_linked
        if self.reference_files and files * 2 < self.reference_files:
            return (
                f"the source holds {files} files, the newest snapshot {self.reference_files}: "
                f"more than half are gone since"
            )
        return None


# The worker's running counts, shared with its parent: files, bytes copied.
COUNTS = struct.Struct("QQ")
# What a worker says first: it has closed the descriptors it must not hold.
READY = b"R"


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this (worker) process when its parent dies, so a
    killed apply never leaves a walker writing behind it."""
    fs.die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the call above
        os._exit(1)


def _close_all_but(keep: set[int]) -> None:
    """Close every inherited descriptor not in `keep`."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class _Worker:
    """A forked walker: its pid and the pipe its result comes back on."""

    pid: int
    read_fd: int
    done: bool = False

    def wait(self) -> tuple[Any, ...]:
        chunks = []
        while True:
            data = os.read(self.read_fd, 1 << 20)
            if not data:
                break
            chunks.append(data)
        os.close(self.read_fd)
        _, status = os.waitpid(self.pid, 0)
        self.done = True
        if not chunks:
            return ("failed", "died", f"exit status {status}", None)
        result: tuple[Any, ...] = tuple(json.loads(b"".join(chunks)))
        return result

    def stop(self) -> None:
        """Kill and reap a worker not joined (the walk failed first)."""
        if self.done:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.read_fd)
        self.done = True


class SnapshotFailed(Exception):
    """The snapshot could not be completed; its partial work has been removed."""


class Excludes:
    """Exclude patterns, matched as SPEC.md says.

    A pattern with a `/` is matched (fnmatch) against the path relative to
    the source, anchored at the source root; one without matches any single
    name at any depth. A trailing `/` restricts a pattern to directories.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        name_any: list[str] = []
        path_any: list[str] = []
        name_dirs: list[str] = []
        path_dirs: list[str] = []
        for pattern in patterns:
            directories_only = pattern.endswith("/")
            pattern = pattern.rstrip("/")
            if not pattern:
                continue
            anchored = "/" in pattern
            pattern = pattern.lstrip("/")
            if anchored:
                (path_dirs if directories_only else path_any).append(pattern)
            else:
                (name_dirs if directories_only else name_any).append(pattern)
        self._name = _compile(name_any)
        self._path = _compile(path_any)
        self._name_dir = _compile(name_any + name_dirs)
        self._path_dir = _compile(path_any + path_dirs)

    def file(self, relative: str, name: str) -> bool:
        return _hit(self._name, name) or _hit(self._path, relative)

    def directory(self, relative: str, name: str) -> bool:
        return _hit(self._name_dir, name) or _hit(self._path_dir, relative)


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL)


def _hit(pattern: re.Pattern[str] | None, text: str) -> bool:
    return pattern is not None and pattern.match(text) is not None


def is_unchanged(source: os.stat_result, reference: os.stat_result) -> bool:
    """Given the stats of a source file and of the reference snapshot's copy,
    return whether the copy can stand for it: a regular file of the same
    size, mtime (ns), permission bits and, as root, owner and group."""
    return (
        stat.S_ISREG(reference.st_mode)
        and source.st_size == reference.st_size
        and source.st_mtime_ns == reference.st_mtime_ns
        and stat.S_IMODE(source.st_mode) == stat.S_IMODE(reference.st_mode)
        and (
            not fs.IS_ROOT or (source.st_uid, source.st_gid) == (reference.st_uid, reference.st_gid)
        )
    )


@dataclass
class _Frame:
    """A directory being walked: its descriptors and the subdirectories left."""

    source_fd: int
    reference_fd: int | None
    # None in a dry walk.
    target_fd: int | None
    # Relative path of this directory with a trailing "/", "" at the root.
    prefix: str
    # The source directory's stat, given to the target directory when done.
    info: os.stat_result
    # Names only: a directory is stat'ed when entered (a listing of many
    # subdirectories costs their names, not their stats).
    subdirectories: list[str] = field(default_factory=list)
    # Resuming only: names in the target directory that this walk produced;
    # anything else there is left from an older source and is removed.
    kept: set[str] | None = None
    # (inode, SHA-256) by name of the reference manifest's files of this
    # directory, when there is one.
    reference_hashes: dict[str, tuple[int, str]] | None = None
    # A dry walk only: this directory in the work an interrupted run left,
    # to count what the next snapshot keeps of it.
    partial_fd: int | None = None

    def close(self) -> None:
        for fd in (self.source_fd, self.reference_fd, self.target_fd, self.partial_fd):
            if fd is not None:
                os.close(fd)

    def finished_fd(self) -> int | None:
        """Where files a killed run finished are: the target being built
        (resuming), or, in a dry walk, the work it left."""
        return self.target_fd if self.target_fd is not None else self.partial_fd


class Walk:
    """One pass over a source tree, building a snapshot into a target
    directory (or only counting, when there is no target).

    Files are handled while their directory is streamed; subdirectories are
    remembered and walked after, from an explicit stack, so depth is limited
    neither by Python's recursion nor by open scandir iterators.
    """

    def __init__(
        self,
        excludes: Excludes,
        link_unchanged: bool,
        min_free_space: int,
        skip_identity: tuple[int, int] | None,
        resume: bool = False,
        progress: Progress | None = None,
        manifest: ManifestWriter | None = None,
        reference_manifest: ManifestReader | None = None,
        workers: int = 1,
        corrupted: frozenset[int] = frozenset(),
        kinds: Kinds | None = None,
    ) -> None:
        self.manifest = manifest
        # What besides files and directories goes in; mounted filesystems.
        self.kinds = kinds or Kinds()
        self._mounts = Mounts()
        # Inodes of the reference that `verify --content` found corrupted:
        # their files are copied from the source, never linked.
        self.corrupted = corrupted
        # 2: a forked worker walks half of the top-level subdirectories.
        self.workers = workers
        # In a worker: files with several names, left to the parent, which
        # alone sees every name of an inode: (directory prefix, name).
        self._deferred: list[tuple[str, str]] | None = None
        # In the parent: the worker's running (files, bytes), for progress.
        self._worker_counts: mmap.mmap | None = None
        self.reference_manifest = reference_manifest
        self.excludes = excludes
        self.progress = progress
        self._next_progress = (PROGRESS_FILES, PROGRESS_BYTES)
        self.link_unchanged = link_unchanged
        self.min_free_space = min_free_space
        # (device, inode) of the target directory, never walked into.
        self.skip_identity = skip_identity
        # The target already holds part of this snapshot from a killed run.
        self.resume = resume
        self.report = SnapshotReport()
        self._space_fd: int | None = None
        self._budget = 0
        self._since_check = 0
        self._root_target_fd: int | None = None
        self._reference_made_ns = 0
        # Source inodes with several names: (device, inode) -> relative path
        # of their first name in the snapshot (and its hash), so later names
        # link to it.
        self._first_names: dict[tuple[int, int], tuple[str, Sha256]] = {}
        # Hashing of big copies: the threads (started on first use), and the
        # manifest lines waiting for a hash.
        self._hashers: ThreadPoolExecutor | None = None
        self._unwritten: deque[tuple[str, os.stat_result, Future[str]]] = deque()
        # Flushing ahead: bytes copied since the last flush began, and the
        # thread flushing (if any).
        self._unflushed = 0
        self._flusher: threading.Thread | None = None

    # -- entry point -----------------------------------------------------------

    def run(
        self,
        source_fd: int,
        reference_fd: int | None,
        target_fd: int | None,
        partial_fd: int | None = None,
    ) -> None:
        """Walk the source open as `source_fd`, linking against the reference
        snapshot, into the work directory `target_fd`; or, without one, only
        count, keeping in the count what the work directory of an
        interrupted run (`partial_fd`) already holds."""
        if target_fd is not None and self.min_free_space > 0:
            self._space_fd = target_fd
            self._recheck_space(0)
        self._root_target_fd = target_fd
        if reference_fd is not None:
            # The rename that completed the reference set its root's ctime.
            self._reference_made_ns = os.fstat(reference_fd).st_ctime_ns
        root = _Frame(
            source_fd,
            reference_fd,
            target_fd,
            "",
            os.fstat(source_fd),
            kept=set() if self.resume or partial_fd is not None else None,
            partial_fd=partial_fd,
        )
        worker = None
        try:
            self._scan(root)
            if self.workers > 1 and target_fd is not None and len(root.subdirectories) > 1:
                # A fork copies no thread: none may be left running.
                self._settle_threads()
                worker = self._start_worker(root)
            self._walk(root, worker)
            self._settle_threads()
        finally:
            if worker is not None:
                worker.stop()
            self._abandon_threads()
        if self.progress is not None:
            report = self.report
            self.progress(report.files_copied + report.files_linked, report.bytes_copied)

    def _walk(self, root: _Frame, worker: _Worker | None) -> None:
        """Walk everything below `root` from an explicit stack; leave the
        root itself last, after the worker (if any) is done."""
        stack = [root]
        try:
            while stack:
                frame = stack[-1]
                if frame.subdirectories:
                    child = self._enter(frame, frame.subdirectories.pop())
                    if child is not None:
                        stack.append(child)
                    continue
                if frame is root:
                    if worker is not None:
                        self._join(worker, root)
                        worker = None
                    if self._deferred is not None:
                        return  # a worker leaves the root to its parent
                stack.pop()
                self._leave(frame)
                if frame is not root:
                    frame.close()
        finally:
            for frame in stack:
                if frame is not root:
                    frame.close()

    # -- a second process --------------------------------------------------------

    def _start_worker(self, root: _Frame) -> _Worker:
        """Fork a worker that walks every second top-level subdirectory."""
        share = root.subdirectories[1::2]
        root.subdirectories = root.subdirectories[0::2]
        if root.kept is not None:
            root.kept.update(share)
        counts = mmap.mmap(-1, COUNTS.size)
        read_fd, write_fd = os.pipe()
        assert root.target_fd is not None
        # What the worker uses; it closes everything else at once, the
        # locks' descriptors above all (an flock lasts while any descriptor
        # of it is open: a worker must not hold one after its parent died).
        keep = {0, 1, 2, write_fd, root.source_fd, root.target_fd}
        if root.reference_fd is not None:
            keep.add(root.reference_fd)
        if self.manifest is not None:
            keep.add(self.manifest.directory_descriptor())
        if self.reference_manifest is not None:
            keep.add(self.reference_manifest.descriptor())
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _die_with_parent(parent)
            _close_all_but(keep)
            os.write(write_fd, READY)
            self._be_worker(root, share, write_fd, counts)
        os.close(write_fd)
        worker = _Worker(pid, read_fd)
        # Go on only once the worker holds no lock: were this process killed
        # from here on, its locks die with it.
        if os.read(read_fd, len(READY)) != READY:
            worker.stop()
            raise SnapshotFailed("the second walker did not start")
        self._worker_counts = counts
        return worker

    def _be_worker(
        self,
        root: _Frame,
        share: list[str],
        write_fd: int,
        counts: mmap.mmap,
    ) -> NoReturn:
        status = 1
        try:
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            self.report = SnapshotReport()
            self._deferred = []
            self._first_names = {}
            self._hashers, self._unwritten = None, deque()
            self._flusher, self._unflushed = None, 0
            self._next_progress = (PROGRESS_FILES, PROGRESS_BYTES)
            if self.manifest is not None:
                self.manifest = self.manifest.part(1)

            def publish(files: int, copied: int) -> None:
                counts[:] = COUNTS.pack(files, copied)

            self.progress = publish
            frame = _Frame(
                root.source_fd,
                root.reference_fd,
                root.target_fd,
                "",
                root.info,
                subdirectories=list(share),
                reference_hashes=root.reference_hashes,
            )
            self._walk(frame, None)
            self._settle_threads()
            if self.manifest is not None:
                self.manifest.finish_part()
            result: tuple[Any, ...] = ("done", self.report.to_json(), self._deferred)
            status = 0
        except BaseException as error:  # everything goes back to the parent
            result = ("failed", type(error).__name__, str(error), getattr(error, "errno", None))
        try:
            # ASCII JSON keeps names that are not UTF-8 (surrogate escapes) intact.
            data = json.dumps(result).encode("ascii")
            while data:
                data = data[os.write(write_fd, data) :]
        finally:
            os._exit(status)

    def _join(self, worker: _Worker, root: _Frame) -> None:
        """Wait for the worker, take over its counts and manifest share, then
        place the names it left (files with several names)."""
        # The worker's blocks go after this one: finish its lines first.
        self._write_unwritten()
        result = worker.wait()
        self._worker_counts = None
        if result[0] != "done":
            _, kind, message, error_number = result
            if kind == "OutOfSpace":
                raise fs.OutOfSpace(message)
            if error_number is not None:
                raise OSError(error_number, f"in the second walker: {message}")
            raise SnapshotFailed(f"the second walker failed: {kind}: {message}")
        _, report, deferred = result
        self.report.add(SnapshotReport.from_json(report))
        if self.manifest is not None:
            self.manifest.absorb(1)
        self._place_deferred(root, [(prefix, name) for prefix, name in deferred])

    def _place_deferred(self, root: _Frame, deferred: list[tuple[str, str]]) -> None:
        by_directory: dict[str, list[str]] = {}
        for prefix, name in deferred:
            by_directory.setdefault(prefix, []).append(name)
        assert root.target_fd is not None
        for prefix, names in by_directory.items():
            directory = prefix[:-1]
            source_fd = fs.open_below(root.source_fd, directory)
            frame = _Frame(source_fd, None, None, prefix, os.fstat(source_fd))
            try:
                frame.target_fd = fs.open_below(root.target_fd, directory)
                if root.reference_fd is not None:
                    with contextlib.suppress(OSError):
                        frame.reference_fd = fs.open_below(root.reference_fd, directory)
                self._start_block(frame)
                for name in names:
                    try:
                        info = os.stat(name, dir_fd=source_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        self._skip(prefix + name, "vanished before it was read")
                        continue
                    if stat.S_ISREG(info.st_mode):
                        self._file(name, prefix + name, info, frame)
                # New names changed the directory's mtime: give it back.
                fs.apply_metadata(frame.target_fd, frame.info, source_fd)
            finally:
                frame.close()

    def _tick(self) -> None:
        """Tell the progress listener, now and then, how far the walk is."""
        report = self.report
        files = report.files_copied + report.files_linked
        if files >= self._next_progress[0] or report.bytes_copied >= self._next_progress[1]:
            assert self.progress is not None
            self._next_progress = (files + PROGRESS_FILES, report.bytes_copied + PROGRESS_BYTES)
            copied = report.bytes_copied
            if self._worker_counts is not None:
                worker_files, worker_copied = COUNTS.unpack(self._worker_counts[:])
                files, copied = files + worker_files, copied + worker_copied
            self.progress(files, copied)

    # -- free space ------------------------------------------------------------

    def _recheck_space(self, needed: int) -> None:
        assert self._space_fd is not None
        free = fs.free_bytes(self._space_fd)
        self._budget = free - self.min_free_space
        self._since_check = 0
        if self._budget < needed:
            raise fs.OutOfSpace(
                f"free space on the target fell to {free} bytes, below min_free_space "
                f"({self.min_free_space} bytes)"
            )

    def _reserve(self, size: int) -> None:
        if self._space_fd is None:
            return
        if size > self._budget or self._since_check > SPACE_RECHECK_BYTES:
            self._recheck_space(size)
        self._budget -= size
        self._since_check += size

    # -- directories -----------------------------------------------------------

    def _skip(self, relative: str, reason: str) -> None:
        self.report.skipped.append(Skip(relative, reason))

    def _scan(self, frame: _Frame) -> None:
        """Stream one directory: handle its files now, queue its subdirectories."""
        self._start_block(frame)
        try:
            entries = os.scandir(frame.source_fd)
        except OSError as error:
            self._skip(frame.prefix.rstrip("/") or ".", f"unreadable directory: {error.strerror}")
            return
        with entries:
            for entry in entries:
                name = entry.name
                relative = frame.prefix + name
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    self._skip(relative, "vanished before it was read")
                    continue
                except OSError as error:
                    self._skip(relative, f"unreadable: {error.strerror}")
                    continue
                mode = info.st_mode
                if stat.S_ISREG(mode):
                    if not self.excludes.file(relative, name):
                        with _naming(relative):
                            self._file(name, relative, info, frame)
                        if self.progress is not None:
                            self._tick()
                elif stat.S_ISDIR(mode):
                    if (info.st_dev, info.st_ino) != self.skip_identity and not (
                        self.excludes.directory(relative, name)
                    ):
                        frame.subdirectories.append(name)
                elif not self.excludes.file(relative, name):
                    with _naming(relative):
                        self._other(name, relative, info, frame)
        frame.subdirectories.reverse()

    def _start_block(self, frame: _Frame) -> None:
        """Open the manifest block of a directory, with the reference's."""
        if frame.target_fd is None or self.manifest is None:
            return
        directory = frame.prefix[:-1]
        self._write_unwritten()
        self.manifest.directory(directory)
        if self.reference_manifest is not None and frame.reference_fd is not None:
            try:
                frame.reference_hashes = self.reference_manifest.hashes(directory)
            except (ManifestError, ValueError, TypeError, UnicodeDecodeError):
                # A damaged reference manifest: hash linked files afresh.
                self.reference_manifest = None

    def _enter(self, parent: _Frame, name: str) -> _Frame | None:
        relative = parent.prefix + name
        try:
            source_fd = fs.open_directory(name, parent.source_fd)
        except FileNotFoundError:
            self._skip(relative, "vanished before it was read")
            return None
        except OSError as error:
            self._skip(relative, f"unreadable directory: {error.strerror}")
            return None
        info = os.fstat(source_fd)
        if (info.st_dev, info.st_ino) == self.skip_identity:  # swapped in since listed
            os.close(source_fd)
            return None
        # The mount point of another filesystem: kept, as an empty directory,
        # when it is a kernel pseudo-filesystem or one_file_system says so.
        descend = info.st_dev == parent.info.st_dev or not (
            self.kinds.one_file_system or self._mounts.is_pseudo(info.st_dev)
        )
        frame = _Frame(source_fd, None, None, relative + "/", info)
        self.report.space_needed += fs.DIRECTORY_BYTES
        try:
            if parent.reference_fd is not None:
                with contextlib.suppress(OSError):
                    frame.reference_fd = fs.open_directory(name, parent.reference_fd)
            if parent.target_fd is not None:
                self._make_directory(name, parent)
                frame.target_fd = fs.open_directory(name, parent.target_fd)
                if self.resume:
                    frame.kept = set()
            elif parent.partial_fd is not None:
                with contextlib.suppress(OSError):
                    frame.partial_fd = fs.open_directory(name, parent.partial_fd)
                    frame.kept = set()
            if descend:
                self._scan(frame)
            else:
                self._start_block(frame)
        except BaseException:
            frame.close()
            raise
        return frame

    def _make_directory(self, name: str, parent: _Frame) -> None:
        assert parent.target_fd is not None
        self._reserve(fs.DIRECTORY_BYTES)
        try:
            os.mkdir(name, 0o700, dir_fd=parent.target_fd)
        except FileExistsError:
            if not self.resume:
                raise
            existing = os.stat(name, dir_fd=parent.target_fd, follow_symlinks=False)
            if not stat.S_ISDIR(existing.st_mode):
                os.unlink(name, dir_fd=parent.target_fd)
                os.mkdir(name, 0o700, dir_fd=parent.target_fd)
        if parent.kept is not None:
            parent.kept.add(name)

    def _leave(self, frame: _Frame) -> None:
        """A directory is complete: drop leftovers, then set its metadata
        (last, since adding entries changes a directory's mtime)."""
        if frame.target_fd is None:
            return
        if frame.kept is not None:
            self._remove_extras(frame.target_fd, frame.kept)
        with _naming(frame.prefix.rstrip("/") or "."):
            fs.apply_metadata(frame.target_fd, frame.info, frame.source_fd)

    def _remove_extras(self, target_fd: int, kept: set[str]) -> None:
        with os.scandir(target_fd) as entries:
            extras = [entry.name for entry in entries if entry.name not in kept]
        for name in extras:
            info = os.stat(name, dir_fd=target_fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                tree.remove_tree(name, target_fd)
            else:
                os.unlink(name, dir_fd=target_fd)

    # -- symlinks and special files ---------------------------------------------

    def _other(self, name: str, relative: str, info: os.stat_result, frame: _Frame) -> None:
        """A symlink, FIFO, device or socket: recreated when the resource
        keeps its kind, else counted as left out."""
        mode = info.st_mode
        symlink = stat.S_ISLNK(mode)
        if not is_kept(mode, self.kinds):
            if symlink:
                self.report.symlinks_skipped += 1
            elif not stat.S_ISSOCK(mode):
                self.report.special_files_skipped += 1
            self._skip(relative, f"{kind_of(mode)}: not copied")
            return
        text = None
        if symlink:
            try:
                text = os.readlink(name, dir_fd=frame.source_fd)
            except FileNotFoundError:
                self._skip(relative, "vanished before it was read")
                return
            except OSError as error:
                self._skip(relative, f"unreadable: {error.strerror}")
                return
        if frame.target_fd is not None:
            placed = self._place_other(name, info, text, frame)
            if frame.kept is not None:
                frame.kept.add(name)
            if self.manifest is not None:
                self.manifest.other(name, placed, text)
        if symlink:
            self.report.symlinks += 1
        else:
            self.report.special_files += 1

    def _place_other(
        self, name: str, info: os.stat_result, text: str | None, frame: _Frame
    ) -> os.stat_result:
        target_fd = frame.target_fd
        assert target_fd is not None
        if frame.kept is not None:  # resuming: whatever a killed run left goes
            with contextlib.suppress(FileNotFoundError):
                existing = os.stat(name, dir_fd=target_fd, follow_symlinks=False)
                if stat.S_ISDIR(existing.st_mode):
                    tree.remove_tree(name, target_fd)
                else:
                    os.unlink(name, dir_fd=target_fd)
        if self.link_unchanged and frame.reference_fd is not None:
            reference = unchanged_in_reference(name, info, text, frame.reference_fd)
            if reference is not None:
                try:
                    os.link(
                        name,
                        name,
                        src_dir_fd=frame.reference_fd,
                        dst_dir_fd=target_fd,
                        follow_symlinks=False,
                    )
                    return reference
                except OSError as error:
                    if error.errno in fs.NO_SPACE or error.errno in (errno.EROFS, errno.EIO):
                        raise
        if text is None:
            return make_special(name, info, target_fd)
        self._reserve(fs.BLOCK_BYTES)
        return make_symlink(name, info, text, target_fd)

    # -- files -----------------------------------------------------------------

    def _file(self, name: str, relative: str, info: os.stat_result, frame: _Frame) -> None:
        if self._deferred is not None and info.st_nlink > 1:
            self._deferred.append((frame.prefix, name))
            return
        placed = None
        if frame.kept is not None:
            placed = self._resumed(name, info, frame)
        several_names = info.st_nlink > 1
        if placed is None and several_names:
            placed = self._link_to_first_name(name, info, frame.target_fd)
        if placed is None:
            placed = self._link_to_reference(name, info, frame)
        if placed is None:
            if frame.target_fd is None:
                counted = self._count_copy(name, relative, info, frame.source_fd)
                if counted and several_names:
                    # Its other names will be linked to this copy.
                    self._first_names.setdefault((info.st_dev, info.st_ino), (relative, None))
                return
            placed = self._copy(name, relative, frame.source_fd, frame.target_fd)
            if placed is None:
                return
        if frame.target_fd is None:
            return
        snapshot_info, sha256 = placed
        if frame.kept is not None:
            frame.kept.add(name)
        if several_names:
            self._first_names.setdefault((info.st_dev, info.st_ino), (relative, sha256))
        if self.manifest is not None:
            self._record(name, snapshot_info, sha256)

    # -- hashing big copies in threads ---------------------------------------------

    def _hash_later(self, name: str, target_fd: int) -> Future[str]:
        """Start hashing a finished copy in a helper thread."""
        while len(self._unwritten) >= HASH_BACKLOG:
            self._write_oldest()
        if self._hashers is None:
            self._hashers = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="hardsnap-hash")
        # Reading must not touch the copy's atime, just set from the source.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOATIME
        fd = os.open(name, flags, dir_fd=target_fd)
        future = self._hashers.submit(_hash_and_close, fd)
        # A hash cancelled before it started (the walk failed) closes here.
        future.add_done_callback(lambda done: os.close(fd) if done.cancelled() else None)
        return future

    def _record(self, name: str, info: os.stat_result, sha256: Sha256) -> None:
        """Write a file's manifest line, or keep it until its hash is known
        (it must be written before its directory's block ends)."""
        assert self.manifest is not None
        if isinstance(sha256, Future):
            if not sha256.done():
                self._unwritten.append((name, info, sha256))
                return
            sha256 = sha256.result()
        self.manifest.file(name, info, sha256)

    def _write_oldest(self) -> None:
        assert self.manifest is not None
        name, info, future = self._unwritten.popleft()
        self.manifest.file(name, info, future.result())

    def _write_unwritten(self) -> None:
        while self._unwritten:
            self._write_oldest()

    def _settle_threads(self) -> None:
        """Write every line waiting for its hash; stop the hashing threads
        and wait for a flush ahead to end."""
        self._write_unwritten()
        if self._hashers is not None:
            self._hashers.shutdown()
            self._hashers = None
        self._stop_flushing()

    def _abandon_threads(self) -> None:
        """The walk failed: stop the threads, dropping hashes not started."""
        if self._hashers is not None:
            self._hashers.shutdown(cancel_futures=True)
            self._hashers = None
        self._unwritten.clear()
        self._stop_flushing()

    # -- flushing ahead ----------------------------------------------------------

    def _flush_ahead(self, copied: int) -> None:
        self._unflushed += copied
        if self._unflushed < FLUSH_AHEAD_BYTES:
            return
        if self._flusher is not None and self._flusher.is_alive():
            return
        assert self._root_target_fd is not None
        self._unflushed = 0
        self._flusher = threading.Thread(
            target=_flush_quietly, args=(self._root_target_fd,), name="hardsnap-flush"
        )
        self._flusher.start()

    def _stop_flushing(self) -> None:
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None

    def _reference_hash(self, name: str, frame: _Frame, inode: int) -> str | None:
        """The hash the reference's manifest has for `name`, if it is that inode."""
        if frame.reference_hashes is None:
            return None
        known = frame.reference_hashes.get(name)
        return known[1] if known is not None and known[0] == inode else None

    def _known_hash(self, name: str, frame: _Frame, dir_fd: int, inode: int) -> str | None:
        """The hash of a file already in a snapshot: from the reference's
        manifest when it has it, else read (only when keeping manifests)."""
        if self.manifest is None:
            return None
        known = self._reference_hash(name, frame, inode)
        return known if known is not None else fs.hash_file(name, dir_fd)

    def _resumed(self, name: str, info: os.stat_result, frame: _Frame) -> Placed | None:
        """Resuming: keep a file a killed run already finished, else clear the
        way (a dry walk only counts what would be kept)."""
        finished_fd = frame.finished_fd()
        if finished_fd is None:
            return None
        try:
            existing = os.stat(name, dir_fd=finished_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if is_unchanged(info, existing):
            self.report.files_kept += 1
            reference = None
            if frame.reference_fd is not None:
                with contextlib.suppress(OSError):
                    reference = os.stat(name, dir_fd=frame.reference_fd, follow_symlinks=False)
            if reference is not None and reference.st_ino == existing.st_ino:
                self.report.files_linked += 1
            else:
                self.report.files_copied += 1
                self.report.bytes_copied += existing.st_size
            return existing, self._known_hash(name, frame, finished_fd, existing.st_ino)
        if frame.target_fd is None:
            return None
        if stat.S_ISDIR(existing.st_mode):
            tree.remove_tree(name, frame.target_fd)
        else:
            os.unlink(name, dir_fd=frame.target_fd)
        return None

    def _link_to_first_name(
        self, name: str, info: os.stat_result, target_fd: int | None
    ) -> Placed | None:
        """Give a second name of a source inode the snapshot inode of its first."""
        first = self._first_names.get((info.st_dev, info.st_ino))
        if first is None:
            return None
        relative, sha256 = first
        linked = info
        if target_fd is not None:
            assert self._root_target_fd is not None
            try:
                fs.link_below(self._root_target_fd, relative, target_fd, name)
            except OSError as error:
                self._link_failed(error, relative)
                return None
            linked = os.stat(name, dir_fd=target_fd, follow_symlinks=False)
        self.report.files_linked += 1
        return linked, sha256

    def _link_to_reference(self, name: str, info: os.stat_result, frame: _Frame) -> Placed | None:
        reference_fd, target_fd = frame.reference_fd, frame.target_fd
        if not self.link_unchanged or reference_fd is None:
            return None
        try:
            reference = os.stat(name, dir_fd=reference_fd, follow_symlinks=False)
        except OSError:
            return None
        if not is_unchanged(info, reference) or reference.st_ino in self.corrupted:
            return None
        # Extended attributes change a file's ctime but not its mtime: a file
        # whose inode changed since the reference was made is compared on them.
        if info.st_ctime_ns >= self._reference_made_ns and not fs.same_xattrs(
            frame.source_fd, reference_fd, name
        ):
            return None
        if target_fd is not None:
            try:
                os.link(
                    name, name, src_dir_fd=reference_fd, dst_dir_fd=target_fd, follow_symlinks=False
                )
            except OSError as error:
                self._link_failed(error, frame.prefix + name)
                return None
        self.report.files_linked += 1
        return reference, self._known_hash(name, frame, reference_fd, reference.st_ino)

    def _link_failed(self, error: OSError, relative: str) -> None:
        """A file that could stay one inode with a snapshot's could not be
        linked: it is copied instead (reported once per run), unless the
        target itself is failing."""
        if error.errno in fs.NO_SPACE:
            raise fs.OutOfSpace(f"the target filesystem is full ({error.strerror})") from None
        if error.errno in (errno.EROFS, errno.EIO):
            raise error
        self.report.link_failures += 1
        if self.report.link_failure is None:
            self.report.link_failure = f"{relative}: {error.strerror}"

    def _count_copy(self, name: str, relative: str, info: os.stat_result, source_fd: int) -> bool:
        """A dry walk: count a copy as the real one will report it; return
        whether it will be copied (else it is skipped, unreadable)."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | fs.NO_ATIME
        try:
            fd = os.open(name, flags, dir_fd=source_fd)
        except OSError as error:
            self._skip(relative, f"unreadable: {error.strerror}")
            return False
        try:
            copied = fs.bytes_to_copy(fd, info)
        except OSError as error:
            self._skip(relative, f"unreadable: {error.strerror}")
            return False
        finally:
            os.close(fd)
        self.report.files_copied += 1
        self.report.bytes_copied += copied
        self.report.space_needed += fs.allocated_bytes(info)
        return True

    def _copy(self, name: str, relative: str, source_fd: int, target_fd: int) -> Placed | None:
        """Copy one file; return its copy's stat and hash, or None when it was
        skipped instead."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | fs.NO_ATIME
        try:
            input_fd = os.open(name, flags, dir_fd=source_fd)
        except FileNotFoundError:
            self._skip(relative, "vanished before it was copied")
            return None
        except OSError as error:
            self._skip(relative, f"unreadable: {error.strerror}")
            return None
        try:
            for attempt in range(2):
                before = os.fstat(input_fd)
                if not stat.S_ISREG(before.st_mode):
                    self._skip(relative, "no longer a regular file")
                    return None
                if not attempt:
                    self._reserve(fs.allocated_bytes(before))
                    self.report.space_needed += fs.allocated_bytes(before)
                if attempt:
                    os.unlink(name, dir_fd=target_fd)
                    os.lseek(input_fd, 0, os.SEEK_SET)
                # A big copy is hashed in a thread once it is final.
                in_thread = self.manifest is not None and before.st_size >= HASH_IN_THREAD_BYTES
                hash_now = self.manifest is not None and not in_thread
                copied, placed = self._write_copy(name, input_fd, target_fd, before, hash_now)
                after = os.fstat(input_fd)
                if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
                    break
            else:
                self.report.unstable.append(relative)
            self.report.files_copied += 1
            self.report.bytes_copied += copied
            self._flush_ahead(copied)
            if in_thread:
                return placed[0], self._hash_later(name, target_fd)
            return placed
        except OSError as error:
            if error.errno in fs.NO_SPACE:
                raise fs.OutOfSpace(f"the target filesystem is full ({error.strerror})") from None
            if error.errno in (errno.EIO, errno.EACCES):
                # A read failed part-way: leave no half-copied file behind.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=target_fd)
                self._skip(relative, f"unreadable: {error.strerror}")
                return None
            raise
        finally:
            os.close(input_fd)

    def _write_copy(
        self, name: str, input_fd: int, target_fd: int, info: os.stat_result, hash_now: bool
    ) -> tuple[int, Placed]:
        """Copy an open file to `name`; return the bytes copied, and the
        copy's stat and (with `hash_now`) the hash of what it holds."""
        output_fd = os.open(
            name,
            os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=target_fd,
        )
        try:
            copied = fs.copy_contents(input_fd, output_fd, info)
            sha256 = fs.hash_open_file(output_fd) if hash_now else None
            fs.apply_metadata(output_fd, info, input_fd)
            return copied, (os.fstat(output_fd), sha256)
        finally:
            os.close(output_fd)


@contextlib.contextmanager
def _naming(relative: str) -> Iterator[None]:
    """Give an error about one entry that names no file (an fchown, an
    fchmod on a descriptor) the entry's path in the source, so that the
    failure says where."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror, relative) from error


def _hash_and_close(fd: int) -> str:
    try:
        return fs.hash_open_file(fd)
    finally:
        os.close(fd)


def _flush_quietly(fd: int) -> None:
    """Flush a filesystem ahead of time; a failure shows in the final sync."""
    with contextlib.suppress(OSError):
        fs.sync_filesystem(fd)

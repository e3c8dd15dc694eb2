"""The snapshot engine: walk the source once, link what is unchanged, copy the rest.

The parts, each in its own module:
  directories.py  the per-directory walk (stream, place, make, enter)
  placing.py      placing one entry: keep, link, copy, recreate
  hashing.py      manifest lines, and big copies hashed in threads
  flushing.py     flushing ahead while copying; the shared free-space budget
  workers.py      the work queue and the worker processes

A snapshot starts in this process; once it has placed PARALLEL_AFTER_FILES
files (a small tree never pays for a fork), the directories it has not
entered yet go to a queue shared by N forked workers. Files with several
names are left by the workers to this process, which alone sees every name
of an inode and links each to the first.

The same walk also runs dry, in this process only, to predict for `plan`
how many files a snapshot will copy and link.
"""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Callable

from hardsnap.providers import platform
from hardsnap.providers.engine.directories import Progress, Walker, apply_late, gone
from hardsnap.providers.engine.excludes import Excludes
from hardsnap.providers.engine.flushing import SpaceBudget
from hardsnap.providers.engine.frames import Frame, FrameCursor
from hardsnap.providers.engine.hashing import Hashing
from hardsnap.providers.engine.placing import Placer
from hardsnap.providers.engine.rules import Rules, is_unchanged
from hardsnap.providers.engine.workers import Workers
from hardsnap.providers.files.capabilities import ALL, Keeps
from hardsnap.providers.files.kinds import Kinds
from hardsnap.providers.files.report import Skip, SnapshotFailed, SnapshotReport
from hardsnap.providers.manifest.reader import ManifestReader
from hardsnap.providers.manifest.writer import ManifestWriter

__all__ = [
    "Excludes",
    "Progress",
    "Skip",
    "SnapshotFailed",
    "SnapshotReport",
    "Walk",
    "is_unchanged",
]

# Files placed by this process before the rest of the walk is shared out.
PARALLEL_AFTER_FILES = 500


def available_cpus() -> int:
    """The CPUs this process may run on (on Linux its affinity, as taskset
    sets it); all of them where a system call filter refuses to tell."""
    try:
        return platform.cpu_count()
    except OSError:
        return os.cpu_count() or 1


class Walk:
    """One pass over a source tree, building a snapshot into a target
    directory (or only counting, when there is no target)."""

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
        reference_started_ns: int = 0,
        joined: frozenset[int] = frozenset(),
        keeps: Keeps = ALL,
    ) -> None:
        self.excludes = excludes
        self.link_unchanged = link_unchanged
        self.min_free_space = min_free_space
        # (device, inode) of the target directory, never walked into.
        self.skip_identity = skip_identity
        # The target already holds part of this snapshot from a killed run.
        self.resume = resume
        self.progress = progress
        self.manifest = manifest
        self.reference_manifest = reference_manifest
        # Worker processes for a real walk big enough to share.
        self.workers = workers
        self.corrupted = corrupted
        self.kinds = kinds or Kinds()
        # When the reference's walk began, and its inodes with several
        # names (both from its manifest; see placing.Rules).
        self.reference_started_ns = reference_started_ns
        self.joined = joined
        # What the target filesystem keeps (capabilities.probe).
        self.keeps = keeps
        self.report = SnapshotReport()

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
        rules = Rules(
            self.link_unchanged,
            self.kinds,
            self.corrupted,
            self.reference_started_ns,
            self.joined,
            self.keeps,
        )
        space = None
        if target_fd is not None and self.min_free_space > 0:
            space = SpaceBudget(target_fd, self.min_free_space, self.workers)
        hashing = Hashing(self.manifest if target_fd is not None else None)
        placer = Placer(rules, hashing, target_fd, space)
        walker = self._walker(placer, self.reference_manifest)
        self.report = placer.report
        root = Frame(
            source_fd,
            reference_fd,
            target_fd,
            "",
            os.fstat(source_fd),
            kept=set() if self.resume or partial_fd is not None else None,
            partial_fd=partial_fd,
            owned=False,
        )
        # What exists before the walk lives through it: the collector leaves
        # it alone, so a collection during the walk does not go over every
        # object of the program, and a forked worker's pages stay shared
        # with this process instead of being copied when the collector
        # touches them.
        gc.freeze()
        try:
            walker.scan(root)
            stack = [root]
            sharing = self.workers > 1 and target_fd is not None
            walker.walk(stack, _time_to_share(placer.report) if sharing else None)
            deferred = placer.deferred
            if stack:
                deferred.extend(self._share(walker, stack, space))
            placer.deferring = False
            self._place_deferred(walker, root, deferred)
            if self.manifest is not None and target_fd is not None:
                self.manifest.joined = placer.joined_inodes()
            placer.settle()
            if target_fd is not None:
                apply_late(walker.late, source_fd, target_fd, placer.skip, rules.keeps)
        finally:
            gc.unfreeze()
            placer.abandon()
            if space is not None:
                space.close()
        if self.progress is not None:
            report = self.report
            self.progress(report.files_done(), report.bytes_copied)

    def _walker(self, placer: Placer, reference_manifest: ManifestReader | None) -> Walker:
        return Walker(
            placer,
            self.excludes,
            self.skip_identity,
            self.resume,
            reference_manifest,
            self.progress,
            self.kinds.one_file_system,
        )

    def _share(
        self, walker: Walker, stack: list[Frame], space: SpaceBudget | None
    ) -> list[tuple[str, str]]:
        """Walk the directories left on `stack` with the worker processes,
        then take in what they did; return the files they left for the end."""
        root = stack[0]
        items = [frame.prefix + name for frame in stack for name in frame.subdirectories]
        for frame in stack:
            frame.subdirectories = []
            frame.close()
        stack.clear()
        placer = walker.placer
        placer.settle()
        manifest = placer.hashing.manifest
        keep = {root.source_fd}
        for fd in (root.reference_fd, root.target_fd):
            if fd is not None:
                keep.add(fd)
        if manifest is not None:
            keep.add(manifest.directory_descriptor())
        if walker.reference_manifest is not None:
            keep.add(walker.reference_manifest.descriptor())
        if space is not None:
            keep |= space.descriptors()
        reference_manifest = walker.reference_manifest

        def build(number: int) -> Walker:
            if space is not None:
                space.walker(number)
            part = manifest.part(number) if manifest is not None else None
            worker_placer = Placer(placer.rules, Hashing(part), root.target_fd, space)
            return self._walker(worker_placer, reference_manifest)

        workers = Workers(self.workers, root, build, keep)
        tick = None
        if self.progress is not None:
            progress = self.progress
            report = self.report

            def tick() -> None:
                files, copied = workers.counts()
                progress(
                    files + report.files_done(),
                    copied + report.bytes_copied,
                )

        results = workers.run(items, tick)
        deferred: list[tuple[str, str]] = []
        for number, (_, report_json, worker_deferred, late) in enumerate(results, 1):
            self.report.add(SnapshotReport.from_json(report_json))
            if manifest is not None:
                manifest.absorb(number)
            deferred.extend((prefix, name) for prefix, name in worker_deferred)
            walker.late.extend(late)
        return deferred

    def _place_deferred(self, walker: Walker, root: Frame, deferred: list[tuple[str, str]]) -> None:
        """Place the files every walker left for the end (see
        Placer.deferring), in the order of their paths, directory by
        directory, each directory's times given back after."""
        by_directory: dict[str, list[str]] = {}
        for prefix, name in sorted(deferred):
            by_directory.setdefault(prefix, []).append(name)
        deferred.clear()
        cursor = FrameCursor(root)
        try:
            for prefix, names in by_directory.items():
                self._place_in(walker, cursor, prefix, names)
        finally:
            cursor.close()

    @staticmethod
    def _place_in(walker: Walker, cursor: FrameCursor, prefix: str, names: list[str]) -> None:
        """Place deferred files `names` of directory `prefix`."""
        try:
            frame = cursor.frame(prefix[:-1])
        except OSError as error:
            # The directory went, or was swapped for a symlink, after a
            # worker listed it: its other entries stay as placed.
            for name in names:
                walker.placer.skip(prefix + name, gone(error))
            return
        if walker.resume or frame.partial_fd is not None:
            frame.kept = set()  # what a killed run made may be kept
        walker.start_block(frame)
        for name in names:
            try:
                info = platform.stat_at(name, frame.source_fd)
            except FileNotFoundError:
                walker.placer.skip(prefix + name, "vanished before it was read")
                continue
            if stat.S_ISREG(info.st_mode):  # still a regular file
                walker.placer.file(name, prefix + name, info, frame)
        # New names changed the directory's mtime: give it back (its other
        # entries were settled when it was walked).
        frame.kept = None
        walker.leave(frame)


def _time_to_share(report: SnapshotReport) -> Callable[[list[Frame]], bool]:
    """When the walk in this process has placed enough files, and has work
    left for more than one walker, to share the rest out."""

    def time_to_share(stack: list[Frame]) -> bool:
        placed = report.files_done()
        return (
            placed >= PARALLEL_AFTER_FILES
            and sum(len(frame.subdirectories) for frame in stack) >= 2
        )

    return time_to_share

"""Placing one entry of the source in the snapshot.

A regular file is kept as a killed run finished it, linked to the first
name of its inode, linked to the reference snapshot when unchanged, or
copied (its bytes hashed for the manifest). A symlink, FIFO or device is
recreated, or linked to the reference's when the same. Everything is done
relative to open directory descriptors, never through a path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import TYPE_CHECKING

from hardsnap.providers import platform
from hardsnap.providers.engine import copying, holding
from hardsnap.providers.engine.entries import place_other
from hardsnap.providers.engine.flushing import FlushAhead, SpaceBudget
from hardsnap.providers.engine.hashing import Hashing, Sha256
from hardsnap.providers.engine.rules import Rules, is_unchanged
from hardsnap.providers.files import digest, fs, holes, tree
from hardsnap.providers.files.capabilities import ALL
from hardsnap.providers.files.escaping import escape_name
from hardsnap.providers.files.kinds import is_kept, kind_of
from hardsnap.providers.files.report import SnapshotReport
from hardsnap.providers.manifest.writer import recorded

if TYPE_CHECKING:
    from hardsnap.providers.engine.frames import Frame

# A file placed in the snapshot: its stat there, and its SHA-256.
Placed = tuple[os.stat_result, Sha256]


class _Defer(Exception):
    """The entry must wait for the end of the walk (see Placer.deferring)."""


class Placer:
    """Places the entries of one walker (one process) in the snapshot."""

    def __init__(
        self,
        rules: Rules,
        hashing: Hashing,
        root_target_fd: int | None,
        space: SpaceBudget | None = None,
    ) -> None:
        self.rules = rules
        self.report = SnapshotReport()
        self.hashing = hashing
        self.space = space
        self.flush = FlushAhead(root_target_fd)
        self._root_target_fd = root_target_fd
        # Source inodes with several names: (device, inode) -> relative path
        # of their first name in the snapshot (and its hash), so later names
        # link to it.
        self._first_names: dict[tuple[int, int], tuple[str, Sha256]] = {}
        # While walking, files whose placing depends on other names (several
        # names in the source, or a reference inode with several names) wait
        # as (directory prefix, name): the parent places them all at the end,
        # sorted, so that which name is first, and so what is copied and
        # what linked, is the same whatever the walk's order, the number of
        # processes, or whether the walk is dry (plan) or real.
        self.deferring = True
        self.deferred: list[tuple[str, str]] = []
        # Reference inodes of `rules.joined` -> the source inode given it.
        self._claims: dict[int, tuple[int, int]] = {}
        # Snapshot inode -> names placed, for files with several source names.
        self._names_placed: dict[int, int] = {}

    def settle(self) -> None:
        """Write every manifest line waiting for its hash and stop this
        walker's threads (hashing, flushing ahead): before a fork, which
        copies no thread, and when the walk is done."""
        self.hashing.settle()
        self.flush.stop()

    def abandon(self) -> None:
        """The walk failed: stop the threads, dropping hashes not started."""
        self.hashing.abandon()
        self.flush.stop()

    def skip(self, relative: str, reason: str) -> None:
        self.report.skip(relative, reason)

    def held(self, name: str, relative: str, mode: int, frame: Frame) -> bool:
        """Whether the target can hold this entry; if not, it is skipped.
        (Where it holds everything, the walk does not ask.)"""
        keeps = self.rules.keeps
        if keeps.folds_case and frame.folded is None:
            frame.folded = set()
        reason = holding.refusal(name, mode, keeps, frame.folded)
        if reason is not None:
            self.skip(relative, reason)
        return reason is None

    def reserve(self, size: int) -> None:
        if self.space is not None:
            self.space.reserve(size)

    # -- regular files ---------------------------------------------------------

    def file(self, name: str, relative: str, info: os.stat_result, frame: Frame) -> None:
        """Place the regular file `name` of the directory `frame`."""
        several_names = info.st_nlink > 1
        try:
            if several_names and self.deferring:
                raise _Defer
            self._place_file(name, relative, info, frame, several_names)
        except _Defer:
            self.deferred.append((frame.prefix, name))
            if frame.kept is not None:
                frame.kept.add(name)  # resuming: what a killed run made waits too

    def joined_inodes(self) -> list[int]:
        """The snapshot inodes given several names (for its manifest)."""
        return sorted(inode for inode, names in self._names_placed.items() if names > 1)

    def _may_share(self, inode: int, info: os.stat_result) -> bool:
        """Whether the source file `info` may be one inode with the snapshot
        inode `inode`: not when that inode has several names in the
        reference and another source inode has it already. Raise _Defer
        while deferring such a file (only the parent sees every claim)."""
        if inode not in self.rules.joined:
            return True
        if self.deferring:
            raise _Defer
        source = (info.st_dev, info.st_ino)
        return self._claims.setdefault(inode, source) == source

    def _place_file(
        self, name: str, relative: str, info: os.stat_result, frame: Frame, several_names: bool
    ) -> None:
        placed = None
        if frame.kept is not None:
            placed = self._resumed(name, info, frame)
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
            inode = snapshot_info.st_ino
            self._names_placed[inode] = self._names_placed.get(inode, 0) + 1
        keeps = self.rules.keeps
        line = snapshot_info if keeps is ALL else recorded(snapshot_info, info, keeps)
        self.hashing.file(name, line, sha256)

    def _known_hash(self, name: str, frame: Frame, dir_fd: int, info: os.stat_result) -> str | None:
        """The digest of a file already in a snapshot (`info` its stat):
        from the reference's manifest when it has it, else read (only when
        keeping manifests). A file with holes that a manifest older than
        the sparse digest hashed whole is hashed again, data only, so that
        later verifies skip its holes."""
        if self.hashing.manifest is None:
            return None
        if frame.reference_hashes is not None:
            known = frame.reference_hashes.get(name)
            if known is not None and known[0] == info.st_ino:
                if holes.is_sparse(info):
                    return digest.upgraded(name, dir_fd, known[1])
                return known[1]
        return digest.hash_file(name, dir_fd)

    def _resumed(self, name: str, info: os.stat_result, frame: Frame) -> Placed | None:
        """Resuming: keep a file a killed run already finished, else clear the
        way (a dry walk only counts what would be kept)."""
        finished_fd = frame.finished_fd()
        if finished_fd is None:
            return None
        try:
            existing = platform.stat_at(name, finished_fd)
        except FileNotFoundError:
            return None
        # Kept as a killed run finished it, when the source has not changed
        # since, extended attributes included (when that run began is not
        # known: they are always compared).
        if (
            is_unchanged(info, existing, self.rules.keeps)
            and existing.st_ino not in self.rules.corrupted
            and (not self.rules.keeps.xattrs or fs.same_xattrs(frame.source_fd, finished_fd, name))
            and self._may_share(existing.st_ino, info)
        ):
            self.report.files_kept += 1
            return existing, self._known_hash(name, frame, finished_fd, existing)
        if frame.target_fd is None:
            return None
        if stat.S_ISDIR(existing.st_mode):
            tree.remove_tree(name, frame.target_fd)
        else:
            platform.unlink_at(name, frame.target_fd)
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
            linked = platform.stat_at(name, target_fd)
        self.report.files_linked += 1
        return linked, sha256

    def _link_to_reference(self, name: str, info: os.stat_result, frame: Frame) -> Placed | None:
        reference_fd, target_fd = frame.reference_fd, frame.target_fd
        keeps = self.rules.keeps
        if not self.rules.link_unchanged or reference_fd is None:
            return None
        try:
            reference = platform.stat_at(name, reference_fd)
        except OSError:
            return None
        if not is_unchanged(info, reference, keeps) or reference.st_ino in self.rules.corrupted:
            return None
        # Extended attributes change a file's ctime but not its mtime: a file
        # whose inode changed since the reference's walk began is compared
        # on them.
        recent = info.st_ctime_ns >= self.rules.reference_started_ns
        if recent and keeps.xattrs and not fs.same_xattrs(frame.source_fd, reference_fd, name):
            return None
        if not self._may_share(reference.st_ino, info):
            return None  # another source inode has it: this one is copied
        if target_fd is not None:
            try:
                platform.link_at(name, reference_fd, name, target_fd)
            except OSError as error:
                self._link_failed(error, frame.prefix + name)
                return None
        self.report.files_linked += 1
        return reference, self._known_hash(name, frame, reference_fd, reference)

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
            self.report.link_failure = f"{escape_name(relative)}: {error.strerror}"

    def _count_copy(self, name: str, relative: str, info: os.stat_result, source_fd: int) -> bool:
        """A dry walk: count a copy as the real one will report it; return
        whether it will be copied (else it is skipped, unreadable)."""
        try:
            fd = platform.open_source(name, source_fd)
        except OSError as error:
            self.skip(relative, fs.unreadable(error))
            return False
        try:
            copied = copying.bytes_to_copy(fd, info)
        except OSError as error:
            self.skip(relative, fs.unreadable(error))
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
        try:
            input_fd = platform.open_source(name, source_fd)
        except FileNotFoundError:
            self.skip(relative, "vanished before it was copied")
            return None
        except OSError as error:
            self.skip(relative, fs.unreadable(error))
            return None
        try:
            for attempt in range(2):
                before = os.fstat(input_fd)
                if not stat.S_ISREG(before.st_mode):
                    self.skip(relative, "no longer a regular file")
                    return None
                if not attempt:
                    self.report.space_needed += fs.allocated_bytes(before)
                if attempt:
                    platform.unlink_at(name, target_fd)
                # A big copy is hashed in a thread once it is final.
                in_thread = self.hashing.in_thread(before.st_size)
                hash_now = self.hashing.manifest is not None and not in_thread
                # Free space is charged chunk by chunk, as the copy is written:
                # never more than the file held when the copy began.
                charge = self.space.reserve if self.space is not None else None
                copied, copy_info, sha256 = copying.write_copy(
                    name, input_fd, target_fd, before, hash_now, charge, self.rules.keeps
                )
                after = os.fstat(input_fd)
                if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
                    break
            else:
                self.report.changed_while_copied(relative)
            self.report.files_copied += 1
            self.report.bytes_copied += copied
            self.flush.copied(copied)
            if in_thread:
                return copy_info, self.hashing.later(name, target_fd)
            return copy_info, sha256
        except OSError as error:
            if error.errno in fs.NO_SPACE:
                raise fs.OutOfSpace(f"the target filesystem is full ({error.strerror})") from None
            if error.errno in (errno.EIO, errno.EACCES):
                # A read failed part-way: leave no half-copied file behind.
                with contextlib.suppress(FileNotFoundError):
                    platform.unlink_at(name, target_fd)
                self.skip(relative, fs.unreadable(error))
                return None
            reason = holding.creation_refusal(error, name)
            if reason is None:
                raise
            self.skip(relative, reason)
            return None
        finally:
            os.close(input_fd)

    # -- symlinks and special files ---------------------------------------------

    def other(self, name: str, relative: str, info: os.stat_result, frame: Frame) -> None:
        """A symlink, FIFO, device or socket: recreated when the resource
        keeps its kind, else counted as left out."""
        mode = info.st_mode
        symlink = stat.S_ISLNK(mode)
        if not is_kept(mode, self.rules.kinds):
            if symlink:
                self.report.symlinks_skipped += 1
            elif not stat.S_ISSOCK(mode):
                self.report.special_files_skipped += 1
            self.skip(relative, f"{kind_of(mode)}: not copied")
            return
        if not self.held(name, relative, mode, frame):
            return
        text = None
        if symlink:
            try:
                text = platform.readlink_at(name, frame.source_fd)
            except FileNotFoundError:
                self.skip(relative, "vanished before it was read")
                return
            except OSError as error:
                self.skip(relative, fs.unreadable(error))
                return
        if frame.target_fd is not None:
            placed = place_other(
                name,
                info,
                text,
                frame.target_fd,
                frame.reference_fd if self.rules.link_unchanged else None,
                resuming=frame.kept is not None,
                reserve=self.reserve,
                keeps=self.rules.keeps,
            )
            if frame.kept is not None:
                frame.kept.add(name)
            self.hashing.other(name, placed, text)
        if symlink:
            self.report.symlinks += 1
        else:
            self.report.special_files += 1

"""The per-directory walk: stream one directory, place its entries, make
its subdirectories, then enter them, depth first.

A directory is complete once it has been streamed: its files, symlinks and
special files are placed and its subdirectories made (still empty), so its
metadata is set then (adding entries changes a directory's mtime; entries
made inside a subdirectory do not). Its subdirectories are remembered by
name and entered after, from an explicit stack, so depth is limited
neither by Python's recursion nor by open scandir iterators, and any of
them can be handed to another walker by its path.

Every directory is opened relative to its parent's descriptor with
O_NOFOLLOW: a symlink swapped in mid-run is never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable

from hardsnap.providers import platform
from hardsnap.providers.engine import holding
from hardsnap.providers.engine.entries import Mounts
from hardsnap.providers.engine.excludes import FROZEN_PREFIX, Excludes, is_frozen_copy, marker_in
from hardsnap.providers.engine.frames import OPEN_FRAMES, Frame, open_frame, release, restore
from hardsnap.providers.engine.placing import Placer
from hardsnap.providers.files import fs, tree
from hardsnap.providers.files.capabilities import ALL, Keeps
from hardsnap.providers.files.descend import Moved
from hardsnap.providers.files.fs import named, naming
from hardsnap.providers.manifest.format import ManifestError
from hardsnap.providers.manifest.reader import ManifestReader

# Progress is reported after this many files, or this many bytes copied:
# looked at after every copy, every PROGRESS_ENTRIES files and at the end
# of each directory.
PROGRESS_FILES = 512
PROGRESS_BYTES = 16 << 20
PROGRESS_ENTRIES = 64

# Told (files done, bytes copied) as a walk goes.
Progress = Callable[[int, int], None]


def is_late(info: os.stat_result) -> bool:
    """Whether a directory's own permission bits would keep this walker out
    of it (not root, and its owner may not write or search it): its
    metadata is set only when everything below it is done."""
    return not platform.IS_ROOT and stat.S_IMODE(info.st_mode) & 0o300 != 0o300


class Walker:
    """Walks directories of one snapshot in one process, placing each
    entry with its `placer`."""

    def __init__(
        self,
        placer: Placer,
        excludes: Excludes,
        skip_identity: tuple[int, int] | None,
        resume: bool,
        reference_manifest: ManifestReader | None,
        progress: Progress | None,
        one_file_system: bool,
    ) -> None:
        self.placer = placer
        self.report = placer.report
        self.excludes = excludes
        # (device, inode) of the target directory, never walked into.
        self.skip_identity = skip_identity
        # The target already holds part of this snapshot from a killed run.
        self.resume = resume
        self.reference_manifest = reference_manifest
        self.progress = progress
        self._next_progress = (PROGRESS_FILES, PROGRESS_BYTES)
        self.one_file_system = one_file_system
        self._mounts = Mounts()
        # Directories (prefixes) whose metadata waits for the end (is_late).
        self.late: list[str] = []

    # -- walking ---------------------------------------------------------------

    def walk(
        self, stack: list[Frame], between: Callable[[list[Frame]], bool] | None = None
    ) -> None:
        """Walk every subdirectory left on the frames of `stack`, depth
        first, closing each frame when done with it. After each directory,
        `between` may take subdirectories off the frames (to hand them to
        another walker), or return True to stop here, the stack as it is.

        At most OPEN_FRAMES frames hold descriptors: a deeper one lets go of
        the shallowest's, found again on the way back (frames.py)."""
        # stack[held:] hold their descriptors, and stack[0] always does.
        held = 1
        try:
            while stack:
                frame = stack[-1]
                if not frame.subdirectories:
                    stack.pop()
                    try:
                        if len(stack) > 1 and stack[-1].released is not None:
                            self._climb_back(stack[-1], frame, stack[0])
                    finally:
                        frame.close()
                    held = min(held, max(len(stack) - 1, 1))
                    continue
                child = self.enter(frame, frame.subdirectories.pop())
                if child is not None:
                    stack.append(child)
                    if len(stack) - held > OPEN_FRAMES and held < len(stack) - 1:
                        release(stack[held])
                        held += 1
                if between is not None and between(stack):
                    return
        except BaseException:
            for frame in stack:
                frame.close()
            raise

    def _climb_back(self, frame: Frame, child: Frame, anchor: Frame) -> None:
        """Open a let-go frame again (frames.restore). A source directory
        moved away meanwhile ends the walk below it, each subdirectory left
        reported; the snapshot's own directory must be found again."""
        assert frame.released is not None
        had_target = frame.released[2] is not None
        try:
            restore(frame, child, anchor)
        except Moved as moved:
            for name in frame.subdirectories:
                self.placer.skip(frame.prefix + name, str(moved.strerror))
                if frame.target_fd is not None:
                    with contextlib.suppress(FileNotFoundError):
                        tree.remove_tree(name, frame.target_fd)
            frame.subdirectories = []
        if had_target and frame.target_fd is None:
            raise OSError(
                errno.ENOENT,
                "a directory of the snapshot being made was moved or replaced",
                frame.prefix.rstrip("/"),
            )

    def scan(self, frame: Frame) -> None:
        """Stream one directory: place its entries, make its subdirectories
        and remember them, then complete it."""
        self.start_block(frame)
        try:
            entries = os.scandir(frame.source_fd)
        except OSError as error:
            self.placer.skip(
                frame.prefix.rstrip("/") or ".", fs.unreadable(error, "unreadable directory")
            )
            self.leave(frame)
            return
        placer, report = self.placer, self.report
        excludes = None if self.excludes.empty else self.excludes
        # exclude_if_present: a directory holding a marker keeps it alone.
        marker = (
            marker_in(frame.source_fd, self.excludes.markers) if self.excludes.markers else None
        )
        if marker is not None:
            report.directories_excluded += 1
        # Most targets hold every name and kind: then no entry is asked.
        holds = placer.rules.keeps.holds_everything
        # Files left until progress is looked at again.
        countdown = PROGRESS_ENTRIES
        with entries:
            for entry in entries:
                name = entry.name
                if marker is not None and name != marker:
                    continue
                relative = frame.prefix + name
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    placer.skip(relative, "vanished before it was read")
                    continue
                except OSError as error:
                    placer.skip(relative, fs.unreadable(error))
                    continue
                mode = info.st_mode
                if stat.S_ISREG(mode):
                    if (excludes is None or not excludes.file(relative, name)) and (
                        holds or placer.held(name, relative, mode, frame)
                    ):
                        try:
                            placer.file(name, relative, info, frame)
                        except OSError as error:
                            if error.filename is not None:
                                raise
                            raise named(error, relative) from error
                        countdown -= 1
                        if not countdown or report.bytes_copied >= self._next_progress[1]:
                            countdown = PROGRESS_ENTRIES
                            self._tick()
                elif stat.S_ISDIR(mode):
                    if (
                        (info.st_dev, info.st_ino) != self.skip_identity
                        and not (
                            name.startswith(FROZEN_PREFIX)
                            and is_frozen_copy(name, info, frame.info.st_dev)
                        )
                        and (excludes is None or not excludes.directory(relative, name))
                        and (holds or placer.held(name, relative, mode, frame))
                        and self._make_directory(name, relative, frame)
                    ):
                        frame.subdirectories.append(name)
                elif excludes is None or not excludes.file(relative, name):
                    with naming(relative):
                        placer.other(name, relative, info, frame)
        frame.subdirectories.reverse()
        self._tick()
        self.leave(frame)

    def start_block(self, frame: Frame) -> None:
        """Open the manifest block of a directory, with the reference's."""
        if frame.target_fd is None or self.placer.hashing.manifest is None:
            return
        directory = frame.prefix[:-1]
        self.placer.hashing.directory(directory)
        if self.reference_manifest is not None and frame.reference_fd is not None:
            try:
                frame.reference_hashes = self.reference_manifest.hashes(directory)
            except (ManifestError, ValueError, TypeError, UnicodeDecodeError):
                # A damaged reference manifest: hash linked files afresh.
                self.reference_manifest = None

    def _make_directory(self, name: str, relative: str, parent: Frame) -> bool:
        """Make the subdirectory `name` in the target (in a dry walk, count
        it); False when the target cannot hold its name (it is skipped)."""
        self.report.space_needed += fs.DIRECTORY_BYTES
        if parent.target_fd is None:
            return True
        self.placer.reserve(fs.DIRECTORY_BYTES)
        try:
            platform.mkdir_at(name, parent.target_fd, 0o700)
        except FileExistsError:
            if not self.resume:
                raise
            existing = platform.stat_at(name, parent.target_fd)
            if not stat.S_ISDIR(existing.st_mode):
                platform.unlink_at(name, parent.target_fd)
                platform.mkdir_at(name, parent.target_fd, 0o700)
        except OSError as error:
            reason = holding.creation_refusal(error, name)
            if reason is None:
                raise
            self.placer.skip(relative, reason)
            return False
        if parent.kept is not None:
            parent.kept.add(name)
        return True

    def enter(self, parent: Frame, name: str) -> Frame | None:
        """Open the subdirectory `name` of `parent` and stream it; return its
        frame, or None when it is gone or left out."""
        relative = parent.prefix + name
        try:
            source_fd = platform.open_directory(name, parent.source_fd)
        except OSError as error:
            self._unmake(parent, name, relative, _unreadable(error))
            return None
        info = os.fstat(source_fd)
        if (info.st_dev, info.st_ino) == self.skip_identity:  # swapped in since listed
            os.close(source_fd)
            self._unmake(parent, name, relative, None)
            return None
        # The mount point of another filesystem: kept, as an empty directory,
        # when it is a kernel pseudo-filesystem or one_file_system says so.
        descend = info.st_dev == parent.info.st_dev or not (
            self.one_file_system or self._mounts.is_pseudo(info.st_dev, source_fd)
        )
        frame = Frame(source_fd, None, None, relative + "/", info)
        try:
            if parent.reference_fd is not None:
                with contextlib.suppress(OSError):
                    frame.reference_fd = platform.open_directory(name, parent.reference_fd)
            if parent.target_fd is not None:
                frame.target_fd = platform.open_directory(name, parent.target_fd)
                if self.resume:
                    frame.kept = set()
            elif parent.partial_fd is not None:
                with contextlib.suppress(OSError):
                    frame.partial_fd = platform.open_directory(name, parent.partial_fd)
                    frame.kept = set()
            if descend:
                self.scan(frame)
            else:
                self.start_block(frame)
                self.leave(frame)
        except BaseException:
            frame.close()
            raise
        return frame

    def enter_path(self, roots: Frame, relative: str) -> Frame | None:
        """Enter the directory at `relative` below the roots, handed over
        by another walker: its parents are opened one component at a time."""
        parent_path, _, name = relative.rpartition("/")
        try:
            parent = open_frame(roots, parent_path)
        except OSError as error:
            # A parent went away, or was swapped for a symlink, since listed:
            # its copy keeps the time this removal gives it (it has no
            # source to take one from any more).
            self.placer.skip(relative, _unreadable(error))
            if roots.target_fd is not None:
                target_fd = fs.open_below(roots.target_fd, parent_path)
                try:
                    with contextlib.suppress(FileNotFoundError):
                        tree.remove_tree(name, target_fd)
                finally:
                    os.close(target_fd)
            return None
        try:
            return self.enter(parent, name)
        finally:
            parent.close()

    def _unmake(self, parent: Frame, name: str, relative: str, reason: str | None) -> None:
        """A subdirectory made while its parent was streamed cannot be
        walked: say why, remove it, and give the parent back its times."""
        if reason is not None:
            self.placer.skip(relative, reason)
        if parent.target_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            tree.remove_tree(name, parent.target_fd)
        if not is_late(parent.info):
            info = parent.info
            os.utime(parent.target_fd, ns=(info.st_atime_ns, info.st_mtime_ns))

    def leave(self, frame: Frame) -> None:
        """A directory is complete: drop leftovers, then set its metadata."""
        if frame.target_fd is None:
            return
        if frame.kept is not None:
            _remove_extras(frame.target_fd, frame.kept)
        if is_late(frame.info):
            self.late.append(frame.prefix)
            return
        with naming(frame.prefix.rstrip("/") or "."):
            fs.apply_metadata(frame.target_fd, frame.info, frame.source_fd, self.placer.rules.keeps)

    def _tick(self) -> None:
        """Tell the progress listener, now and then, how far the walk is."""
        if self.progress is None:
            return
        report = self.report
        files = report.files_done()
        if files >= self._next_progress[0] or report.bytes_copied >= self._next_progress[1]:
            self._next_progress = (files + PROGRESS_FILES, report.bytes_copied + PROGRESS_BYTES)
            self.progress(files, report.bytes_copied)


def _unreadable(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "vanished before it was read"
    return fs.unreadable(error, "unreadable directory")


def gone(error: OSError) -> str:
    """Why an entry listed earlier cannot be reached now that its directory,
    opened again by path, failed to open with `error`."""
    if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
        return "vanished before it was read"
    return fs.unreadable(error, "unreadable directory")


def _remove_extras(target_fd: int, kept: set[str]) -> None:
    with os.scandir(target_fd) as entries:
        extras = [entry.name for entry in entries if entry.name not in kept]
    for name in extras:
        info = platform.stat_at(name, target_fd)
        if stat.S_ISDIR(info.st_mode):
            tree.remove_tree(name, target_fd)
        else:
            platform.unlink_at(name, target_fd)


def apply_late(
    late: list[str],
    source_fd: int,
    target_fd: int,
    skip: Callable[[str, str], None],
    keeps: Keeps = ALL,
) -> None:
    """Set the metadata of the directories that waited for the end, the
    deepest first (a parent's bits may keep us out of its children). One
    whose source went meanwhile keeps its copy's owner-only bits and is
    reported through `skip`."""
    for prefix in sorted(late, key=lambda prefix: prefix.count("/"), reverse=True):
        relative = prefix.rstrip("/")
        try:
            directory_source = fs.open_below(source_fd, relative)
        except OSError as error:
            skip(relative, f"metadata not copied: {gone(error)}")
            continue
        try:
            directory_target = fs.open_below(target_fd, relative)
            try:
                with naming(relative or "."):
                    info = os.fstat(directory_source)
                    fs.apply_metadata(directory_target, info, directory_source, keeps)
            finally:
                os.close(directory_target)
        finally:
            os.close(directory_source)

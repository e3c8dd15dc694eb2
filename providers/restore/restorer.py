"""Restore a path of a snapshot to a destination: plan it (each entry
created, replaced and why, or already equal), or carry it out.

The destination may be a directory other users can write, so nothing in
it is reached by a path: each directory is opened below its parent's
descriptor with O_NOFOLLOW, a symlink found where a directory is restored
is replaced, never followed. Each file, symlink and special file is made
under a temporary name, its copy checked against the manifest's digest,
given its metadata, and renamed into place: an interrupted restore leaves
no half-written file under a final name. What a restore replaces is kept
beside it as NAME.hardsnap-replaced-SNAPSHOT unless overwriting; entries
the snapshot lacks stay unless deleting. Names with several links in the
snapshot are restored as one inode.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from hardsnap.providers import platform
from hardsnap.providers.engine import copying
from hardsnap.providers.engine.entries import make_special, make_symlink
from hardsnap.providers.files import digest, fs, tree
from hardsnap.providers.files.escaping import escape_name
from hardsnap.providers.manifest.format import join
from hardsnap.providers.manifest.reader import KnownHashes, ManifestReader
from hardsnap.providers.restore.differences import differences, link_differs
from hardsnap.providers.restore.steps import REPLACED, TEMPORARY, Restoration, Step

_numbers = itertools.count()
# Makes an entry under a temporary name in a directory; False: none made.
_Make = Callable[[str, int], object]


@dataclass
class Directory:
    """A directory being restored: its descriptors on both sides."""

    source_fd: int
    # None: not in the destination (yet, or at all while planning).
    target_fd: int | None
    # Relative to the snapshot's root; to the destination's parent; shown.
    source: str
    target: str
    shown: str


@dataclass(frozen=True)
class Found:
    """An entry of the snapshot, and what the destination holds in its place."""

    parent: Directory
    name: str
    # Its name in the destination, and as shown.
    target_name: str
    shown: str
    # Its path in the snapshot.
    relative: str
    info: os.stat_result
    existing: os.stat_result | None


class Restorer:
    """Restores entries of one snapshot, planning only unless `apply`."""

    def __init__(
        self, result: Restoration, manifest: ManifestReader | None, root_fd: int | None
    ) -> None:
        self.result = result
        self.apply, self.delete, self.overwrite = result.applied, result.delete, result.overwrite
        self.manifest = manifest
        # The destination's parent directory.
        self.root_fd = root_fd
        # Snapshot inode -> where its first name was restored (relative to root_fd).
        self._linked: dict[int, tuple[str, str]] = {}
        # Snapshot inode -> the inode its first name has in the destination.
        self._inodes: dict[int, int] = {}
        self._hashes: tuple[str, KnownHashes] | None = None

    # -- entries ---------------------------------------------------------

    def entry(
        self,
        parent: Directory,
        name: str,
        target_name: str,
        shown: str,
        relative: str | None = None,
    ) -> None:
        """Restore entry `name` of `parent` as `target_name`; `relative`:
        its path in the snapshot (default: below its parent's)."""
        info = platform.stat_at(name, parent.source_fd)
        existing = None
        if parent.target_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                existing = platform.stat_at(target_name, parent.target_fd)
        relative = join(parent.source, name) if relative is None else relative
        found = Found(parent, name, target_name, shown, relative, info, existing)
        if stat.S_ISDIR(info.st_mode):
            self._directory(found)
        elif stat.S_ISREG(info.st_mode):
            self._file(found)
        elif stat.S_ISLNK(info.st_mode):
            text = platform.readlink_at(name, parent.source_fd)
            why = ["type"] if existing is not None and not stat.S_ISLNK(existing.st_mode) else []
            if existing is not None and parent.target_fd is not None and not why:
                why = link_differs(text, platform.readlink_at(target_name, parent.target_fd))
                why += differences(info, None, existing, None, None)
            self._decide(found, why, lambda temporary, at: make_symlink(temporary, info, text, at))
        elif not stat.S_ISSOCK(info.st_mode):
            why = differences(info, None, existing, None, None) if existing is not None else []
            self._decide(found, why, lambda temporary, at: make_special(temporary, info, at))

    def _directory(self, found: Found) -> None:
        parent, target_name, existing = found.parent, found.target_name, found.existing
        source_fd = platform.open_directory(found.name, parent.source_fd)
        target_fd = None
        try:
            is_directory = existing is not None and stat.S_ISDIR(existing.st_mode)
            if is_directory:
                assert parent.target_fd is not None
                target_fd = platform.open_directory(target_name, parent.target_fd)
                why = differences(found.info, source_fd, os.fstat(target_fd), target_fd, None)
                step = Step(found.shown, "replace" if why else "equal", tuple(why))
                self.result.steps.append(step)
            else:
                self.result.steps.append(
                    Step(
                        found.shown,
                        "replace" if existing else "create",
                        ("type",) if existing else (),
                    )
                )
                if self.apply:
                    assert parent.target_fd is not None
                    if existing is not None:
                        self._set_aside(parent, target_name)
                    platform.mkdir_at(target_name, parent.target_fd, 0o700)
                    target_fd = platform.open_directory(target_name, parent.target_fd)
            directory = Directory(
                source_fd, target_fd, found.relative, join(parent.target, target_name), found.shown
            )
            self.children(directory)
            if self.apply and target_fd is not None:
                fs.apply_metadata(target_fd, found.info, source_fd)
        finally:
            os.close(source_fd)
            if target_fd is not None:
                os.close(target_fd)

    def children(self, directory: Directory) -> None:
        """Restore every entry of a directory; with delete, remove the
        destination's entries the snapshot lacks."""
        names = sorted(platform.list_directory(directory.source_fd))
        shown = "" if directory.shown == "." else directory.shown
        for name in names:
            self.entry(directory, name, name, join(shown, name))
        if not self.delete or directory.target_fd is None:
            return
        wanted = set(names)
        for name in sorted(platform.list_directory(directory.target_fd)):
            if name in wanted or TEMPORARY in name or REPLACED in name:
                continue
            self.result.steps.append(Step(join(shown, name), "delete"))
            if self.apply:
                _remove(name, directory.target_fd)

    def _file(self, found: Found) -> None:
        info, existing, parent = found.info, found.existing, found.parent
        first = self._linked.get(info.st_ino) if info.st_nlink > 1 else None
        if first is not None:
            self._second_name(found, first)
            return
        if info.st_nlink > 1:
            self._linked[info.st_ino] = (parent.target, found.target_name)
        known = self._known(os.path.dirname(found.relative), found.name)
        source_fd = platform.open_source(found.name, parent.source_fd)
        try:
            why: list[str] = []
            if existing is not None:
                why = ["type"] if not stat.S_ISREG(existing.st_mode) else []
                if not why:
                    assert parent.target_fd is not None
                    existing_fd = platform.open_read(found.target_name, parent.target_fd)
                    try:
                        why = differences(info, source_fd, existing, existing_fd, known)
                    finally:
                        os.close(existing_fd)
            shown = found.shown
            self._decide(
                found,
                why,
                lambda temporary, at: self._copy(source_fd, info, known, temporary, at, shown),
            )
        finally:
            os.close(source_fd)
        if info.st_nlink > 1 and parent.target_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                placed = platform.stat_at(found.target_name, parent.target_fd)
                self._inodes[info.st_ino] = placed.st_ino

    def _second_name(self, found: Found, first: tuple[str, str]) -> None:
        """Another name of a file restored already: a hard link to it."""
        first_fd = None
        if self.root_fd is not None:
            with contextlib.suppress(OSError):
                first_fd = fs.open_below(self.root_fd, first[0])
        try:
            restored = None
            if first_fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    restored = platform.stat_at(first[1], first_fd)
            existing = found.existing
            same = (
                existing is not None and restored is not None and existing.st_ino == restored.st_ino
            )
            expected = self._inodes.get(found.info.st_ino)

            def link(temporary: str, at: int) -> None:
                platform.link_at(first[1], first_fd or -1, temporary, at)
                # The first name may have been swapped since (the destination
                # may be another user's): only the file restored is linked.
                if platform.stat_at(temporary, at).st_ino != expected:
                    raise OSError(
                        errno.ESTALE,
                        "its first name was replaced while restoring: not linked",
                        found.shown,
                    )

            self._decide(found, [] if same else ["hard link"], link)
        finally:
            if first_fd is not None:
                os.close(first_fd)

    # -- carrying out ----------------------------------------------------

    def _decide(self, found: Found, why: list[str], make: _Make) -> None:
        """Record the step; when applying, make the entry under a temporary
        name and put it in place."""
        parent, target_name, shown, existing = (
            found.parent,
            found.target_name,
            found.shown,
            found.existing,
        )
        if existing is not None and not why:
            self.result.steps.append(Step(shown, "equal"))
            return
        action = "replace" if existing is not None else "create"
        why = why if existing is not None else []
        if not self.apply:
            self.result.steps.append(Step(shown, action, tuple(why)))
            return
        assert parent.target_fd is not None
        temporary = f"{TEMPORARY}{os.getpid()}-{next(_numbers)}"
        try:
            if make(temporary, parent.target_fd) is False:
                return
            if existing is not None and not self.overwrite:
                self._set_aside(parent, target_name)
            elif existing is not None and stat.S_ISDIR(existing.st_mode):
                tree.remove_tree(target_name, parent.target_fd)
            platform.rename_at(temporary, target_name, parent.target_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                platform.unlink_at(temporary, parent.target_fd)
            raise
        self.result.steps.append(Step(shown, action, tuple(why)))

    def _copy(
        self,
        source_fd: int,
        info: os.stat_result,
        known: str | None,
        temporary: str,
        at: int,
        shown: str,
    ) -> bool:
        """Copy a file under `temporary`, check it against the manifest;
        False (and nothing left) when the snapshot's copy is damaged."""
        fd = platform.create_new(temporary, at, 0o600, readable=True)
        try:
            copying.copy_contents(source_fd, fd, info)
            if known is not None:
                sparse = digest.is_sparse_digest(known)
                if digest.hash_open_file(fd, sparse=sparse) != known:
                    platform.unlink_at(temporary, at)
                    self.result.steps.append(
                        Step(shown, "damaged", ("content does not match the manifest",))
                    )
                    return False
            fs.apply_metadata(fd, info, source_fd)
        finally:
            os.close(fd)
        return True

    def _set_aside(self, parent: Directory, target_name: str) -> None:
        """Keep what is replaced beside it, renamed (or remove it when overwriting)."""
        assert parent.target_fd is not None
        if self.overwrite:
            _remove(target_name, parent.target_fd)
            return
        base = f"{target_name}{REPLACED}{self.result.snapshot}"
        for number in range(1000):
            aside = base if number == 0 else f"{base}.{number}"
            try:
                platform.stat_at(aside, parent.target_fd)
            except FileNotFoundError:
                platform.rename_at(target_name, aside, parent.target_fd)
                self.result.kept_beside.append(escape_name(join(parent.target, aside)))
                return
        raise FileExistsError(f"too many {base}.N beside {target_name}")

    def _known(self, directory: str, name: str) -> str | None:
        """The manifest's digest of a file of the snapshot (None: unknown)."""
        if self.manifest is None:
            return None
        if self._hashes is None or self._hashes[0] != directory:
            self._hashes = (directory, self.manifest.hashes(directory))
        found = self._hashes[1].get(name)
        return found[1] if found is not None else None


def _remove(name: str, directory_fd: int) -> None:
    info = platform.stat_at(name, directory_fd)
    if stat.S_ISDIR(info.st_mode):
        tree.remove_tree(name, directory_fd)
    else:
        platform.unlink_at(name, directory_fd)

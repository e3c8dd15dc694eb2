"""Whether two snapshots hold the same version of an entry whose inode differs.

An unchanged file is one inode in every snapshot that links it, so an equal
inode settles it from a directory listing alone. A file copied anew has a
new inode whatever it holds: every file under `cross_fs: copy` or `warn`, a
file whose extended attributes changed, one that `verify --content` found
corrupted. Then the snapshots' manifests decide, read one directory's block
at a time and keeping only the entries asked about: two entries are one
version when each snapshot still holds the inode its manifest recorded, with
the metadata recorded (type, size, mtime, mode, owner), the two agree on all
of it and on their digests (compared as opaque strings) or symlink targets,
and the files agree on extended attributes, which manifests do not record.
A new inode without a sound manifest to vouch for it stays a new version,
and the witness says why.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Container, Iterator, Mapping, Set

from hardsnap.providers import platform
from hardsnap.providers.files import fs
from hardsnap.providers.manifest.format import Entry, ManifestError
from hardsnap.providers.manifest.reader import ManifestReader


class Witness:
    """A snapshot's manifest, vouching for what its snapshot holds.

    Opened at once (reading its trailer only); `problem` says why it could
    not answer (missing or damaged), set only once it was asked."""

    def __init__(self, target_fd: int, target: str, snapshot: str) -> None:
        self.problem: str | None = None
        self._unsound: str | None = None
        self._reader: ManifestReader | None = None
        try:
            self._reader = ManifestReader.in_target(target_fd, snapshot, target)
        except ManifestError as error:
            self._unsound = str(error)

    def entries(self, directory: str, names: Container[str]) -> Iterator[tuple[str, Entry]]:
        """Yield the manifest's entries of `names` in one directory ("" for
        the root), one at a time; none once it cannot answer."""
        if self._reader is not None:
            try:
                yield from self._reader.named(directory, names)
                return
            except ManifestError as error:
                self._unsound = str(error)
            except (ValueError, TypeError) as error:
                self._unsound = f"manifest {self._reader.path} is damaged ({error})"
            self.close()
        self.problem = self._unsound

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _recorded(info: os.stat_result) -> tuple[int, ...]:
    """What a manifest records of an entry, from its lstat: type, size (a
    device's number), mtime, permission bits, owner, inode."""
    kind = stat.S_IFMT(info.st_mode)
    if kind == stat.S_IFREG:
        size = info.st_size
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        size = platform.device_of(info)
    else:
        size = 0
    mode = stat.S_IMODE(info.st_mode)
    return (kind, size, info.st_mtime_ns, mode, info.st_uid, info.st_gid, info.st_ino)


def _as_recorded(entry: Entry) -> tuple[int, ...]:
    mode = stat.S_IMODE(entry.mode)
    return (entry.kind, entry.size, entry.mtime_ns, mode, entry.uid, entry.gid, entry.inode)


def _content(entry: Entry) -> str | None:
    """What stands for an entry's content: a file's digest (None when the
    manifest has none), a symlink's target; a special file has none."""
    if entry.kind == stat.S_IFREG:
        return entry.sha256
    return "-" if entry.target is None else "@" + entry.target


def metadata_agrees(was: os.stat_result, now: os.stat_result) -> bool:
    """Whether two lstats agree on all a manifest records but the inode:
    where they do not, the entry changed, and no manifest need be read."""
    return _recorded(was)[:-1] == _recorded(now)[:-1]


def changed_copies(
    directory: str,
    copies: Set[str],
    before: tuple[Witness, int, Mapping[str, os.stat_result]],
    after: tuple[Witness, int, Mapping[str, os.stat_result]],
) -> list[str]:
    """Given the names of entries of one directory whose inodes differ, and
    for each snapshot its witness, the directory open and the entries'
    lstats, return the names that changed: those whose two copies the two
    manifests do not vouch for as the same version. Keeps one digest per
    name while it reads, not the entries."""
    (before_witness, before_fd, old), (after_witness, after_fd, new) = before, after
    contents: dict[str, str] = {}
    for name, entry in before_witness.entries(directory, copies):
        content = _content(entry)
        if content is None or _as_recorded(entry) != _recorded(old[name]):
            continue  # no digest, or not the inode or metadata it vouches for
        if metadata_agrees(old[name], new[name]):
            contents[name] = content
    same = set()
    for name, entry in after_witness.entries(directory, copies):
        content = contents.pop(name, None)
        if content is None or content != _content(entry):
            continue
        if _as_recorded(entry) != _recorded(new[name]):
            continue
        if entry.kind != stat.S_IFREG or fs.same_xattrs(before_fd, after_fd, name):
            same.add(name)
    if before_witness.problem or after_witness.problem:
        return list(copies)  # a manifest found damaged part way vouches for nothing
    return [name for name in copies if name not in same]

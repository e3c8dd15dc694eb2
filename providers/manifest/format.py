"""Snapshot manifests: what each snapshot held when it was made.

A manifest lists every regular file of a snapshot with its relative path,
size, mtime (ns), permission bits, owner, inode and content digest; and every
symlink, FIFO and device node it keeps, with its type bits in the mode, a
symlink's target text as `@` and its JSON string in place of the hash, a
device's number in place of the size. It lives in
`target_path/.hardsnap-manifests/NAME`, beside the snapshots but outside
their trees, so a restore with `cp -a` never drags it in, and it is
complete on disk before its snapshot is renamed into place.

The digest is SHA-256, because it is in the standard library (OpenSSL),
runs at memory speed on CPUs with SHA extensions (x86 SHA-NI, ARMv8), is
cryptographic (a deliberate edit cannot hide behind a collision), and
`sha256sum` checks any file by hand; a file with holes gets the sparse
digest instead (`sparse:` and its hex, see digest.py), which never reads
a hole. Only copied bytes are hashed: a linked file shares its inode, and
so its digest, with the reference, whose manifest already has it.

The format is lines, streamable and readable with standard tools: a JSON
header (the source, and `started_ns`: when the walk began), then one block
per directory (a JSON {"d": DIR} line followed by one tab-separated line
per file: size, mtime_ns, mode, uid, gid, inode, digest or "-", name),
then an index of the blocks ({"i": [DIR, OFFSET]} lines), then the inodes
that have several names in the snapshot ({"j": [INODE, ...]} lines), then
a JSON trailer naming where the index and those lines start. Manifests
written before `started_ns` and the joined lines existed are read too. A name that is
not plain printable text (a tab, a newline, a backslash, bytes that are not
UTF-8) is written as a backslash and its JSON string, non-UTF-8 bytes as
surrogate escapes (os.fsencode gives the original bytes back): escaping.py's
escape_name, the form every name is printed in too. File lines
are not JSON because a snapshot writes one per file and JSON costs several
times more. A walk needs only the reference's block of the directory it is
in, found through the index, so memory does not grow with the tree.

This module holds the format; reader.py reads manifests, writer.py writes
them, directory.py keeps the directory they live in.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

from hardsnap.providers.manifest.directory import MANIFEST_DIRECTORY

# 3: a file with holes has the sparse digest; 2 and 1 gave every file its
# whole SHA-256, which is still checked as such. 2: symlinks and special
# files are listed too (1 listed regular files only).
FORMAT_VERSION = 3


class ManifestError(Exception):
    """A manifest is missing or damaged; the message says which and how."""


@dataclass(frozen=True)
class Entry:
    """One entry as a manifest records it: a regular file (its mode holds
    permission bits only), or a symlink or special file (type bits too)."""

    path: str
    size: int
    mtime_ns: int
    mode: int
    uid: int
    gid: int
    inode: int
    sha256: str | None
    # A symlink's target text.
    target: str | None = None

    @property
    def kind(self) -> int:
        """The S_IFMT type bits: S_IFREG for a regular file."""
        return stat.S_IFMT(self.mode) or stat.S_IFREG


def manifest_path(target: str, snapshot: str) -> str:
    return os.path.join(target, MANIFEST_DIRECTORY, snapshot)


def join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def split_line(line: str, relative: str) -> list[str]:
    fields = line.split("\t", 7)
    if len(fields) != 8:
        raise ValueError(f"a file line of {relative!r} has {len(fields)} fields")
    return fields


def name_in(shown: str) -> str:
    """A name as a file line shows it, read back (escaping.escape_name)."""
    return str(json.loads(shown[1:])) if shown.startswith("\\") else shown

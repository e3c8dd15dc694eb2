"""Content digests of files, as manifests record them and `verify --content`
checks them.

A file without holes gets its SHA-256 (hex), which `sha256sum` checks by
hand. A file with holes gets the sparse digest, written `sparse:` and its
hex: its holes are never read, so a 1 TiB file holding 4 KiB costs what
4 KiB does (SHA-256 of a run of zeros cannot be shortcut).

The sparse digest depends on the content alone, never on how a filesystem
lays out the holes (a copy may allocate differently from its source): the
file is cut in 4 KiB blocks (the last one shorter) and the blocks that are
all zeros, holes or zeros written out, are left out. It is the SHA-256 of
b"hardsnap-sparse-1\\n", then, for each run of consecutive blocks that are
not all zeros, their bytes followed by the run's offset and length, then
the file's size (numbers as 8 bytes, big-endian).
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import threading
from typing import TYPE_CHECKING

from hardsnap.providers import platform
from hardsnap.providers.files import holes

if TYPE_CHECKING:
    from hashlib import _Hash

SPARSE_PREFIX = "sparse:"
BLOCK = 4096
HASH_CHUNK = 1 << 20
_HEADER = b"hardsnap-sparse-1\n"
_ZERO_BLOCK = bytes(BLOCK)
_RUN = struct.Struct(">QQ")
_SIZE = struct.Struct(">Q")


class HashingStopped(Exception):
    """Hashing was asked to stop (the walk it served is being abandoned)."""


def is_sparse_digest(digest: str) -> bool:
    return digest.startswith(SPARSE_PREFIX)


def hash_open_file(
    fd: int,
    size: int | None = None,
    sparse: bool | None = None,
    stop: threading.Event | None = None,
) -> str:
    """Return the digest of all an open file holds: the sparse digest when
    `sparse` (None: when the file has holes), else its SHA-256. Plain
    SHA-256 reads from offset 0 to the end, or its first `size` bytes when
    it is known to hold that many (no call is spent finding the end).
    Raise HashingStopped, between chunks, once `stop` is set."""
    info = os.fstat(fd) if sparse is not False else None
    if info is not None and (sparse or holes.has_holes(fd, info)):
        return SPARSE_PREFIX + _sparse_digest(fd, info.st_size, stop)
    digest = hashlib.sha256()
    offset = 0
    while size is None or offset < size:
        if stop is not None and stop.is_set():
            raise HashingStopped
        want = HASH_CHUNK if size is None else min(HASH_CHUNK, size - offset)
        block = platform.read_at(fd, want, offset)
        if not block:
            break
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def hash_file(name: str, dir_fd: int, sparse: bool | None = None) -> str | None:
    """Return the digest (as hash_open_file) of file `name` in `dir_fd`, or
    None if unreadable or no longer a regular file (a FIFO swapped in is
    never waited on)."""
    fd = _open_regular(name, dir_fd)
    if fd is None:
        return None
    try:
        return hash_open_file(fd, sparse=sparse)
    except OSError:
        return None
    finally:
        os.close(fd)


def upgraded(name: str, dir_fd: int, known: str) -> str:
    """The digest to record for file `name` in `dir_fd`, which a manifest
    records as `known`: a plain SHA-256 of a file with holes (from a
    manifest older than the sparse digest) gives way to its sparse
    digest, so that later verifies skip its holes."""
    if is_sparse_digest(known):
        return known
    fd = _open_regular(name, dir_fd)
    if fd is None:
        return known
    try:
        if not holes.has_holes(fd, os.fstat(fd)):
            return known
        return hash_open_file(fd, sparse=True)
    except OSError:
        return known
    finally:
        os.close(fd)


def _open_regular(name: str, dir_fd: int) -> int | None:
    """Open file `name` in `dir_fd` for reading, never following a symlink
    or waiting on a FIFO; None when it cannot be or is no regular file."""
    try:
        fd = platform.open_source(name, dir_fd)
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


class _Runs:
    """Feeds the sparse digest the blocks that are not all zeros, in order."""

    def __init__(self) -> None:
        self.digest: _Hash = hashlib.sha256(_HEADER)
        # The run being hashed: where it starts and where it ends so far.
        self.start = self.end = -1

    def data(self, offset: int, data: bytes) -> None:
        """Hash `data`, found at `offset`, which holds no block of zeros."""
        if offset != self.end:
            self.close()
            self.start = offset
        self.digest.update(data)
        self.end = offset + len(data)

    def close(self) -> None:
        if self.start >= 0:
            self.digest.update(_RUN.pack(self.start, self.end - self.start))
            self.start = self.end = -1


def _sparse_digest(fd: int, size: int, stop: threading.Event | None) -> str:
    runs = _Runs()
    done = 0  # every block before this offset is hashed
    for data, length in holes.data_extents(fd, size):
        # Whole blocks: what lies around data in a block reads as zeros.
        offset = max(done, data - data % BLOCK)
        end = min(size, -(-(data + length) // BLOCK) * BLOCK)
        while offset < end:
            if stop is not None and stop.is_set():
                raise HashingStopped
            chunk = platform.read_at(fd, min(HASH_CHUNK, end - offset), offset)
            if not chunk:
                break
            _hash_chunk(runs, offset, chunk)
            offset += len(chunk)
        done = max(done, offset)
    runs.close()
    runs.digest.update(_SIZE.pack(size))
    return runs.digest.hexdigest()


def _hash_chunk(runs: _Runs, offset: int, chunk: bytes) -> None:
    """Hash the blocks of `chunk` (at block-aligned `offset`) that are not
    all zeros."""
    tail = len(chunk) % BLOCK
    if _ZERO_BLOCK not in chunk and (not tail or chunk.count(0, len(chunk) - tail) < tail):
        runs.data(offset, chunk)  # no block of zeros: the common case, at C speed
        return
    start = None  # where the run of non-zero blocks being gathered begins
    for block in range(0, len(chunk), BLOCK):
        zeros = chunk.count(0, block, block + BLOCK) == min(BLOCK, len(chunk) - block)
        if zeros and start is not None:
            runs.data(offset + start, chunk[start:block])
            start = None
        elif not zeros and start is None:
            start = block
    if start is not None:
        runs.data(offset + start, chunk[start:])

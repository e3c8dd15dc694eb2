"""Content digests: SHA-256 for files without holes, the sparse digest for
files with holes, the same whatever the layout of the holes."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from hardsnap.providers.files import digest

SIZE = 8 << 20


def write(path: Path, size: int, pieces: dict[int, bytes], zeros_written: bool = False) -> Path:
    """A file of `size` bytes holding `pieces` by offset; the rest holes, or
    zeros written out (allocated) with `zeros_written`."""
    with open(path, "wb") as handle:
        if zeros_written:
            handle.write(bytes(size))
        handle.truncate(size)
        for offset, data in pieces.items():
            handle.seek(offset)
            handle.write(data)
    return path


def digest_of(path: Path, sparse: bool | None = None) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return digest.hash_open_file(fd, sparse=sparse)
    finally:
        os.close(fd)


PIECES = {4096: b"\x01" * 5000, 3 << 20: b"\x02" * 4096, SIZE - 10: b"end"}


@pytest.fixture
def holed(tmp_path: Path) -> Path:
    path = write(tmp_path / "holed", SIZE, PIECES)
    if os.stat(path).st_blocks * 512 >= SIZE:
        pytest.skip("the filesystem under tmp_path does not keep holes")
    return path


def test_a_file_with_holes_gets_the_sparse_digest_whatever_the_layout_of_its_zeros(
    holed: Path, tmp_path: Path
) -> None:
    written = write(tmp_path / "written", SIZE, PIECES, zeros_written=True)
    assert written.read_bytes() == holed.read_bytes()
    sparse = digest_of(holed)
    assert sparse.startswith(digest.SPARSE_PREFIX)
    # Zeros written out read like holes: the digest asked for is the same.
    assert digest_of(written, sparse=True) == sparse
    # Without holes, a file gets its plain SHA-256 (sha256sum checks it).
    assert digest_of(written) == hashlib.sha256(written.read_bytes()).hexdigest()
    assert digest_of(holed, sparse=False) == digest_of(written)


@pytest.mark.parametrize(
    "pieces",
    [
        {**PIECES, 3 << 20: b"\x03" * 4096},  # a byte of data changed
        {**PIECES, (3 << 20) + 4096: b"\x02" * 4096},  # data moved by a block
        {**PIECES, 8192 * 100: b"\x00" * 10 + b"\x04"},  # a block of zeros gains a byte
    ],
)
def test_the_sparse_digest_changes_with_the_data_and_where_it_lies(
    holed: Path, tmp_path: Path, pieces: dict[int, bytes]
) -> None:
    other = write(tmp_path / "other", SIZE, pieces)
    assert digest_of(other, sparse=True) != digest_of(holed)


def test_the_sparse_digest_changes_with_the_size_alone(holed: Path, tmp_path: Path) -> None:
    longer = write(tmp_path / "longer", SIZE + 4096, PIECES)
    assert digest_of(longer, sparse=True) != digest_of(holed)


def test_hashing_stops_at_the_next_chunk_once_asked(holed: Path) -> None:
    stop = threading.Event()
    stop.set()
    fd = os.open(holed, os.O_RDONLY)
    try:
        for sparse in (True, False):
            with pytest.raises(digest.HashingStopped):
                digest.hash_open_file(fd, sparse=sparse, stop=stop)
    finally:
        os.close(fd)

"""Copying one file's bytes: in the kernel where it can, holes kept as holes.

Where the system can (Linux copy_file_range), the kernel copies without
the bytes passing through this process (a reflink where the filesystem
shares extents); elsewhere they are read and written. A sparse file is
copied extent by extent (SEEK_DATA/SEEK_HOLE), so its holes stay holes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from hardsnap.providers import platform
from hardsnap.providers.files import digest, fs, holes
from hardsnap.providers.files.capabilities import ALL, Keeps

# Bytes copied in one call: a signal is seen, and free space charged,
# between chunks.
COPY_CHUNK = 32 << 20
# Copied when the kernel cannot (another filesystem type, an old kernel).
READ_CHUNK = 1 << 20

# Called with the bytes a chunk may take on disk before it is written; it
# raises (OutOfSpace) to stop the copy.
Charge = Callable[[int], None]


def bytes_to_copy(fd: int, info: os.stat_result) -> int:
    """The bytes `copy_contents` will copy of an open file: all of them, or
    of a sparse file only its data (its holes stay holes)."""
    if not holes.is_sparse(info):
        return info.st_size
    return sum(length for _, length in holes.data_extents(fd, info.st_size))


def copy_contents(
    source_fd: int, target_fd: int, info: os.stat_result, charge: Charge | None = None
) -> int:
    """Copy the bytes of an open file (described by `info`) to another, up
    to the size it had then; return the bytes copied.

    A file that grows meanwhile is not followed (a hole can make it any
    size for free): its stat after tells the caller it moved. Each chunk
    is given to `charge` before it is written, rounded up to whole blocks.
    """
    if holes.is_sparse(info):
        copied = 0
        for offset, length in holes.data_extents(source_fd, info.st_size):
            copied += _copy_range(source_fd, target_fd, offset, length, charge)
        os.ftruncate(target_fd, info.st_size)
        return copied
    return _copy_range(source_fd, target_fd, 0, info.st_size, charge)


def _copy_range(
    source_fd: int, target_fd: int, offset: int, length: int, charge: Charge | None
) -> int:
    """Copy `length` bytes from `offset` to the same offset, a chunk at a
    time; fewer when the source ends first."""
    copied = 0
    in_kernel = True
    while copied < length:
        chunk = min(COPY_CHUNK, length - copied)
        if charge is not None:
            charge(-(-chunk // fs.BLOCK_BYTES) * fs.BLOCK_BYTES)
        position = offset + copied
        if in_kernel:
            try:
                count = _in_kernel(source_fd, target_fd, position, chunk)
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                in_kernel = False
        if not in_kernel:
            count = _through_memory(source_fd, target_fd, position, chunk)
        copied += count
        if count < chunk:  # the source ended
            break
    return copied


def _in_kernel(source_fd: int, target_fd: int, offset: int, length: int) -> int:
    """copy_file_range `length` bytes at `offset`; fewer when the source ends."""
    copied = 0
    while copied < length:
        position = offset + copied
        count = platform.copy_in_kernel(source_fd, target_fd, position, length - copied)
        if count is None:
            raise OSError(errno.ENOSYS, "no copy in the kernel on this system")
        if count == 0:
            break
        copied += count
    return copied


def _through_memory(source_fd: int, target_fd: int, offset: int, length: int) -> int:
    """pread and pwrite `length` bytes at `offset`; fewer when the source ends."""
    copied = 0
    while copied < length:
        block = platform.read_at(source_fd, min(READ_CHUNK, length - copied), offset + copied)
        if not block:
            break
        view = memoryview(block)
        written = 0
        while written < len(block):
            written += platform.write_at(target_fd, view[written:], offset + copied + written)
        copied += len(block)
    return copied


def write_copy(
    name: str,
    input_fd: int,
    target_fd: int,
    info: os.stat_result,
    hash_now: bool,
    charge: Charge | None = None,
    keeps: Keeps = ALL,
) -> tuple[int, os.stat_result, str | None]:
    """Copy an open file to `name` in `target_fd` (made anew, never
    followed), each chunk given to `charge` first; return the bytes
    copied, the copy's stat and (with `hash_now`) the digest of what it
    holds."""
    sparse = holes.is_sparse(info)
    # Where the filesystem clones (APFS), the copy shares the source's
    # blocks: nothing is written, and it holds what the file holds now (a
    # file that changed meanwhile is seen by the caller's stat after).
    cloned = not sparse and platform.clone_at(input_fd, target_fd, name)
    if cloned:
        output_fd = platform.open_own(name, target_fd)
    else:
        output_fd = platform.create_new(name, target_fd, readable=True)
    try:
        copied = info.st_size if cloned else copy_contents(input_fd, output_fd, info, charge)
        sha256 = None
        if hash_now:
            # A sparse copy's holes count in its size, not in the bytes
            # copied; a copy of a file without holes has none (its SHA-256
            # is taken without asking).
            size = info.st_size if sparse else copied
            sha256 = digest.hash_open_file(output_fd, size, None if sparse else False)
        fs.apply_metadata(output_fd, info, input_fd, keeps)
        return copied, os.fstat(output_fd), sha256
    finally:
        os.close(output_fd)

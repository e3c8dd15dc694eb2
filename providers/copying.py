"""Copying one file's bytes: in the kernel where it can, holes kept as holes.

copy_file_range copies without the bytes passing through this process (a
reflink where the filesystem shares extents); a sparse file is copied
extent by extent (SEEK_DATA/SEEK_HOLE), so its holes stay holes.
"""

from __future__ import annotations

import errno
import os

from hardsnap.providers import digest, fs, holes

COPY_CHUNK = 1 << 30


def bytes_to_copy(fd: int, info: os.stat_result) -> int:
    """The bytes `copy_contents` will copy of an open file: all of them, or
    of a sparse file only its data (its holes stay holes)."""
    if not holes.is_sparse(info):
        return info.st_size
    return sum(length for _, length in holes.data_extents(fd, info.st_size))


def copy_contents(source_fd: int, target_fd: int, info: os.stat_result) -> int:
    """Copy all bytes of an open file (described by `info`) to another;
    return the bytes copied.

    A file that grows meanwhile is copied to its end, as it stands then
    (its stat after tells the caller it moved).
    """
    if holes.is_sparse(info):
        return _copy_sparse(source_fd, target_fd, info.st_size)
    return _copy_range(source_fd, target_fd, None, None)


def _copy_sparse(source_fd: int, target_fd: int, size: int) -> int:
    copied = 0
    end = 0
    for offset, length in holes.data_extents(source_fd, size):
        copied += _copy_range(source_fd, target_fd, offset, length)
        end = offset + length
    os.ftruncate(target_fd, max(size, end))
    return copied


def _copy_range(source_fd: int, target_fd: int, offset: int | None, length: int | None) -> int:
    """Copy `length` bytes (None: up to the end of the source) from `offset`
    to the same offset, or, with None, from the current positions; fewer
    when the source ends first."""
    copied = 0
    try:
        while length is None or copied < length:
            chunk = COPY_CHUNK if length is None else min(COPY_CHUNK, length - copied)
            if offset is None:
                count = os.copy_file_range(source_fd, target_fd, chunk)
            else:
                position = offset + copied
                count = os.copy_file_range(source_fd, target_fd, chunk, position, position)
            if count == 0:
                return copied
            copied += count
        return copied
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while length is None or copied < length:
        want = 1 << 20 if length is None else min(1 << 20, length - copied)
        if offset is None:
            block = os.read(source_fd, want)
        else:
            block = os.pread(source_fd, want, offset + copied)
        if not block:
            break
        view = memoryview(block)
        written_here = 0
        while written_here < len(block):
            if offset is None:
                written = os.write(target_fd, view[written_here:])
            else:
                written = os.pwrite(target_fd, view[written_here:], offset + copied + written_here)
            written_here += written
        copied += len(block)
    return copied


def write_copy(
    name: str, input_fd: int, target_fd: int, info: os.stat_result, hash_now: bool
) -> tuple[int, os.stat_result, str | None]:
    """Copy an open file to `name` in `target_fd` (made anew, never
    followed); return the bytes copied, the copy's stat and (with
    `hash_now`) the digest of what it holds."""
    output_fd = os.open(
        name,
        os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=target_fd,
    )
    try:
        copied = copy_contents(input_fd, output_fd, info)
        # A sparse copy's holes count in its size, not in the bytes copied.
        size = info.st_size if holes.is_sparse(info) else copied
        sha256 = digest.hash_open_file(output_fd, size) if hash_now else None
        fs.apply_metadata(output_fd, info, input_fd)
        return copied, os.fstat(output_fd), sha256
    finally:
        os.close(output_fd)

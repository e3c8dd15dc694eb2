"""Where a file's data is: its holes and data extents (SEEK_DATA/SEEK_HOLE).

A hole costs nothing to make (`truncate -s 1T`), so whatever reads, copies
or hashes a file with holes skips them, as coreutils `cp --sparse=auto`
and GNU tar do: the cost follows the data, not the apparent size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from hardsnap.providers import platform


def is_sparse(info: os.stat_result) -> bool:
    """Whether a file has fewer blocks than its size needs: it may have
    holes (or its filesystem compresses it, or keeps it inline)."""
    return platform.stored_bytes(info) < info.st_size


def has_holes(fd: int, info: os.stat_result) -> bool:
    """Whether an open file (described by `info`) has a hole before its end."""
    if not is_sparse(info):
        return False
    try:
        return platform.next_hole(fd, 0, info.st_size) < info.st_size
    except OSError:  # a filesystem that cannot tell keeps no holes
        return False


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The (offset, length) of each stretch of data of a file, as far as
    its first `size` bytes go."""
    offset = 0
    while offset < size:
        data = platform.next_data(fd, offset, size)
        if data >= size:
            return
        hole = platform.next_hole(fd, data, size)
        yield data, hole - data
        offset = hole

"""Flushing the target while copying, and the free space a walk may use.

Every FLUSH_AHEAD_BYTES copied, a thread starts flushing the target
filesystem, so the disk writes while the walk goes on and the sync that
must come before the snapshot is named has little left to do.

Free space is shared by every walker of a snapshot: what they may still
use is one count in shared memory, taken under a lock the forked walkers
share, and re-read from the filesystem at least every
SPACE_RECHECK_BYTES.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import threading

from hardsnap.providers import platform
from hardsnap.providers.files import fs
from hardsnap.providers.files.escaping import format_bytes

FLUSH_AHEAD_BYTES = 64 << 20
SPACE_RECHECK_BYTES = 256 << 20
# A walker takes at most this much of the free-space budget at a time.
SHARE_BYTES = 16 << 20

# The shared count: bytes the walkers may still use, bytes used since the
# filesystem was last asked.
_SPACE = struct.Struct("qq")
# Then, for each walker, what is left of the share it took.
_SHARE = struct.Struct("q")


class FlushAhead:
    """Starts a flush of the target filesystem every FLUSH_AHEAD_BYTES copied."""

    def __init__(self, target_fd: int | None) -> None:
        # Without a flush of a whole filesystem, files are flushed one by one.
        self._target_fd = target_fd if platform.syncs_whole_filesystem() else None
        self._unflushed = 0
        self._thread: threading.Thread | None = None

    def copied(self, count: int) -> None:
        self._unflushed += count
        if self._target_fd is None or self._unflushed < FLUSH_AHEAD_BYTES:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._unflushed = 0
        self._thread = threading.Thread(
            target=_flush_quietly, args=(self._target_fd,), name="hardsnap-flush"
        )
        self._thread.start()

    def stop(self) -> None:
        """Wait for a flush under way to end."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _flush_quietly(fd: int) -> None:
    """Flush a filesystem ahead of time; a failure shows in the final sync."""
    with contextlib.suppress(OSError):
        platform.sync_filesystem(fd)


class SpaceBudget:
    """The free space every walker of one snapshot may still use, above
    `min_free_space`, on the filesystem of `target_fd`.

    Each walker takes a share of it at a time (at most SHARE_BYTES, and a
    small part of what is left for all, so that the shares walkers hold
    unused can cut short a snapshot only when it comes within a few percent
    of min_free_space) and counts its own writes against that share
    without taking the lock. What is left of each
    walker's share sits in shared memory too, so that free space read
    afresh is counted net of what the walkers may still write.
    """

    def __init__(self, target_fd: int, min_free_space: int, walkers: int = 8) -> None:
        self._target_fd = target_fd
        self.min_free_space = min_free_space
        self._slots = walkers + 1
        size = _SPACE.size + _SHARE.size * self._slots
        # Anonymous shared memory: forked walkers see the same pages.
        self._shared = mmap.mmap(-1, size)
        # Which slot holds this walker's share: 0 for the first process.
        self._slot = 0
        self._share = 0
        _SPACE.pack_into(self._shared, 0, self._recheck(0), 0)
        self._lock = platform.ProcessLock()

    def walker(self, number: int) -> None:
        """Become walker `number` (1-based) in a forked worker, with no share."""
        self._slot, self._share = number % self._slots, 0

    def _set_share(self, share: int) -> None:
        self._share = share
        _SHARE.pack_into(self._shared, _SPACE.size + _SHARE.size * self._slot, share)

    def _recheck(self, needed: int) -> int:
        free = platform.free_bytes(self._target_fd)
        unwritten: int = sum(
            _SHARE.unpack_from(self._shared, _SPACE.size + _SHARE.size * slot)[0]
            for slot in range(self._slots)
        )
        budget = free - self.min_free_space - unwritten
        if budget < needed:
            raise fs.OutOfSpace(self._shortfall(free, needed, unwritten))
        return budget

    def _shortfall(self, free: int, needed: int, unwritten: int) -> str:
        """What the free space fell short of, in the units people read."""
        floor = f"min_free_space ({format_bytes(self.min_free_space)})"
        if not needed and not unwritten:
            return f"free space on the target is down to {format_bytes(free)}, below {floor}"
        parts = [floor]
        if needed:
            parts.append(f"{format_bytes(needed)} for what it writes next")
        if unwritten:
            parts.append(f"{format_bytes(unwritten)} reserved for copies under way")
        total = self.min_free_space + needed + unwritten
        return (
            f"free space on the target is down to {format_bytes(free)}, short of the "
            f"{format_bytes(total)} the run needs: {', '.join(parts)}"
        )

    def reserve(self, size: int) -> None:
        """Count `size` bytes about to be written; raise OutOfSpace when that
        would bring free space below `min_free_space`."""
        if size <= self._share:
            self._set_share(self._share - size)
            return
        with self._lock:
            budget, since_check = _SPACE.unpack_from(self._shared, 0)
            if size > budget or since_check > SPACE_RECHECK_BYTES:
                budget, since_check = self._recheck(size), 0
            extra = min(SHARE_BYTES, (budget - size) // (8 * self._slots))
            _SPACE.pack_into(self._shared, 0, budget - size - extra, since_check + size + extra)
            self._set_share(self._share + extra)

    def descriptors(self) -> set[int]:
        """What a forked walker must keep open to share this budget."""
        return self._lock.descriptors()

    def close(self) -> None:
        self._shared.close()
        self._lock.close()

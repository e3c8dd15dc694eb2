"""A walker's manifest lines, and the hashing of big copies in threads.

Copies this big or bigger are hashed by helper threads while the walk goes
on (pread and hashlib let go of the GIL), so copying and hashing overlap:
what a tree of big files, or reflinks that copy nothing, is bound by. A
small copy is hashed at once, while its bytes are still in the page cache.
A file's manifest line waits until its hash is known, and is always
written before its directory's block ends.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from hardsnap.providers import platform
from hardsnap.providers.files import digest
from hardsnap.providers.manifest.writer import ManifestWriter, Recorded

HASH_IN_THREAD_BYTES = 1 << 20
HASH_THREADS = 2
# At most this many copies wait for their hash (each holds a descriptor).
HASH_BACKLOG = 32

# A file's SHA-256: known, being computed, or None when no manifest is kept.
Sha256 = str | Future[str] | None


class Hashing:
    """Writes one walker's manifest lines, hashing big copies in threads.

    Without a manifest (a dry walk, or none kept) it records nothing."""

    def __init__(self, manifest: ManifestWriter | None) -> None:
        self.manifest = manifest
        # The threads, started on first use.
        self._threads: ThreadPoolExecutor | None = None
        # Set when the walk is abandoned: a hash under way stops at its next
        # chunk, so an interrupt never waits for a big file to be read.
        self._stop = threading.Event()
        # Manifest lines waiting for their hash, oldest first.
        self._unwritten: deque[tuple[str, os.stat_result | Recorded, Future[str]]] = deque()

    def in_thread(self, size: int) -> bool:
        """Whether a copy of `size` bytes is hashed in a thread."""
        return self.manifest is not None and size >= HASH_IN_THREAD_BYTES

    def directory(self, relative: str) -> None:
        """Start the block of a directory, after every line of the last one."""
        if self.manifest is not None:
            self._write_unwritten()
            self.manifest.directory(relative)

    def later(self, name: str, target_fd: int) -> Future[str]:
        """Start hashing a finished copy, `name` in `target_fd`, in a thread."""
        while len(self._unwritten) >= HASH_BACKLOG:
            self._write_oldest()
        if self._threads is None:
            self._threads = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="hardsnap-hash")
        # Reading must not touch the copy's atime, just set from the source.
        fd = platform.open_own(name, target_fd)
        future = self._threads.submit(_hash_and_close, fd, self._stop)
        # A hash cancelled before it started (the walk failed) closes here.
        future.add_done_callback(lambda done: os.close(fd) if done.cancelled() else None)
        return future

    def file(self, name: str, info: os.stat_result | Recorded, sha256: Sha256) -> None:
        """Record a file of the current directory, now or once its hash is known."""
        if self.manifest is None:
            return
        if isinstance(sha256, Future):
            if not sha256.done():
                self._unwritten.append((name, info, sha256))
                return
            sha256 = sha256.result()
        self.manifest.file(name, info, sha256)

    def other(self, name: str, info: os.stat_result, text: str | None) -> None:
        """Record a symlink (with its target text) or a special file."""
        if self.manifest is not None:
            self.manifest.other(name, info, text)

    def _write_oldest(self) -> None:
        assert self.manifest is not None
        name, info, future = self._unwritten.popleft()
        self.manifest.file(name, info, future.result())

    def _write_unwritten(self) -> None:
        while self._unwritten:
            self._write_oldest()

    def settle(self) -> None:
        """Write every line waiting for its hash and stop the threads (a
        fork copies no thread: none may be left running before one)."""
        self._write_unwritten()
        if self._threads is not None:
            self._threads.shutdown()
            self._threads = None

    def abandon(self) -> None:
        """The walk failed or was interrupted: stop the threads, dropping
        hashes not started and ending those under way at their next chunk."""
        if self._threads is not None:
            self._stop.set()
            self._threads.shutdown(cancel_futures=True)
            self._threads = None
            self._stop = threading.Event()
        self._unwritten.clear()


def _hash_and_close(fd: int, stop: threading.Event) -> str:
    try:
        return digest.hash_open_file(fd, stop=stop)
    finally:
        os.close(fd)

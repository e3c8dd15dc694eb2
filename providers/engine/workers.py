"""The work queue and the worker processes that share a snapshot's walk.

N forked walkers (N: the CPUs this process may use, or `apply --jobs`)
take directories from one queue, kept by the parent. Each walks what it
is given depth first, by itself; when a walker is idle, the busy ones hand
over subdirectories they have not entered yet (the shallowest first: the
biggest pieces of work), so every core stays busy whatever the shape of
the tree. The walk ends when the queue is empty and every walker is idle.

A walker keeps the descriptors of the directories it walks; a directory
handed over travels as its path below the roots and is opened again one
component at a time, never following a symlink.

Parent and worker talk over a stream socket, in frames: a type byte, a
4-byte length, then the payload.
  worker -> parent: READY (its inherited locks closed), IDLE (give me work),
                    SHARE (paths, NUL-separated), DONE (its result as JSON)
  parent -> worker: WORK (one path), QUIT (send your result and exit)
"""

from __future__ import annotations

import json
import mmap
import os
import select
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from hardsnap.providers import platform
from hardsnap.providers.engine.directories import Walker
from hardsnap.providers.engine.frames import Frame
from hardsnap.providers.files import fs
from hardsnap.providers.files.report import SnapshotFailed

READY, IDLE, SHARE, DONE, WORK, QUIT = b"RISDWQ"
_HEADER = struct.Struct("!cI")
# Shared memory: how many walkers are idle (written by the parent only),
# then each worker's running (files, bytes copied), for progress.
_HUNGRY = struct.Struct("Q")
_COUNTS = struct.Struct("QQ")
# Paths handed over in one frame, at most; what the parent reads at once.
SHARE_BYTES = 1 << 16
RECEIVE_BYTES = 1 << 16
# How often the parent reports progress while the workers walk.
PROGRESS_SECONDS = 0.2

Builder = Callable[[int], Walker]


def _send(sock: socket.socket, kind: int, payload: bytes = b"") -> None:
    sock.sendall(_HEADER.pack(bytes([kind]), len(payload)) + payload)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError("the other end closed the connection")
        chunks += chunk
    return bytes(chunks)


def _receive(sock: socket.socket) -> tuple[int, bytes]:
    kind, length = _HEADER.unpack(_receive_exactly(sock, _HEADER.size))
    return kind[0], _receive_exactly(sock, length)


@dataclass
class _Worker:
    """A forked walker, as its parent sees it."""

    number: int
    pid: int
    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)
    result: list[Any] | None = None
    done: bool = False

    def frames(self) -> list[tuple[int, bytes]]:
        """Read what has arrived; return the whole frames in it."""
        data = self.sock.recv(RECEIVE_BYTES)
        if not data:
            raise SnapshotFailed(f"walker {self.number} died")
        self.buffer += data
        frames = []
        while len(self.buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self.buffer)
            end = _HEADER.size + length
            if len(self.buffer) < end:
                break
            frames.append((kind[0], bytes(self.buffer[_HEADER.size : end])))
            del self.buffer[:end]
        return frames

    def stop(self) -> None:
        """Kill and reap a worker not joined (the walk failed first)."""
        if not self.done:
            platform.kill(self.pid)
            platform.wait_for(self.pid)
            self.done = True
        self.sock.close()


class Workers:
    """`count` forked walkers sharing one queue of directories."""

    def __init__(self, count: int, roots: Frame, build: Builder, keep: set[int]) -> None:
        self.count = count
        self.roots = roots
        # Makes a worker's walker, in the worker (1-based number).
        self._build = build
        # Descriptors a worker uses; it closes every other one at once, the
        # locks' above all (an flock lasts while any descriptor of it is
        # open: a worker must not hold one after its parent died).
        self._keep = keep | {0, 1, 2}
        self._shared = mmap.mmap(-1, _HUNGRY.size + _COUNTS.size * count)
        self._workers: list[_Worker] = []
        # Ends the workers when this process dies, however it dies.
        self._lifeline = platform.Lifeline(platform.death_signal)

    def counts(self) -> tuple[int, int]:
        """Files done and bytes copied by all workers so far."""
        files = copied = 0
        for number in range(self.count):
            worker_files, worker_copied = _COUNTS.unpack_from(
                self._shared, _HUNGRY.size + _COUNTS.size * number
            )
            files, copied = files + worker_files, copied + worker_copied
        return files, copied

    def run(self, items: list[str], tick: Callable[[], None] | None = None) -> list[list[Any]]:
        """Walk the directories `items` (paths below the roots) and all below
        them; return each worker's result: its report (JSON), the files it
        left to the parent and the directories whose metadata waits."""
        try:
            for number in range(1, self.count + 1):
                self._workers.append(self._start(number))
            self._share_out(deque(items), tick)
            return [self._join(worker) for worker in self._workers]
        finally:
            for worker in self._workers:
                worker.stop()
            self._shared.close()
            self._lifeline.close()

    def _start(self, number: int) -> _Worker:
        parent_end, child_end = socket.socketpair()
        parent = os.getpid()
        pid = platform.fork()
        if pid == 0:
            self._child(number, parent, parent_end, child_end)
        child_end.close()
        worker = _Worker(number, pid, parent_end)
        # Go on only once the worker holds no lock: were this process killed
        # from here on, its locks die with it.
        try:
            kind, _ = _receive(parent_end)
        except (OSError, EOFError):
            kind = 0
        if kind != READY:
            worker.stop()
            raise SnapshotFailed(f"walker {number} did not start")
        return worker

    def _share_out(self, queue: deque[str], tick: Callable[[], None] | None) -> None:
        """Hand out directories until the queue is empty and every worker idle."""
        idle: deque[_Worker] = deque()
        by_fd = {worker.sock.fileno(): worker for worker in self._workers}
        while queue or len(idle) < self.count:
            while idle and queue:
                _send(idle.popleft().sock, WORK, os.fsencode(queue.popleft()))
            _HUNGRY.pack_into(self._shared, 0, len(idle))
            if not queue and len(idle) == self.count:
                break
            ready, _, _ = select.select(list(by_fd), [], [], PROGRESS_SECONDS)
            for fd in ready:
                worker = by_fd[fd]
                for kind, payload in worker.frames():
                    if kind == IDLE:
                        idle.append(worker)
                    elif kind == SHARE:
                        queue.extend(os.fsdecode(path) for path in payload.split(b"\0"))
                    elif kind == DONE:  # a failure, sent at once
                        worker.result = json.loads(payload)
                        _raise_failure(worker)
            if tick is not None:
                tick()
        for worker in self._workers:
            _send(worker.sock, QUIT)

    def _join(self, worker: _Worker) -> list[Any]:
        """Wait for a worker's result, and for it to exit."""
        while worker.result is None:
            try:
                kind, payload = _receive(worker.sock)
            except EOFError:
                raise SnapshotFailed(f"walker {worker.number} died") from None
            if kind == DONE:
                worker.result = json.loads(payload)
        platform.wait_for(worker.pid)
        worker.done = True
        _raise_failure(worker)
        return worker.result

    # -- in the worker -------------------------------------------------------

    def _child(
        self, number: int, parent: int, parent_end: socket.socket, child_end: socket.socket
    ) -> NoReturn:
        """Become walker `number` in a process just forked from `parent`.
        Whatever fails here ends this process: it never unwinds into the
        parent's code, which would report the snapshot a second time."""
        try:
            parent_end.close()
            # Killed with the parent, so a killed apply leaves no walker
            # writing behind it.
            self._lifeline.hold(parent)
            keep = self._keep | self._lifeline.descriptors() | {child_end.fileno()}
            platform.close_descriptors_except(keep)
            self._serve(number, child_end)
        finally:
            platform.exit_now(1)

    def _serve(self, number: int, sock: socket.socket) -> NoReturn:
        status = 1
        try:
            platform.default_stopping_signals()
            _send(sock, READY)
            offset = _HUNGRY.size + _COUNTS.size * (number - 1)

            def publish(files: int, copied: int) -> None:
                _COUNTS.pack_into(self._shared, offset, files, copied)

            walker = self._build(number)
            walker.progress = publish

            def share(stack: list[Frame]) -> bool:
                if _HUNGRY.unpack_from(self._shared)[0]:
                    _hand_over(sock, stack)
                return False

            while True:
                _send(sock, IDLE)
                kind, payload = _receive(sock)
                if kind == QUIT:
                    break
                frame = walker.enter_path(self.roots, os.fsdecode(payload))
                if frame is not None:
                    walker.walk([frame], share)
            placer = walker.placer
            placer.settle()
            if placer.hashing.manifest is not None:
                placer.hashing.manifest.finish_part()
            report = placer.report
            publish(report.files_done(), report.bytes_copied)
            result: list[Any] = ["done", report.to_json(), placer.deferred, walker.late]
            status = 0
        except BaseException as error:  # everything goes back to the parent
            result = ["failed", type(error).__name__, str(error), getattr(error, "errno", None)]
        try:
            # ASCII JSON keeps names that are not UTF-8 (surrogate escapes) intact.
            _send(sock, DONE, json.dumps(result).encode("ascii"))
        finally:
            platform.exit_now(status)


def _hand_over(sock: socket.socket, stack: list[Frame]) -> None:
    """Hand over half the subdirectories not yet entered, the shallowest
    first, when that leaves this walker some."""
    waiting = sum(len(frame.subdirectories) for frame in stack)
    if waiting < 2:
        return
    give = waiting // 2
    paths: list[bytes] = []
    size = 0
    for frame in stack:
        while frame.subdirectories and give and size < SHARE_BYTES:
            # Entered last-in first-out: the front of the list is entered last.
            path = os.fsencode(frame.prefix + frame.subdirectories[0])
            if len(path) >= SHARE_BYTES:
                break  # a path this long stays with this walker
            del frame.subdirectories[0]
            paths.append(path)
            size += len(path) + 1
            give -= 1
    if paths:
        _send(sock, SHARE, b"\0".join(paths))


def _raise_failure(worker: _Worker) -> None:
    result = worker.result
    if result is None or result[0] == "done":
        return
    _, kind, message, error_number = result
    if kind == "OutOfSpace":
        raise fs.OutOfSpace(message)
    if error_number is not None:
        raise OSError(error_number, f"in walker {worker.number}: {message}")
    raise SnapshotFailed(f"walker {worker.number} failed: {kind}: {message}")

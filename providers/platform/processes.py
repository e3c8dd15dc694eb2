"""Signals, process groups and forked workers (POSIX)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn

# What stops a run: Ctrl-C, systemd or launchd stopping us, a closed terminal.
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
INTERRUPT = int(signal.SIGINT)
TERMINATE = int(signal.SIGTERM)


def signal_name(signum: int) -> str:
    """SIGINT, SIGTERM...: the name of a signal number."""
    return signal.Signals(signum).name


def on_stopping_signals(handler: Callable[[int], None]) -> None:
    """Call `handler(signum)` when a stopping signal comes."""
    for signum in STOPPING_SIGNALS:
        signal.signal(signum, lambda number, frame: handler(number))


def ignore_stopping_signals() -> None:
    for signum in STOPPING_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def default_stopping_signals() -> None:
    """Let stopping signals end this process (a forked worker)."""
    for signum in STOPPING_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


@contextlib.contextmanager
def stopping_signals_held() -> Iterator[None]:
    """Hold stopping signals back until the block is done (in the main
    thread; elsewhere they go to the main thread anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _signal_group(group: int, signum: int) -> bool:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def ask_group_to_end(group: int) -> bool:
    """SIGTERM a process group; False when no member could get it."""
    return _signal_group(group, signal.SIGTERM)


def kill_group(group: int) -> bool:
    """SIGKILL a process group; False when no member could get it."""
    return _signal_group(group, signal.SIGKILL)


def group_exists(group: int) -> bool:
    """Whether a process group has a member left."""
    return _signal_group(group, 0)


def kill(pid: int) -> None:
    """SIGKILL one process."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether process `pid` exists (someone else's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def fork() -> int:
    return os.fork()


def wait_for(pid: int) -> None:
    """Reap child `pid`."""
    os.waitpid(pid, 0)


def exit_now(status: int) -> NoReturn:
    """End this (forked) process at once, running no cleanup of the parent's."""
    os._exit(status)


class Lifeline:
    """Ends forked workers when their parent dies, however it dies: made by
    the parent before forking; each child calls `hold` at once.

    Where the kernel offers it (Linux prctl PR_SET_PDEATHSIG), the kernel
    kills the child; elsewhere the child watches a pipe whose only writer
    is the parent: it reads end of file when the parent is gone.
    """

    def __init__(self, death_signal: Callable[[], bool]) -> None:
        self._death_signal = death_signal
        self._read_fd, self._write_fd = os.pipe()

    def descriptors(self) -> set[int]:
        """What a child keeps open: the pipe's reading end."""
        return {self._read_fd}

    def hold(self, parent: int) -> None:
        """In a child just forked from process `parent`: die with it."""
        os.close(self._write_fd)
        if not self._death_signal():
            threading.Thread(target=self._watch, daemon=True).start()
        if os.getppid() != parent:  # the parent died before the watch began
            os._exit(1)

    def _watch(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._read_fd, 1):
                pass
        os._exit(1)

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def wait_readable(fd: int, timeout_seconds: float) -> bool:
    """Wait up to `timeout_seconds` for a pipe to have data, or its end."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout_seconds * 1000)))


class ProcessLock:
    """A lock shared by the processes forked after it was made: one token
    in a pipe, taken by reading it and given back by writing it. A holder
    that dies keeps the token: its parent sees the death and ends the rest."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.write(self._write_fd, b"\0")

    def __enter__(self) -> None:
        os.read(self._read_fd, 1)

    def __exit__(self, *exception: object) -> None:
        os.write(self._write_fd, b"\0")

    def descriptors(self) -> set[int]:
        """What a forked process keeps open to share the lock."""
        return {self._read_fd, self._write_fd}

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

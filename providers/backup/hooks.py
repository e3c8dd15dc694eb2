"""The one gateway that runs shell hooks.

A hook is the operator's own command, run with `/bin/sh -c`. Values reach it
only through environment variables, never spliced into the command string.

A hook runs in a session (and process group) of its own, like a systemd unit
with `KillMode=control-group`: whatever it started is ended with it, when its
shell exits, when it times out and when hardsnap is interrupted. Its output
is read by a thread into a bounded tail; once the shell has exited, the read
stops after a short grace, so a background child that keeps the inherited
stdout open cannot keep apply (and its locks) waiting.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO

from hardsnap.providers import platform
from hardsnap.providers.files.escaping import error_text

OUTPUT_TAIL_BYTES = 4096
# The exit code reported for a hook that ran out of time, as coreutils `timeout`.
TIMED_OUT_EXIT_CODE = 124
# After the shell exits, how long the reader may drain output still on its way.
DRAIN_GRACE = 0.5
# How long the group has to end on SIGTERM before it gets SIGKILL. An orphan
# that nobody reaps (a container whose init does not) still counts as a member
# until then: it only costs this wait.
KILL_GRACE = 2.0
READ_CHUNK = 64 * 1024
# How often the reader looks whether it has been told to stop.
POLL_INTERVAL_MS = 100
# UTF-8 continuation bytes: a tail cut mid-character starts with some of these.
CONTINUATION_BYTES = bytes(range(0x80, 0xC0))


@dataclass(frozen=True)
class HookResult:
    exit_code: int
    # The last few KiB of stdout and stderr, interleaved as written.
    output_tail: str
    duration: float
    # The hook ran longer than its timeout and was ended; exit_code is then
    # TIMED_OUT_EXIT_CODE, whatever the killed shell returned.
    timed_out: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def hook_environment(
    resource: str, source: str, target: str, snapshot: str | None
) -> dict[str, str]:
    """Return the environment a hook runs in: ours plus the HARDSNAP_* values."""
    environment = dict(os.environ)
    environment.pop("HARDSNAP_SNAPSHOT", None)
    environment.update(
        HARDSNAP_RESOURCE=resource,
        HARDSNAP_SOURCE=source,
        HARDSNAP_TARGET=target,
    )
    if snapshot is not None:
        environment["HARDSNAP_SNAPSHOT"] = snapshot
    return environment


def run_hook(command: str, environment: dict[str, str], cwd: str, timeout: float = 0) -> HookResult:
    """Run `command` with /bin/sh -c in its own process group; return its exit
    code and output tail. `timeout` is in seconds, 0 for no limit.

    Whatever the hook started is ended before this returns. Re-raise
    KeyboardInterrupt (hardsnap stopped by a signal) after ending the group.
    """
    started = time.monotonic()
    process: subprocess.Popen[bytes] | None = None
    tail: _OutputTail | None = None
    timed_out = False
    # One try from the moment the hook exists: an interrupt arriving while
    # its output reader starts still ends its group.
    try:
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", command],
                env=environment,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            return HookResult(127, f"cannot run /bin/sh: {error_text(error)}", 0.0)
        assert process.stdout is not None
        tail = _OutputTail(process.stdout)
        try:
            process.wait(timeout if timeout > 0 else None)
        except subprocess.TimeoutExpired:
            timed_out = True
        else:
            tail.wait(DRAIN_GRACE)
    finally:
        if process is not None:
            _end_group(process)
            if tail is None and process.stdout is not None:
                process.stdout.close()
        if tail is not None:
            tail.stop()
    assert process is not None and tail is not None
    exit_code = TIMED_OUT_EXIT_CODE if timed_out else process.returncode
    return HookResult(exit_code, tail.text(), time.monotonic() - started, timed_out)


class _OutputTail:
    """A thread that reads a pipe and keeps only its last OUTPUT_TAIL_BYTES,
    so a hook printing gigabytes costs no more memory than one printing a line."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._kept = bytearray()
        self._trimmed = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name="hook-output", daemon=True)
        self._thread.start()

    def wait(self, seconds: float) -> None:
        """Wait up to `seconds` for the end of the output (every writer gone)."""
        self._thread.join(seconds)

    def stop(self) -> None:
        """Stop reading, even if a writer outside the group still holds the pipe."""
        self._stopping.set()
        self._thread.join()
        self._pipe.close()

    def text(self) -> str:
        kept = bytes(self._kept)
        if self._trimmed:
            kept = kept.lstrip(CONTINUATION_BYTES)
        return kept.decode("utf-8", "replace")

    def _read(self) -> None:
        fd = self._pipe.fileno()
        while not self._stopping.is_set():
            if platform.wait_readable(fd, POLL_INTERVAL_MS / 1000) and not self._take():
                return
        # Told to stop: keep what is already in the pipe, without waiting for more.
        if platform.wait_readable(fd, 0):
            self._take()

    def _take(self) -> bool:
        """Read one chunk into the tail; return False at the end of the output."""
        try:
            chunk = os.read(self._pipe.fileno(), READ_CHUNK)
        except OSError:
            return False
        self._kept += chunk
        if len(self._kept) > OUTPUT_TAIL_BYTES:
            del self._kept[:-OUTPUT_TAIL_BYTES]
            self._trimmed = True
        return bool(chunk)


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """End the hook's process group: SIGTERM, then SIGKILL to whatever is left
    after KILL_GRACE. Reap the shell. The group's id is the shell's pid (it
    leads its own session); a group with no member left is not signalled."""
    group = process.pid
    if not platform.ask_group_to_end(group):
        process.wait()
        return
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline:
        # The shell must be reaped first: as a zombie it still counts as a member.
        if process.poll() is not None and not platform.group_exists(group):
            return
        time.sleep(0.02)
    platform.kill_group(group)
    process.wait()

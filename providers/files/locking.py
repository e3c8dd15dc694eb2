"""Lock files: one hardsnap apply at a time per state directory and per target.

A lock is an flock on a regular file that only hardsnap's user can open:
in the state directory, or, for a target, in a private directory of this
user's outside every target (`/run/hardsnap` as root). Never a lock on a
directory that any reader could open and hold, and never on the target's
filesystem, which a post_command may want to unmount. The kernel drops an
flock when its holder ends, however it ends: a killed apply leaves none.

The holder writes its pid in the file. A lock held by a process that is
not the one the file names was not taken by a hardsnap apply (an admin's
`flock`, a stray child): that is an error to look into, not a run to wait
for.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time

from hardsnap.providers import platform
from hardsnap.providers.files import fs

# A holder that has just taken the lock writes its pid at once: looked at
# again after this long before it counts as a holder that is no hardsnap.
RECHECK_SECONDS = 0.2


class Busy(Exception):
    """Another hardsnap apply holds the lock (exit 75: try again later)."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class HeldByOther(Exception):
    """Something that is not a hardsnap apply holds the lock (exit 1)."""


class LockUnusable(Exception):
    """The lock's directory or file cannot be used safely; the message says why."""


def hold(fd: int, path: str, doing: str) -> None:
    """Take the flock of the open lock file `fd` (shown as `path`) and
    record this process in it. `doing` says what the holder does, for
    messages: "holds the lock PATH", "is writing to TARGET". Raise Busy
    when a hardsnap apply holds it, HeldByOther when something else does."""
    for attempt in range(2):
        if platform.try_lock(fd):
            break
        recorded = _recorded_pid(fd)
        holder = platform.lock_holder(fd)
        if recorded is not None and (
            holder == recorded or (holder is None and platform.alive(recorded))
        ):
            raise Busy(f"another hardsnap apply (pid {recorded}) {doing}", recorded)
        if attempt:
            who = (
                f"pid {holder} ({platform.process_name(holder) or 'unknown'})"
                if holder
                else "a process"
            )
            raise HeldByOther(
                f"the lock {path} is held by {who}, which is not a hardsnap apply (it did not "
                f"record itself there): end it, or find out why it holds the lock"
            )
        time.sleep(RECHECK_SECONDS)  # it may be a hardsnap apply writing its pid now
    os.ftruncate(fd, 0)
    platform.write_at(fd, f"{os.getpid()}\n".encode(), 0)


def release(fd: int) -> None:
    """Let go of a lock taken with `hold`, and close it."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    os.close(fd)


def _recorded_pid(fd: int) -> int | None:
    try:
        first = platform.read_at(fd, 64, 0).decode("ascii").split("\n", 1)[0].strip()
        return int(first) if first else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


# -- target locks ----------------------------------------------------------------------


def lock_directory() -> str:
    """Where this user's target locks live: /run/hardsnap as root, else
    $XDG_RUNTIME_DIR/hardsnap (the user's own runtime directory), else
    /tmp/hardsnap-UID."""
    if platform.effective_uid() == 0:
        return "/run/hardsnap" if os.path.isdir("/run") else "/var/run/hardsnap"
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    with contextlib.suppress(OSError):
        if runtime.startswith("/") and os.stat(runtime).st_uid == platform.effective_uid():
            return os.path.join(runtime, "hardsnap")
    return f"/tmp/hardsnap-{platform.effective_uid()}"


def lock_file_name(target: str) -> str:
    """The lock file of a target, by its resolved path (any length fits)."""
    return "target-" + hashlib.sha256(os.fsencode(target)).hexdigest()[:32] + ".lock"


def open_lock_directory(path: str) -> int:
    """Open (making it 0700 when missing) the lock directory, following no
    symlink; raise LockUnusable unless it is this user's alone."""
    try:
        fd = fs.open_absolute(os.path.realpath(os.path.dirname(path)), make=True)
        try:
            directory_fd = fs.open_below(fd, os.path.basename(path), make=True)
        finally:
            os.close(fd)
    except OSError as error:
        raise LockUnusable(f"cannot open the lock directory {path}: {error.strerror}") from None
    info = os.fstat(directory_fd)
    if info.st_uid != platform.effective_uid() or info.st_mode & 0o077:
        os.close(directory_fd)
        raise LockUnusable(
            f"the lock directory {path} must belong to uid {platform.effective_uid()} with mode "
            f"0700 "
            f"(it is uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}): another "
            f"user could hold or replace the locks there; remove it, hardsnap makes it anew"
        )
    return directory_fd


def open_lock_file(directory_fd: int, name: str, path: str) -> int:
    """Open (creating it 0600) a lock file in a checked directory; raise
    LockUnusable unless it is a regular file of this user's with one name."""
    try:
        fd = platform.open_private(name, directory_fd, writable=True, create=True)
    except OSError as error:
        raise LockUnusable(f"cannot open the lock {path}: {error.strerror}") from None
    info = os.fstat(fd)
    if (
        not stat.S_ISREG(info.st_mode)
        or info.st_uid != platform.effective_uid()
        or info.st_nlink != 1
    ):
        os.close(fd)
        raise LockUnusable(
            f"the lock {path} is not a regular file of this user's with one name: remove it"
        )
    return fd

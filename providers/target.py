"""The target directory: its lock, what it holds, the source it serves, pruning.

Everything below the target is reached through the target's descriptor,
opened without following a symlink (target_path itself may be a symlink: it
is resolved once per run), then `*at` calls relative to it. Someone who may
write the target can swap entries for symlinks at any moment; none is ever
followed, so nothing outside the target is read, changed or removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
from dataclasses import dataclass
from types import TracebackType

from hardsnap.providers import fs, tree
from hardsnap.providers.manifest import remove_manifest
from hardsnap.providers.naming import is_snapshot_name

# Work in progress carries one of these prefixes, never a snapshot name.
PARTIAL_PREFIX = ".hardsnap-partial."
PRUNING_PREFIX = ".hardsnap-pruning."
# The marker naming the source a target serves.
MARKER = ".hardsnap-target"
MARKER_BYTES = 64 << 10


class TargetBusy(Exception):
    """Another apply holds the lock of a target; `pid` names it when known."""

    def __init__(self, target: str, pid: int | None) -> None:
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(f"another hardsnap apply ({holder}) is writing to {target}")
        self.pid = pid


class TargetLocks:
    """The locks of the targets an apply writes, taken before any hook runs.

    An flock on each target directory itself, so two applies with different
    state directories never write one target at once. A target that does
    not exist yet (a pre_command may mount it) is locked through its nearest
    existing ancestor until `open` creates it and locks it too. Each
    directory is locked once (an flock held through one descriptor refuses
    another, even in the same process).
    """

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        # Locked directory -> its descriptor.
        self._held: dict[str, int] = {}

    def __enter__(self) -> TargetLocks:
        try:
            for resolved in self.targets:
                directory = fs.existing_ancestor(resolved)
                if directory in self._held:
                    continue
                try:
                    self._lock(directory, resolved)
                except OSError:
                    # No directory there (a file, a link swapped in): the
                    # resource is refused, or its snapshot fails on `open`.
                    continue
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        while self._held:
            os.close(self._held.popitem()[1])

    def _lock(self, directory: str, resolved: str, make: bool = False) -> int:
        try:
            fd = fs.open_absolute(directory, make)
        except OSError as error:
            reason = error.strerror
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                reason = "a part of it is no directory, or a symlink now (never followed)"
            raise OSError(error.errno, f"cannot open target_path {resolved}: {reason}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            busy = error.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
            holder = fs.flock_holder(fd) if busy else None
            os.close(fd)
            if not busy:
                raise
            raise TargetBusy(resolved, holder) from None
        self._held[directory] = fd
        return fd

    def fd(self, resolved: str) -> int | None:
        """The descriptor of target `resolved`, None while it does not exist."""
        return self._held.get(resolved)

    def open(self, resolved: str) -> int:
        """Return the descriptor of target `resolved`, creating it (0700) and
        locking it first when it did not exist when the locks were taken."""
        fd = self._held.get(resolved)
        if fd is None:
            fd = self._lock(resolved, resolved, make=True)
        return fd


# -- what a target holds -----------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """The entries of a target that hardsnap knows, by kind, each sorted."""

    # Snapshot-named real directories (dated after now ones included).
    snapshots: tuple[str, ...] = ()
    # Work directories a killed or interrupted run left.
    partials: tuple[str, ...] = ()
    # Snapshots a prune renamed away but did not finish removing.
    prunings: tuple[str, ...] = ()


def read_listing(target_fd: int) -> Listing:
    """List a target's snapshots and leftovers. Raise OSError when it
    cannot be listed."""
    snapshots, partials, prunings = [], [], []
    with os.scandir(target_fd) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            name = entry.name
            if is_snapshot_name(name):
                snapshots.append(name)
            elif name.startswith(PARTIAL_PREFIX):
                partials.append(name)
            elif name.startswith(PRUNING_PREFIX):
                prunings.append(name[len(PRUNING_PREFIX) :])
    return Listing(tuple(sorted(snapshots)), tuple(sorted(partials)), tuple(sorted(prunings)))


def list_snapshots(target: str) -> tuple[str, ...]:
    """Return the snapshot-named real directories in `target`, oldest first
    (none when it cannot be opened or listed)."""
    try:
        fd = fs.open_directory(target)
    except OSError:
        return ()
    try:
        return read_listing(fd).snapshots
    except OSError:
        return ()
    finally:
        os.close(fd)


def writable_by_others(target_fd: int) -> bool:
    """Whether users other than its owner may create entries in the target."""
    info = os.fstat(target_fd)
    return bool(info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


# -- the source a target serves ---------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The source a target's snapshots are made of: a directory on a host."""

    source: str
    host: str
    # /etc/machine-id where there is one: a host renamed stays the same host.
    machine: str | None = None

    def same_as(self, other: Owner) -> bool:
        if self.source != other.source:
            return False
        if self.machine and other.machine:
            return self.machine == other.machine
        return self.host == other.host

    def __str__(self) -> str:
        return f"{self.source} on host {self.host}"


def this_host(source: str) -> Owner:
    """The owner a target gets when `source` on this host first uses it."""
    machine = None
    with contextlib.suppress(OSError, UnicodeDecodeError), open("/etc/machine-id") as stream:
        machine = stream.read().strip() or None
    return Owner(source, socket.gethostname(), machine)


def read_owner(target_fd: int) -> Owner | None:
    """Return what the target's marker records; None when it has none.
    Raise ValueError when the marker is there but is not one of ours."""
    try:
        fd = os.open(
            MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=target_fd
        )
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ValueError(f"{MARKER} cannot be read: {error.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{MARKER} is not a regular file")
        document = json.loads(os.read(fd, MARKER_BYTES))
        owner = Owner(str(document["source"]), str(document["host"]), document.get("machine"))
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise ValueError(f"{MARKER} is damaged ({error})") from None
    finally:
        os.close(fd)
    return owner


def write_owner(target_fd: int, owner: Owner) -> None:
    """Record in the target which source it serves (written whole, then renamed)."""
    temporary = MARKER + ".new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary, dir_fd=target_fd)
    fd = os.open(
        temporary,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=target_fd,
    )
    try:
        document = {"source": owner.source, "host": owner.host, "machine": owner.machine}
        os.write(fd, (json.dumps(document, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, MARKER, src_dir_fd=target_fd, dst_dir_fd=target_fd)


# -- leftovers and pruning -------------------------------------------------------------


def undeletable(target: str, failures: list[OSError]) -> list[str]:
    """Warnings naming what could not be removed, and the usual way out."""
    return [
        f"cannot remove {os.path.join(target, str(failure.filename))}: {failure.strerror} "
        f"(immutable? see lsattr; chattr -i it, then the next apply removes it)"
        for failure in failures
    ]


def adopt_partial(target_fd: int, target: str, work: str) -> tuple[bool, list[str]]:
    """Make the newest work directory a killed or interrupted run left the
    work directory `work`, so its finished files are reused; remove older
    ones. Return whether one was adopted, and warnings about leftovers that
    could not be removed (they never stop a snapshot)."""
    partials = read_listing(target_fd).partials
    warnings = []
    for name in partials[:-1]:
        warnings.extend(undeletable(target, tree.remove_what_can_be(name, target_fd)))
    if not partials:
        return False, warnings
    if partials[-1] != work:
        os.rename(partials[-1], work, src_dir_fd=target_fd, dst_dir_fd=target_fd)
    return True, warnings


def existing_directory(target_fd: int, name: str) -> str | None:
    """The directory holding snapshot `name` now: the snapshot itself, or
    what an interrupted prune left of it."""
    for candidate in (name, PRUNING_PREFIX + name):
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.stat(candidate, dir_fd=target_fd, follow_symlinks=False).st_mode):
                return candidate
    return None


def bytes_freed(target_fd: int, names: list[str]) -> int:
    """The bytes that pruning the snapshots `names` would free."""
    directories = [existing_directory(target_fd, name) for name in names]
    return tree.bytes_freed(target_fd, [name for name in directories if name is not None])


def freed_by_pruning(resolved: str, names: list[str]) -> int:
    """The bytes that pruning the snapshots `names` of target `resolved` would free."""
    fd = fs.open_directory(resolved)
    try:
        return bytes_freed(fd, names)
    finally:
        os.close(fd)


def prune(target_fd: int, target: str, names: list[str]) -> tuple[list[str], int, list[str]]:
    """Remove the named snapshots; return those removed, the bytes that freed
    and warnings about files that could not be removed.

    Each is first renamed out of the snapshot namespace, so a prune killed
    half-way never leaves a partly deleted directory under a snapshot name.
    A file that cannot be removed (immutable) stays behind under the
    pruning name, reported, and is tried again by the next prune.
    """
    removed = []
    warnings = []
    freed = bytes_freed(target_fd, names)
    for name in names:
        directory = existing_directory(target_fd, name)
        if directory is None:
            continue
        doomed = PRUNING_PREFIX + name
        if directory != doomed:
            os.rename(directory, doomed, src_dir_fd=target_fd, dst_dir_fd=target_fd)
        failures = tree.remove_what_can_be(doomed, target_fd)
        warnings.extend(undeletable(target, failures))
        remove_manifest(target_fd, name)
        removed.append(name)
    os.fsync(target_fd)
    return removed, freed, warnings

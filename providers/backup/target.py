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
import json
import os
import socket
import stat
from dataclasses import dataclass, field

from hardsnap.providers import platform
from hardsnap.providers.backup.naming import is_snapshot_name
from hardsnap.providers.files import fs, locking, tree
from hardsnap.providers.files.capabilities import Keeps
from hardsnap.providers.files.escaping import escape_name
from hardsnap.providers.manifest.directory import remove_manifest

# Work in progress carries one of these prefixes, never a snapshot name.
PARTIAL_PREFIX = ".hardsnap-partial."
PRUNING_PREFIX = ".hardsnap-pruning."
# The marker naming the source a target serves.
MARKER = ".hardsnap-target"
MARKER_BYTES = 64 << 10


class TargetLocks:
    """The locks of the targets an apply writes, taken before any hook runs.

    One lock file per target (by its resolved path) in this user's lock
    directory (providers/files/locking.py), so two applies with different state
    directories never write one target at once, whether the target exists
    yet or not (a pre_command may mount it). Nothing on the target's own
    filesystem is held: a post_command may unmount it.
    """

    def __init__(self, targets: list[str], directory: str | None = None) -> None:
        self.targets = targets
        self.directory = directory or locking.lock_directory()
        # Target -> the descriptor of its lock file.
        self._held: dict[str, int] = {}

    def __enter__(self) -> TargetLocks:
        """Take every lock. Raise locking.Busy when a hardsnap apply holds
        one, locking.HeldByOther when something else does, LockUnusable
        when the lock directory is not safe to use."""
        if not self.targets:
            return self
        directory_fd = locking.open_lock_directory(self.directory)
        try:
            for resolved in self.targets:
                if resolved in self._held:
                    continue
                name = locking.lock_file_name(resolved)
                path = os.path.join(self.directory, name)
                fd = locking.open_lock_file(directory_fd, name, path)
                self._held[resolved] = fd
                locking.hold(fd, path, f"is writing to {resolved}")
        except BaseException:
            self.release()
            raise
        finally:
            os.close(directory_fd)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        while self._held:
            fd = self._held.popitem()[1]
            locking.release(fd)


def open_target(resolved: str, make: bool = False) -> int:
    """Open target `resolved` one directory at a time from /, following no
    symlink; with `make`, a missing target (and its parents) is made, the
    target 0700. Raise OSError saying why it cannot be opened."""
    try:
        return fs.open_absolute(resolved, make)
    except OSError as error:
        reason = error.strerror
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            reason = "a part of it is no directory, or a symlink now (never followed)"
        raise OSError(error.errno, f"cannot open target_path {resolved}: {reason}") from None


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
        fd = platform.open_directory(target)
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


def readable_by_others(target_fd: int) -> bool:
    """Whether users other than its owner may list or enter the target."""
    info = os.fstat(target_fd)
    return bool(info.st_mode & (stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH))


# -- the source a target serves ---------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The source a target's snapshots are made of: a directory on a host."""

    source: str
    host: str
    # /etc/machine-id where there is one: a host renamed stays the same host.
    machine: str | None = None
    # Where `source` led, symlinks resolved, when the target was first
    # used (None in markers older than this record).
    resolved: str | None = None
    # What the target's filesystem kept when last probed (None: never).
    keeps: Keeps | None = field(default=None, compare=False)

    def same_as(self, other: Owner) -> bool:
        """Whether both are the same source on the same host, wherever it
        resolves now (see moved_from)."""
        if self.source != other.source:
            return False
        if self.machine and other.machine:
            return self.machine == other.machine
        return self.host == other.host

    def moved_from(self, recorded: Owner) -> bool:
        """Whether this source resolves elsewhere than it did when the
        target recorded it: a symlink on its path changed."""
        return None not in (self.resolved, recorded.resolved) and self.resolved != recorded.resolved

    def __str__(self) -> str:
        return f"{self.source} on host {self.host}"


def this_host(source: str, resolved: str) -> Owner:
    """The owner a target gets when `source` (resolving to `resolved`) on
    this host first uses it."""
    machine = None
    with contextlib.suppress(OSError, UnicodeDecodeError), open("/etc/machine-id") as stream:
        machine = stream.read().strip() or None
    return Owner(source, socket.gethostname(), machine, resolved)


def read_owner(target_fd: int) -> Owner | None:
    """Return what the target's marker records; None when it has none.
    Raise ValueError when the marker is there but is not one of ours."""
    try:
        fd = platform.open_read(MARKER, target_fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ValueError(f"{MARKER} cannot be read: {error.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{MARKER} is not a regular file")
        document = json.loads(os.read(fd, MARKER_BYTES))
        resolved = document.get("resolved")
        keeps = document.get("keeps")
        owner = Owner(
            str(document["source"]),
            str(document["host"]),
            document.get("machine"),
            None if resolved is None else str(resolved),
            None if keeps is None else Keeps.from_json(keeps),
        )
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise ValueError(f"{MARKER} is damaged ({error})") from None
    finally:
        os.close(fd)
    return owner


def write_owner(target_fd: int, owner: Owner) -> None:
    """Record in the target which source it serves (written whole, then renamed)."""
    temporary = MARKER + ".new"
    with contextlib.suppress(FileNotFoundError):
        platform.unlink_at(temporary, target_fd)
    fd = platform.create_new(temporary, target_fd)
    try:
        document = {
            "source": owner.source,
            "resolved": owner.resolved,
            "host": owner.host,
            "machine": owner.machine,
            "keeps": None if owner.keeps is None else owner.keeps.to_json(),
        }
        os.write(fd, (json.dumps(document, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    platform.rename_at(temporary, MARKER, target_fd)


# -- leftovers and pruning -------------------------------------------------------------


def undeletable(target: str, failures: list[OSError]) -> list[str]:
    """Warnings naming what could not be removed, and the usual way out."""
    return [
        f"cannot remove {escape_name(os.path.join(target, str(failure.filename)))}: "
        f"{failure.strerror} "
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
        platform.rename_at(partials[-1], work, target_fd)
    return True, warnings


def existing_directory(target_fd: int, name: str) -> str | None:
    """The directory holding snapshot `name` now: the snapshot itself, or
    what an interrupted prune left of it."""
    for candidate in (name, PRUNING_PREFIX + name):
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(platform.stat_at(candidate, target_fd).st_mode):
                return candidate
    return None


def bytes_freed(target_fd: int, names: list[str]) -> int:
    """The bytes that pruning the snapshots `names` would free."""
    directories = [existing_directory(target_fd, name) for name in names]
    return tree.bytes_freed(target_fd, [name for name in directories if name is not None])


def freed_by_pruning(resolved: str, names: list[str]) -> int:
    """The bytes that pruning the snapshots `names` of target `resolved` would free."""
    fd = platform.open_directory(resolved)
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
            platform.rename_at(directory, doomed, target_fd)
        failures = tree.remove_what_can_be(doomed, target_fd)
        warnings.extend(undeletable(target, failures))
        remove_manifest(target_fd, name)
        removed.append(name)
    os.fsync(target_fd)
    return removed, freed, warnings

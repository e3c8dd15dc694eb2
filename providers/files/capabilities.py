"""What a target filesystem can hold, found by trying it.

A USB disk or a NAS share is not ext4: NTFS keeps mtimes to 100 ns and,
mounted without `permissions`, no owners or permission bits; exFAT has no
hard links, symlinks, FIFOs or owners, keeps mtimes to the second, folds
case and refuses some names. The same disk keeps more or less depending on
how it is mounted, so each apply probes the target afresh (a few calls on
a scratch file), records the result in the target's marker for plan, and
the walk compares and creates accordingly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import asdict, dataclass, fields
from typing import Any

from hardsnap.providers import platform

PROBE = ".hardsnap-probe"
# An mtime no filesystem keeps exactly unless it keeps nanoseconds; within
# every filesystem's range of dates (2023).
PROBE_NS = 1_700_000_000_123_456_789
# The steps a filesystem may keep mtimes in: ns, 100 ns (NTFS), us, ms,
# 10 ms, s, 2 s (FAT).
MTIME_STEPS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 10**8, 10**9, 2 * 10**9)
# A byte that is no UTF-8: NTFS and exFAT refuse names holding it.
NOT_UTF8 = b"\xff"
# Modes that only a filesystem keeping permission bits gives back.
PROBE_MODES = (0o640, 0o751)


@dataclass(frozen=True)
class Keeps:
    """What a target filesystem keeps (all of it, unless probed otherwise)."""

    hard_links: bool = True
    symlinks: bool = True
    special_files: bool = True
    owners: bool = True
    modes: bool = True
    xattrs: bool = True
    # mtimes are kept to this many nanoseconds (truncated).
    mtime_step_ns: int = 1
    # Names differing in case only are one name there.
    folds_case: bool = False
    # Names must be valid UTF-8 there (NTFS, exFAT).
    utf8_names: bool = False

    def dropped(self) -> list[str]:
        """What this filesystem does not keep, as a warning names it."""
        lost = [
            label
            for label, kept in (
                ("hard links", self.hard_links),
                ("symlinks", self.symlinks),
                ("FIFOs or device nodes", self.special_files),
                ("owners", self.owners),
                ("permission bits", self.modes),
                ("extended attributes", self.xattrs),
            )
            if not kept
        ]
        if self.mtime_step_ns > 1:
            lost.append(f"mtimes finer than {_duration(self.mtime_step_ns)}")
        if self.folds_case:
            lost.append("names that differ only in case")
        if self.utf8_names:
            lost.append("names that are not UTF-8")
        return lost

    @property
    def holds_everything(self) -> bool:
        """Whether every name and kind the walk meets can go there."""
        return self.symlinks and self.special_files and not (self.folds_case or self.utf8_names)

    def same_mtime(self, first_ns: int, second_ns: int) -> bool:
        """Whether two mtimes are the same as far as this filesystem keeps them."""
        step = self.mtime_step_ns
        return first_ns // step == second_ns // step

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: object) -> Keeps:
        """Read what a marker recorded; anything unknown keeps the default."""
        if not isinstance(document, dict):
            return cls()
        values: dict[str, Any] = {}
        for item in fields(cls):
            value = document.get(item.name)
            if isinstance(value, bool) or (item.name == "mtime_step_ns" and _is_step(value)):
                values[item.name] = value
        return cls(**values).shared()

    def shared(self) -> Keeps:
        """ALL itself when this keeps everything: the walk's checks take
        their fast path by identity."""
        return ALL if self == ALL else self


# What an ext4, XFS or btrfs target keeps, and what is assumed unprobed.
ALL = Keeps()


def _is_step(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in MTIME_STEPS


def _duration(step_ns: int) -> str:
    for unit, size in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if step_ns >= size:
            return f"{step_ns / size:g} {unit}"
    return f"{step_ns} ns"


def probe(target_fd: int) -> Keeps:
    """Find what the filesystem of the open target directory keeps, on a
    scratch file made and removed there (leftovers of a killed probe
    included)."""
    names = [f"{PROBE}.{suffix}" for suffix in ("file", "link", "symlink", "fifo")]
    names.append(os.fsdecode(NOT_UTF8 + PROBE.encode()))
    _remove(target_fd, names)
    try:
        return _try_all(target_fd, *names).shared()
    finally:
        _remove(target_fd, names)


def _try_all(target_fd: int, file: str, link: str, symlink: str, fifo: str, not_utf8: str) -> Keeps:
    try:
        fd = platform.create_new(file, target_fd)
    except OSError:
        return Keeps()  # nothing can be written there: the snapshot will say so
    try:
        os.utime(fd, ns=(PROBE_NS, PROBE_NS))
        kept_ns = platform.stat_at(file, target_fd).st_mtime_ns
        step = next((step for step in MTIME_STEPS if kept_ns == PROBE_NS // step * step), 0)
        modes = all(_keeps_mode(fd, file, target_fd, mode) for mode in PROBE_MODES)
        owners = not platform.IS_ROOT or _keeps_owner(fd, file, target_fd, modes)
        # A system without xattr calls has none to keep, whatever the target.
        xattrs = not platform.has_extended_attributes() or _keeps_xattr(fd)
    finally:
        os.close(fd)
    return Keeps(
        hard_links=_can(lambda: platform.link_at(file, target_fd, link, target_fd)),
        symlinks=_can(lambda: platform.symlink_at("probe", symlink, target_fd))
        and platform.readlink_at(symlink, target_fd) == "probe",
        special_files=_can(lambda: platform.make_node_at(fifo, target_fd, stat.S_IFIFO, 0))
        and stat.S_ISFIFO(platform.stat_at(fifo, target_fd).st_mode),
        owners=owners,
        modes=modes,
        xattrs=xattrs,
        mtime_step_ns=step or MTIME_STEPS[-1],
        folds_case=_exists(file.upper(), target_fd),
        utf8_names=not _can(lambda: os.close(platform.create_new(not_utf8, target_fd))),
    )


def _keeps_mode(fd: int, name: str, target_fd: int, mode: int) -> bool:
    try:
        platform.set_mode(fd, mode)
    except OSError:
        return False
    return stat.S_IMODE(platform.stat_at(name, target_fd).st_mode) == mode


def _keeps_owner(fd: int, name: str, target_fd: int, modes: bool) -> bool:
    """As root: whether an owner other than root is kept. A refused chown
    means the filesystem keeps none where it keeps no permission bits
    either (exFAT); elsewhere it is this process that may not chown (a
    sandbox without CAP_CHOWN), which the snapshot then reports by file."""
    try:
        platform.set_owner(fd, 1, 1)
    except OSError as error:
        return modes and error.errno in (errno.EPERM, errno.EACCES)
    info = platform.stat_at(name, target_fd)
    return (info.st_uid, info.st_gid) == (1, 1)


def _keeps_xattr(fd: int) -> bool:
    try:
        platform.set_extended_attribute(fd, "user.hardsnap-probe", b"1")
        return platform.extended_attributes(fd).get("user.hardsnap-probe") == b"1"
    except OSError:
        return False


def _can(attempt: Any) -> bool:
    try:
        attempt()
    except OSError:
        return False
    return True


def _exists(name: str, target_fd: int) -> bool:
    """Whether `name` finds an entry: the probe file's name in other case
    finds it where the filesystem folds case (exFAT numbers such a lookup
    as another inode, so only its finding tells)."""
    try:
        platform.stat_at(name, target_fd)
    except OSError:
        return False
    return True


def _remove(target_fd: int, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(OSError):
            platform.unlink_at(name, target_fd)

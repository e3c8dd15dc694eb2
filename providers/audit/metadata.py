"""How an entry of a snapshot compares with what its manifest recorded:
metadata that changed since (drift), or that the target's filesystem did
not keep of the source's (an NTFS or exFAT target: owners, permission
bits, mtimes finer than it keeps). verify reports the first as a problem
and names the second, never calling it clean."""

from __future__ import annotations

import datetime as dt
import os
import stat

from hardsnap.providers import platform
from hardsnap.providers.files.capabilities import Keeps
from hardsnap.providers.manifest.format import Entry


def moment(mtime_ns: int) -> str:
    """A file time as people read it: UTC date and time, with the
    nanoseconds when there are any (two times may differ only there)."""
    seconds, nanoseconds = divmod(mtime_ns, 10**9)
    try:
        text = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{mtime_ns} ns after 1970"
    return f"{text}.{nanoseconds:09d} UTC" if nanoseconds else f"{text} UTC"


def compare(entry: Entry, info: os.stat_result, keeps: Keeps) -> tuple[str | None, str | None]:
    """How an entry's metadata differs from its manifest line: (what
    changed, what the target did not keep), each None when nothing."""
    drift: list[str] = []
    dropped: list[str] = []
    if entry.kind == stat.S_IFREG and info.st_size != entry.size:
        drift.append(f"size {entry.size} -> {info.st_size}")
    if entry.kind in (stat.S_IFCHR, stat.S_IFBLK) and platform.device_of(info) != entry.size:
        drift.append(f"device {entry.size} -> {platform.device_of(info)}")
    if info.st_mtime_ns != entry.mtime_ns:
        kept = keeps.same_mtime(info.st_mtime_ns, entry.mtime_ns)
        (dropped if kept else drift).append(
            f"mtime {moment(entry.mtime_ns)} -> {moment(info.st_mtime_ns)}"
        )
    bits = stat.S_IMODE(entry.mode), stat.S_IMODE(info.st_mode)
    if entry.kind != stat.S_IFLNK and bits[0] != bits[1]:
        (drift if keeps.modes else dropped).append(f"mode {bits[0]:04o} -> {bits[1]:04o}")
    if (info.st_uid, info.st_gid) != (entry.uid, entry.gid):
        (drift if keeps.owners else dropped).append(
            f"owner {entry.uid}:{entry.gid} -> {info.st_uid}:{info.st_gid}"
        )
    return ", ".join(drift) or None, ", ".join(dropped) or None

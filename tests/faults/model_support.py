"""What the model-based test (tests/faults/test_model.py) knows of time, trees
and processes: the constants it draws from and how it looks at disk."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.world.processes import Apply

UTC = dt.UTC
START = dt.datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # a Sunday, day 088
SNAPSHOT_NAME = re.compile(r"\d{4}\.\d{3}\.\d{2}\.\d{2}")
# Hand-made snapshot-like names: one far after any clock the machine
# reaches (never becomes "now"), one long before (a symlink, not a snapshot).
FAR_FUTURE = dt.datetime(2990, 7, 1, 12, 0, tzinfo=UTC)
LONG_AGO = dt.datetime(2001, 1, 1, 0, 0, tzinfo=UTC)
ODD_NS = 1_700_000_000_123_456_789
NAMES = ("a", "b", "c.txt", "d.bin", "e")
FILE_MODES = (0o644, 0o600, 0o755, 0o400, 0o000, 0o4755, 0o2750)
DIRECTORY_MODES = (0o755, 0o700, 0o750, 0o555, 0o2775)
OWNERS = (0, 1000, 65534)
XATTR_NAMES = ("user.alpha", "user.beta")
EDITS = (
    "new file",
    "rewrite",
    "chmod",
    "chown",
    "xattr",
    "rename",
    "delete",
    "file to directory",
    "directory to file",
)
DISK_FULL = re.compile(r"full|no space left|quota|min_free_space", re.IGNORECASE)
APPLY_CODES = {0, 1, 2, 75, 130, 143}  # the SPEC's exit codes of apply
SOAK_EXAMPLES = int(os.environ.get("HARDSNAP_SOAK_EXAMPLES", "0"))
SOAK_STEPS = int(os.environ.get("HARDSNAP_SOAK_STEPS", "0"))


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def name_of(moment: dt.datetime) -> str:
    return moment.strftime("%Y.%j.%H.%M")


def time_of(name: str) -> dt.datetime:
    return dt.datetime.strptime(name, "%Y.%j.%H.%M").replace(tzinfo=UTC)


def window_of(moment: dt.datetime, schedule: str) -> str:
    """The SPEC's window: the UTC hour, the UTC date, or the ISO week."""
    if schedule == "hourly":
        return moment.strftime("%Y-%m-%d %H")
    if schedule == "daily":
        return moment.strftime("%Y-%m-%d")
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week}"


# The SPEC's window lengths, for clock sanity: retain plus one of these.
WINDOW_LENGTHS = {
    "hourly": dt.timedelta(hours=1),
    "daily": dt.timedelta(days=1),
    "weekly": dt.timedelta(weeks=1),
}


# -- looking at trees ------------------------------------------------------------------------

Entry = tuple[object, ...]


def xattrs_of(path: str) -> tuple[tuple[str, bytes], ...]:
    if not hasattr(os, "listxattr"):  # the masked platform run
        return ()
    names = sorted(os.listxattr(path, follow_symlinks=False))
    return tuple((name, os.getxattr(path, name, follow_symlinks=False)) for name in names)


def entries_below(root: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative path, path, lstat) of `root` ("." itself) and all below it."""
    yield ".", str(root), os.lstat(root)
    pending = [("", str(root))]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as found:
            for item in found:
                info = item.stat(follow_symlinks=False)
                yield prefix + item.name, item.path, info
                if stat.S_ISDIR(info.st_mode):
                    pending.append((prefix + item.name + "/", item.path))


def contents(root: Path, symlinks: bool = True) -> dict[str, Entry]:
    """What a snapshot must reproduce of a tree: by relative path, the kind,
    permission bits, owner, mtime, xattrs and the bytes or link text.
    Without `symlinks`, symlinks are left out (hardsnap's default skips them)."""
    found: dict[str, Entry] = {}
    for relative, path, info in entries_below(root):
        mode = info.st_mode
        common = (stat.S_IMODE(mode), info.st_uid, info.st_gid, info.st_mtime_ns)
        if stat.S_ISREG(mode):
            with open(path, "rb") as stream:
                data = stream.read()
            found[relative] = ("file", *common, xattrs_of(path), data)
        elif stat.S_ISDIR(mode):
            found[relative] = ("dir", *common, xattrs_of(path))
        elif stat.S_ISLNK(mode):
            if symlinks:
                found[relative] = ("symlink", info.st_uid, info.st_gid, info.st_mtime_ns)
                found[relative] += (os.readlink(path),)
        else:
            found[relative] = ("other", stat.S_IFMT(mode))
    return found


def identity(root: Path) -> dict[str, Entry]:
    """Everything that any write, link, rename or chmod below `root` (or of
    `root` itself, a symlink included) would change: inode, link count,
    ctime, metadata and bytes. Reading changes none of it."""
    if not os.path.lexists(root):
        return {}
    found: dict[str, Entry] = {}
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode):
        entries: Iterator[tuple[str, str, os.stat_result]] = iter([(".", str(root), info)])
    else:
        entries = entries_below(root)
    for relative, path, info in entries:
        entry: Entry = (
            info.st_ino,
            info.st_mode,
            info.st_nlink,
            info.st_uid,
            info.st_gid,
            info.st_size,
            info.st_mtime_ns,
            info.st_ctime_ns,
        )
        if stat.S_ISREG(info.st_mode):
            with open(path, "rb") as stream:
                entry += (stream.read(), xattrs_of(path))
        elif stat.S_ISLNK(info.st_mode):
            entry += (os.readlink(path),)
        else:
            entry += (xattrs_of(path),)
        found[relative] = entry
    return found


def state_files(
    before: dict[str, Entry], after: dict[str, Entry]
) -> tuple[dict[str, Entry], dict[str, Entry]]:
    """The state directory's files before and after a plan, as far as plan
    must leave them alone. Not the directory's own mtime, nor SQLite's -wal
    and -shm files: plan opens the database read-write, which creates both
    and removes them when it closes, folding a WAL that a killed apply left
    into the database (then cache.db may change too)."""
    kept = []
    for found in (before, after):
        found = {name: entry for name, entry in found.items() if name != "."}
        kept.append(found)
    transient = {name for found in kept for name in found if name.endswith(("-wal", "-shm"))}
    if any(name.endswith("-wal") for name in transient if name in before):
        transient.add("cache.db")
    for found in kept:
        for name in transient:
            found.pop(name, None)
    return kept[0], kept[1]


def real_directory(path: Path) -> bool:
    """A directory, not a symlink to one."""
    return stat.S_ISDIR(os.lstat(path).st_mode)


def inodes(root: Path) -> dict[str, int]:
    return {
        relative: info.st_ino
        for relative, _, info in entries_below(root)
        if stat.S_ISREG(info.st_mode)
    }


def differences(actual: dict[str, Entry], expected: dict[str, Entry]) -> str:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = [
        (path, expected[path], actual[path])
        for path in sorted(set(actual) & set(expected))
        if actual[path] != expected[path]
    ]
    return f"missing {missing[:5]}, extra {extra[:5]}, differ (expected, actual) {differ[:3]}"


def processes_with(variable: bytes) -> list[int]:
    """Live processes (not zombies) whose environment holds `variable`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as stream:
                environment = stream.read()
        except OSError:
            continue
        if variable in environment.split(b"\0"):
            found.append(int(entry))
    return found


def group_members(group: int) -> list[int]:
    """Live processes (not zombies) of process group `group`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            found.append(int(entry))
    return found


def run_finished(stdout: str) -> bool:
    """Whether an apply printed its closing summary."""
    return "Apply complete:" in stdout or "No changes. Every resource is converged." in stdout


def wait_until(condition: Callable[[], bool], apply: Apply, timeout: float = 60) -> bool:
    """Poll `condition`; False when the apply ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if condition():
                return True
        if not apply.alive():
            return False
        time.sleep(0.001)
    raise AssertionError(f"nothing happened within {timeout} s: {apply}")

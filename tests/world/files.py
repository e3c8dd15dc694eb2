"""Files of a test's world: made with chosen contents, modes and mtimes,
and read back (snapshots, leftovers, whole trees)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

SNAPSHOT_NAME = re.compile(r"\d{4}\.\d{3}\.\d{2}\.\d{2}")
ODD_NS = 1_700_000_000_123_456_789


def make_file(path: Path, data: bytes, mode: int = 0o644, mtime_ns: int = ODD_NS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def snapshots_in(target: Path) -> list[str]:
    """Snapshot-named real directories in a target, oldest first."""
    if not target.is_dir():
        return []
    return sorted(
        name
        for name in os.listdir(target)
        if SNAPSHOT_NAME.fullmatch(name) and stat.S_ISDIR(os.lstat(target / name).st_mode)
    )


def work_left(target: Path) -> list[str]:
    """What runs left in a target besides snapshots: work and prune leftovers."""
    if not target.is_dir():
        return []
    return sorted(
        name
        for name in os.listdir(target)
        if name.startswith((".hardsnap-partial.", ".hardsnap-pruning."))
    )


def tree_of(root: Path) -> dict[str, bytes]:
    """Every regular file below `root` and its content."""
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found

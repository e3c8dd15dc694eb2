"""Files of a test's world: made with chosen contents, modes and mtimes,
and read back (snapshots, leftovers, whole trees)."""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

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
    return _names_in(
        target,
        lambda name: (
            bool(SNAPSHOT_NAME.fullmatch(name)) and stat.S_ISDIR(os.lstat(target / name).st_mode)
        ),
    )


def work_left(target: Path) -> list[str]:
    """What runs left in a target besides snapshots: work and prune leftovers."""
    return _names_in(
        target, lambda name: name.startswith((".hardsnap-partial.", ".hardsnap-pruning."))
    )


def _names_in(directory: Path, wanted: Callable[[str], bool]) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(name for name in os.listdir(directory) if wanted(name))


def tree_of(root: Path) -> dict[str, bytes]:
    """Every regular file below `root` and its content."""
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def make_sparse(path: Path, size: int, data_at: int, data: bytes) -> Path:
    """A file of `size` bytes holding `data` at `data_at` and holes elsewhere."""
    with open(path, "wb") as handle:
        handle.truncate(size)
        handle.seek(data_at)
        handle.write(data)
    return path


def skip_without_holes(path: Path) -> None:
    if os.stat(path).st_blocks * 512 > 1 << 20:
        pytest.skip("the filesystem under tmp_path does not keep holes")


def xattrs_supported(path: Path) -> None:
    """Skip the test when the filesystem refuses user.* extended attributes."""
    if not hasattr(os, "setxattr"):
        pytest.skip("Linux only: xattr calls (the masked platform run)")
    probe = path / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(f"filesystem of {path} refuses user.* xattrs: {error.strerror}")
        raise
    finally:
        probe.unlink()


def read_metrics(path: Path) -> dict[tuple[str, str], float]:
    """Every sample of the file, by (metric name, resource label), through
    Prometheus' parser; each family must be declared a gauge."""
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge", family
        for sample in family.samples:
            samples[(sample.name, sample.labels["resource"])] = sample.value
    return samples


def rewrite(path: Path, data: bytes, mtime_ns: int) -> None:
    """Change a file in place (same inode, as a writer would), size and mtime."""
    with open(path, "r+b") as handle:
        handle.truncate(0)
        handle.write(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def files_below(root: Path) -> list[str]:
    """Every file's path below `root`, relative to it, sorted."""
    return sorted(
        os.path.relpath(os.path.join(directory, name), root)
        for directory, _, names in os.walk(root)
        for name in names
    )


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@contextmanager
def immutable(path: Path, *moved_to: Path) -> Iterator[None]:
    """`path` immutable for the block; afterwards not, wherever the run
    moved it (`moved_to`), or pytest could not remove the test's folder."""
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i refused here: {done.stderr.strip()}")
    try:
        yield
    finally:
        for place in (path, *moved_to):
            subprocess.run(["chattr", "-i", str(place)], check=False, capture_output=True)

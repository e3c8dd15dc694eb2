"""What a walk hands to threads: hashing big copies, flushing ahead.

The manifest must still hold the right hash of each copy, in its own
directory's block, whether the walk is one process or two; a failing walk
must leave no thread and no descriptor behind; reading a copy to hash it
must not touch the atime it was given; flushing ahead must happen while the
walk goes on and be over when it ends.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers import platform
from hardsnap.providers.audit.verify import verify_snapshot
from hardsnap.providers.backup.target import MARKER
from hardsnap.providers.engine import copying, flushing, hashing, snapshot
from hardsnap.providers.engine.snapshot import SnapshotFailed
from hardsnap.providers.files import digest
from tests.world.engine import manifest_digests, resource_for, take

FIRST, SECOND = "2026.088.06.00", "2026.089.06.00"
OLD_NS = 1_600_000_000_000_000_000
ODD_NS = 1_700_000_000_123_456_789


def make_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(OLD_NS, ODD_NS))  # atime older than mtime


# Worker processes a snapshot takes (the `walkers` fixture sets it).
JOBS = {"jobs": 1}


def content_hashes(root: Path) -> dict[str, str]:
    return {
        os.path.relpath(os.path.join(directory, name), root): hashlib.sha256(
            Path(directory, name).read_bytes()
        ).hexdigest()
        for directory, _, files in os.walk(root)
        for name in files
    }


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Files big and small in nested directories, hard links among them."""
    root = tmp_path / "src"
    for top in range(6):
        for sub in range(3):
            for index in range(5):
                size = (top * 7 + sub * 3 + index) * 997
                make_file(root / f"t{top}" / f"s{sub}" / f"f{index}", os.urandom(size))
        make_file(root / f"t{top}" / "top-file", os.urandom(top * 1000))
    os.link(root / "t1" / "s2" / "f4", root / "t4" / "second-name")
    make_file(root / "at-root", os.urandom(5000))
    return root


@pytest.fixture(params=["one walker", "two walkers"])
def walkers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    two = request.param == "two walkers"
    monkeypatch.setattr(snapshot, "PARALLEL_AFTER_FILES", 0)
    monkeypatch.setitem(JOBS, "jobs", 2 if two else 1)
    return str(request.param)


def test_every_copy_hashed_in_threads_lands_in_its_own_block(
    source: Path, tmp_path: Path, walkers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every copy of 2 KB or more goes to a thread, and only three may wait at
    # once: blocks change, the backlog fills, the worker forks, all with
    # hashes in flight.
    monkeypatch.setattr(hashing, "HASH_IN_THREAD_BYTES", 2000)
    monkeypatch.setattr(hashing, "HASH_BACKLOG", 3)
    real = digest.hash_open_file

    def slow_hash(fd: int, *args: Any, **kwargs: Any) -> str:  # running when the walk moves on
        threading.Event().wait(0.005)
        return real(fd, *args, **kwargs)

    monkeypatch.setattr(digest, "hash_open_file", slow_hash)
    target = tmp_path / "dst"
    take(resource_for(source, target), FIRST, jobs=JOBS["jobs"])
    expected = content_hashes(source)
    assert manifest_digests(target, FIRST) == expected
    assert verify_snapshot(str(target), FIRST, content=True).clean

    for top in range(6):  # rewrite some, in both walkers' shares
        make_file(source / f"t{top}" / "s1" / "f3", os.urandom(4000 + top))
    take(resource_for(source, target), SECOND, jobs=JOBS["jobs"])
    assert manifest_digests(target, SECOND) == content_hashes(source)
    assert verify_snapshot(str(target), SECOND, content=True).clean


@pytest.mark.linux_only(reason="reading leaves atime alone by O_NOATIME")
def test_a_big_copy_keeps_the_atime_it_was_given(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    make_file(source / "big.bin", os.urandom(hashing.HASH_IN_THREAD_BYTES + 1))
    take(resource_for(source, target), FIRST, jobs=JOBS["jobs"])
    copy = os.stat(target / FIRST / "big.bin")
    assert (copy.st_atime_ns, copy.st_mtime_ns) == (OLD_NS, ODD_NS)
    assert manifest_digests(target, FIRST)["big.bin"] == content_hashes(source)["big.bin"]


@pytest.mark.linux_only(reason="descriptors counted in /proc/self/fd")
def test_a_failing_walk_leaves_no_hashing_thread_and_no_descriptor(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hashing, "HASH_IN_THREAD_BYTES", 2000)
    real = digest.hash_open_file
    started = threading.Event()
    copies = 0

    def slow_hash(fd: int, *args: Any, **kwargs: Any) -> str:
        started.set()
        threading.Event().wait(0.05)  # hashes pile up behind the walk
        return real(fd, *args, **kwargs)

    def copy_then_fail(
        source_fd: int, target_fd: int, info: os.stat_result, charge: copying.Charge | None = None
    ) -> int:
        nonlocal copies
        copies += 1
        if copies == 40:
            assert started.wait(5)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(source_fd, target_fd, info, charge)

    real_copy = copying.copy_contents
    monkeypatch.setattr(digest, "hash_open_file", slow_hash)
    monkeypatch.setattr(copying, "copy_contents", copy_then_fail)
    threads = threading.active_count()
    descriptors = len(os.listdir("/proc/self/fd"))
    target = tmp_path / "dst"
    with pytest.raises(SnapshotFailed):
        take(resource_for(source, target), FIRST, jobs=JOBS["jobs"])
    assert threading.active_count() == threads
    assert len(os.listdir("/proc/self/fd")) == descriptors
    assert sorted(os.listdir(target)) == [".hardsnap-manifests", MARKER]


@pytest.mark.linux_only(reason="flushing ahead is syncfs")
def test_the_target_is_flushed_while_copying_and_no_flusher_outlives_the_walk(
    source: Path, tmp_path: Path, walkers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flushing, "FLUSH_AHEAD_BYTES", 20_000)
    parent = os.getpid()
    # Every flush, in this process and in the workers: (pid, thread).
    log = tmp_path / "flushes"
    real = platform.sync_filesystem

    def counting(fd: int) -> None:
        with open(log, "a") as lines:
            lines.write(f"{os.getpid()} {threading.current_thread().name}\n")
        real(fd)

    monkeypatch.setattr(platform, "sync_filesystem", counting)
    threads = threading.active_count()
    target = tmp_path / "dst"
    take(resource_for(source, target), FIRST, jobs=JOBS["jobs"])
    assert threading.active_count() == threads
    flushes = [line.split() for line in log.read_text().splitlines()]
    ahead = [pid for pid, name in flushes if name == "hardsnap-flush"]
    assert ahead, "no flush began while the walk was copying"
    assert flushes[-1] == [str(parent), "MainThread"], "the final sync comes after every flush"
    assert verify_snapshot(str(target), FIRST, content=True).clean

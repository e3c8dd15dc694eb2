"""The faults tests' world: a 20k-file tree on its own tmpfs, trees compared
file by file, snapshots checked after every run, hardsnap processes started,
stopped and killed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers.backup.naming import is_snapshot_name
from hardsnap.providers.backup.target import PARTIAL_PREFIX, PRUNING_PREFIX
from tests.world.cli import Finished, environment, hardsnap_command, invoke
from tests.world.clock import START, iso, name_of, time_of
from tests.world.engine import listing
from tests.world.files import ODD_NS
from tests.world.processes import Apply, wait_for_entry
from tests.world.site import Site

PARTIAL = PARTIAL_PREFIX


PRUNING = PRUNING_PREFIX


# An mtime with odd nanoseconds: a float round-trip would lose them.
FILES = 20_000


FILES_PER_DIRECTORY = 200


FILE_MODES = (0o644, 0o600, 0o755, 0o640)


DIRECTORY_MODES = (0o755, 0o750, 0o700)


KILL_SEED = int(os.environ.get("HARDSNAP_FAULT_SEED", "20260329"))


RETAIN_DAYS = 2


# Applies before the kill loop: enough that the loop's first run has one to prune.
WARM_UP_DAYS = 4


# What a full-disk failure message must say.
DISK_FULL = re.compile(r"full|no space left on device|quota", re.IGNORECASE)


FIRST, SECOND = "2026.088.06.00", "2026.089.06.00"  # START and a day later


def file_path(source: Path, index: int) -> Path:
    return source / f"d{index // FILES_PER_DIRECTORY:03d}" / f"f{index:05d}.txt"


def set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def build_tree(source: Path, files: int) -> None:
    """Write `files` small files in directories of 200, with varied sizes,
    modes and odd-nanosecond mtimes, some hard-linked pairs, an empty and a
    deep directory; then give every directory its own mode and mtime."""
    source.mkdir(exist_ok=True)
    for index in range(files):
        path = file_path(source, index)
        if index % FILES_PER_DIRECTORY == 0:
            path.parent.mkdir()
        path.write_bytes((b"%05d " % index) * (index % 37))
        os.chmod(path, FILE_MODES[index % len(FILE_MODES)])
        set_mtime(path, ODD_NS + index)
        if index % 1000 == 1:
            os.link(path, path.with_name(f"link-{index:05d}.txt"))
    (source / "empty").mkdir()
    deep = source / "deep" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "leaf.txt").write_bytes(b"leaf")
    (source / "extra").mkdir()
    for number, (directory, _, _) in enumerate(os.walk(source, topdown=False)):
        if directory != str(source):
            os.chmod(directory, DIRECTORY_MODES[number % len(DIRECTORY_MODES)])
        set_mtime(Path(directory), ODD_NS - number * 1_000_003)


def rewrite_some(source: Path, files: int, round_number: int) -> None:
    """Rewrite 2% of the files (new bytes, new mtime), add one file and
    remove the one added two rounds ago."""
    for index in range(round_number % 50, files, 50):
        path = file_path(source, index)
        path.write_bytes(b"round %d rewrote file %d\n" % (round_number, index))
        set_mtime(path, ODD_NS + round_number * 1_000_000_000 + index)
    (source / "extra" / f"new-{round_number}.txt").write_bytes(b"new in %d" % round_number)
    with contextlib.suppress(FileNotFoundError):
        (source / "extra" / f"new-{round_number - 2}.txt").unlink()


Entry = tuple[Any, ...]


_content_hashes: dict[tuple[int, int, int, int], str] = {}


def content_hash(path: str, key: tuple[int, int, int, int]) -> str:
    """sha256 of a file, cached by `key`, its (device, inode, ctime, size):
    any write to the inode, even one that restores its mtime, changes its ctime."""
    known = _content_hashes.get(key)
    if known is None:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        known = _content_hashes[key] = digest.hexdigest()
    return known


@dataclass
class Tree:
    """What a directory holds, by relative path ("." is the directory itself):
    ("dir", permission bits, mtime ns, uid, gid), ("file", the same, size,
    sha256) or ("other", file type)."""

    entries: dict[str, Entry]
    # Regular files only: relative path -> inode number.
    inodes: dict[str, int]
    _groups: set[frozenset[str]] | None = None

    def link_groups(self) -> set[frozenset[str]]:
        """The sets of paths that are one inode (of two names or more)."""
        if self._groups is None:
            by_inode: dict[int, list[str]] = {}
            for path, number in self.inodes.items():
                by_inode.setdefault(number, []).append(path)
            self._groups = {frozenset(paths) for paths in by_inode.values() if len(paths) > 1}
        return self._groups


def scan(root: Path, hashes: bool = True) -> Tree:
    """Look at everything below `root`; without `hashes`, files get no sha256."""
    info = os.lstat(root)
    entries: dict[str, Entry] = {
        ".": ("dir", stat.S_IMODE(info.st_mode), info.st_mtime_ns, info.st_uid, info.st_gid)
    }
    inodes: dict[str, int] = {}
    pending = [("", str(root))]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as found:
            for item in found:
                relative = prefix + item.name
                info = item.stat(follow_symlinks=False)
                mode = info.st_mode
                if stat.S_ISREG(mode):
                    digest = None
                    if hashes:
                        key = (info.st_dev, info.st_ino, info.st_ctime_ns, info.st_size)
                        digest = _content_hashes.get(key) or content_hash(item.path, key)
                    entries[relative] = (
                        "file",
                        stat.S_IMODE(mode),
                        info.st_mtime_ns,
                        info.st_uid,
                        info.st_gid,
                        info.st_size,
                        digest,
                    )
                    inodes[relative] = info.st_ino
                elif stat.S_ISDIR(mode):
                    entries[relative] = (
                        "dir",
                        stat.S_IMODE(mode),
                        info.st_mtime_ns,
                        info.st_uid,
                        info.st_gid,
                    )
                    pending.append((relative + "/", item.path))
                else:
                    entries[relative] = ("other", stat.S_IFMT(mode))
    return Tree(entries, inodes)


def assert_same_tree(actual: Tree, expected: Tree, what: str, links: bool = True) -> None:
    """`actual` holds what `expected` does; with `links`, names that are one
    inode in `expected` are one inode in `actual`, and no others."""
    if actual.entries != expected.entries:
        missing = sorted(set(expected.entries) - set(actual.entries))
        extra = sorted(set(actual.entries) - set(expected.entries))
        differ = [
            (path, expected.entries[path], actual.entries[path])
            for path in sorted(set(actual.entries) & set(expected.entries))
            if actual.entries[path] != expected.entries[path]
        ]
        pytest.fail(
            f"{what} is not what it should be: {len(missing)} missing {missing[:5]}, "
            f"{len(extra)} extra {extra[:5]}, {len(differ)} differ (expected, actual) "
            f"{differ[:5]}"
        )
    if links:
        assert actual.link_groups() == expected.link_groups(), f"{what}: hard-link groups differ"


def finished_work(target: Path, source: Tree) -> dict[str, int]:
    """The files of the newest partial snapshot in `target` that a resumed
    run can keep as they are (permission bits, mtime, owner and size equal
    to those of the source now): relative path -> inode."""
    partials = [name for name in listing(target) if name.startswith(PARTIAL)]
    if not partials:
        return {}
    work = scan(target / partials[-1], hashes=False)
    kept: dict[str, int] = {}
    for path, number in work.inodes.items():
        original = source.entries.get(path)
        if original is not None and original[:6] == work.entries[path][:6]:
            kept[path] = number
    return kept


def assert_resumed(snapshot: Path, kept: dict[str, int]) -> None:
    """Every file a killed run finished is in the snapshot as the same inode."""
    redone = [path for path, number in kept.items() if os.lstat(snapshot / path).st_ino != number]
    assert not redone, (
        f"{len(redone)} of {len(kept)} files finished by the killed run were made again "
        f"instead of reused, e.g. {sorted(redone)[:5]}"
    )


def copies_among(kept: dict[str, int], reference: Path) -> int:
    """How many of `kept` are copies (not links to the reference snapshot)."""
    return sum(
        1
        for path, number in kept.items()
        if not (reference / path).exists() or os.lstat(reference / path).st_ino != number
    )


def assert_unlocked(path: Path) -> None:
    """Nobody holds an flock on `path`: we can take it at once."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pytest.fail(f"{path} is still locked after its holder was killed")
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def used(mount_point: Path) -> tuple[int, int]:
    """(bytes, inodes) in use on the filesystem of `mount_point`."""
    info = os.statvfs(mount_point)
    return (info.f_blocks - info.f_bfree) * info.f_frsize, info.f_files - info.f_ffree


@dataclass
class Verified:
    """The snapshots of one target seen complete so far, and the checks that
    every later look must pass."""

    target: Path
    snapshots: dict[str, Tree] = field(default_factory=dict)

    def check(self, now: dt.datetime, source: Tree) -> list[str]:
        """After a run at `now` (killed or not), check every snapshot-named
        directory: an earlier one is unchanged, a new one is the run's own and
        equal to `source`; one that is gone was expired. Return the other
        entries (work left by a killed run)."""
        names = listing(self.target)
        present = [name for name in names if is_snapshot_name(name)]
        leftovers = [name for name in names if name not in present]
        strangers = [name for name in leftovers if not name.startswith((PARTIAL, PRUNING))]
        assert not strangers, f"unexpected entries in the target: {strangers}"
        for name in present:
            tree = scan(self.target / name)
            if name in self.snapshots:
                earlier = self.snapshots[name]
                assert_same_tree(tree, earlier, f"earlier snapshot {name}", links=False)
                # The very same inodes: no file of it was replaced, let alone changed.
                assert tree.inodes == earlier.inodes, f"files of earlier snapshot {name} replaced"
            else:
                assert name == name_of(now), f"snapshot {name} appeared in a run at {iso(now)}"
                assert_same_tree(tree, source, f"snapshot {name} of the run at {iso(now)}")
                self.snapshots[name] = tree
        newest = max(self.snapshots, default=None)
        for name in sorted(set(self.snapshots) - set(present)):
            assert name != newest, f"the newest snapshot {name} was removed at {iso(now)}"
            age = now - time_of(name)
            assert age > dt.timedelta(days=RETAIN_DAYS), (
                f"snapshot {name} vanished at {iso(now)}, only {age} old"
            )
            del self.snapshots[name]
        return leftovers


def hardsnap(*arguments: str | Path, state: Path, now: dt.datetime | None = START) -> Finished:
    """Run the CLI to its end as a subprocess."""
    done = subprocess.run(
        [*hardsnap_command(), *(str(argument) for argument in arguments)],
        env=environment(state, None if now is None else iso(now)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Finished(done.returncode, done.stdout, done.stderr)


def state_show(config: Path, state: Path, in_process: bool = False) -> dict[str, Any]:
    """`state show --json`: it must exit 0 and print one JSON document.
    In-process (the same CLI code, without a Python start-up) where it runs often."""
    arguments = ["state", "show", "-c", str(config), "--json", "--state-dir", str(state)]
    shown = invoke(arguments, {}) if in_process else hardsnap(*arguments, state=state, now=None)
    assert shown.returncode == 0, shown
    document: dict[str, Any] = json.loads(shown.stdout)
    return document


Spawn = Callable[[Path, Path, dt.datetime], Apply]


def wait_for_a_finished_file(work: Path, source: Path, apply: Apply) -> None:
    """Wait until the work directory holds a file the walk has finished (its
    mtime already set to the source's): the kill then lands on real work."""
    deadline = time.monotonic() + 120
    while True:
        assert apply.alive(), f"apply ended before it finished a file: {apply}"
        assert time.monotonic() < deadline, f"{work} had no finished file within 120 s"
        for directory in list(work.iterdir()) if work.is_dir() else []:
            if not directory.is_dir():
                continue
            for path in list(directory.iterdir()):
                original = source / directory.name / path.name
                with contextlib.suppress(OSError):
                    if (
                        path.is_file()
                        and os.lstat(path).st_mtime_ns == os.lstat(original).st_mtime_ns
                    ):
                        return
        time.sleep(0.001)


def stop_while_writing(apply: Apply, target: Path, name: str) -> None:
    """Stop `apply` while it builds snapshot `name` (holding its locks)."""
    work = PARTIAL + name
    assert wait_for_entry(target, lambda entry: entry == work, apply), (
        f"apply ended before it started writing: {apply}"
    )
    apply.stop()
    assert (target / work).is_dir(), "the snapshot was complete before the apply stopped"


def finished_alone(apply: Apply, site: Site, name: str) -> None:
    """`apply` (stopped, now let go) finishes snapshot `name` of the site's
    source, the only entry in its target."""
    assert apply.wait() == 0, str(apply)
    assert listing(site.target) == [name]
    assert_same_tree(scan(site.target / name), scan(site.source), "the snapshot")

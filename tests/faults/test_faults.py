"""Fault injection: applies killed at any moment, full disks, racing writers.

Real directories, real `hardsnap apply` processes, real signals. Trees of
20k files live on a tmpfs mounted by the test (as root; skipped with the
reason where mounting is refused): /tmp may be slow to create and delete
that many files. The unit-level full-disk tests inject ENOSPC/EDQUOT and a
falling free-space reading into `providers.fs`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import random
import re
import signal
import stat
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers import platform
from hardsnap.providers.backup.naming import is_snapshot_name
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.backup.target import PARTIAL_PREFIX, PRUNING_PREFIX
from hardsnap.providers.engine import copying
from hardsnap.providers.engine.snapshot import SnapshotFailed
from hardsnap.providers.files.locking import lock_directory, lock_file_name
from hardsnap.state.lock import LOCK_FILE
from tests.conftest import Mount
from tests.world.cli import Finished, environment, hardsnap_command, invoke
from tests.world.clock import START, at, iso, name_of, time_of
from tests.world.engine import listing, take
from tests.world.files import ODD_NS, make_file, snapshots_in
from tests.world.processes import Applies, Apply, wait_for_entry
from tests.world.site import Site, empty_site, write_config

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


# -- time and names ------------------------------------------------------------------------


FIRST, SECOND = "2026.088.06.00", "2026.089.06.00"  # START and a day later


# -- source trees --------------------------------------------------------------------------


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


# -- looking at trees -----------------------------------------------------------------------

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


# -- processes -------------------------------------------------------------------------------


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


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start `hardsnap apply -c CONFIG` with a state dir and a clock; every
    process still running at the end of the test is killed."""
    with Applies(tmp_path / "logs") as applies:

        def start(config: Path, state: Path, now: dt.datetime) -> Apply:
            return applies.start(["apply", "-c", str(config)], environment(state, iso(now)))

        yield start


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


# -- filesystems -------------------------------------------------------------------------------


def backup_resource(source: Path, target: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "r",
        "type": "backup",
        "source_dir": str(source),
        "target_path": str(target),
        "min_free_space": "1M",
    }
    values.update(overrides)
    return values


@pytest.fixture
def big_site(tmpfs: Mount) -> Site:
    """A 20k-file source on its own tmpfs, with a config snapshotting it."""
    site = empty_site(tmpfs("big", "size=512m"), min_free_space="1M")
    build_tree(site.source, FILES)
    site.write()
    return site


# -- 1. killed at any moment -------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """When to kill: after `delay` seconds from the start, or from the moment
    the run's work directory (`partial`) or a prune (`pruning`) appears."""

    kind: str
    delay: float = 0.0


def kill_schedule(rng: random.Random, duration: float) -> list[Trigger]:
    """One kill during the first prune, one at the very start, one around the
    end, delays spread over a whole run (one random point per stratum), and
    last a kill mid-walk so that the final apply has a partial snapshot to resume."""
    strata = 9
    middle = [
        Trigger("delay", 0.0),
        Trigger("delay", duration * rng.uniform(0.95, 1.1)),
        Trigger("partial", rng.uniform(0.0, 0.2)),
        Trigger("partial", rng.uniform(0.0, 0.2)),
        *(Trigger("delay", duration * (index + rng.random()) / strata) for index in range(strata)),
    ]
    rng.shuffle(middle)
    return [Trigger("pruning"), *middle, Trigger("partial", rng.uniform(0.01, 0.06))]


def pull_trigger(trigger: Trigger, apply: Apply, target: Path, now: dt.datetime) -> None:
    before = set(listing(target))
    if trigger.kind == "partial":
        work = PARTIAL + name_of(now)
        if wait_for_entry(target, lambda name: name == work, apply):
            apply.wait_at_most(trigger.delay)
    elif trigger.kind == "pruning":
        wait_for_entry(target, lambda name: name.startswith(PRUNING) and name not in before, apply)
    else:
        apply.wait_at_most(trigger.delay)
    apply.kill()


@pytest.mark.slow
def test_apply_killed_at_random_moments_never_leaves_an_incomplete_snapshot_and_resumes(
    tmpfs: Mount, spawn: Spawn
) -> None:
    """Daily applies of a 20k-file tree (2% rewritten between runs, retain 2
    days so runs prune), each SIGKILLed at a seeded random moment, each
    followed by a full check of the target; then one apply let run."""
    root = tmpfs("area", "size=512m")
    source, target, state = root / "src", root / "dst", root / "state"
    build_tree(source, FILES)
    config = write_config(
        root / "hardsnap.yaml", backup_resource(source, target, retain=str(RETAIN_DAYS))
    )
    verified = Verified(target)

    durations: list[float] = []
    for day in range(WARM_UP_DAYS):
        expected = scan(source)
        started = time.monotonic()
        warm_up = hardsnap("apply", "-c", config, state=state, now=at(day))
        durations.append(time.monotonic() - started)
        assert warm_up.returncode == 0, warm_up
        assert verified.check(at(day), expected) == []
    assert len(verified.snapshots) == RETAIN_DAYS + 1, "the last warm-up did not prune"
    # A whole run of linking and pruning: the median of the runs after the
    # first (which copies everything), not thrown off by one slow run.
    duration = statistics.median(durations[1:])

    rng = random.Random(KILL_SEED)
    killed = in_snapshot = in_prune = 0
    # One line per round, printed as it goes: pytest shows them when a check fails.
    history = [f"a whole run takes {duration:.2f} s"]
    print(history[0])
    for round_number, trigger in enumerate(kill_schedule(rng, duration), start=1):
        now = at(WARM_UP_DAYS + round_number - 1)
        rewrite_some(source, FILES, round_number)
        expected = scan(source)
        kept = finished_work(target, expected)
        before = set(listing(target))
        started = time.monotonic()
        apply = spawn(config, state, now)
        pull_trigger(trigger, apply, target, now)
        code = apply.wait()
        elapsed = time.monotonic() - started
        leftovers = listing(target)
        history.append(
            f"round {round_number} at {iso(now)}: {trigger} after {elapsed:.2f} s, "
            f"exit {code}, target {leftovers}"
        )
        print(history[-1])
        what = "\n".join(history)
        if code == -signal.SIGKILL:
            killed += 1
        else:
            assert code == 0, f"{what}\nthe apply ended by itself but failed: {apply}"

        leftovers = verified.check(now, expected)
        if name_of(now) in verified.snapshots and kept:
            assert_resumed(target / name_of(now), kept)
            print(f"  resumed: kept {len(kept)} files finished by killed runs")
        in_snapshot += any(name.startswith(PARTIAL) for name in leftovers)
        in_prune += any(name.startswith(PRUNING) and name not in before for name in leftovers)
        shown = state_show(config, state, in_process=True)
        names = [entry["name"] for entry in shown["resources"]["r"]["snapshots"]]
        assert names == snapshots_in(target), what

    what = "\n".join(history)
    assert killed >= 10, f"only {killed} applies were still running when killed:\n{what}"
    assert in_snapshot >= 1, f"no kill landed while a snapshot was being written:\n{what}"
    assert in_prune >= 1, f"no kill landed during a prune:\n{what}"

    # The last kill was mid-walk: an apply that is let run must resume its work.
    now = at(WARM_UP_DAYS + round_number)
    rewrite_some(source, FILES, round_number + 1)
    expected = scan(source)
    kept = finished_work(target, expected)
    reference = target / snapshots_in(target)[-1]
    assert copies_among(kept, reference) > 0, "the killed run left no copied file to reuse"
    # After a run of kills the newest snapshot may be older than retain plus
    # one day: then pruning is suspended (clock sanity) until the snapshots
    # since the gap span retain, which daily runs reach within retain days.
    retain = dt.timedelta(days=RETAIN_DAYS)
    before = snapshots_in(target)
    gap = not before or now - time_of(before[-1]) > retain + dt.timedelta(days=1)
    final = hardsnap("apply", "-c", config, state=state, now=now)
    assert final.returncode == 0, final
    assert verified.check(now, expected) == [], "the final apply left work behind"
    assert name_of(now) in verified.snapshots
    assert_resumed(target / name_of(now), kept)
    if gap and before:
        assert snapshots_in(target) == [*before, name_of(now)], "pruned after a gap"
        assert "pruning is suspended" in final.stderr, final
    for _ in range(RETAIN_DAYS):
        if all(now - time_of(name) <= retain for name in snapshots_in(target)[:-1]):
            break
        now += dt.timedelta(days=1)
        assert hardsnap("apply", "-c", config, state=state, now=now).returncode == 0
    for name in snapshots_in(target)[:-1]:
        assert now - time_of(name) <= retain, f"{name} was not pruned"
    shown = state_show(config, state)["resources"]["r"]
    assert shown["last_result"] == "changed", shown["runs"][-1:]


@pytest.mark.slow
def test_apply_in_the_same_window_after_a_kill_during_prune_removes_the_half_pruned_snapshot(
    big_site: Site, spawn: Spawn
) -> None:
    config = big_site.write(retain="1")
    state, target = big_site.state, big_site.target
    for day in (0, 1):
        assert hardsnap("apply", "-c", config, state=state, now=at(day)).returncode == 0
    expected = scan(big_site.source)
    apply = spawn(config, state, at(2))
    pruning = PRUNING + name_of(at(0))
    assert wait_for_entry(target, lambda name: name == pruning, apply), str(apply)
    apply.kill()
    assert apply.wait() == -signal.SIGKILL
    assert listing(target) == sorted([name_of(at(1)), name_of(at(2)), pruning])
    assert_same_tree(scan(target / name_of(at(2))), expected, "the new snapshot")

    again = hardsnap("apply", "-c", config, state=state, now=at(2))
    assert again.returncode == 0, again
    assert listing(target) == [name_of(at(1)), name_of(at(2))], (
        "the half-pruned snapshot was left behind"
    )
    assert_same_tree(scan(target / name_of(at(2))), expected, "the new snapshot")


# -- 2. full disk ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layout", ["bytes_source_elsewhere", "bytes_source_on_same_filesystem", "inodes"]
)
def test_apply_onto_a_full_tmpfs_exits_1_removes_partial_work_and_records_the_failure(
    tmp_path: Path, tmpfs: Mount, layout: str
) -> None:
    overrides: dict[str, Any] = {"min_free_space": 0}
    if layout == "inodes":
        small = tmpfs("small", "size=64m,nr_inodes=64")
    else:
        small = tmpfs("small", "size=8m")
    if layout == "bytes_source_on_same_filesystem":
        source = small / "src"
    else:
        source = tmp_path / "src"
        overrides["cross_fs"] = "copy"
    target, state = small / "dst", tmp_path / "state"
    config = write_config(tmp_path / "hardsnap.yaml", backup_resource(source, target, **overrides))
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"alpha")
    (source / "sub" / "b.txt").write_bytes(b"bravo")
    first = hardsnap("apply", "-c", config, state=state, now=at(0))
    assert first.returncode == 0, first
    earlier = scan(target / name_of(at(0)))

    grown: list[Path] = []
    if layout == "inodes":
        (source / "many").mkdir()
        grown = [source / "many" / f"{index}.txt" for index in range(100)]
        for path in grown:
            path.write_bytes(b"x")
    else:
        count = 1 if layout == "bytes_source_on_same_filesystem" else 3
        grown = [source / f"big{index}.bin" for index in range(count)]
        for path in grown:
            path.write_bytes(os.urandom(5 << 20))
    before = used(small)

    failed = hardsnap("apply", "-c", config, state=state, now=at(1))
    assert failed.returncode == 1, failed
    assert DISK_FULL.search(failed.stderr), failed
    assert listing(target) == [name_of(at(0))], "partial work or a snapshot was left"
    assert used(small) == before, "the partial snapshot's space was not given back"
    assert_same_tree(scan(target / name_of(at(0))), earlier, "the earlier snapshot")
    record = state_show(config, state)["resources"]["r"]
    assert record["last_result"] == "failed"
    run = record["runs"][-1]
    assert run["result"] == "failed"
    assert DISK_FULL.search(run["message"] or ""), run
    snapshot_action = next(action for action in run["actions"] if action["kind"] == "snapshot")
    assert snapshot_action["result"] == "failed"
    assert DISK_FULL.search(snapshot_action["message"] or ""), snapshot_action

    # With room again, the next apply makes the snapshot.
    for path in grown:
        path.unlink()
    retried = hardsnap("apply", "-c", config, state=state, now=at(1))
    assert retried.returncode == 0, retried
    assert snapshots_in(target) == [name_of(at(0)), name_of(at(1))]
    assert_same_tree(scan(target / name_of(at(1))), scan(source), "the retried snapshot")


@pytest.fixture
def unit_source(tmp_path: Path) -> Path:
    """A small tree already snapshotted once (as FIRST) into tmp_path/dst."""
    source = tmp_path / "src"
    for index in range(10):
        make_file(source / f"d{index % 3}" / f"f{index}.txt", b"file %d" % index)
    return source


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
def test_take_snapshot_with_a_copy_failing_out_of_space_raises_clearly_and_removes_partial_work(
    tmp_path: Path, unit_source: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    target = tmp_path / "dst"
    resource = Resource("r", str(unit_source), str(target), min_free_space=0)
    take(resource, FIRST)
    earlier = scan(target / FIRST)
    for index in range(20):
        make_file(unit_source / "new" / f"n{index}.txt", b"new %d" % index)
    real_copy = copying.copy_contents
    seen: list[list[str]] = []

    def copy_contents(
        source_fd: int, target_fd: int, info: os.stat_result, charge: copying.Charge | None = None
    ) -> int:
        seen.append(listing(target))
        if len(seen) == 5:
            raise OSError(code, os.strerror(code))
        return real_copy(source_fd, target_fd, info, charge)

    monkeypatch.setattr(copying, "copy_contents", copy_contents)
    with pytest.raises(SnapshotFailed) as failure:
        take(resource, SECOND)
    message = str(failure.value)
    assert DISK_FULL.search(message), message
    assert os.strerror(code) in message, message
    assert "removed" in message, message
    assert len(seen) == 5, "the copy went on after the filesystem was full"
    assert any(name.startswith(PARTIAL) for name in seen[-1]), "no partial work was under way"
    assert listing(target) == [FIRST]
    assert_same_tree(scan(target / FIRST), earlier, "the earlier snapshot")


def test_free_space_falling_below_min_free_space_during_the_copy_aborts_and_removes_partial_work(
    tmp_path: Path, unit_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    minimum = 1 << 20
    target = tmp_path / "dst"
    resource = Resource("r", str(unit_source), str(target), min_free_space=minimum)
    take(resource, FIRST)
    earlier = scan(target / FIRST)
    new_files = 40
    for index in range(new_files):
        make_file(unit_source / "new" / f"n{index}.bin", os.urandom(16 << 10))
    readings: list[int] = []
    copies: list[int] = []
    real_copy = copying.copy_contents

    def free_bytes(fd_or_path: int | str) -> int:
        # Room for four files at a time at first; then the disk fills up.
        readings.append(1)
        return minimum + (64 << 10) if len(readings) <= 3 else minimum - 4096

    def copy_contents(
        source_fd: int, target_fd: int, info: os.stat_result, charge: copying.Charge | None = None
    ) -> int:
        copies.append(1)
        return real_copy(source_fd, target_fd, info, charge)

    monkeypatch.setattr(platform, "free_bytes", free_bytes)
    monkeypatch.setattr(copying, "copy_contents", copy_contents)
    with pytest.raises(SnapshotFailed) as failure:
        take(resource, SECOND)
    message = str(failure.value)
    assert "min_free_space" in message and "removed" in message, message
    assert 0 < len(copies) < new_files, f"not aborted during the copy ({len(copies)} copies)"
    assert len(readings) > 3, "free space was not read again during the copy"
    assert listing(target) == [FIRST]
    assert_same_tree(scan(target / FIRST), earlier, "the earlier snapshot")


# -- 3. one writer -------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_applies_with_different_state_dirs_racing_on_one_target_make_one_complete_snapshot(
    big_site: Site, spawn: Spawn
) -> None:
    expected = scan(big_site.source)
    name = name_of(START)
    for round_number in range(3):
        target = big_site.root / f"dst-{round_number}"
        config = write_config(
            big_site.root / f"race-{round_number}.yaml",
            backup_resource(big_site.source, target),
        )
        states = [big_site.root / f"state-{round_number}-{side}" for side in "ab"]
        if round_number % 2:
            states.reverse()
        racers = [spawn(config, state, START) for state in states]
        codes = [racer.wait() for racer in racers]
        what = f"round {round_number}: " + " / ".join(str(racer) for racer in racers)
        # The loser finds the target locked (75, like a held apply lock), or
        # gets the lock once the winner is done and finds the window filled.
        assert sorted(codes) in ([0, 75], [0, 1]), what
        winner, loser = racers if codes[0] == 0 else racers[::-1]
        if loser.process.returncode == 75:
            assert f"pid {winner.pid}" in loser.stderr, what
        else:
            assert "already has snapshot" in loser.stderr, what
        assert listing(target) == [name], what
        assert_same_tree(scan(target / name), expected, f"round {round_number}: the snapshot")


def refused_while_held(site: Site, spawn: Spawn, holder_state: Path, other_state: Path) -> str:
    """An apply stopped while it writes a snapshot holds its locks: another
    apply (with `other_state`) exits 75 at once naming it and touches
    nothing; let go, the holder finishes the snapshot. Its name."""
    name, target = name_of(START), site.target
    holder = spawn(site.config, holder_state, START)
    stop_while_writing(holder, target, name)
    try:
        started = time.monotonic()
        other = hardsnap("apply", "-c", site.config, state=other_state)
        elapsed = time.monotonic() - started
        assert other.returncode == 75, other
        assert f"pid {holder.pid}" in other.stderr, other
        assert elapsed < 10, f"the refused apply took {elapsed:.1f} s"
        assert listing(target) == [PARTIAL + name], "the refused apply touched the target"
    finally:
        holder.send(signal.SIGCONT)
    finished_alone(holder, site, name)
    return name


@pytest.mark.slow
def test_apply_with_another_state_dir_during_a_snapshot_exits_75_naming_the_writer_pid(
    big_site: Site, spawn: Spawn
) -> None:
    name = refused_while_held(big_site, spawn, big_site.root / "holder", big_site.root / "other")
    settled = hardsnap("apply", "-c", big_site.config, state=big_site.root / "other")
    assert settled.returncode == 0, settled
    assert listing(big_site.target) == [name]


@pytest.mark.slow
def test_kill_9_of_an_apply_holding_the_locks_leaves_none_and_the_next_apply_succeeds(
    big_site: Site, spawn: Spawn
) -> None:
    name, target, state = name_of(START), big_site.target, big_site.state
    holder = spawn(big_site.config, state, START)
    assert wait_for_entry(target, lambda entry: entry == PARTIAL + name, holder), str(holder)
    wait_for_a_finished_file(target / (PARTIAL + name), big_site.source, holder)
    holder.kill()
    assert holder.wait() == -signal.SIGKILL
    assert listing(target) == [PARTIAL + name], "the kill did not land mid-snapshot"
    # The kernel dropped both flocks with their holder.
    assert_unlocked(state / LOCK_FILE)
    assert_unlocked(Path(lock_directory()) / lock_file_name(os.path.realpath(target)))
    kept = finished_work(target, scan(big_site.source))
    assert kept, "the killed apply finished no file"

    started = time.monotonic()
    after = hardsnap("apply", "-c", big_site.config, state=state)
    elapsed = time.monotonic() - started
    assert after.returncode == 0, after
    assert "another hardsnap apply" not in after.stderr, after
    assert elapsed < 30, f"the next apply took {elapsed:.1f} s"
    assert listing(target) == [name]
    assert_same_tree(scan(target / name), scan(big_site.source), "the snapshot")
    assert_resumed(target / name, kept)


@pytest.mark.slow
def test_second_apply_with_the_same_state_dir_exits_75_at_once_naming_the_holder_pid(
    big_site: Site, spawn: Spawn
) -> None:
    refused_while_held(big_site, spawn, big_site.state, big_site.state)
    record = state_show(big_site.config, big_site.state)["resources"]["r"]
    assert record["last_result"] == "changed", record["runs"]

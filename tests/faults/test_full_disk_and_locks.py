"""A full disk and racing writers: a failed copy removes its work and keeps
every earlier snapshot; one writer per target, the other told who holds it.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers import platform
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.engine import copying
from hardsnap.providers.engine.snapshot import SnapshotFailed
from hardsnap.providers.files.locking import lock_directory, lock_file_name
from hardsnap.state.lock import LOCK_FILE
from tests.conftest import Mount
from tests.faults.faults import (
    DISK_FULL,
    FIRST,
    PARTIAL,
    SECOND,
    Spawn,
    assert_resumed,
    assert_same_tree,
    assert_unlocked,
    finished_alone,
    finished_work,
    hardsnap,
    scan,
    state_show,
    stop_while_writing,
    used,
    wait_for_a_finished_file,
)
from tests.world.clock import START, at, name_of
from tests.world.engine import listing, take
from tests.world.files import make_file, snapshots_in
from tests.world.processes import wait_for_entry
from tests.world.site import Site, empty_site

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
    site = replace(empty_site(tmp_path), source=source, target=small / "dst")
    target, state = site.target, site.state
    config = site.write(**overrides)
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
        config = replace(
            big_site, target=target, config=big_site.root / f"race-{round_number}.yaml"
        ).write()
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

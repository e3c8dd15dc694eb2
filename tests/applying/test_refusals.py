"""What apply refuses before it changes anything, and faults it stops at
cleanly: another filesystem (cross_fs), free space, a held apply lock.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardsnap.providers.backup.target import MARKER
from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY
from tests.applying.cli_steps import (
    append_line,
    filesystem_type,
    refused_before_anything,
    wait_for,
)
from tests.conftest import Mount
from tests.world.cli import Cli, hardsnap_command
from tests.world.clock import T0, at, iso, name_of
from tests.world.documents import actions_of
from tests.world.files import files_below, make_file
from tests.world.site import Site

# -- cross_fs ------------------------------------------------------------------------------


@pytest.fixture
def other_fs_source(tmp_path: Path) -> Iterator[Path]:
    """A source directory on /dev/shm (tmpfs), another device than tmp_path."""
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    directory = Path(tempfile.mkdtemp(prefix="hardsnap-test-", dir="/dev/shm"))
    try:
        if os.stat(directory).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm and tmp_path are on the same filesystem")
        make_file(directory / "f1.txt", b"one")
        make_file(directory / "sub" / "f2.txt", b"two", 0o600)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.linux_only(reason="the test reads /proc/self/mountinfo")
def test_cross_fs_fail_refuses_naming_both_filesystems_and_the_fix(
    world: Site, cli: Cli, other_fs_source: Path
) -> None:
    world.write(source_dir=str(other_fs_source), pre_command=append_line(world.mark("pre"), "x"))
    refused_before_anything(
        world, cli, filesystem_type(other_fs_source), filesystem_type(world.root), "cross_fs"
    )


def test_refused_apply_json_fails_the_snapshot_and_runs_nothing_else(
    world: Site, cli: Cli, other_fs_source: Path
) -> None:
    world.write(source_dir=str(other_fs_source), pre_command=append_line(world.mark("pre"), "x"))
    outcome = cli("apply", "-c", world.config, "--json")
    assert outcome.returncode == 1, outcome
    resource = outcome.json()["resources"][0]
    assert resource["result"] == "failed" and "cross_fs" in resource["message"]
    results = {action["kind"]: action["result"] for action in resource["actions"]}
    assert results == {"pre_command": "upstream_failed", "snapshot": "failed"}
    assert not world.mark("pre").exists()


def test_cross_fs_copy_warns_on_every_run_and_copies_every_file(
    world: Site, cli: Cli, other_fs_source: Path
) -> None:
    world.write(source_dir=str(other_fs_source), cross_fs="copy")
    for day in range(2):
        outcome = cli("apply", "-c", world.config, now=iso(at(day)))
        assert outcome.returncode == 0, outcome
        assert "warning" in outcome.stderr and "filesystem" in outcome.stderr, outcome
    first, second = (world.target / name_of(at(day)) for day in range(2))
    assert files_below(second) == ["f1.txt", "sub/f2.txt"]
    for relative in ("f1.txt", "sub/f2.txt"):
        assert os.lstat(first / relative).st_ino != os.lstat(second / relative).st_ino
        assert (second / relative).read_bytes() == (other_fs_source / relative).read_bytes()


def test_cross_fs_warn_warns_on_the_first_run_only_and_copies(
    world: Site, cli: Cli, other_fs_source: Path
) -> None:
    world.write(source_dir=str(other_fs_source), cross_fs="warn")
    first_run = cli("apply", "-c", world.config, now=iso(at(0)))
    assert first_run.returncode == 0, first_run
    assert "filesystem" in first_run.stderr, first_run
    second_run = cli("apply", "-c", world.config, now=iso(at(1)))
    assert second_run.returncode == 0, second_run
    assert "filesystem" not in second_run.stderr, second_run
    first, second = (world.target / name_of(at(day)) for day in range(2))
    assert os.lstat(first / "f1.txt").st_ino != os.lstat(second / "f1.txt").st_ino


def test_cross_fs_link_hard_links_unchanged_files_to_the_reference(
    world: Site, cli: Cli, other_fs_source: Path
) -> None:
    world.write(source_dir=str(other_fs_source), cross_fs="link")
    assert cli("apply", "-c", world.config, now=iso(at(0))).returncode == 0
    make_file(other_fs_source / "f1.txt", b"changed")
    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(1)))
    assert outcome.returncode == 0, outcome
    snapshot = actions_of(outcome.json())[0]
    assert (snapshot["files_copied"], snapshot["files_linked"]) == (1, 1)
    first, second = (world.target / name_of(at(day)) for day in range(2))
    assert os.lstat(first / "sub/f2.txt").st_ino == os.lstat(second / "sub/f2.txt").st_ino
    assert os.lstat(first / "f1.txt").st_ino != os.lstat(second / "f1.txt").st_ino
    assert (second / "f1.txt").read_bytes() == b"changed"


# -- free space --------------------------------------------------------------------------


def test_min_free_space_above_free_space_refuses_and_creates_nothing(world: Site, cli: Cli) -> None:
    world.write(min_free_space="1000T", pre_command=append_line(world.mark("pre"), "pre"))
    refused_before_anything(world, cli, "min_free_space")


def test_free_space_falling_below_min_during_copy_aborts_and_keeps_earlier_snapshot(
    world: Site, cli: Cli, tmpfs: Mount
) -> None:
    target = tmpfs("small", "size=8m") / "dst"
    world.write(target_path=str(target), cross_fs="copy", min_free_space="1M")
    assert cli("apply", "-c", world.config, now=iso(at(0))).returncode == 0
    earlier = target / name_of(at(0))
    for index in range(3):
        make_file(world.source / f"big{index}.bin", os.urandom(4 << 20))
    outcome = cli("apply", "-c", world.config, now=iso(at(1)))
    assert outcome.returncode == 1, outcome
    # In human units, with what the run held back besides the floor.
    said = re.search(
        r"free space on the target is down to (\d+\.\d [KMG]iB), short of the "
        r"(\d+\.\d [KMG]iB) the run needs: min_free_space \(1\.0 MiB\), "
        r"\d+\.\d [KMG]iB for what it writes next",
        outcome.stderr,
    )
    assert said, outcome
    assert not re.search(r"\d{5}", outcome.stderr.split("free space")[1]), outcome
    assert sorted(os.listdir(target)) == sorted([MANIFEST_DIRECTORY, MARKER, name_of(at(0))])
    assert files_below(earlier) == ["a.txt", "sub/b.txt"]
    assert (earlier / "sub" / "b.txt").read_bytes() == b"bravo!"


# -- the apply lock ----------------------------------------------------------------------


def test_second_apply_while_lock_held_exits_75_naming_pid_and_kill_leaves_no_stale_lock(
    world: Site, cli: Cli
) -> None:
    started, release = world.mark("started"), world.mark("release")
    wait = (
        f"touch {shlex.quote(str(started))}; "
        f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.05; done"
    )
    world.write(pre_command=wait)
    command = [*hardsnap_command(), "apply", "-c", str(world.config)]
    environment = dict(os.environ, HARDSNAP_NOW=T0)
    with open(world.root / "holder.log", "wb") as log:
        holder = subprocess.Popen(
            command, env=environment, stdout=log, stderr=log, start_new_session=True
        )
    try:
        wait_for(started, holder)
        begun = time.monotonic()
        second = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=30
        )
        assert time.monotonic() - begun < 15
        assert second.returncode == 75, second
        assert str(holder.pid) in second.stderr, second.stderr
        assert world.snapshots() == []
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
        # The hook runs in a session of its own, which outlives a SIGKILL of
        # hardsnap: let it end whatever happened above.
        release.touch()
    outcome = cli("apply", "-c", world.config)
    assert outcome.returncode == 0, outcome
    assert world.snapshots() == [name_of(at(0))]

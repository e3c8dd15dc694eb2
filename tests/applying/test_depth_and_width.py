"""Shapes that cost an attacker nothing cost hardsnap little: any depth is
snapshotted, diffed, verified and pruned under the open-file limit of
services and cron (`ulimit -n 1024`), and running out of descriptors fails
a run rather than dropping a subtree.

Every test runs the installed CLI as a process with that limit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks.measure import run
from tests.conftest import Mount
from tests.world.cli import Finished, hardsnap_command
from tests.world.clock import at, iso, name_of
from tests.world.files import make_file
from tests.world.site import Site, new_site

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# Deeper than 1024 descriptors allow when each level holds one.
LEVELS = 1100
OPEN_FILES = 1024


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield new_site(tmp_path)
    # Deeper than pytest's own (recursive) clean-up goes.
    subprocess.run(["rm", "-rf", str(tmp_path)], check=True)


def limited(
    site: Site, *arguments: str, moment: dt.datetime | None = None, files: int = OPEN_FILES
) -> Finished:
    """Run the CLI with at most `files` open descriptors."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    environment = site.environment(None)
    if moment is not None:
        environment["HARDSNAP_NOW"] = iso(moment)
    done = subprocess.run(
        [*hardsnap_command(), *arguments, "-c", str(site.config)],
        env=environment,
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )
    return Finished(done.returncode, done.stdout, done.stderr)


def deep_tree(source: Path, levels: int) -> list[str]:
    """Nest `levels` directories, each with a side directory holding a file
    of two names (a walk has work left at every level); return the path of
    each side file's first name."""
    files = []
    relative = ""
    fd = os.open(source, DIRECTORY_FLAGS)
    try:
        for level in range(levels):
            os.mkdir("s", 0o755, dir_fd=fd)
            side = os.open("s", DIRECTORY_FLAGS, dir_fd=fd)
            file_fd = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=side)
            os.write(file_fd, b"level %d\n" % level)
            os.close(file_fd)
            # A second name: placed at the end of the walk, level by level.
            os.link("f", "g", src_dir_fd=side, dst_dir_fd=side)
            os.close(side)
            files.append(f"{relative}s/f")
            os.mkdir("n", 0o755, dir_fd=fd)
            child = os.open("n", DIRECTORY_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            relative += "n/"
    finally:
        os.close(fd)
    return files


def snapshot_of(document: dict[str, Any]) -> dict[str, Any]:
    (resource,) = document["resources"]
    return next(action for action in resource["actions"] if action["kind"] == "snapshot")


def contents(root: Path) -> dict[str, bytes]:
    """Every file below `root` and its bytes (walked without recursion:
    Python's own os.walk recurses, and these trees are deeper than it goes)."""
    found = {}
    pending = [root]
    while pending:
        directory = pending.pop()
        for entry in os.scandir(directory):
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                pending.append(path)
            else:
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def test_any_depth_is_snapshotted_diffed_verified_and_pruned_under_1024_open_files(
    site: Site,
) -> None:
    files = deep_tree(site.source, LEVELS)
    # And one folder of many folders, which a diff must not hold open at once.
    for index in range(600):
        (site.source / "wide" / f"{index:04d}").mkdir(parents=True)
    site.write(retain="1")
    first = limited(site, "apply", moment=at(0))
    assert first.returncode == 0, first
    assert contents(site.target / name_of(at(0))) == contents(site.source)
    deepest = site.source / files[-1]
    make_file(deepest, b"changed at the bottom\n")
    (site.source / "wide" / "0042" / "new").write_bytes(b"new\n")
    second = limited(site, "apply", moment=at(1))
    assert second.returncode == 0, second
    assert contents(site.target / name_of(at(1))) == contents(site.source)
    diff = limited(site, "diff", "r", "--json")
    assert diff.returncode == 0, diff
    document = json.loads(diff.stdout)
    both_names = [files[-1], files[-1][:-1] + "g"]
    assert [change["path"] for change in document["changed"]] == both_names, document
    assert [change["path"] for change in document["added"]] == ["wide/0042/new"], document
    verified = limited(site, "verify", "r", "--content")
    assert verified.returncode == 0, verified
    pruned = limited(site, "apply", moment=at(1, hours=12))
    assert pruned.returncode == 0, pruned
    assert site.snapshots() == [name_of(at(1))]
    assert not any(name.startswith(".hardsnap-pruning") for name in os.listdir(site.target))


def test_running_out_of_descriptors_fails_the_run_and_never_drops_a_subtree(site: Site) -> None:
    fd = os.open(site.source, DIRECTORY_FLAGS)
    for _ in range(60):
        os.mkdir("n", 0o755, dir_fd=fd)
        child = os.open("n", DIRECTORY_FLAGS, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    # Limits that run out at each kind of open on the way (directories of
    # the source and of the snapshot, files): none may drop what it missed.
    for day, files in enumerate(range(24, 36)):
        done = limited(site, "apply", moment=at(day), files=files)
        if done.returncode == 0:
            assert "skipped" not in done.stdout + done.stderr, (files, done)
            assert contents(site.target / name_of(at(day))) == contents(site.source)
        else:
            assert done.returncode == 1, (files, done)
            assert "Too many open files" in done.stdout + done.stderr, (files, done)
            assert name_of(at(day)) not in site.snapshots()


# -- width and cheap entries cost no memory ---------------------------------------------


def wide_directory(source: Path, count: int) -> None:
    directory = source / "wide"
    directory.mkdir()
    fd = os.open(directory, DIRECTORY_FLAGS)
    try:
        for index in range(count):
            os.close(os.open(f"f{index:07d}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def peaks(site: Site, day: int) -> dict[str, int]:
    """Peak summed PSS (KiB, over hardsnap and its workers) of a second
    snapshot with two workers, diff, verify and verify --content."""
    commands = {
        "apply": ["apply", "-q", "--jobs", "2"],
        "diff": ["diff", "r"],
        "verify": ["verify", "r"],
        "verify --content": ["verify", "r", "--content"],
    }
    environment = site.environment(at(day))
    found = {}
    for label, arguments in commands.items():
        done = run([*hardsnap_command(), *arguments, "-c", str(site.config)], env=environment)
        found[label] = done.pss_kib
    return found


@pytest.mark.slow
def test_memory_does_not_grow_with_the_width_of_a_directory(tmp_path: Path, tmpfs: Mount) -> None:
    measured = {}
    for count in (1_000, 60_000):
        root = tmpfs(f"w{count}", "size=256m,nr_inodes=200k")
        site = new_site(root)
        wide_directory(site.source, count)
        assert site.apply(at(0)).returncode == 0
        measured[count] = peaks(site, 1)
    for command, small in measured[1_000].items():
        large = measured[60_000][command]
        # Holding the directory's listing, its manifest block or a table of
        # its names as Python objects costs a KiB an entry or more.
        assert large - small < 12 * 1024, (command, small, large)


def test_skipped_entries_are_counted_by_reason_and_only_the_first_100_named(site: Site) -> None:
    links = site.source / "links"
    links.mkdir()
    for index in range(5_000):
        (links / f"l{index:05d}").symlink_to("nowhere")
    for day in range(3):
        done = site.apply(at(day), "--json")
        assert done.returncode == 0, done
        action = snapshot_of(json.loads(done.stdout))
        assert action["skipped_total"] == 5_000
        assert action["skipped_by_reason"] == {"symlink: not copied": 5_000}
        assert len(action["skipped"]) == 100
    recorded = site.state_json()
    for run_record in recorded["runs"]:
        for action in run_record["actions"]:
            assert len(action.get("skipped", [])) <= 100, action
    assert recorded["snapshots"][-1]["skipped"] == 5_000

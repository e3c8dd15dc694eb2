"""Whole trees: symlinks, FIFOs, device nodes and mount points, through the
real CLI, with rsync -aHAX --checksum as the oracle of "the same tree"."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.world.clock import at, name_of
from tests.world.files import make_file
from tests.world.site import Site, new_site
from tests.world.trees import rsync_changes

ROOT = os.geteuid() == 0
RSYNC = shutil.which("rsync")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return new_site(tmp_path)


@contextlib.contextmanager
def listening_socket(path: Path) -> Iterator[None]:
    """A socket at `path`, bound by its name from its folder: a socket's
    path may not be longer than about 100 bytes, a test's folder may."""
    server = socket.socket(socket.AF_UNIX)
    before = os.getcwd()
    os.chdir(path.parent)
    try:
        server.bind(path.name)
    finally:
        os.chdir(before)
    try:
        yield
    finally:
        server.close()


def every_kind(source: Path) -> None:
    """A tree with every kind of entry a restore must bring back."""
    make_file(source / "etc" / "hosts", b"127.0.0.1 localhost\n")
    make_file(source / "bin" / "tool", b"#!/bin/sh\n", 0o4755)
    os.symlink("../etc/hosts", source / "bin" / "relative-link")
    os.symlink("/etc/hosts", source / "absolute-link")
    os.symlink("nowhere/at/all", source / "dangling")
    os.symlink("etc", source / "link-to-dir")
    os.symlink(b"bytes-\xff-target", os.fsencode(source / "odd-target"))
    os.mkfifo(source / "pipe", 0o620)
    if ROOT:
        os.mknod(source / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(source / "loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
        os.lchown(source / "absolute-link", 65534, 65534)
        os.chown(source / "pipe", 65534, 65534)
    for path in (source / "absolute-link", source / "dangling", source / "pipe"):
        os.utime(
            path, ns=(1_600_000_000_000_000_001, 1_600_000_000_000_000_001), follow_symlinks=False
        )


def rsync_differences(source: Path, snapshot: Path) -> list[str]:
    """What rsync -aHAX --checksum would change to make `snapshot` equal
    `source` (sockets aside: a snapshot never keeps them)."""
    # Directories whose times only rsync's dry run would touch are not changes.
    changes = rsync_changes(source, snapshot, "--exclude=*.sock")
    return [line for line in changes if not line.startswith(".d..t")]


@pytest.mark.skipif(RSYNC is None, reason="rsync is not installed")
def test_symlinks_and_special_files_kept_make_a_tree_rsync_finds_identical(site: Site) -> None:
    every_kind(site.source)
    site.write(symlinks="keep", special_files="keep")
    with listening_socket(site.source / "app.sock"):
        planned = site.plan_json(at(0))["resources"][0]["actions"][0]
        assert planned["symlinks"] == 5
        assert planned["special_files"] == (3 if ROOT else 1)
        applied = site.apply(at(0), "--json")
        assert applied.returncode == 0, applied
        snapshot = site.target / name_of(at(0))
        assert rsync_differences(site.source, snapshot) == []
        assert os.readlink(snapshot / "dangling") == "nowhere/at/all"
        assert os.readlink(os.fsencode(snapshot / "odd-target")) == b"bytes-\xff-target"
        assert not (snapshot / "app.sock").exists()
        details = json.loads(applied.stdout)["resources"][0]["actions"][0]
        assert (details["symlinks"], details["special_files"]) == (
            planned["symlinks"],
            planned["special_files"],
        )
        assert {"path": "app.sock", "reason": "socket: not copied"} in details["skipped"]

        # The next day: unchanged symlinks are links to yesterday's, changed ones are new.
        os.remove(site.source / "dangling")
        os.symlink("somewhere/else", site.source / "dangling")
        assert site.apply(at(1)).returncode == 0
        second = site.target / name_of(at(1))
        assert rsync_differences(site.source, second) == []
        assert (
            os.lstat(second / "absolute-link").st_ino == os.lstat(snapshot / "absolute-link").st_ino
        )
        assert os.lstat(second / "dangling").st_ino != os.lstat(snapshot / "dangling").st_ino
        assert os.readlink(snapshot / "dangling") == "nowhere/at/all"

    verified = site.cli("verify", "r", "--content", "--json", now=at(1))
    assert verified.returncode == 0, verified
    difference = json.loads(site.cli("diff", "r", "--json", now=at(1)).stdout)
    assert [c["path"] for c in difference["changed"]] == ["dangling"]
    assert difference["added"] == difference["removed"] == []


def test_verify_finds_a_symlink_pointed_elsewhere_and_a_fifo_gone(site: Site) -> None:
    every_kind(site.source)
    site.write(symlinks="keep", special_files="keep")
    assert site.apply(at(0)).returncode == 0
    snapshot = site.target / name_of(at(0))
    os.remove(snapshot / "bin" / "relative-link")
    os.symlink("/etc/shadow", snapshot / "bin" / "relative-link")
    os.remove(snapshot / "pipe")
    done = site.cli("verify", "r", "--json", now=at(0))
    assert done.returncode == 1, done
    problems = {
        (p["path"], p["problem"]) for p in json.loads(done.stdout)["snapshots"][0]["problems"]
    }
    assert ("pipe", "missing") in problems
    assert any(path == "bin/relative-link" for path, _ in problems), problems


def test_symlinks_skipped_by_default_are_counted_and_the_first_run_says_how_to_keep_them(
    site: Site,
) -> None:
    os.symlink("a.txt", site.source / "latest")
    os.symlink("sub", site.source / "current")
    planned = site.cli("plan", now=at(0))
    assert "2 symlinks to skip" in planned.stdout, planned
    first = site.apply(at(0))
    assert first.returncode == 0, first
    assert "2 symlink(s) of the source were left out" in first.stderr
    assert "symlinks: keep" in first.stderr
    assert not (site.target / name_of(at(0)) / "latest").exists()
    second = site.apply(at(1))
    assert second.returncode == 0 and "left out" not in second.stderr, second


@pytest.mark.skipif(not ROOT, reason="mounting needs root")
def test_one_file_system_keeps_mount_points_empty_and_pseudo_filesystems_are_never_walked(
    site: Site, tmp_path: Path
) -> None:
    mounted: list[Path] = []

    def mount(*arguments: str) -> None:
        point = Path(arguments[-1])
        point.mkdir()
        done = subprocess.run(["mount", *arguments], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"mount {' '.join(arguments[:-1])} refused: {done.stderr.strip()}")
        mounted.append(point)

    try:
        mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(site.source / "scratch"))
        make_file(site.source / "scratch" / "in-tmpfs.txt", b"on another filesystem")
        mount("-t", "proc", "proc", str(site.source / "proc"))
        site.write(one_file_system=False)
        assert site.apply(at(0)).returncode == 0
        first = site.target / name_of(at(0))
        assert (first / "scratch" / "in-tmpfs.txt").read_bytes() == b"on another filesystem"
        assert (first / "proc").is_dir() and os.listdir(first / "proc") == []

        site.write(one_file_system=True)
        assert site.apply(at(1)).returncode == 0
        second = site.target / name_of(at(1))
        assert (second / "scratch").is_dir() and os.listdir(second / "scratch") == []
        assert os.listdir(second / "proc") == []
        assert (second / "a.txt").read_bytes() == b"alpha\n"
        assert site.cli("verify", "r", now=at(1)).returncode == 0
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", str(point)], check=False)

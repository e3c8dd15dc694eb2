"""hardsnap restore through the real CLI: the plan first (exit 2 while
changes are pending), then --apply; everything a snapshot keeps comes back
(rsync -aHAX --checksum is the oracle), a replaced file is kept beside,
--delete and --overwrite, a damaged copy is reported and not restored, a
bare target restores without config or state, and a destination another
user prepared is never followed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers import platform
from hardsnap.providers.engine import copying
from tests.world.acls import acl_granting_user_1234
from tests.world.clock import START, at, name_of
from tests.world.files import make_file
from tests.world.site import Site, empty_site
from tests.world.trees import rsync_changes
from tests.world.users import NOBODY

SNAPSHOT = name_of(START)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A source with every kind of entry and metadata, snapshotted once."""
    site = empty_site(tmp_path, min_free_space=0, symlinks="keep", special_files="keep")
    source = site.source
    make_file(source / "etc" / "app.conf", b"listen 8080\n", 0o640)
    tool = make_file(source / "bin" / "tool", b"#!/bin/sh\necho hi\n", 0o755)
    os.chmod(tool, 0o4755)
    os.link(tool, source / "bin" / "tool-alias")
    make_file(source / "data" / "owned.txt", b"nobody's", 0o600)
    if os.geteuid() == 0:
        os.chown(source / "data" / "owned.txt", NOBODY, NOBODY)
    with open(source / "data" / "sparse.img", "wb") as stream:
        stream.truncate(8 << 20)
        stream.write(b"start")
    os.symlink("../etc/app.conf", source / "data" / "link")
    os.symlink("nowhere", source / "data" / "dangling")
    os.mkfifo(source / "data" / "fifo", 0o620)
    (source / "empty").mkdir()
    if os.geteuid() == 0:
        os.mknod(source / "data" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    if hasattr(os, "setxattr"):  # not in the masked platform run
        with contextlib.suppress(OSError):
            os.setxattr(source / "etc" / "app.conf", "user.origin", b"restored with it")
            acl = acl_granting_user_1234(6, 4, 4, 0)
            os.setxattr(source / "etc" / "app.conf", "system.posix_acl_access", acl)
    site.write()
    assert site.apply().returncode == 0
    return site


def restore(site: Site, *arguments: str) -> Any:
    done = site.cli("restore", *arguments, "--json")
    document = json.loads(done.stdout) if done.stdout.strip().startswith("{") else None
    return done, document


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is the oracle")
def test_a_whole_snapshot_restored_is_what_rsync_finds_identical(
    site: Site, tmp_path: Path
) -> None:
    destination = tmp_path / "restored"
    planned, document = restore(site, "r", ".", "--to", str(destination))
    assert planned.returncode == 2, planned
    assert not destination.exists(), "the plan changed something"
    entries = 13 + (os.geteuid() == 0)  # the device node
    assert document["created"] == entries and document["applied"] is False, document

    done, document = restore(site, "r", ".", "--to", str(destination), "--apply")
    assert done.returncode == 0, done
    snapshot = site.snapshot(SNAPSHOT)
    assert rsync_changes(snapshot, destination) == []
    assert rsync_changes(site.source, destination) == []
    tool, alias = destination / "bin" / "tool", destination / "bin" / "tool-alias"
    assert os.stat(tool).st_ino == os.stat(alias).st_ino
    assert stat.S_IMODE(os.stat(tool).st_mode) == 0o4755
    assert os.stat(destination / "data" / "sparse.img").st_blocks * 512 < 1 << 20

    again, document = restore(site, "r", ".", "--to", str(destination))
    assert again.returncode == 0, again
    assert {entry["action"] for entry in document["entries"]} == {"equal"}, document
    assert document["equal"] == entries, document


def test_a_file_comes_back_where_it_was_and_what_it_replaced_is_kept_beside(
    site: Site,
) -> None:
    conf = site.source / "etc" / "app.conf"
    conf.write_bytes(b"listen 9090\n")
    planned = site.cli("restore", "r", "etc/app.conf")
    assert planned.returncode == 2, planned
    assert "~ etc/app.conf (content, mtime)" in planned.stdout, planned
    assert conf.read_bytes() == b"listen 9090\n"

    done = site.cli("restore", "r", str(conf), "--apply")
    assert done.returncode == 0, done
    assert conf.read_bytes() == b"listen 8080\n"
    kept = conf.with_name(f"app.conf.hardsnap-replaced-{SNAPSHOT}")
    assert kept.read_bytes() == b"listen 9090\n"
    # The file as the snapshot keeps it (the folder's mtime is the rename's).
    changes = rsync_changes(site.snapshot(SNAPSHOT) / "etc", site.source / "etc")
    assert [line for line in changes if not line.endswith(" ./")] == [], changes


def test_overwrite_keeps_nothing_beside_and_delete_removes_what_the_snapshot_lacks(
    site: Site,
) -> None:
    etc = site.source / "etc"
    (etc / "app.conf").write_bytes(b"changed")
    make_file(etc / "extra.conf", b"not in the snapshot")
    kept_by_default = restore(site, "r", "etc", "--apply", "--overwrite")[1]
    assert (etc / "extra.conf").exists(), "an entry the snapshot lacks stays without --delete"
    assert kept_by_default["kept_beside"] == []
    assert sorted(os.listdir(etc)) == ["app.conf", "extra.conf"]

    planned, document = restore(site, "r", "etc", "--delete")
    assert planned.returncode == 2
    assert {"path": "etc/extra.conf", "action": "delete", "why": []} in document["entries"]
    done, _ = restore(site, "r", "etc", "--delete", "--apply")
    assert done.returncode == 0, done
    assert sorted(os.listdir(etc)) == ["app.conf"]


def test_a_damaged_copy_in_the_snapshot_is_reported_and_not_restored(
    site: Site, tmp_path: Path
) -> None:
    copy = site.snapshot(SNAPSHOT) / "etc" / "app.conf"
    info = os.stat(copy)
    with open(copy, "r+b") as stream:
        stream.write(b"LISTEN")
    os.utime(copy, ns=(info.st_atime_ns, info.st_mtime_ns))
    destination = tmp_path / "out"
    done, document = restore(site, "r", "etc", "--to", str(destination), "--apply")
    assert done.returncode == 1, done
    assert document["damaged"] == ["etc/app.conf"], document
    assert os.listdir(destination) == [], "a damaged copy reached its final name"


def test_a_bare_target_restores_without_config_or_state(site: Site, tmp_path: Path) -> None:
    site.config.unlink()
    shutil.rmtree(site.state)
    (site.source / "etc" / "app.conf").unlink()
    target = str(site.target)
    planned = site.cli("restore", "--target", target, "etc/app.conf")
    assert planned.returncode == 2, planned
    assert "+ etc/app.conf" in planned.stdout, planned
    done = site.cli("restore", "--target", target, "etc/app.conf", "--apply")
    assert done.returncode == 0, done
    assert (site.source / "etc" / "app.conf").read_bytes() == b"listen 8080\n"


def test_the_newest_snapshot_holding_the_path_is_the_default(site: Site) -> None:
    make_file(site.source / "later.txt", b"only in the second")
    assert site.apply(at(1)).returncode == 0
    (site.source / "etc" / "app.conf").write_bytes(b"changed again")
    _, document = restore(site, "r", "etc/app.conf")
    assert document["snapshot"] == name_of(at(1))
    (site.source / "later.txt").unlink()
    _, document = restore(site, "r", "later.txt", "--from", SNAPSHOT)
    assert document is None or document.get("error"), document
    _, document = restore(site, "r", "later.txt")
    assert document["snapshot"] == name_of(at(1))


def test_a_restore_interrupted_mid_file_leaves_nothing_under_a_final_name(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = copying.copy_contents

    def interrupted(source_fd: int, target_fd: int, info: os.stat_result, *rest: Any) -> int:
        original(source_fd, target_fd, info, *rest)
        raise KeyboardInterrupt

    monkeypatch.setattr(copying, "copy_contents", interrupted)
    destination = tmp_path / "out"
    done = site.cli("restore", "r", "etc", "--to", str(destination), "--apply")
    assert done.returncode == 130, done
    assert os.listdir(destination) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the destination is another user's")
def test_symlinks_another_user_planted_in_the_destination_are_never_followed(
    site: Site, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    victim = make_file(outside / "victim", b"root's own file")
    destination = tmp_path / "shared"
    destination.mkdir()
    os.chown(destination, NOBODY, NOBODY)
    os.chmod(destination, 0o777)
    # What nobody puts there before root restores into it.
    os.symlink(outside, destination / "etc")
    os.symlink(victim, destination / "bin")
    os.lchown(destination / "etc", NOBODY, NOBODY)
    done, _ = restore(site, "r", ".", "--to", str(destination), "--apply")
    assert done.returncode == 0, done
    assert victim.read_bytes() == b"root's own file"
    assert sorted(os.listdir(outside)) == ["victim"]
    assert not (destination / "etc").is_symlink()
    assert (destination / "etc" / "app.conf").read_bytes() == b"listen 8080\n"
    assert (destination / f"etc.hardsnap-replaced-{SNAPSHOT}").is_symlink()
    assert rsync_changes(site.snapshot(SNAPSHOT) / "bin", destination / "bin") == []


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["nosuch", "etc"], 'no resource named "nosuch"'),
        (["r", "/elsewhere/etc"], "is not below source_dir"),
        (["r", "../etc"], "is not below source_dir"),
        (["r", "nothing-like-it"], "no snapshot in"),
        (["r", "etc", "--from", "2020.001.00.00"], "no snapshot 2020.001.00.00"),
    ],
)
def test_what_cannot_be_restored_exits_1_saying_why_and_changes_nothing(
    site: Site, arguments: list[str], said: str
) -> None:
    before = sorted(os.listdir(site.source))
    done = site.cli("restore", *arguments, "--apply")
    assert done.returncode == 1, done
    assert said in done.stderr, done
    assert sorted(os.listdir(site.source)) == before


def test_a_first_name_swapped_before_its_second_is_linked_is_not_linked_to(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone who can write the destination swaps the restored bin/tool for
    a file of theirs just before bin/tool-alias is linked to it."""
    destination = tmp_path / "shared"
    theirs = make_file(tmp_path / "theirs", b"someone else's")
    original = platform.link_at

    def swapping_first(old: str, old_at: int, new: str, new_at: int) -> None:
        (destination / "bin" / "tool").rename(destination / "bin" / "moved")
        os.link(theirs, destination / "bin" / "tool")
        original(old, old_at, new, new_at)

    monkeypatch.setattr(platform, "link_at", swapping_first)
    done = site.cli("restore", "r", "bin", "--to", str(destination / "bin"), "--apply")
    assert done.returncode == 1, done
    assert "its first name was replaced while restoring" in done.stderr, done
    assert sorted(os.listdir(destination / "bin")) == ["moved", "tool"]
    assert os.stat(theirs).st_nlink == 2, "their file got another name"

"""diff and history where every snapshot copies every file (cross_fs: copy
or warn, the target on a filesystem of its own): each snapshot has new
inodes for unchanged files, so the manifests decide what changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mount
from tests.world.cli import Finished
from tests.world.clock import at, name_of
from tests.world.files import ODD_NS, make_file, make_sparse, skip_without_holes, xattrs_supported
from tests.world.site import Site, digests, new_site

DAYS = [name_of(at(day)) for day in range(3)]


def copying_site(tmp_path: Path, tmpfs: Mount, cross_fs: str) -> Site:
    """A site whose target is on a tmpfs of its own: a.txt, c.txt, sub/b.txt
    (0600) and sub/d.txt."""
    site = new_site(tmp_path)
    make_file(site.source / "c.txt", b"charlie\n")
    make_file(site.source / "sub" / "d.txt", b"delta\n")
    site.target = tmpfs("disk", "size=8m,mode=0700") / "dst"
    site.write(cross_fs=cross_fs)
    return site


def applied(site: Site, day: int) -> None:
    done = site.apply(at(day))
    assert done.returncode == 0, done


@pytest.fixture(params=["copy", "warn"])
def three_days(request: pytest.FixtureRequest, tmp_path: Path, tmpfs: Mount) -> Site:
    """Day 0, then on day 1 a.txt's content changes (size and mtime kept:
    only its SHA-256 tells), then on day 2 sub/b.txt's mode alone."""
    site = copying_site(tmp_path, tmpfs, request.param)
    applied(site, 0)
    make_file(site.source / "a.txt", b"ALPHA\n")
    applied(site, 1)
    os.chmod(site.source / "sub" / "b.txt", 0o640)
    applied(site, 2)
    assert site.snapshots() == DAYS
    first, second = (site.target / name / "c.txt" for name in DAYS[:2])
    assert os.lstat(first).st_ino != os.lstat(second).st_ino  # copied, not linked
    return site


def json_of(done: Finished) -> Any:
    assert done.returncode == 0, done
    return json.loads(done.stdout)


def diff_json(site: Site, *snapshots: str) -> Any:
    return json_of(site.cli("diff", "r", *snapshots, "--json", now=None))


def versions(site: Site, path: str) -> list[tuple[str, str]]:
    document = json_of(site.cli("history", "r", path, "--json", now=None))
    return [(version["first"], version["last"]) for version in document["versions"]]


def changed_paths(document: Any) -> list[str]:
    return [item["path"] for item in document["changed"]]


def test_diff_of_copied_snapshots_lists_only_real_changes_in_text_and_json(
    three_days: Site,
) -> None:
    site = three_days
    text = site.cli("diff", "r", now=None)
    assert text.returncode == 0, text
    assert text.stdout.splitlines() == [
        f'diff "r": {DAYS[1]} -> {DAYS[2]}',
        "~ sub/b.txt (6 B -> 6 B)",
        "1 change: 0 added, 0 removed, 1 changed; 3 unchanged",
    ]
    assert "warning" not in text.stderr, text
    assert diff_json(site, DAYS[0], DAYS[1]) == {
        "resource": "r",
        "from": DAYS[0],
        "to": DAYS[1],
        "added": [],
        "removed": [],
        "changed": [{"path": "a.txt", "size_before": 6, "size_after": 6}],
        "unchanged": 3,
    }
    across = diff_json(site, DAYS[0], DAYS[2])
    assert (changed_paths(across), across["unchanged"]) == (["a.txt", "sub/b.txt"], 2)


def test_history_of_copied_snapshots_gives_one_version_per_real_change(
    three_days: Site,
) -> None:
    site = three_days
    assert versions(site, "c.txt") == [(DAYS[0], DAYS[2])]
    assert versions(site, "a.txt") == [(DAYS[0], DAYS[0]), (DAYS[1], DAYS[2])]
    assert versions(site, "sub/b.txt") == [(DAYS[0], DAYS[1]), (DAYS[2], DAYS[2])]
    text = site.cli("history", "r", "sub/d.txt", now=None)
    assert text.returncode == 0, text
    assert "1 version" in text.stdout and f"{DAYS[0]} .. {DAYS[2]}" in text.stdout, text
    assert "warning" not in text.stderr, text


def test_a_file_replaced_in_a_snapshot_after_the_fact_is_changed_whatever_its_manifest_says(
    three_days: Site,
) -> None:
    """The manifest vouches for the inode it recorded, not for whatever
    later took its name (same content and metadata or not)."""
    site = three_days
    planted = site.target / DAYS[2] / "c.txt"
    shutil.copy2(planted, planted.with_name("c.new"))
    os.rename(planted.with_name("c.new"), planted)
    assert changed_paths(diff_json(site)) == ["c.txt", "sub/b.txt"]
    assert versions(site, "c.txt") == [(DAYS[0], DAYS[1]), (DAYS[2], DAYS[2])]


@pytest.mark.parametrize("damage", ["missing", "cut short", "garbled line"])
def test_without_a_sound_manifest_copies_count_as_changed_and_diff_and_history_say_why(
    three_days: Site, damage: str
) -> None:
    site = three_days
    manifest = site.target / ".hardsnap-manifests" / DAYS[1]
    data = manifest.read_bytes()
    if damage == "missing":
        manifest.unlink()
    elif damage == "cut short":
        manifest.write_bytes(data[:-10])
    else:  # c.txt's line loses a field; its trailer and index stay sound
        start = data.rindex(b"\n", 0, data.index(b"\tc.txt\n")) + 1
        garbled = data[start:].replace(b"\t", b" ", 1)
        manifest.write_bytes(data[:start] + garbled)
    text = site.cli("diff", "r", DAYS[0], DAYS[1], now=None)
    assert text.returncode == 0, text
    assert text.stdout.splitlines()[-1] == "4 changes: 0 added, 0 removed, 4 changed; 0 unchanged"
    assert "warning:" in text.stderr and str(manifest) in text.stderr, text
    assert ("no manifest" if damage == "missing" else "is damaged") in text.stderr, text
    document = diff_json(site, DAYS[0], DAYS[1])
    assert document["unchanged"] == 0
    assert [str(manifest) in warning for warning in document["warnings"]] == [True]
    history = site.cli("history", "r", "c.txt", "--json", now=None)
    assert [(v["first"], v["last"]) for v in json_of(history)["versions"]] == [
        (DAYS[0], DAYS[0]),
        (DAYS[1], DAYS[1]),
        (DAYS[2], DAYS[2]),
    ]
    assert [str(manifest) in warning for warning in json_of(history)["warnings"]] == [True]
    assert str(manifest) in history.stderr, history
    # Snapshots whose manifests are sound still compare by content.
    assert changed_paths(diff_json(site, DAYS[0], DAYS[2])) == ["a.txt", "sub/b.txt"]


@pytest.mark.parametrize("cross_fs", ["copy", "link"])
def test_an_extended_attribute_change_alone_is_the_one_change_and_a_new_version(
    tmp_path: Path, tmpfs: Mount, cross_fs: str
) -> None:
    """Manifests record no extended attributes: the files are compared."""
    site = copying_site(tmp_path, tmpfs, cross_fs)
    xattrs_supported(site.source)
    os.setxattr(site.source / "c.txt", "user.tag", b"old")
    applied(site, 0)
    os.setxattr(site.source / "c.txt", "user.tag", b"new")
    applied(site, 1)
    document = diff_json(site)
    assert (changed_paths(document), document["unchanged"]) == (["c.txt"], 3)
    assert versions(site, "c.txt") == [(DAYS[0], DAYS[0]), (DAYS[1], DAYS[1])]
    assert versions(site, "a.txt") == [(DAYS[0], DAYS[1])]


def test_kept_symlinks_and_fifos_copied_anew_compare_by_target_and_metadata(
    tmp_path: Path, tmpfs: Mount
) -> None:
    site = copying_site(tmp_path, tmpfs, "copy")
    site.write(cross_fs="copy", symlinks="keep", special_files="keep")
    for name, target in (("same-link", "a.txt"), ("moved-link", "c.txt")):
        os.symlink(target, site.source / name)
        os.utime(site.source / name, ns=(ODD_NS, ODD_NS), follow_symlinks=False)
    os.mkfifo(site.source / "pipe")
    os.utime(site.source / "pipe", ns=(ODD_NS, ODD_NS))
    applied(site, 0)
    # Retargeted with its mtime kept: only the target text tells.
    (site.source / "moved-link").unlink()
    os.symlink("sub/d.txt", site.source / "moved-link")
    os.utime(site.source / "moved-link", ns=(ODD_NS, ODD_NS), follow_symlinks=False)
    applied(site, 1)
    first, second = (site.target / name / "pipe" for name in DAYS[:2])
    assert os.lstat(first).st_ino != os.lstat(second).st_ino  # made anew, not linked
    document = diff_json(site)
    assert (changed_paths(document), document["unchanged"]) == (["moved-link"], 6)
    assert versions(site, "same-link") == [(DAYS[0], DAYS[1])]
    assert versions(site, "pipe") == [(DAYS[0], DAYS[1])]
    assert versions(site, "moved-link") == [(DAYS[0], DAYS[0]), (DAYS[1], DAYS[1])]


def test_a_sparse_file_copied_anew_compares_by_its_sparse_digest(
    tmp_path: Path, tmpfs: Mount
) -> None:
    site = copying_site(tmp_path, tmpfs, "copy")
    image = make_sparse(site.source / "disk.img", 64 << 20, 32 << 20, b"\xab" * 4096)
    skip_without_holes(image)
    os.utime(image, ns=(ODD_NS, ODD_NS))
    applied(site, 0)
    applied(site, 1)
    # Data written into a hole, size and mtime kept: only the digest tells.
    with open(image, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xcd" * 4096)
    os.utime(image, ns=(ODD_NS, ODD_NS))
    applied(site, 2)
    recorded = [digests(site, name)["disk.img"] or "" for name in DAYS]
    assert all(digest.startswith("sparse:") for digest in recorded), recorded
    steady = diff_json(site, DAYS[0], DAYS[1])
    assert (changed_paths(steady), steady["unchanged"]) == ([], 5)
    assert changed_paths(diff_json(site)) == ["disk.img"]
    assert versions(site, "disk.img") == [(DAYS[0], DAYS[1]), (DAYS[2], DAYS[2])]

"""Hostile trees: names no text tool would make, trees deeper than PATH_MAX,
symlinks swapped in where a directory was, target paths that are symlinks.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers.backup import effects as backup
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.engine.directories import Walker
from hardsnap.providers.engine.snapshot import Walk
from tests.among_users.hostile import (
    build_deep_tree,
    leftovers,
)
from tests.world.cli import Cli
from tests.world.clock import at, iso, name_of
from tests.world.documents import skipped_paths, snapshot_action
from tests.world.files import ODD_NS, make_file, snapshots_in
from tests.world.site import Site
from tests.world.trees import files_of, tree

# -- promise 5: hostile trees ----------------------------------------------------------

HOSTILE_NAMES = [
    b"new\nline",
    b" spaces  around ",
    b"-rf",
    b"--help",
    b"*?[",
    b"[a-z]*",
    b"bad-utf8-\xff\xfe",
    b"latin1-\xe9t\xe9",
    b"tab\there",
    b"back\\slash",
    b"quote'\"",
    b"$(touch pwned)",
    b"\xc3\x28",
]


def build_hostile_tree(source: Path) -> None:
    base = os.fsencode(source)
    for index, name in enumerate(HOSTILE_NAMES):
        path = os.path.join(base, name)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(descriptor, b"content of " + name)
        os.close(descriptor)
        os.utime(path, ns=(ODD_NS + index, ODD_NS + index))
    directory = os.path.join(base, b"-dir\n\xff*?[")
    os.mkdir(directory)
    for name in (b"--", b"\n", b"\xff"):
        path = os.path.join(directory, name)
        with open(path, "wb") as handle:
            handle.write(b"nested " + name)
        os.utime(path, ns=(ODD_NS, ODD_NS))
    os.utime(directory, ns=(ODD_NS, ODD_NS))


def test_hostile_names_are_snapshotted_byte_identical_and_linked_on_the_next_run(
    site: Site, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    build_hostile_tree(site.source)
    site.write(exclude="*.swp")
    source = tree(site.source)

    _, first = site.apply_json()
    assert tree(site.taken_at()) == source
    assert skipped_paths(first) == {}
    plan = cli("plan", "-c", site.config, "--json", now=iso(at(1)))
    assert plan.returncode == 0, plan
    assert snapshot_action(plan.json())["files_to_link"] == len(files_of(source))

    _, second = site.apply_json(at(1))
    assert tree(site.taken_at(at(1))) == source
    assert snapshot_action(second)["files_linked"] == len(files_of(source))
    first_inodes = {path: node.inode for path, node in files_of(tree(site.taken_at())).items()}
    second_inodes = {
        path: node.inode for path, node in files_of(tree(site.taken_at(at(1)))).items()
    }
    assert second_inodes == first_inodes
    assert not (tmp_path / "pwned").exists()


def test_tree_deeper_than_path_max_is_snapshotted_linked_and_pruned(site: Site, cli: Cli) -> None:
    directories = build_deep_tree(site.source)
    make_file(site.source / "top.txt", b"top")
    site.write(retain="1")
    source = tree(site.source)
    assert directories[-1] + b"/file.txt" in source

    site.apply_json()
    first = tree(site.taken_at())
    assert first == source

    _, document = site.apply_json(at(1))
    second = tree(site.taken_at(at(1)))
    assert second == source
    assert snapshot_action(document)["files_linked"] == len(files_of(source))
    for path, node in files_of(second).items():
        assert node.inode == first[path].inode, path

    plan = cli("plan", "-c", site.config, "--json", now=iso(at(2)))
    assert plan.returncode == 0, plan
    assert "Traceback" not in plan.stderr

    _, document = site.apply_json(at(2))
    prune = [a for a in document["resources"][0]["actions"] if a["kind"] == "prune"]
    assert prune and prune[0]["result"] == "changed", document
    assert snapshots_in(site.target) == [name_of(at(1)), name_of(at(2))]
    assert leftovers(site.target) == []
    assert tree(site.taken_at(at(2))) == source


def test_symlink_swapped_in_for_a_directory_of_the_reference_is_not_followed(
    site: Site, cli: Cli
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    make_file(site.source / "sub" / "f.txt", b"source data")
    site.write()
    site.apply_json()
    # Outside: a file that looks unchanged (same size, mtime and mode) to a
    # walk that would follow the symlink into it.
    outside = site.root / "outside"
    make_file(outside / "f.txt", b"OUTSIDE!!!!")
    make_file(outside / "extra.txt", b"extra")
    before = tree(outside)
    reference_sub = site.taken_at() / "sub"
    shutil.rmtree(reference_sub)
    reference_sub.symlink_to(outside)

    plan = cli("plan", "-c", site.config, "--json", now=iso(at(1)))
    prediction = snapshot_action(plan.json())
    assert (prediction["files_to_copy"], prediction["files_to_link"]) == (1, 1)

    _, document = site.apply_json(at(1))
    copy = site.taken_at(at(1)) / "sub" / "f.txt"
    assert copy.read_bytes() == b"source data"
    assert os.stat(copy).st_ino != os.stat(outside / "f.txt").st_ino
    assert not (site.taken_at(at(1)) / "sub" / "extra.txt").exists()
    assert tree(outside) == before
    assert [node.links for node in files_of(tree(outside)).values()] == [1, 1]
    assert snapshot_action(document)["files_linked"] == 1


def test_symlink_with_a_snapshot_name_is_neither_reference_nor_window_nor_pruned_through(
    site: Site,
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    site.write()
    site.apply_json()
    outside = site.root / "outside"
    make_file(outside / "a.txt", b"alpha")
    before = tree(outside)
    # Looks like a newer snapshot of the next day's window, holding an
    # identical-looking a.txt.
    fake = site.target / name_of(at(1)).replace(".06.00", ".00.00")
    fake.symlink_to(outside)

    _, document = site.apply_json(at(1))
    assert snapshot_action(document)["reference"] == name_of(at(0))
    assert (
        os.stat(site.taken_at(at(1)) / "a.txt").st_ino == os.stat(site.taken_at() / "a.txt").st_ino
    )

    site.apply_json(at(31))
    assert fake.is_symlink()
    assert tree(outside) == before
    assert snapshots_in(site.target) == [name_of(at(1)), name_of(at(31))]


def test_prune_does_not_follow_symlinks_swapped_in_inside_a_snapshot(site: Site, cli: Cli) -> None:
    make_file(site.source / "a.txt", b"alpha")
    make_file(site.source / "c.txt", b"charlie")
    make_file(site.source / "sub" / "f.txt", b"inner")
    site.write()
    site.apply_json()
    site.apply_json(at(1))
    outside = site.root / "outside"
    make_file(outside / "big.bin", b"\x01" * (1 << 20))
    make_file(outside / "nested" / "deep.txt", b"deep")
    make_file(site.root / "outside-file.txt", b"lone outside file")
    old = site.taken_at()
    shutil.rmtree(old / "sub")
    (old / "sub").symlink_to(outside)
    (old / "a.txt").unlink()
    (old / "a.txt").symlink_to(site.root / "outside-file.txt")
    before = tree(outside)

    plan = cli("plan", "-c", site.config, "--json", now=iso(at(31)))
    prunes = [a for a in plan.json()["resources"][0]["actions"] if a["kind"] == "prune"]
    assert prunes and prunes[0]["snapshots"] == [name_of(at(0))], plan
    assert prunes[0]["bytes_freed"] < 1 << 20, "bytes behind a symlink were counted"

    site.apply_json(at(31))
    assert snapshots_in(site.target) == [name_of(at(1)), name_of(at(31))]
    assert leftovers(site.target) == []
    assert tree(outside) == before
    assert (site.root / "outside-file.txt").read_bytes() == b"lone outside file"


def test_symlink_swapped_in_for_a_directory_being_built_is_never_written_through(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "sub" / "f.txt", b"inner")
    outside = site.root / "outside"
    outside.mkdir()
    original = Walker._make_directory

    def swapping(self: Walker, name: str, relative: str, parent: Any) -> bool:
        made = original(self, name, relative, parent)
        if name == "sub":
            os.rmdir(name, dir_fd=parent.target_fd)
            os.symlink(outside, name, dir_fd=parent.target_fd)
        return made

    monkeypatch.setattr(Walker, "_make_directory", swapping)
    site.write()
    outcome = cli("apply", "-c", site.config, now=iso(at(0)))
    assert "Traceback" not in outcome.stderr, outcome
    assert os.listdir(outside) == [], outcome
    for name in snapshots_in(site.target):
        # Whatever the run decided, a snapshot that exists is whole and real.
        assert (site.target / name / "sub" / "f.txt").read_bytes() == b"inner"
        assert not (site.target / name / "sub").is_symlink()
    assert leftovers(site.target) == []


def test_target_path_symlink_snapshots_go_to_the_real_directory_and_plan_shows_it(
    site: Site, cli: Cli
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    real = site.root / "big-disk" / "backups"
    real.mkdir(parents=True)
    link = site.root / "var-backups"
    link.symlink_to(real)
    site.target = link
    site.write()

    plan = cli("plan", "-c", site.config, now=iso(at(0)))
    assert plan.returncode == 0, plan
    assert f"{link} (-> {real})" in plan.stdout, plan
    planned = cli("plan", "-c", site.config, "--json", now=iso(at(0)))
    assert planned.json()["resources"][0]["target"] == str(real)

    site.apply_json()
    site.apply_json(at(1))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert snapshots_in(real) == [name_of(at(0)), name_of(at(1))]
    assert (
        os.stat(real / name_of(at(1)) / "a.txt").st_ino
        == os.stat(real / name_of(at(0)) / "a.txt").st_ino
    )

    site.apply_json(at(31))
    assert snapshots_in(real) == [name_of(at(1)), name_of(at(31))]
    assert link.is_symlink()


def test_target_path_dangling_symlink_creates_the_directory_it_points_to(site: Site) -> None:
    make_file(site.source / "a.txt", b"alpha")
    real = site.root / "not-yet" / "backups"
    link = site.root / "var-backups"
    link.symlink_to(real)
    site.target = link
    site.write()
    site.apply_json()
    assert link.is_symlink()
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o700
    assert (real / name_of(at(0)) / "a.txt").read_bytes() == b"alpha"


def test_target_path_symlink_repointed_mid_run_keeps_the_snapshot_where_it_was_resolved(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    real = site.root / "disk-a"
    other = site.root / "disk-b"
    real.mkdir()
    other.mkdir()
    link = site.root / "var-backups"
    link.symlink_to(real)
    site.target = link
    site.write()
    repointed: list[str] = []
    original_snapshot = backup.take_snapshot
    original_walk = Walk.run

    def repoint() -> None:
        link.unlink()
        link.symlink_to(other)
        repointed.append(os.readlink(link))

    def repointing_before_snapshot(resource: Resource, name: str, target: str, *rest: Any) -> Any:
        # After plan resolved the link, before the snapshot starts.
        repoint()
        return original_snapshot(resource, name, target, *rest)

    def repointing_during_walk(
        self: Walk, source_fd: int, reference_fd: int | None, target_fd: Any
    ) -> None:
        if target_fd is not None:
            repoint()
        original_walk(self, source_fd, reference_fd, target_fd)

    monkeypatch.setattr(backup, "take_snapshot", repointing_before_snapshot)
    monkeypatch.setattr(Walk, "run", repointing_during_walk)
    site.apply_json()
    assert repointed == [str(other), str(other)]
    assert snapshots_in(real) == [name_of(at(0))]
    assert (real / name_of(at(0)) / "a.txt").read_bytes() == b"alpha"
    assert os.listdir(other) == []
    assert leftovers(real) == []

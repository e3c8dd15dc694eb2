"""source_snapshot: btrfs: the walk reads a read-only btrfs snapshot of the
source's subvolume, made for the run and deleted after it (and after a
crash), so files changed together during the walk are never seen mixed.
A real btrfs filesystem on a loop image, the real CLI."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers.engine.placing import Placer
from tests.world.clock import START, at, name_of
from tests.world.documents import snapshot_action
from tests.world.files import make_file
from tests.world.filesystems import btrfs_mount, btrfs_subvolume
from tests.world.site import Site, empty_site

pytestmark = pytest.mark.linux_only(reason="btrfs snapshots are made by Linux ioctls")

FROZEN = ".hardsnap-source.r"


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A btrfs subvolume on a fresh btrfs filesystem."""
    with btrfs_mount(tmp_path) as mounted:
        yield btrfs_subvolume(mounted / "vol")


@pytest.fixture
def site(volume: Path, tmp_path: Path) -> Site:
    """Source volume/data (a pair of files that change together), target on
    the same btrfs filesystem, source_snapshot: btrfs."""
    site = replace(empty_site(tmp_path, min_free_space=0), source=volume / "data")
    site = replace(site, target=volume.parent / "backups")
    make_file(site.source / "pair" / "a.txt", b"version 1")
    make_file(site.source / "pair" / "b.txt", b"version 1")
    make_file(site.source / "other.txt", b"steady")
    site.write(source_snapshot="btrfs", cross_fs="link")
    return site


def change_both_when_first_is_placed(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the walk has placed the first of pair/a.txt and pair/b.txt,
    both change in the live source (as a program saving two files at once)."""
    original = Placer.file
    changed: list[str] = []

    def placing(self: Placer, name: str, relative: str, info: os.stat_result, frame: Any) -> None:
        original(self, name, relative, info, frame)
        if relative.startswith("pair/") and not changed:
            changed.append(relative)
            for each in ("a.txt", "b.txt"):
                (site.source / "pair" / each).write_bytes(b"version 2, longer")

    monkeypatch.setattr(Placer, "file", placing)


def test_files_changed_together_during_the_walk_are_never_seen_mixed(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    change_both_when_first_is_placed(site, monkeypatch)
    _, document = site.apply_json(START, "--jobs", "1")
    pair = site.taken_at() / "pair"
    assert (pair / "a.txt").read_bytes() == (pair / "b.txt").read_bytes() == b"version 1"
    assert snapshot_action(document)["source_snapshot"] == str(site.source.parent)
    # The snapshot made for the run is gone; the live source holds version 2.
    assert FROZEN not in os.listdir(site.source.parent)
    assert (site.source / "pair" / "a.txt").read_bytes() == b"version 2, longer"
    # The next run sees version 2 of both.
    site.apply_json(at(1))
    later = site.taken_at(at(1)) / "pair"
    assert (later / "a.txt").read_bytes() == (later / "b.txt").read_bytes() == b"version 2, longer"


def test_without_source_snapshot_the_same_walk_mixes_the_two_versions(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.write(cross_fs="link")
    change_both_when_first_is_placed(site, monkeypatch)
    site.apply_json(START, "--jobs", "1")
    pair = site.taken_at() / "pair"
    assert sorted([(pair / "a.txt").read_bytes(), (pair / "b.txt").read_bytes()]) == [
        b"version 1",
        b"version 2, longer",
    ]


def test_plan_says_it_walks_a_snapshot_and_changes_nothing(site: Site) -> None:
    before = sorted(os.listdir(site.source.parent))
    planned = site.cli("plan")
    assert planned.returncode == 0, planned
    assert f"walks a read-only btrfs snapshot of {site.source.parent}" in planned.stdout
    assert snapshot_action(site.plan_json())["source_snapshot"] == str(site.source.parent)
    assert sorted(os.listdir(site.source.parent)) == before


def test_a_snapshot_a_killed_run_left_is_removed_by_the_next_run(site: Site) -> None:
    volume = site.source.parent
    subprocess.run(
        ["btrfs", "subvolume", "snapshot", "-r", str(volume), str(volume / FROZEN)],
        check=True,
        capture_output=True,
    )
    _, document = site.apply_json()
    assert snapshot_action(document)["result"] == "changed"
    assert FROZEN not in os.listdir(volume)
    assert sorted(os.listdir(site.taken_at())) == ["other.txt", "pair"]


def test_a_directory_in_the_way_of_the_snapshot_is_refused_and_left_alone(site: Site) -> None:
    in_the_way = make_file(site.source.parent / FROZEN / "mine.txt", b"not hardsnap's")
    done = site.apply()
    assert done.returncode == 1, done
    assert "is no source snapshot hardsnap made" in done.stdout + done.stderr, done
    assert in_the_way.read_bytes() == b"not hardsnap's"
    assert site.snapshots() == []


def test_another_resource_walking_the_live_volume_leaves_a_frozen_copy_out(
    site: Site, tmp_path: Path
) -> None:
    volume = site.source.parent
    subprocess.run(
        ["btrfs", "subvolume", "snapshot", "-r", str(volume), str(volume / FROZEN)],
        check=True,
        capture_output=True,
    )
    whole = replace(site, source=volume, target=volume.parent / "whole", config=tmp_path / "w.yaml")
    whole.write(cross_fs="link")
    whole.apply_json()
    assert sorted(os.listdir(whole.taken_at())) == ["data"]


def test_a_source_not_on_btrfs_is_refused_with_the_reason(tmp_path: Path) -> None:
    site = empty_site(tmp_path, min_free_space=0)
    make_file(site.source / "a.txt", b"a")
    site.write(source_snapshot="btrfs")
    planned = site.cli("plan")
    assert planned.returncode == 1, planned
    assert "source_snapshot: btrfs needs source_dir on btrfs" in planned.stdout, planned
    applied = site.apply()
    assert applied.returncode == 1, applied
    assert site.snapshots() == []
    assert name_of(START) not in os.listdir(site.root)

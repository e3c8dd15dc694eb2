"""Fixtures the tests of this folder share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.auditing.audits import (
    apply_ok,
)
from tests.world.cli import Cli
from tests.world.clock import at, name_of
from tests.world.files import ODD_NS, make_file, rewrite
from tests.world.site import Site, empty_site


@pytest.fixture
def world(tmp_path: Path) -> Site:
    return empty_site(tmp_path)


@pytest.fixture
def two_snapshots(world: Site, cli: Cli) -> Site:
    """Day 0 and day 1: a.txt and sub/b.txt linked from day 0 into day 1,
    c.txt changed (copied) and new.txt only in day 1."""
    make_file(world.source / "a.txt", b"alpha")
    make_file(world.source / "sub" / "b.txt", b"bravo!", 0o600)
    make_file(world.source / "c.txt", b"charlie")
    world.write()
    apply_ok(cli, world, 0)
    rewrite(world.source / "c.txt", b"charlie, second", ODD_NS + 5)
    make_file(world.source / "new.txt", b"only in the second")
    apply_ok(cli, world, 1)
    assert world.snapshots() == [name_of(at(0)), name_of(at(1))]
    first, second = world.snapshot(name_of(at(0))), world.snapshot(name_of(at(1)))
    assert os.lstat(first / "a.txt").st_ino == os.lstat(second / "a.txt").st_ino
    assert os.lstat(first / "c.txt").st_ino != os.lstat(second / "c.txt").st_ino
    return world


@pytest.fixture
def newest_file(two_snapshots: Site) -> Path:
    """The file only the second snapshot holds."""
    return two_snapshots.snapshot(name_of(at(1))) / "new.txt"


@pytest.fixture
def three_snapshots(world: Site, cli: Cli) -> Site:
    """Day 0 -> 1: a linked, b changed, c added, gone/ removed, fresh/ added,
    morph turned from a file into a directory. Day 1 -> 2: a changed."""
    make_file(world.source / "a.txt", b"alpha")
    make_file(world.source / "b.txt", b"bravo")
    make_file(world.source / "gone" / "x.txt", b"xx")
    make_file(world.source / "gone" / "y" / "z.txt", b"zzz")
    make_file(world.source / "morph", b"file")
    world.write()
    apply_ok(cli, world, 0)

    rewrite(world.source / "b.txt", b"bravo-2", ODD_NS + 1)
    make_file(world.source / "c.txt", b"cc")
    shutil.rmtree(world.source / "gone")
    make_file(world.source / "fresh" / "one.txt", b"1")
    make_file(world.source / "fresh" / "deep" / "two.txt", b"22")
    (world.source / "morph").unlink()
    make_file(world.source / "morph" / "inner.txt", b"inner")
    apply_ok(cli, world, 1)

    rewrite(world.source / "a.txt", b"alpha, longer", ODD_NS + 2)
    apply_ok(cli, world, 2)
    assert world.snapshots() == [name_of(at(0)), name_of(at(1)), name_of(at(2))]
    return world

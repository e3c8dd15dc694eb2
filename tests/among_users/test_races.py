"""Someone who can write in the target swaps directories for symlinks,
while hardsnap walks and prunes: root must never open, wait on, chmod or
remove anything through them. A racing thread exchanges a directory with
a symlink (renameat2 RENAME_EXCHANGE: atomic, so the name is always one of
the two) as fast as it can, while the real CLI runs."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.world.cli import Finished, run
from tests.world.clock import START, at, name_of
from tests.world.files import immutable, make_file
from tests.world.site import Site, new_site

LIBC = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_EXCHANGE = 2
OLD = "2026.001.06.00"  # expired at START with the default retain of 30 days


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return new_site(tmp_path)


@contextlib.contextmanager
def racing(pairs: list[tuple[Path, Path]]) -> Iterator[None]:
    """Exchange each pair of names, over and over, until the block ends."""
    stop = threading.Event()

    def race() -> None:
        encoded = [(os.fsencode(a), os.fsencode(b)) for a, b in pairs]
        while not stop.is_set():
            for first, second in encoded:
                LIBC.renameat2(AT_FDCWD, first, AT_FDCWD, second, RENAME_EXCHANGE)

    racer = threading.Thread(target=race, daemon=True)
    racer.start()
    try:
        yield
    finally:
        stop.set()
        racer.join()


def test_walks_and_prunes_never_open_chmod_or_remove_through_a_swapped_in_symlink(
    site: Site, tmp_path: Path
) -> None:
    if not hasattr(LIBC, "renameat2"):
        pytest.skip("no renameat2 in this C library")
    outside = tmp_path / "outside"
    outside.mkdir()
    fifo = outside / "fifo"
    os.mkfifo(fifo)
    victim = make_file(outside / "victim", b"keep me", 0o644)
    assert site.apply(START).returncode == 0
    # A snapshot of long ago (expired), planted with what an attacker needs:
    # directories to swap for symlinks to a FIFO and to a file outside, and
    # an immutable file so that its prune meets a refusal and goes on.
    old = site.target / OLD
    for directory in ("walked", "chmodded"):
        for index in range(300):
            make_file(old / directory / f"f{index:03d}", b"x")
        (old / directory / "sub").mkdir()
    os.symlink(fifo, old / "to-fifo")
    os.symlink(victim, old / "to-victim")
    stuck = make_file(old / "stuck", b"immutable")
    pruning = site.target / f".hardsnap-pruning.{OLD}"
    pairs = [(directory / "walked", directory / "to-fifo") for directory in (old, pruning)] + [
        (directory / "chmodded", directory / "to-victim") for directory in (old, pruning)
    ]
    with immutable(stuck, pruning / "stuck"), racing(pairs):
        for _ in range(5):
            # state show measures what pruning each snapshot would free.
            shown = cli(site, "state", "show", "--json")
            assert shown.returncode == 0, shown
        for hours in range(1, 6):
            # The first prunes what it can; the next ones try the rest again.
            pruned = cli(site, "apply", now=at(0, hours=hours))
            assert pruned.returncode == 0, pruned
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert victim.read_bytes() == b"keep me"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    # What could be removed was, through the swaps; the immutable file stays,
    # reported, under the pruning name.
    assert site.snapshots() == [name_of(START)]
    assert (pruning / "stuck").read_bytes() == b"immutable"


def cli(site: Site, *arguments: str, now: dt.datetime = START) -> Finished:
    """The CLI as a process; one that hangs (waiting on a FIFO) fails the test."""
    return run([*arguments, "-c", str(site.config)], site.environment(now), timeout=60)


def test_a_manifests_directory_planted_by_another_user_is_refused_not_written_through(
    site: Site, tmp_path: Path
) -> None:
    site.target.mkdir(mode=0o777)
    os.chmod(site.target, 0o777)  # a shared target, as NAS mounts show
    planted = site.target / ".hardsnap-manifests"
    planted.mkdir()
    os.chown(planted, 65534, 65534)
    # What root would open for writing: a FIFO (it would wait for ever) and
    # a hard link to a file outside (it would truncate it).
    os.mkfifo(planted / f"{name_of(START)}.partial")
    outside = make_file(tmp_path / "outside.txt", b"keep me")
    with contextlib.suppress(OSError):
        os.link(outside, planted / f"{name_of(at(0, hours=1))}.partial")
    done = cli(site, "apply")
    assert done.returncode == 1, done
    assert "cannot keep manifests" in done.stderr and "uid 65534" in done.stderr, done
    assert outside.read_bytes() == b"keep me"
    assert site.snapshots() == []

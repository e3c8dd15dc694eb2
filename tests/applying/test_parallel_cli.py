"""`apply --jobs`: worker processes share one queue of directories, whatever
the tree's shape.

In-process runs lower the point where the walk is shared out (normally after
500 files) and log which process placed each file; the run as nobody
goes through the installed CLI with a tree big enough to be shared.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers import platform
from hardsnap.providers.engine import snapshot
from hardsnap.providers.engine.directories import Walker
from hardsnap.providers.engine.placing import Placer
from hardsnap.providers.manifest.writer import ManifestWriter
from tests.world.cli import Cli
from tests.world.files import make_file
from tests.world.site import Site, empty_site
from tests.world.users import NOBODY, hand_to_nobody, run_as_nobody

T0, T1 = "2026-03-29T06:00:00Z", "2026-03-30T06:00:00Z"
FIRST, SECOND = "2026.088.06.00", "2026.089.06.00"


def one_file_under_each(source: Path, tops: int, name: str) -> range:
    """Top directories t0, t1, ... each holding s/NAME; their numbers."""
    for top in range(tops):
        make_file(source / f"t{top}/s/{name}", b"%d" % top)
    return range(tops)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return empty_site(tmp_path, min_free_space=0, retain="30")


def entries(root: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Every entry below `root`: mode, mtime and, for files, bytes."""
    found: dict[str, tuple[int, int, bytes | None]] = {}
    for directory, directories, files in os.walk(root):
        for name in directories + files:
            path = Path(directory, name)
            info = path.lstat()
            data = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
            found[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, data)
    return found


@pytest.fixture
def placers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Share the walk out from the first directory on; log the pid that
    places each file (forked workers append to the same file)."""
    monkeypatch.setattr(snapshot, "PARALLEL_AFTER_FILES", 0)
    log = tmp_path / "placed-by"
    original = Placer.file

    def logging(self: Placer, name: str, relative: str, info: os.stat_result, frame: Any) -> None:
        with open(log, "a") as lines:
            lines.write(f"{os.getpid()}\n")
        original(self, name, relative, info, frame)

    monkeypatch.setattr(Placer, "file", logging)
    return log


def pids(log: Path) -> set[int]:
    pids = {int(line) for line in log.read_text().split()}
    log.unlink()
    return pids


def test_workers_share_a_tree_under_one_directory(site: Site, cli: Cli, placers: Path) -> None:
    source, target = site.source, site.target
    for top in range(12):
        for sub in range(4):
            for index in range(3):
                make_file(
                    source / f"home/user/p{top}/q{sub}/f{index}", b"%d-%d-%d" % (top, sub, index)
                )
    os.link(source / "home/user/p0/q0/f0", source / "home/user/p11/q3/second-name")
    config = site.write()

    outcome = cli("apply", "-c", config, "--jobs", "3", now=T0)
    assert outcome.returncode == 0, outcome
    workers = pids(placers) - {os.getpid()}
    assert len(workers) == 3, "every worker placed files of a tree under one directory"
    assert entries(target / FIRST) == entries(source)

    outcome = cli("apply", "-c", config, "--jobs", "3", now=T1)
    assert outcome.returncode == 0, outcome
    assert entries(target / SECOND) == entries(source)
    for top in range(12):
        relative = f"home/user/p{top}/q2/f1"
        assert (target / SECOND / relative).stat().st_ino == (
            target / FIRST / relative
        ).stat().st_ino
    linked = target / SECOND / "home/user/p11/q3/second-name"
    assert linked.stat().st_ino == (target / SECOND / "home/user/p0/q0/f0").stat().st_ino


def test_a_busy_worker_hands_subdirectories_to_an_idle_one(
    site: Site, cli: Cli, placers: Path
) -> None:
    # Two pieces of work when the walk is shared out (deep/ and small/) for
    # three workers: the third only gets work handed over by a busy one.
    source, target = site.source, site.target
    make_file(source / "small" / "f", b"small")
    for leaf in range(24):
        for index in range(8):
            make_file(source / f"deep/x/y/p{leaf:02d}/f{index}", b"%d" % (leaf * index))
    config = site.write()

    outcome = cli("apply", "-c", config, "--jobs", "3", now=T0)
    assert outcome.returncode == 0, outcome
    assert len(pids(placers) - {os.getpid()}) == 3
    assert entries(target / FIRST) == entries(source)


def test_jobs_one_walks_in_this_process_alone(
    site: Site, cli: Cli, placers: Path, forks: list[int]
) -> None:
    source = site.source
    for top in range(4):
        make_file(source / f"t{top}" / "s" / "f", b"x")
    outcome = cli("apply", "-c", site.write(), "-j", "1", now=T0)
    assert outcome.returncode == 0, outcome
    assert forks == []
    assert pids(placers) == {os.getpid()}


@pytest.mark.parametrize("jobs", ["0", "-2", "many"])
def test_jobs_must_be_a_positive_number(site: Site, cli: Cli, jobs: str) -> None:
    source, target = site.source, site.target
    make_file(source / "f", b"x")
    outcome = cli("apply", "-c", site.write(), "--jobs", jobs, now=T0)
    assert outcome.returncode == 2
    assert "--jobs" in outcome.stderr
    assert not target.exists()


def test_read_only_directories_shared_out_as_nobody_come_out_as_in_the_source(
    nobody_dir: Path,
) -> None:
    # Well past the 500 files after which the walk is shared out; directories
    # whose own bits keep their owner out (as root they never would) get
    # them only once everything below them is done, files with two names
    # in them included.
    source, target = nobody_dir / "src", nobody_dir / "dst"
    tops = range(10)
    for top in tops:
        for sub in range(10):
            for index in range(40):
                make_file(source / f"t{top}/s{sub}/f{index}", b"%d" % index)
        # Second names placed by this process after the workers, in
        # directories their owner may not write: t (0500), t/s3 (0555).
        os.link(source / f"t{top}/s0/f0", source / f"t{top}/second-name")
        os.link(source / f"t{top}/s1/f0", source / f"t{top}/s3/second-name")
    hand_to_nobody(nobody_dir)
    for top in tops:
        os.chmod(source / f"t{top}/s3", 0o555)
        os.chmod(source / f"t{top}", 0o500)
    config = empty_site(nobody_dir, min_free_space=0, retain="30").write()
    os.chown(config, NOBODY, NOBODY)
    os.chown(nobody_dir, NOBODY, NOBODY)
    state = nobody_dir / "state"

    done = run_as_nobody(["apply", "-c", str(config), "--jobs", "2"], nobody_dir, state)
    assert done.returncode == 0, done.stderr.decode()
    assert entries(target / FIRST) == entries(source)
    done = run_as_nobody(["apply", "-c", str(config), "--jobs", "2"], nobody_dir, state, now=T1)
    assert done.returncode == 0, done.stderr.decode()
    assert entries(target / SECOND) == entries(source)
    for top in tops:
        for second_name, first_name in (("second-name", "s0/f0"), ("s3/second-name", "s1/f0")):
            inode = (target / SECOND / f"t{top}" / second_name).stat().st_ino
            assert inode == (target / SECOND / f"t{top}" / first_name).stat().st_ino
            assert inode == (target / FIRST / f"t{top}" / first_name).stat().st_ino


def test_workers_share_one_free_space_budget_on_a_small_filesystem(
    tmp_path: Path, cli: Cli, placers: Path, tmpfs: Any
) -> None:
    small = tmpfs("small", "size=16m")
    source, target = tmp_path / "src", small / "dst"
    for index in range(96):  # 6 MiB in 64 KiB files, over 12 directories
        make_file(source / f"d{index % 12}" / f"f{index}", os.urandom(64 << 10))
    config = tmp_path / "hardsnap.yaml"
    config.write_text(
        "resources:\n"
        f"  - name: r\n    type: backup\n    source_dir: {source}\n"
        f"    target_path: {target}\n    min_free_space: 4M\n    cross_fs: copy\n"
    )
    outcome = cli("apply", "-c", config, "--jobs", "3", now=T0)
    assert outcome.returncode == 0, outcome
    assert len(pids(placers) - {os.getpid()}) == 3
    assert entries(target / FIRST) == entries(source)
    before = os.statvfs(small)
    assert before.f_bavail * before.f_frsize >= 4 << 20

    # 5 MiB more, and every file copied again (another filesystem): more
    # than the 6 MiB left above min_free_space, whichever worker asks.
    for index in range(80):
        make_file(source / f"d{index % 12}" / f"g{index}", os.urandom(64 << 10))
    outcome = cli("apply", "-c", config, "--jobs", "3", now=T1)
    assert outcome.returncode == 1, outcome
    assert "min_free_space" in outcome.stdout + outcome.stderr
    assert sorted(os.listdir(target)) == sorted([".hardsnap-manifests", ".hardsnap-target", FIRST])
    after = os.statvfs(small)
    assert after.f_bavail == before.f_bavail, "the partial snapshot was removed"


def test_a_handed_over_directory_whose_parent_went_away_is_skipped_not_fatal(
    site: Site, cli: Cli, placers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = site.source, site.target
    make_file(source / "kept.txt", b"kept")
    for top in range(6):
        make_file(source / f"home/user/p{top}/f", b"%d" % top)
    original = Walker.enter_path

    def moving_the_parent(self: Walker, roots: Any, relative: str) -> Any:
        # The walk is shared out once home/user is listed: every worker is
        # handed home/user/pN by its path, after home/user has moved away
        # (each forked worker moves it, or finds it moved).
        with contextlib.suppress(FileNotFoundError):  # the other worker was first
            (source / "home/user").rename(source / "home/moved")
        return original(self, roots, relative)

    monkeypatch.setattr(Walker, "enter_path", moving_the_parent)
    config = site.write()
    outcome = cli("apply", "-c", config, "--jobs", "2", now=T0)
    assert outcome.returncode == 0, outcome
    assert "Traceback" not in outcome.stderr
    assert "home/user/p0: vanished before it was read" in outcome.stderr
    assert (target / FIRST / "kept.txt").read_bytes() == b"kept"
    assert sorted(os.listdir(target / FIRST / "home" / "user")) == []


def test_a_worker_dying_before_its_result_fails_the_snapshot_cleanly(
    site: Site, cli: Cli, placers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = site.source, site.target
    one_file_under_each(source, 6, "f")
    parent = os.getpid()
    original = ManifestWriter.finish_part

    def dying(self: ManifestWriter) -> None:
        if os.getpid() != parent:  # a worker, its walk done, dies before it reports
            os._exit(3)
        original(self)

    monkeypatch.setattr(ManifestWriter, "finish_part", dying)
    outcome = cli("apply", "-c", site.write(), "-j", "2", now=T0)
    assert outcome.returncode == 1, outcome
    assert "died" in outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert sorted(os.listdir(target)) == [".hardsnap-manifests", ".hardsnap-target"]
    assert os.listdir(target / ".hardsnap-manifests") == []


def test_a_directory_gone_before_its_second_names_are_placed_is_skipped_not_fatal(
    site: Site, cli: Cli, placers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Files with several names found by workers are placed by this process
    # after the workers end: a directory of them that has gone by then is
    # reported, and the rest of the snapshot is taken.
    source, target = site.source, site.target
    for top in one_file_under_each(source, 4, "a"):
        os.link(source / f"t{top}/s/a", source / f"t{top}/s/b")
    original = snapshot.Walk._place_deferred

    def removing_one(self: Any, walker: Any, root: Any, deferred: Any) -> None:
        assert deferred, "the workers left files with several names"
        gone = source / "t1/s"
        for name in os.listdir(gone):
            os.unlink(gone / name)
        gone.rmdir()
        (source / "t2/s").rename(source / "t2/elsewhere")
        (source / "t2/s").symlink_to("/etc")
        original(self, walker, root, deferred)

    monkeypatch.setattr(snapshot.Walk, "_place_deferred", removing_one)
    outcome = cli("apply", "-c", site.write(), "-j", "2", now=T0)
    assert outcome.returncode == 0, outcome
    assert "Traceback" not in outcome.stderr
    for name in ("t1/s/a", "t1/s/b", "t2/s/a", "t2/s/b"):
        assert f"{name}: vanished before it was read" in outcome.stderr
    snap = target / FIRST
    for top in (0, 3):
        a, b = snap / f"t{top}/s/a", snap / f"t{top}/s/b"
        assert a.read_bytes() == b"%d" % top
        assert a.stat().st_ino == b.stat().st_ino
    assert not (snap / "t2/s/a").exists() and not (snap / "t1/s/a").exists()
    assert os.listdir("/etc") and not (snap / "t2/s").is_symlink()


def test_a_late_directory_gone_before_its_metadata_is_reported_not_fatal(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not root: directories whose bits keep their owner out get their
    # metadata at the end of the walk, reopened by path. One whose source
    # went by then keeps its copy's owner-only bits; the snapshot is taken.
    monkeypatch.setattr(platform, "IS_ROOT", False)
    source, target = site.source, site.target
    for top in one_file_under_each(source, 2, "f"):
        os.chmod(source / f"t{top}/s", 0o500)
    original = snapshot.apply_late

    def moving_one(late: list[str], *arguments: Any) -> None:
        assert sorted(late) == ["t0/s/", "t1/s/"]
        (source / "t1/s").rename(source / "t1/moved")
        original(late, *arguments)

    monkeypatch.setattr(snapshot, "apply_late", moving_one)
    outcome = cli("apply", "-c", site.write(), "-j", "1", now=T0)
    assert outcome.returncode == 0, outcome
    assert "t1/s: metadata not copied: vanished before it was read" in outcome.stderr
    snap = target / FIRST
    assert stat.S_IMODE((snap / "t0/s").stat().st_mode) == 0o500
    assert stat.S_IMODE((snap / "t1/s").stat().st_mode) == 0o700
    assert (snap / "t1/s/f").read_bytes() == b"1"

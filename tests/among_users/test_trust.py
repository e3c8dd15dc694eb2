"""Safe to leave unattended as root: nothing outside the target is touched,
one odd file never stops the backups, history is never thrown away by
mistake, and an interrupt says the truth and loses nothing.

Every test drives the real CLI on real directories; the hostile ones plant
symlinks, immutable files (chattr +i, ext4 /tmp) and racing processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY
from tests.conftest import Mount
from tests.world.cli import hardsnap_command
from tests.world.clock import START, at, name_of
from tests.world.documents import snapshot_action
from tests.world.files import immutable, make_file, tree_of, work_left
from tests.world.processes import Applies, wait_for_entry, wait_for_file
from tests.world.site import Site, new_site

PARTIAL = ".hardsnap-partial."


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return new_site(tmp_path)


def outside_files(root: Path) -> dict[str, bytes]:
    """A directory outside every target, holding what an attacker would aim at."""
    make_file(root / "passwd", b"root:x:0:0::/root:/bin/sh\n")
    make_file(root / "shadow", b"root:*:19000::::::\n")
    return tree_of(root)


def many_files(source: Path, count: int, size: int = 64) -> None:
    for index in range(count):
        make_file(source / f"d{index % 20:02d}" / f"f{index:05d}", bytes([index % 251]) * size)


# -- 1. nothing outside the target is touched -----------------------------------------------


def test_prune_through_a_manifests_directory_swapped_for_a_symlink_removes_nothing_outside(
    site: Site, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    assert site.apply(at(0)).returncode == 0
    assert site.apply(at(1)).returncode == 0
    # A file outside named like the manifest the prune will remove.
    make_file(outside / name_of(at(0)), b"not a manifest")
    before = outside_files(outside)
    manifests = site.target / MANIFEST_DIRECTORY
    shutil.rmtree(manifests)
    manifests.symlink_to(outside)
    site.write(retain="1")
    pruned = site.apply(at(1, hours=2))
    assert pruned.returncode == 0, pruned
    assert site.snapshots() == [name_of(at(1))]
    assert tree_of(outside) == before


def test_manifests_directory_swapped_for_a_symlink_during_an_apply_removes_nothing_outside(
    site: Site, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    before = outside_files(outside)
    many_files(site.source, 2000)
    manifests = site.target / MANIFEST_DIRECTORY
    with Applies(tmp_path / "logs") as applies:
        apply = applies.start(["apply", "-c", str(site.config)], site.environment(START))
        assert wait_for_entry(site.target, lambda name: name.startswith(PARTIAL), apply), apply
        apply.stop()
        # Stopped mid-walk, its manifest open: swap the directory for a link out.
        assert work_left(site.target), "the snapshot finished before the swap"
        manifests.rename(site.target / "manifests.real")
        manifests.symlink_to(outside)
        apply.send(signal.SIGCONT)
        assert apply.wait() == 0, apply
    assert tree_of(outside) == before
    assert site.snapshots() == [name_of(START)]


def test_target_writable_by_others_is_warned_about_in_plan_and_apply_naming_the_fix(
    site: Site,
) -> None:
    site.target.mkdir(mode=0o700)
    os.chmod(site.target, 0o777)
    plan = site.cli("plan")
    assert plan.returncode == 0, plan
    assert "writable by other users" in plan.stdout and "chmod go-w" in plan.stdout, plan
    applied = site.apply()
    assert applied.returncode == 0, applied
    assert "writable by other users" in applied.stderr and "chmod go-w" in applied.stderr


# -- 2. one odd file or one stuck hook never stops the backups ---------------------------------


def test_an_immutable_file_in_the_reference_is_copied_instead_of_linked_reported_once(
    site: Site,
) -> None:
    assert site.apply(at(0)).returncode == 0
    locked = site.target / name_of(at(0)) / "a.txt"
    with immutable(locked):
        done = site.apply(at(1))
        assert done.returncode == 0, done
        assert "could not be hard-linked" in done.stderr and "a.txt" in done.stderr, done
        assert done.stderr.count("could not be hard-linked") == 1, done
        copy = site.target / name_of(at(1)) / "a.txt"
        assert copy.read_bytes() == b"alpha\n" and copy.stat().st_ino != locked.stat().st_ino
        # The other, ordinary file is still linked.
        assert (site.target / name_of(at(1)) / "sub" / "b.txt").stat().st_nlink == 2
        # The next day links to that copy: backups go on.
        after = site.apply(at(2))
        assert after.returncode == 0, after
        assert "could not be hard-linked" not in after.stderr, after
        assert (site.target / name_of(at(2)) / "a.txt").stat().st_ino == copy.stat().st_ino
    assert site.snapshots() == [name_of(at(day)) for day in (0, 1, 2)]


def test_an_immutable_file_in_an_expired_snapshot_is_reported_every_run_and_never_blocks(
    site: Site,
) -> None:
    assert site.apply(at(0)).returncode == 0
    assert site.apply(at(1)).returncode == 0
    # Its own inode (a copy, not shared with the newer snapshot).
    stuck = site.target / name_of(at(0)) / "own.txt"
    make_file(stuck, b"only here")
    site.write(retain="1")
    pruning = site.target / f".hardsnap-pruning.{name_of(at(0))}" / "own.txt"
    with immutable(stuck, pruning):
        for day in (2, 3):
            done = site.apply(at(day))
            assert done.returncode == 0, done
            assert "own.txt" in done.stderr and "cannot remove" in done.stderr, done
            assert name_of(at(day)) in site.snapshots()
            assert name_of(at(0)) not in site.snapshots()
    finished = site.apply(at(4))
    assert finished.returncode == 0, finished
    assert work_left(site.target) == []


@pytest.fixture
def site_on_small_disk(tmpfs: Mount, tmp_path: Path) -> Site:
    """A site whose target is on an 8 MiB tmpfs."""
    site = new_site(tmp_path)
    site.target = tmpfs("small", "size=8m") / "dst"
    return site


def test_plan_counts_allocated_blocks_so_small_files_cannot_sink_below_min_free_space(
    site_on_small_disk: Site,
) -> None:
    site = site_on_small_disk
    mount = site.target.parent
    # 1000 files of 100 bytes: 100 KB apparent, 4 MB of blocks.
    for index in range(1000):
        make_file(site.source / f"f{index:04d}", b"x" * 100)
    site.write(min_free_space="5M", cross_fs="link")
    plan = site.cli("plan")
    assert plan.returncode == 1, plan
    assert "min_free_space" in plan.stdout, plan
    applied = site.apply()
    assert applied.returncode == 1, applied
    free = os.statvfs(mount)
    assert free.f_bavail * free.f_frsize >= 5 << 20, "the run sank below min_free_space"
    assert site.snapshots() == [] and work_left(site.target) == []


def test_a_sparse_file_bigger_than_the_free_space_is_planned_and_kept_sparse(
    site_on_small_disk: Site,
) -> None:
    site = site_on_small_disk
    image = site.source / "disk.img"
    with open(image, "wb") as stream:
        stream.seek(1 << 30)
        stream.write(b"end")
    site.write(min_free_space="1M", cross_fs="link")
    plan = site.plan_json()
    snapshot = snapshot_action(plan)
    assert plan["resources"][0]["refusal"] is None, plan
    applied = site.cli("apply", "--json")
    assert applied.returncode == 0, applied
    action = snapshot_action(applied.json())
    assert snapshot["bytes_to_copy"] == action["bytes_copied"] < 1 << 20
    copy = site.target / name_of(START) / "disk.img"
    assert copy.stat().st_size == (1 << 30) + 3
    assert copy.stat().st_blocks * 512 < 1 << 20


# -- 3. history is never thrown away by mistake -------------------------------------------------


def test_a_target_serving_another_source_is_refused_naming_both_and_left_alone(
    site: Site, tmp_path: Path
) -> None:
    assert site.apply(at(0)).returncode == 0
    other = replace(
        site,
        source=tmp_path / "other-src",
        config=tmp_path / "other.yaml",
        state=tmp_path / "other-state",
    )
    make_file(other.source / "x.txt", b"other source")
    other.write(retain="1")
    before = tree_of(site.target)
    for command in ("plan", "apply"):
        done = other.cli(command, now=at(5))
        assert done.returncode == 1, done
        said = done.stdout + done.stderr
        assert str(site.source) in said and str(other.source) in said, done
    assert tree_of(site.target) == before
    assert site.snapshots() == [name_of(at(0))]


def test_a_snapshot_dated_after_now_is_never_reference_window_or_pruned(site: Site) -> None:
    assert site.apply(at(0)).returncode == 0
    future = site.target / name_of(at(400))
    make_file(future / "a.txt", b"altered")
    plan = site.cli("plan", now=at(1))
    assert plan.returncode == 0, plan
    assert "dated after now" in plan.stdout, plan
    document = site.plan_json(at(1))
    snapshot = next(a for a in document["resources"][0]["actions"] if a["kind"] == "snapshot")
    assert snapshot["reference"] == name_of(at(0))
    site.write(retain="1", keep_min=0)
    reference = (site.target / name_of(at(0)) / "a.txt").stat().st_ino
    applied = site.apply(at(1, hours=1))
    assert applied.returncode == 0, applied
    assert "dated after now" in applied.stderr, applied
    assert (future / "a.txt").read_bytes() == b"altered"
    assert (site.target / name_of(at(1, hours=1)) / "a.txt").read_bytes() == b"alpha\n"
    assert (site.target / name_of(at(1, hours=1)) / "a.txt").stat().st_ino == reference
    # The reference expired (25 hours old, retain 1 day, keep_min 0); the
    # future-dated one, older in no sense, stays.
    assert site.snapshots() == [name_of(at(1, hours=1)), name_of(at(400))]


def test_an_empty_future_dated_snapshot_does_not_defeat_the_empty_source_guard(
    site: Site,
) -> None:
    assert site.apply(at(0)).returncode == 0
    (site.target / name_of(at(30))).mkdir()
    shutil.rmtree(site.source)
    site.source.mkdir()
    done = site.apply(at(1))
    assert done.returncode == 1, done
    assert "is empty" in done.stderr, done


def test_a_clock_jumping_a_year_ahead_snapshots_but_prunes_nothing_and_says_why(
    site: Site,
) -> None:
    site.write(retain="3")
    for day in range(3):
        assert site.apply(at(day)).returncode == 0
    jumped = site.apply(at(365))
    assert jumped.returncode == 0, jumped
    assert "Nothing is pruned" in jumped.stderr, jumped
    assert len(site.snapshots()) == 4
    # The clock stays wrong: its own wrong-dated snapshot does not make the
    # real ones look expired; every run says so until a retain period passed.
    after = site.apply(at(366))
    assert after.returncode == 0, after
    assert "Nothing is pruned" in after.stderr, after
    assert site.snapshots() == [*(name_of(at(day)) for day in (0, 1, 2, 365, 366))]


def test_a_missing_target_that_the_state_has_snapshots_in_is_refused_until_allowed(
    site: Site, tmp_path: Path
) -> None:
    assert site.apply(at(0)).returncode == 0
    site.target.rename(tmp_path / "unmounted")
    plan = site.cli("plan", now=at(1))
    assert plan.returncode == 1, plan
    assert "mounted" in plan.stdout, plan
    applied = site.apply(at(1))
    assert applied.returncode == 1, applied
    assert "mounted" in applied.stderr and "--allow-new-target" in applied.stderr
    assert not site.target.exists(), "the refused apply created the target"
    site.target.mkdir(mode=0o700)  # an empty mount point
    assert site.apply(at(1)).returncode == 1
    allowed = site.apply(at(1), "--allow-new-target")
    assert allowed.returncode == 0, allowed
    assert site.snapshots() == [name_of(at(1))]


def test_a_pre_command_that_brings_the_target_back_is_checked_after_it_runs(
    site: Site, tmp_path: Path
) -> None:
    assert site.apply(at(0)).returncode == 0
    away = tmp_path / "unmounted"
    site.target.rename(away)
    site.write(pre_command=f'mv "{away}" "$HARDSNAP_TARGET"')
    done = site.apply(at(1))
    assert done.returncode == 0, done
    assert site.snapshots() == [name_of(at(0)), name_of(at(1))]


def test_a_file_verify_found_corrupted_in_the_reference_is_copied_from_the_source(
    site: Site,
) -> None:
    assert site.apply(at(0)).returncode == 0
    rotten = site.target / name_of(at(0)) / "a.txt"
    info = rotten.stat()
    os.chmod(rotten, 0o644)
    rotten.write_bytes(b"alpHa\n")
    os.utime(rotten, ns=(info.st_atime_ns, info.st_mtime_ns))
    checked = site.cli("verify", "r", "--content", now=at(0, hours=1))
    assert checked.returncode == 1 and "corrupted" in checked.stdout, checked
    assert site.apply(at(1)).returncode == 0
    fresh = site.target / name_of(at(1)) / "a.txt"
    assert fresh.read_bytes() == b"alpha\n"
    assert fresh.stat().st_ino != rotten.stat().st_ino
    clean = site.cli("verify", "r", name_of(at(1)), "--content", now=at(1, hours=1))
    assert clean.returncode == 0, clean


# -- 4. interrupts tell the truth and lose nothing ----------------------------------------------


def test_sigterm_during_post_command_exits_143_and_the_post_command_is_retried(
    site: Site, tmp_path: Path
) -> None:
    started, finished = tmp_path / "post-started", tmp_path / "post-finished"
    site.write(post_command=f'touch "{started}"; sleep 60; touch "{finished}"')
    with Applies(tmp_path / "logs") as applies:
        apply = applies.start(["apply", "-c", str(site.config)], site.environment(START))
        wait_for_file(started, apply)
        apply.signal(signal.SIGTERM)
        assert apply.wait(timeout=60) == 143, apply
        assert "SIGTERM" in apply.stderr, apply
    assert not finished.exists()
    record = site.state_json()
    assert record["post_command_pending"]["snapshot"] == name_of(START), record
    assert record["runs"][-1]["result"] == "interrupted", record["runs"]
    site.write(post_command=f'touch "{finished}"')
    retried = site.apply(at(0, hours=1))
    assert retried.returncode == 0, retried
    assert finished.exists()
    assert site.state_json()["post_command_pending"] is None


def test_sigint_during_a_snapshot_keeps_the_work_and_the_next_plan_and_apply_resume_it(
    site: Site, tmp_path: Path
) -> None:
    many_files(site.source, 3000, size=4096)
    with Applies(tmp_path / "logs") as applies:
        apply = applies.start(["apply", "-c", str(site.config)], site.environment(START))
        assert wait_for_entry(site.target, lambda name: name.startswith(PARTIAL), apply), apply
        while len(tree_of(site.target / (PARTIAL + name_of(START)))) < 50:
            assert apply.alive(), apply
        apply.signal(signal.SIGINT)
        assert apply.wait(timeout=60) == 130, apply
        assert "SIGINT" in apply.stderr and "resume" in apply.stderr, apply
    assert site.snapshots() == []
    assert work_left(site.target) == [PARTIAL + name_of(START)]
    assert site.state_json()["runs"][-1]["result"] == "interrupted"
    plan = site.cli("plan", now=at(0, hours=1))
    assert "resumes" in plan.stdout and "keeps" in plan.stdout, plan
    document = site.plan_json(at(0, hours=1))
    action = next(a for a in document["resources"][0]["actions"] if a["kind"] == "snapshot")
    assert action["files_kept"] >= 50
    done = site.apply(at(0, hours=1))
    assert done.returncode == 0, done
    assert site.snapshots() == [name_of(at(0, hours=1))]
    assert tree_of(site.target / name_of(at(0, hours=1))) == tree_of(site.source)
    assert work_left(site.target) == []
    manifests = os.listdir(site.target / MANIFEST_DIRECTORY)
    assert manifests == [name_of(at(0, hours=1))], manifests


def test_a_symlink_squatting_the_new_snapshot_name_fails_clearly_and_leaves_no_work(
    site: Site, tmp_path: Path
) -> None:
    site.target.mkdir(mode=0o700)
    (site.target / name_of(START)).symlink_to(tmp_path)
    done = site.apply()
    assert done.returncode == 1, done
    assert "Bad file descriptor" not in done.stderr, done
    assert name_of(START) in done.stderr and "not a snapshot" in done.stderr, done
    assert work_left(site.target) == []
    assert not (site.target / MANIFEST_DIRECTORY / name_of(START)).exists()


def test_a_symlink_squatting_the_name_mid_run_fails_on_the_rename_with_its_real_cause(
    site: Site, tmp_path: Path
) -> None:
    many_files(site.source, 2000)
    with Applies(tmp_path / "logs") as applies:
        apply = applies.start(["apply", "-c", str(site.config)], site.environment(START))
        assert wait_for_entry(site.target, lambda name: name.startswith(PARTIAL), apply), apply
        apply.stop()
        assert work_left(site.target), "the snapshot finished before the squatter came"
        (site.target / name_of(START)).symlink_to(tmp_path)
        apply.send(signal.SIGCONT)
        assert apply.wait() == 1, apply
        assert "Bad file descriptor" not in apply.stderr, apply
        assert "Not a directory" in apply.stderr or "File exists" in apply.stderr, apply
    assert work_left(site.target) == []
    assert not (site.target / MANIFEST_DIRECTORY / name_of(START)).exists()
    assert (site.target / name_of(START)).is_symlink()


def test_the_target_lock_is_taken_before_any_hook_and_a_second_apply_exits_75(
    site: Site, tmp_path: Path
) -> None:
    runs, release = tmp_path / "runs", tmp_path / "release"
    site.write(
        pre_command=f'echo "$$" >> "{runs}"; while [ ! -e "{release}" ]; do sleep 0.05; done'
    )
    with Applies(tmp_path / "logs") as applies:
        holder = applies.start(["apply", "-c", str(site.config)], site.environment(START))
        wait_for_file(runs, holder)
        other = dict(site.environment(START), HARDSNAP_STATE_DIR=str(tmp_path / "other-state"))
        second = applies.start(["apply", "-c", str(site.config)], other)
        assert second.wait(timeout=60) == 75, second
        assert f"pid {holder.pid}" in second.stderr, second
        same = applies.start(["apply", "-c", str(site.config)], site.environment(START))
        assert same.wait(timeout=60) == 75, same
        release.touch()
        assert holder.wait() == 0, holder
    assert len(runs.read_text().split()) == 1, "a refused apply ran its pre_command"


def test_a_source_dir_that_is_a_file_is_said_to_be_no_directory(site: Site) -> None:
    shutil.rmtree(site.source)
    site.source.write_text("a file")
    for command in ("plan", "apply"):
        done = site.cli(command)
        assert done.returncode == 1, done
        said = done.stdout + done.stderr
        assert "is not a directory" in said and "does not exist" not in said, done


def test_hardsnap_now_beyond_the_calendar_is_a_clear_error_not_a_traceback(site: Site) -> None:
    environment = dict(site.environment(None), HARDSNAP_NOW="9999-12-31T23:59:59-14:00")
    for command in ("plan", "apply"):
        done = subprocess.run(
            [*hardsnap_command(), command, "-c", str(site.config)],
            env=environment,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 1, done
        assert "Traceback" not in done.stderr and "out of range" in done.stderr, done

"""Every change of the source reaches the next snapshot, and plan and apply
tell the truth about it: extended attributes changed while a walk runs or
between an interrupted run and its resume, hard-link groups split in the
source, files with several names, the work a resumed run keeps.

Every test drives the real CLI on real directories and inodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.world.clock import START, at, name_of
from tests.world.documents import snapshot_action
from tests.world.files import make_file
from tests.world.processes import Applies, Apply, wait_for_entry
from tests.world.site import Site, new_site

PARTIAL = ".hardsnap-partial."


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return new_site(tmp_path)


def many_files(source: Path, directories: int, each: int) -> None:
    for directory in range(directories):
        for index in range(each):
            make_file(source / f"d{directory:02d}" / f"f{index:03d}", b"%d\n" % index)


def predicted_and_done(site: Site, moment: Any, *options: str) -> tuple[tuple[int, ...], ...]:
    """(files to copy, to link, kept) as plan predicts them, then as apply did them."""
    planned = snapshot_action(site.plan_json(moment))
    applied = site.apply(moment, "--json", *options)
    assert applied.returncode == 0, applied
    done = snapshot_action(json.loads(applied.stdout))
    return (
        (planned["files_to_copy"], planned["files_to_link"], planned["files_kept"]),
        (done["files_copied"], done["files_linked"], done["files_kept"]),
    )


# -- files with several names ---------------------------------------------------------------


def walk_order(source: Path) -> list[Path]:
    """The source's top directories in the order a walk enters them (the
    order the directory lists them in, as hardsnap reads it)."""
    with os.scandir(source) as entries:
        return [source / entry.name for entry in entries if entry.is_dir()]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_plan_predicts_what_apply_does_for_files_with_several_names(site: Site, jobs: str) -> None:
    many_files(site.source, 40, 30)
    # Names of two groups in the directories a walk reaches last, where a
    # shared walk hands them to worker processes (after its first 500
    # files), and which the work queue hands out last-first.
    late = walk_order(site.source)[-18:]
    group, changed = late[-1] / "shared", late[-1] / "changed"
    make_file(group, b"one inode, many names\n")
    make_file(changed, b"before\n")
    for directory in late[6:-1]:
        os.link(group, directory / "shared")
        os.link(changed, directory / "changed")
    planned, done = predicted_and_done(site, at(0), "--jobs", jobs)
    assert planned == done
    # New names for both groups in the first of those directories, which a
    # walk on its own meets first; one group's content changes too.
    for directory in late[:6]:
        os.link(group, directory / "shared-too")
        os.link(changed, directory / "changed-too")
    make_file(changed, b"after, and longer\n")
    planned, done = predicted_and_done(site, at(1), "--jobs", jobs)
    assert planned == done
    snapshot = site.target / name_of(at(1))
    inodes = {(snapshot / d.name / "shared-too").stat().st_ino for d in late[:6]}
    assert len(inodes) == 1 and (snapshot / late[-1].name / "shared").stat().st_ino in inodes


def test_names_split_in_the_source_are_split_in_the_next_snapshot(site: Site) -> None:
    first = site.source / "one"
    make_file(first, b"same bytes\n")
    os.link(first, site.source / "two")
    assert site.apply(at(0)).returncode == 0
    reference = site.target / name_of(at(0))
    assert (reference / "one").stat().st_ino == (reference / "two").stat().st_ino
    # Split: "two" becomes a file of its own, same bytes, mode and mtime.
    info = first.stat()
    (site.source / "two").unlink()
    make_file(site.source / "two", b"same bytes\n", info.st_mode & 0o7777, info.st_mtime_ns)
    assert first.stat().st_ino != (site.source / "two").stat().st_ino
    planned, done = predicted_and_done(site, at(1))
    assert planned == done
    snapshot = site.target / name_of(at(1))
    assert (snapshot / "one").stat().st_ino != (snapshot / "two").stat().st_ino
    assert (snapshot / "two").read_bytes() == b"same bytes\n"
    # And again on the run after: the reference now has them apart.
    assert site.apply(at(2)).returncode == 0
    after = site.target / name_of(at(2))
    assert (after / "one").stat().st_ino != (after / "two").stat().st_ino


def test_names_joined_three_ways_then_split_two_and_one_keep_their_groups(site: Site) -> None:
    make_file(site.source / "a", b"shared\n")
    for other in ("b", "c"):
        os.link(site.source / "a", site.source / other)
    assert site.apply(at(0)).returncode == 0
    info = (site.source / "a").stat()
    (site.source / "b").unlink()
    make_file(site.source / "b", b"shared\n", info.st_mode & 0o7777, info.st_mtime_ns)
    planned, done = predicted_and_done(site, at(1))
    assert planned == done
    snapshot = site.target / name_of(at(1))
    a, b, c = ((snapshot / name).stat().st_ino for name in ("a", "b", "c"))
    assert a == c != b


# -- the work a resumed run keeps ------------------------------------------------------------


def interrupted_first_snapshot(site: Site, tmp_path: Path) -> None:
    """Stop a first snapshot part-way with SIGTERM: its work is kept."""
    many_files(site.source, 20, 100)
    with Applies(tmp_path / "logs") as applies:
        apply = applies.start(["apply", "-c", str(site.config)], site.environment(START))
        partial = site.target / (PARTIAL + name_of(START))

        def placed_some(name: str) -> bool:
            return name == PARTIAL + name_of(START) and any(
                (partial / directory).is_dir() and any((partial / directory).iterdir())
                for directory in ("d00", "d01", "d02")
            )

        assert wait_for_entry(site.target, placed_some, apply), apply
        apply.signal(signal.SIGTERM)
        assert apply.wait() == 143, apply
    assert partial.is_dir(), "the interrupt came after the snapshot was done"


def test_a_resumed_snapshot_counts_kept_files_as_kept_in_plan_and_apply(
    site: Site, tmp_path: Path
) -> None:
    interrupted_first_snapshot(site, tmp_path)
    plan = site.cli("plan")
    assert "resumes the work an interrupted run left" in plan.stdout, plan
    planned = snapshot_action(site.plan_json(START))
    applied = site.apply(START)
    assert applied.returncode == 0, applied
    kept = planned["files_kept"]
    assert kept > 0, planned
    assert f"to copy ({planned['bytes_to_copy']} B" not in plan.stdout  # a size, not bytes
    assert f", {kept} kept" in plan.stdout, plan
    copied = planned["files_to_copy"]
    assert copied + kept == 2000 + 2, planned  # the site's own two files too
    said = f"{copied} copied"
    assert said in applied.stdout and f"{kept} kept (resumed" in applied.stdout, applied


# -- extended attributes changed while a walk runs, or before its resume -------------------


def finished_file(partial: Path, source: Path) -> Path | None:
    """A file the walk has finished in its work directory (its mtime given
    already), or None."""
    with contextlib.suppress(FileNotFoundError):
        for directory in sorted(partial.iterdir()):
            if directory.is_dir():
                for entry in directory.iterdir():
                    relative = entry.relative_to(partial)
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_mtime_ns == (source / relative).stat().st_mtime_ns:
                            return relative
    return None


def stopped_mid_walk(site: Site, applies: Applies) -> tuple[Any, Path]:
    """Start a first snapshot and SIGSTOP it once it has placed files;
    return it and a file it has placed (relative)."""
    many_files(site.source, 20, 100)
    apply = applies.start(["apply", "-c", str(site.config)], site.environment(START))
    partial = site.target / (PARTIAL + name_of(START))

    def finished_one(name: str) -> bool:
        return name == PARTIAL + name_of(START) and finished_file(partial, site.source) is not None

    assert wait_for_entry(site.target, finished_one, apply), apply
    apply.stop()
    assert partial.is_dir(), "the snapshot was done before it could be stopped"
    finished = finished_file(partial, site.source)
    assert finished is not None
    return apply, finished


@pytest.fixture
def stopped(site: Site, tmp_path: Path) -> Iterator[tuple[Apply, Path]]:
    """A first snapshot stopped once it has placed files: the apply (killed
    at the end of the test if still there) and a file it has placed."""
    with Applies(tmp_path / "logs") as applies:
        yield stopped_mid_walk(site, applies)


def resume(apply: Apply, code: int) -> None:
    """Let the stopped `apply` go on; it must end with exit `code`."""
    apply.send(signal.SIGCONT)
    assert apply.wait() == code, apply


@pytest.mark.linux_only(reason="xattr calls")
def test_an_xattr_set_while_a_walk_runs_after_it_passed_the_file_reaches_the_next_snapshot(
    site: Site, stopped: tuple[Apply, Path]
) -> None:
    apply, passed = stopped
    os.setxattr(site.source / passed, "user.note", b"set during the walk")
    resume(apply, 0)
    first = site.target / name_of(START) / passed
    assert "user.note" not in os.listxattr(first), "the walk had not passed it"
    assert site.apply(at(1)).returncode == 0
    second = site.target / name_of(at(1)) / passed
    assert os.getxattr(second, "user.note") == b"set during the walk"
    verified = site.cli("verify", "r", "--content", now=at(1))
    assert verified.returncode == 0, verified


@pytest.mark.linux_only(reason="xattr calls")
def test_an_xattr_set_between_an_interrupted_run_and_its_resume_reaches_the_snapshot(
    site: Site, stopped: tuple[Apply, Path]
) -> None:
    apply, passed = stopped
    apply.signal(signal.SIGTERM)
    resume(apply, 143)
    os.setxattr(site.source / passed, "user.note", b"set before the resume")
    resumed = site.apply(START)
    assert resumed.returncode == 0, resumed
    snapshot = site.target / name_of(START) / passed
    assert os.getxattr(snapshot, "user.note") == b"set before the resume"


def test_a_resumed_snapshot_predicted_by_plan_is_what_apply_does(
    site: Site, tmp_path: Path
) -> None:
    interrupted_first_snapshot(site, tmp_path)
    planned, done = predicted_and_done(site, START)
    copied, linked, kept = done
    assert kept > 0 and linked == 0, done
    assert planned == done
    assert copied + kept == 2000 + 2, done

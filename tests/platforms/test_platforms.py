"""hardsnap as it runs on a system without Linux's extras: the CLI in a
private mount namespace with an empty /proc and the Linux-only calls
masked (tests/masked/sitecustomize.py), so every portable path of
providers/platform/ is taken for real."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Mount
from tests.world.cli import Finished, hardsnap_command, run
from tests.world.clock import START, at
from tests.world.files import tree_of, work_left
from tests.world.site import Site, new_site

MASK = Path(__file__).parent.parent / "masked"


def without_linux(
    site: Site, *arguments: str, before: str = "", now: dt.datetime = START
) -> Finished:
    """Run a command of `site` with /proc empty and the Linux-only calls
    masked; `before` is shell run first in the same mount namespace."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private /proc")
    environment = dict(site.environment(now), PYTHONPATH=str(MASK))
    script = f'mount -t tmpfs -o size=1m tmpfs /proc && {before or "true"} && exec "$@"'
    done = subprocess.run(
        [
            *("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"),
            *(*hardsnap_command(), *arguments, "-c", str(site.config)),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"unshare refused: {done.stderr.strip()}")
    return Finished(done.returncode, done.stdout, done.stderr)


def test_walkers_without_proc_or_prctl_take_one_snapshot_reported_once(tmp_path: Path) -> None:
    # Enough files that the walk is shared out to forked walkers: they close
    # what they inherit without /proc/self/fd and die with their parent
    # without prctl (a pipe tells them).
    site = new_site(tmp_path)
    for folder in range(12):
        for number in range(60):
            (site.source / f"d{folder}").mkdir(exist_ok=True)
            (site.source / f"d{folder}" / f"f{number}").write_bytes(b"x" * number)
    done = without_linux(site, "apply", "--jobs", "2")
    assert done.returncode == 0, done
    assert done.stdout.count("+ snapshot") == 1, done
    (snapshot,) = site.snapshots()
    assert tree_of(site.target / snapshot) == tree_of(site.source)
    assert work_left(site.target) == []
    again = without_linux(site, "apply", "--jobs", "2")
    assert again.returncode == 0, again


def test_a_proc_mount_in_the_source_is_kept_empty_without_a_mount_table(tmp_path: Path) -> None:
    # Without /proc/self/mountinfo, the mount point's own filesystem type
    # (statfs) says it is proc: never walked into (proc/kmsg blocks).
    site = new_site(tmp_path)
    (site.source / "proc").mkdir()
    done = without_linux(site, "apply", before=f"mount -t proc proc {site.source / 'proc'}")
    assert done.returncode == 0, done
    (snapshot,) = site.snapshots()
    assert os.listdir(site.target / snapshot / "proc") == []
    assert tree_of(site.target / snapshot) == tree_of(site.source)


def test_a_second_snapshot_without_linux_links_what_is_unchanged(tmp_path: Path) -> None:
    site = new_site(tmp_path)
    site.write(schedule="hourly")
    assert without_linux(site, "apply").returncode == 0
    (site.source / "a.txt").write_bytes(b"changed\n")
    later = without_linux(site, "apply", now=at(hours=2))
    assert later.returncode == 0, later
    first, second = (site.target / name for name in site.snapshots())
    assert os.stat(first / "sub" / "b.txt").st_ino == os.stat(second / "sub" / "b.txt").st_ino
    assert os.stat(first / "a.txt").st_ino != os.stat(second / "a.txt").st_ino
    assert tree_of(second) == tree_of(site.source)


def test_without_sched_getaffinity_a_snapshot_is_taken_and_nothing_stays_open_on_the_target(
    tmp_path: Path, tmpfs: Mount
) -> None:
    # A system that lacks one Linux call (here sched_getaffinity, asked for
    # the number of walkers while the walk is built): the run used to
    # raise past the code that closes the manifest being written, leaving
    # it open on the target. Now the call has its fallback, and whatever
    # building the walk raises is inside that code: the post_command can
    # unmount the target.
    only = tmp_path / "mask"
    only.mkdir()
    (only / "sitecustomize.py").write_text("import os\ndel os.sched_getaffinity\n")
    mount = tmpfs("disk", "size=8m")
    site = new_site(tmp_path)
    site.target = mount / "dst"
    status = tmp_path / "umount-status"
    site.write(cross_fs="link", post_command=f"umount {mount}; echo $? > {status}")
    done = run(
        ["apply", "-c", str(site.config)], dict(site.environment(START), PYTHONPATH=str(only))
    )
    assert done.returncode == 0, done
    assert status.read_text().strip() == "0", done

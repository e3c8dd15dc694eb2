"""Root among other users: what another user can write is input, never an
instruction. Configs that another user could have written are refused,
sources are never followed through a swapped symlink, nobody but hardsnap
can hold a target's lock, and readable targets are warned about.

Every test drives the real CLI on real directories; the other user is
`nobody`, owning files or running processes of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardsnap.providers.files import locking
from tests.conftest import Mount
from tests.world.cli import hardsnap_command, run
from tests.world.clock import START, at, name_of
from tests.world.files import make_file
from tests.world.site import Site, new_site
from tests.world.users import NOBODY, hand_to_nobody

SYSTEM_CONFIG = Path("/etc/hardsnap/hardsnap.yaml")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    if os.geteuid() != 0:
        pytest.skip("needs root to give files to another user")
    return new_site(tmp_path)


def with_hook(site: Site) -> Path:
    """Give the site's resource a pre_command that leaves a marker; return it."""
    marker = site.root / "hook-ran"
    site.write(pre_command=f"touch {marker}")
    return marker


def assert_refused_untouched(site: Site, marker: Path, done: object, *words: str) -> None:
    text = str(done)
    assert getattr(done, "returncode", None) == 2, text
    for word in words:
        assert word in text, text
    assert not marker.exists(), "the hook ran"
    assert site.snapshots() == []


# -- configs that another user could have written -----------------------------------------


def test_config_owned_by_another_user_and_writable_by_all_is_refused_before_any_hook(
    site: Site,
) -> None:
    marker = with_hook(site)
    os.chown(site.config, NOBODY, NOBODY)
    os.chmod(site.config, 0o666)
    done = site.apply()
    assert_refused_untouched(site, marker, done, f"{site.config}:1:1:", "uid 65534", "chown")


def test_config_of_root_writable_by_its_group_is_refused_naming_chmod(site: Site) -> None:
    marker = with_hook(site)
    os.chmod(site.config, 0o664)
    done = site.apply()
    assert_refused_untouched(site, marker, done, "writable by group or others", "chmod go-w")
    assert site.cli("validate").returncode == 2
    assert site.cli("plan").returncode == 2


def test_config_in_a_directory_another_user_owns_is_refused_naming_the_directory(
    site: Site,
) -> None:
    folder = site.root / "theirs"
    folder.mkdir()
    os.chown(folder, NOBODY, NOBODY)
    marker = with_hook(site)
    site.config = site.config.rename(folder / "hardsnap.yaml")
    done = site.apply()
    assert_refused_untouched(site, marker, done, f"reached through {folder}", "uid 65534")


def test_config_through_a_symlink_in_a_directory_others_can_write_is_refused(
    site: Site,
) -> None:
    shared = site.root / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    marker = with_hook(site)
    real = site.config
    site.config = shared / "hardsnap.yaml"
    site.config.symlink_to(real)
    done = site.apply()
    assert_refused_untouched(site, marker, done, f"reached through {shared}", "writable")


def test_config_of_root_in_a_sticky_directory_of_root_is_used(site: Site) -> None:
    sticky = site.root / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    marker = with_hook(site)
    site.config = site.config.rename(sticky / "hardsnap.yaml")
    done = site.apply()
    assert done.returncode == 0, done
    assert marker.exists()


def test_local_config_another_user_could_write_is_passed_over_with_a_warning(
    site: Site,
) -> None:
    if SYSTEM_CONFIG.exists():
        pytest.skip(f"{SYSTEM_CONFIG} exists on this machine: apply would use it")
    folder = site.root / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    marker = with_hook(site)
    (folder / "hardsnap.yaml").write_text(site.config.read_text())
    environment = site.environment(START)
    environment.pop("HARDSNAP_CONFIG", None)
    done = run(["apply"], environment, cwd=folder)
    assert done.returncode == 2, done
    assert "warning: ignoring ./hardsnap.yaml" in done.stderr, done
    assert f"reading {SYSTEM_CONFIG} instead" in done.stderr, done
    assert not marker.exists(), "root ran another user's pre_command"


def test_local_config_of_root_in_a_folder_of_root_is_still_the_default(site: Site) -> None:
    marker = with_hook(site)
    environment = site.environment(START)
    environment.pop("HARDSNAP_CONFIG", None)
    done = run(["apply"], environment, cwd=site.root)
    assert done.returncode == 0, done
    assert marker.exists()
    assert "ignoring" not in done.stderr


# -- a source swapped for a symlink ---------------------------------------------------------


def as_nobody(*command: str) -> None:
    """Run a command as the other user (setpriv, as tests/conftest.py does)."""
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    subprocess.run([*setpriv, *command], check=True, capture_output=True)


def test_source_swapped_for_a_symlink_by_the_owner_of_its_parent_is_refused_naming_both(
    nobody_dir: Path,
) -> None:
    site = new_site(nobody_dir)
    folder = site.root / "theirs"
    folder.mkdir()
    site.source = site.source.rename(folder / "src")
    os.chown(folder, NOBODY, NOBODY)
    site.write()
    elsewhere = site.root / "elsewhere"
    make_file(elsewhere / "secret.txt", b"not the source\n")
    first = site.apply(at(0))
    assert first.returncode == 0, first
    assert f"reached through {folder}" in first.stderr, first
    as_nobody("mv", str(site.source), str(folder / "src.real"))
    as_nobody("ln", "-s", str(elsewhere), str(site.source))
    second = site.apply(at(1))
    assert second.returncode == 1, second
    assert f"now leads to {elsewhere}" in second.stderr, second
    assert str(folder / "src") in second.stderr, second
    assert site.snapshots() == [name_of(at(0))]
    plan = site.cli("plan", now=at(1))
    assert plan.returncode == 1 and f"now leads to {elsewhere}" in plan.stdout, plan


def test_source_path_through_a_symlink_is_resolved_once_and_recorded_in_the_marker(
    site: Site,
) -> None:
    real = site.source
    alias = site.root / "alias"
    alias.symlink_to(real)
    site.source = alias
    site.write()
    assert site.apply(at(0)).returncode == 0
    marker = json.loads((site.target / ".hardsnap-target").read_text())
    assert marker["source"] == str(alias) and marker["resolved"] == str(real), marker
    assert (site.target / name_of(at(0)) / "a.txt").read_bytes() == b"alpha\n"
    other = site.root / "other"
    make_file(other / "z.txt", b"zulu\n")
    alias.unlink()
    alias.symlink_to(other)
    moved = site.apply(at(1))
    assert moved.returncode == 1 and f"now leads to {other}" in moved.stderr, moved
    assert "remove" in moved.stderr and ".hardsnap-target" in moved.stderr, moved
    # The way out it names: the next run records where the source is now.
    (site.target / ".hardsnap-target").unlink()
    again = site.apply(at(1))
    assert again.returncode == 0, again
    assert json.loads((site.target / ".hardsnap-target").read_text())["resolved"] == str(other)


def test_marker_from_before_resolved_paths_gains_the_resolved_source_on_the_next_snapshot(
    site: Site,
) -> None:
    assert site.apply(at(0)).returncode == 0
    marker = site.target / ".hardsnap-target"
    document = json.loads(marker.read_text())
    del document["resolved"]
    marker.write_text(json.dumps(document))
    done = site.apply(at(1))
    assert done.returncode == 0, done
    assert json.loads(marker.read_text())["resolved"] == str(site.source)


def test_source_swapped_for_a_symlink_while_pre_command_runs_is_refused_not_followed(
    site: Site,
) -> None:
    elsewhere = site.root / "elsewhere"
    make_file(elsewhere / "secret.txt", b"not the source\n")
    assert site.apply(at(0)).returncode == 0
    site.write(pre_command=f"mv {site.source} {site.root}/moved && ln -s {elsewhere} {site.source}")
    done = site.apply(at(1))
    assert done.returncode == 1, done
    assert f"now leads to {elsewhere}" in done.stdout + done.stderr, done
    assert site.snapshots() == [name_of(at(0))]


# -- the per-target lock --------------------------------------------------------------------

HOLD_FLOCK = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


def hold_flock(path: Path, *prefix: str) -> subprocess.Popen[bytes]:
    """A process (run through `prefix`, e.g. setpriv) holding an flock on `path`."""
    holder = subprocess.Popen(
        [*prefix, sys.executable, "-c", HOLD_FLOCK, str(path)], stdout=subprocess.PIPE
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == b"held", "the holder did not take the lock"
    return holder


@contextlib.contextmanager
def holding(path: Path, *prefix: str) -> Iterator[subprocess.Popen[bytes]]:
    holder = hold_flock(path, *prefix)
    try:
        yield holder
    finally:
        holder.kill()
        holder.wait()


NOBODY_PREFIX = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")


def test_another_user_holding_an_flock_on_the_target_or_its_parent_stops_no_apply(
    nobody_dir: Path,
) -> None:
    site = new_site(nobody_dir)
    site.target.mkdir(mode=0o755)
    with holding(site.target, *NOBODY_PREFIX):
        done = site.apply(at(0))
        assert done.returncode == 0, done
    # A target not made yet (a disk not mounted yet): its parent is readable too.
    site.target = nobody_dir / "disk" / "backups"
    site.target.parent.mkdir(mode=0o755)
    site.write()
    with holding(site.target.parent, *NOBODY_PREFIX):
        done = site.apply(at(1), "--allow-new-target")
        assert done.returncode == 0, done
    assert site.snapshots() == [name_of(at(1))]


@pytest.mark.linux_only(reason="/proc/locks names the holder")
def test_target_lock_held_by_something_that_is_no_hardsnap_apply_exits_1_naming_it(
    site: Site,
) -> None:
    marker = with_hook(site)
    lock = Path(locking.lock_directory()) / locking.lock_file_name(os.path.realpath(site.target))
    assert site.apply(at(0)).returncode == 0  # the lock file exists from now on
    with holding(lock) as holder:
        done = site.apply(at(1))
    assert done.returncode == 1, done
    assert f"pid {holder.pid}" in done.stderr and "not a hardsnap apply" in done.stderr, done
    assert marker.stat().st_mtime_ns  # ran once, for the first apply
    assert site.snapshots() == [name_of(at(0))]


def test_a_lock_directory_other_users_may_enter_is_refused_naming_the_fix(
    nobody_dir: Path,
) -> None:
    site = new_site(nobody_dir)
    runtime = nobody_dir / "runtime"
    (runtime / "hardsnap").mkdir(parents=True)
    os.chmod(runtime / "hardsnap", 0o777)
    site.state.mkdir(mode=0o700)
    hand_to_nobody(nobody_dir)
    environment = dict(site.environment(at(0)), XDG_RUNTIME_DIR=str(runtime))
    done = subprocess.run(
        [*NOBODY_PREFIX, *hardsnap_command(), "apply", "-c", str(site.config)],
        env=environment,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done
    assert f"lock directory {runtime / 'hardsnap'}" in done.stderr, done
    assert "mode 0700" in done.stderr, done
    assert site.snapshots() == []


def test_post_command_may_unmount_the_targets_filesystem(site: Site, tmpfs: Mount) -> None:
    disk = tmpfs("disk", "size=8m")
    site.target = disk / "backups"
    site.write(post_command=f"umount {disk}", cross_fs="link")
    done = site.apply(at(0))
    assert done.returncode == 0, done
    assert not os.path.ismount(disk), "the post_command could not unmount the target"


# -- a target others can read ----------------------------------------------------------------


def test_target_others_can_read_is_warned_about_naming_chmod_700_and_new_ones_are_0700(
    site: Site,
) -> None:
    private = site.source / "home" / "alice"
    make_file(private / "notes.txt", b"only through a 0700 folder\n", 0o644)
    os.chmod(private, 0o700)
    first = site.apply(at(0))
    assert first.returncode == 0, first
    assert stat.S_IMODE(site.target.stat().st_mode) == 0o700
    assert "read by other users" not in first.stderr, first
    os.chmod(site.target, 0o755)
    plan = site.cli("plan", now=at(1))
    assert plan.returncode == 0, plan
    assert "can be read by other users: chmod 700" in plan.stdout, plan
    applied = site.apply(at(1))
    assert applied.returncode == 0, applied
    assert "can be read by other users: chmod 700" in applied.stderr, applied

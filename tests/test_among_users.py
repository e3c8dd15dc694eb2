"""Root among other users: what another user can write is input, never an
instruction. Configs that another user could have written are refused,
sources are never followed through a swapped symlink, nobody but hardsnap
can hold a target's lock, and readable targets are warned about.

Every test drives the real CLI on real directories; the other user is
`nobody`, owning files or running processes of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import NOBODY
from tests.processes import run
from tests.site import START, Site, new_site

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

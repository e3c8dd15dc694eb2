"""The commands around apply, as an admin types them: where the config is
found, forgetting a removed resource, errors as JSON, dates people read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.world.cli import run
from tests.world.clock import at, name_of
from tests.world.files import make_file
from tests.world.site import Site, new_site

SYSTEM_CONFIG = Path("/etc/hardsnap/hardsnap.yaml")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return new_site(tmp_path)


def environment(site: Site, **extra: str) -> dict[str, str]:
    values = site.environment(at(0))
    values.pop("HARDSNAP_CONFIG", None)
    values.update(extra)
    return values


# -- where the config comes from ------------------------------------------------------


def test_state_show_outside_the_config_folder_finds_the_config_through_hardsnap_config(
    site: Site, tmp_path: Path
) -> None:
    assert site.apply(at(0)).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = environment(site, HARDSNAP_CONFIG=str(site.config))
    shown = run(["state", "show", "--json"], env, cwd=elsewhere)
    assert shown.returncode == 0, shown
    resource = json.loads(shown.stdout)["resources"]["r"]
    assert resource["managed"] is True and len(resource["snapshots"]) == 1
    planned = run(["plan"], env, cwd=elsewhere)
    assert planned.returncode == 0 and str(site.config) in planned.stdout, planned


def test_without_c_a_hardsnap_yaml_in_the_working_folder_comes_before_the_system_one(
    site: Site, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "hardsnap.yaml").write_text(site.config.read_text())
    done = run(["validate"], environment(site), cwd=local)
    assert done.returncode == 0, done
    assert done.stdout.startswith("hardsnap.yaml: valid, 1 resource"), done


def test_without_c_or_a_local_file_the_system_config_is_read(site: Site, tmp_path: Path) -> None:
    if SYSTEM_CONFIG.exists():
        pytest.skip(f"{SYSTEM_CONFIG} exists on this machine")
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run(["validate"], environment(site), cwd=empty)
    assert done.returncode == 2, done
    assert f"{SYSTEM_CONFIG}:1:1: cannot read config file" in done.stderr, done


# -- state forget ----------------------------------------------------------------------


def test_state_forget_drops_a_removed_resource_and_leaves_its_snapshots(site: Site) -> None:
    assert site.apply(at(0)).returncode == 0
    assert site.cli("verify", "r", now=at(0)).returncode == 0
    refused = site.cli("state", "forget", "r")
    assert refused.returncode == 1, refused
    assert "still in" in refused.stderr

    other = site.root / "other.yaml"
    other.write_text("resources: []\n")
    env = environment(site, HARDSNAP_CONFIG=str(other))
    listed = run(["plan"], env)
    assert "no longer in the config (recorded state kept, nothing undone): r" in (
        listed.stdout.lower()
    ), listed
    forgot = run(["state", "forget", "r"], env)
    assert forgot.returncode == 0, forgot
    shown = json.loads(run(["state", "show", "--json"], env).stdout)
    assert shown["resources"] == {}
    listed = run(["plan"], env)
    assert "no longer in the config" not in listed.stdout.lower(), listed
    assert site.snapshots() == [name_of(at(0))]
    again = run(["state", "forget", "r"], env)
    assert again.returncode == 1 and "no recorded state" in again.stderr, again


# -- errors and dates ---------------------------------------------------------------------


def test_diff_json_with_one_snapshot_prints_an_error_document(site: Site) -> None:
    assert site.apply(at(0)).returncode == 0
    done = site.cli("diff", "r", "--json", now=at(0))
    assert done.returncode == 1, done
    document = json.loads(done.stdout)
    assert "a diff needs two" in document["error"]


def test_verify_shows_changed_mtimes_as_dates(site: Site) -> None:
    assert site.apply(at(0)).returncode == 0
    copy = site.target / name_of(at(0)) / "a.txt"
    os.utime(copy, ns=(1_779_294_449_000_000_000, 1_779_294_449_000_000_000))
    done = site.cli("verify", "r", now=at(0))
    assert done.returncode == 1, done
    assert "-> 2026-05-20 16:27:29 UTC" in done.stdout, done.stdout
    assert "1779294449000000000" not in done.stdout
    # The source's odd mtime keeps its nanoseconds: two times may differ only there.
    assert "2023-11-14 22:13:20.123456789 UTC" in done.stdout


# -- history -------------------------------------------------------------------------------


def test_history_lists_each_version_of_a_file_once_with_the_snapshots_holding_it(
    site: Site,
) -> None:
    days = [at(day) for day in range(5)]
    assert site.apply(days[0]).returncode == 0
    assert site.apply(days[1]).returncode == 0  # unchanged: linked, same version
    make_file(site.source / "a.txt", b"second version\n", mtime_ns=1_700_000_001_000_000_000)
    assert site.apply(days[2]).returncode == 0
    (site.source / "a.txt").unlink()
    assert site.apply(days[3]).returncode == 0  # gone for a day
    make_file(site.source / "a.txt", b"back\n", mtime_ns=1_700_000_002_000_000_000)
    assert site.apply(days[4]).returncode == 0

    done = site.cli("history", "r", "a.txt", "--json", now=days[4])
    assert done.returncode == 0, done
    document = json.loads(done.stdout)
    assert document["path"] == "a.txt"
    names = [name_of(day) for day in days]
    assert [(v["first"], v["last"], v["size"]) for v in document["versions"]] == [
        (names[0], names[1], len(b"alpha\n")),
        (names[2], names[2], len(b"second version\n")),
        (names[4], names[4], len(b"back\n")),
    ]
    assert document["versions"][1]["mtime"] == "2023-11-14 22:13:21 UTC"
    # The same through an absolute path below source_dir, as text.
    text = site.cli("history", "r", str(site.source / "a.txt"), now=days[4])
    assert text.returncode == 0, text
    assert "3 versions" in text.stdout and f"{names[0]} .. {names[1]}" in text.stdout


def test_history_of_a_path_never_backed_up_or_outside_the_source_exits_1(site: Site) -> None:
    assert site.apply(at(0)).returncode == 0
    missing = site.cli("history", "r", "no/such/file", "--json", now=at(0))
    assert missing.returncode == 1, missing
    assert "in no snapshot" in json.loads(missing.stdout)["error"]
    outside = site.cli("history", "r", "/etc/passwd", now=at(0))
    assert outside.returncode == 1 and "not below source_dir" in outside.stderr, outside
    escaping = site.cli("history", "r", "../hardsnap.yaml", now=at(0))
    assert escaping.returncode == 1 and "not below source_dir" in escaping.stderr, escaping


# -- quiet, for cron -------------------------------------------------------------------------


def test_quiet_apply_prints_nothing_unless_something_went_wrong(site: Site) -> None:
    changed = site.apply(at(0), "-q")
    assert (changed.returncode, changed.stdout, changed.stderr) == (0, "", ""), changed
    settled = site.apply(at(0, hours=1), "-q")
    assert (settled.returncode, settled.stdout, settled.stderr) == (0, "", ""), settled
    site.write(pre_command="echo cannot mount >&2; exit 1")
    failed = site.apply(at(1), "-q")
    assert failed.returncode == 1, failed
    assert "=> r: failed" in failed.stdout and "pre_command failed" in failed.stderr


def test_json_output_of_an_invalid_config_is_an_errors_document(site: Site) -> None:
    site.config.write_text("resources:\n  - name: r\n    type: backup\n    retian: 3\n")
    for command in (["plan"], ["apply"], ["verify", "r"]):
        done = site.cli(*command, "--json", now=at(0))
        assert done.returncode == 2, done
        errors = json.loads(done.stdout)["errors"]
        assert {"file", "line", "column", "message"} <= set(errors[0])
        assert any(
            error["line"] == 4 and 'unknown key "retian"' in error["message"] for error in errors
        ), errors


# -- the package ---------------------------------------------------------------------------


def test_modules_named_like_hardsnaps_parts_in_the_working_folder_change_nothing(
    tmp_path: Path,
) -> None:
    """hardsnap's parts are hardsnap.reconcile, .providers and .state: a
    stray state.py where the command runs is not picked up."""
    for name in ("reconcile", "providers", "state", "diskcache_disk"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('the wrong module was imported')\n")
    script = str(Path(sys.executable).parent / "hardsnap")
    for command in ([sys.executable, "-m", "hardsnap", "--version"], [script, "--version"]):
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.startswith("hardsnap "), (command, done)

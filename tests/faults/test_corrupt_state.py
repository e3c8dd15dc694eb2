"""A corrupt or unreadable state store: exit 1 naming the store and the way
out, the snapshots on disk found again once it is moved aside, nothing
written by a read-only command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.bad_inputs import (
    SNAPSHOT_NAME,
    says_how_to_recover,
)
from tests.world.cli import Cli, Finished, hardsnap_command
from tests.world.clock import T0
from tests.world.site import backup_config

# -- 3. a corrupt or unreadable state store ------------------------------------


def backed_up(cli: Cli, root: Path, state: Path) -> Path:
    """A config whose one resource "r" has its snapshot of T0 on disk and in
    `state`; return the config path."""
    config = backup_config(root)
    applied = cli("apply", "-c", config, "--state-dir", state)
    assert applied.returncode == 0, str(applied)
    assert (state / "cache.db").is_file()
    return config


def snapshots_of(target: Path) -> dict[str, bytes]:
    return {
        entry.name: (entry / "file").read_bytes()
        for entry in target.iterdir()
        if SNAPSHOT_NAME.fullmatch(entry.name)
    }


def remove_sqlite_companions(state: Path) -> None:
    for companion in state.glob("cache.db-*"):
        companion.unlink()


def garbage(state: Path) -> None:
    remove_sqlite_companions(state)
    (state / "cache.db").write_bytes(b"this is not a database\x00\xff" * 500)


def truncated_to_its_header(state: Path) -> None:
    remove_sqlite_companions(state)
    os.truncate(state / "cache.db", 50)


def truncated_to_half(state: Path) -> None:
    remove_sqlite_companions(state)
    database = state / "cache.db"
    os.truncate(database, database.stat().st_size // 2)


def cache_db_is_a_directory(state: Path) -> None:
    remove_sqlite_companions(state)
    (state / "cache.db").unlink()
    (state / "cache.db").mkdir()


def state_dir_is_a_file(state: Path) -> None:
    shutil.rmtree(state)
    state.write_text("not a directory\n")


# Ways a state store is found broken.
CORRUPTIONS = [
    garbage,
    truncated_to_its_header,
    truncated_to_half,
    cache_db_is_a_directory,
    state_dir_is_a_file,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
@pytest.mark.parametrize("command", [["plan"], ["apply"], ["state", "show"]])
def test_corrupt_state_store_exits_1_naming_the_store_and_the_way_out(
    cli: Cli, tmp_path: Path, corrupt: Callable[[Path], None], command: list[str]
) -> None:
    state = tmp_path / "state"
    config = backed_up(cli, tmp_path, state)
    before = snapshots_of(tmp_path / "dst")
    corrupt(state)

    outcome = cli(*command, "-c", config, "--state-dir", state)

    says_how_to_recover(outcome, state)
    assert snapshots_of(tmp_path / "dst") == before


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
def test_snapshots_are_found_again_after_a_corrupt_state_store_is_moved_aside(
    cli: Cli, tmp_path: Path, corrupt: Callable[[Path], None]
) -> None:
    state = tmp_path / "state"
    config = backed_up(cli, tmp_path, state)
    before = snapshots_of(tmp_path / "dst")
    corrupt(state)
    state.rename(tmp_path / "state.corrupt")

    planned = cli("plan", "-c", config, "--json", "--state-dir", state)
    detailed = cli("plan", "-c", config, "--detailed-exitcode", "--state-dir", state)
    shown = cli("state", "show", "-c", config, "--json", "--state-dir", state)
    applied = cli("apply", "-c", config, "--json", "--state-dir", state)

    assert planned.returncode == 0, str(planned)
    [resource] = planned.json()["resources"]
    assert resource["actions"] == [], "the window already has its snapshot"
    assert detailed.returncode == 0, str(detailed)
    assert shown.returncode == 0, str(shown)
    listed = [snapshot["name"] for snapshot in shown.json()["resources"]["r"]["snapshots"]]
    assert listed == sorted(before)
    assert applied.returncode == 0, str(applied)
    assert applied.json()["resources"][0]["result"] == "settled"
    assert snapshots_of(tmp_path / "dst") == before


@pytest.mark.parametrize("command", [["plan"], ["state", "show"]])
def test_read_only_command_on_an_empty_cache_db_writes_nothing_to_the_state_dir(
    cli: Cli, tmp_path: Path, command: list[str]
) -> None:
    state = tmp_path / "state"
    config = backed_up(cli, tmp_path, state)
    remove_sqlite_companions(state)
    os.truncate(state / "cache.db", 0)
    before = {path.name: path.read_bytes() for path in state.iterdir()}

    outcome = cli(*command, "-c", config, "--state-dir", state)

    assert outcome.returncode in (0, 1), str(outcome)
    assert {path.name: path.read_bytes() for path in state.iterdir()} == before


@pytest.fixture
def world_readable_root() -> Iterator[Path]:
    """A directory another user can traverse (tmp_path's parents are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="hardsnap-nobody-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a command as nobody")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
@pytest.mark.parametrize("command", [["plan"], ["apply"], ["state", "show"]])
def test_state_dir_unreadable_to_the_user_exits_1_naming_it_and_the_way_out(
    cli: Cli, world_readable_root: Path, command: list[str]
) -> None:
    root = world_readable_root
    state = root / "state"
    config = backed_up(cli, root, state)
    assert state.stat().st_mode & 0o777 == 0o700
    os.chmod(root / "dst", 0o755)  # only the state is out of reach, not the snapshots
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HARDSNAP_STATE_DIR": str(state),
        "HARDSNAP_NOW": T0,
        "NO_COLOR": "1",
        "HOME": str(root),
    }
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    finished = subprocess.run(
        [*as_nobody, *hardsnap_command(), *command, "-c", str(config)],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    says_how_to_recover(Finished(finished.returncode, finished.stdout, finished.stderr), state)
    assert sorted(snapshots_of(root / "dst")) == ["2026.088.06.00"]

"""The state directory is safe to use as root (issue 11, section 1).

A state directory, or a file in it, that is a symlink, another user's, or
writable by group or others is refused before anything in it is opened;
values are JSON in the database, never pickles or files; a store written by
hardsnap 0.1.0 is converted once by the first apply (read as it is by plan
and state show), unless a pickle in it could run code, which is refused
without loading it. Every test drives the real CLI.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.world.cli import Cli, Finished, hardsnap_command
from tests.world.clock import T0
from tests.world.site import backup_config
from tests.world.users import NOBODY

T1 = "2026-03-30T06:00:00Z"
MODE_RAW, MODE_BINARY, MODE_PICKLE = 1, 2, 4
COMMANDS = [["apply"], ["plan"], ["state", "show"]]
# What diskcache's default Disk wrote in hardsnap 0.1.0, by value.
LEGACY_RECORD: dict[str, Any] = {
    "revert_spent_at": "2026-03-28T06:00:00Z",
    "pending_post": None,
    "cross_fs_warned": True,
    "runs": [
        {
            "at": "2026-03-28T06:00:00Z",
            "result": "changed",
            "duration": 0.25,
            "message": None,
            "actions": [{"kind": "revert", "result": "changed", "skipped": ("a", "b")}],
        }
    ],
    "snapshots": {},
}


def applied(cli: Cli, root: Path) -> Path:
    """A config whose resource has one snapshot and a state store; its path."""
    config = backup_config(root)
    outcome = cli("apply", "-c", config)
    assert outcome.returncode == 0, str(outcome)
    return config


def snapshots(root: Path) -> list[str]:
    target = root / "dst"
    return sorted(name for name in os.listdir(target) if name[0].isdigit())


def contents(directory: Path) -> dict[str, bytes]:
    """The state files that are not SQLite's transient companions."""
    return {
        path.name: path.read_bytes()
        for path in directory.iterdir()
        if path.is_file() and not path.name.endswith(("-wal", "-shm"))
    }


def sql(state: Path, statement: str, *parameters: Any) -> list[tuple[Any, ...]]:
    """Run one statement on the state database, committed and closed."""
    connection = sqlite3.connect(state / "cache.db")
    try:
        with connection:
            return connection.execute(statement, parameters).fetchall()
    finally:
        connection.close()


def rows(state: Path) -> list[tuple[Any, ...]]:
    return sql(state, "SELECT key, raw, mode, filename, value FROM Cache ORDER BY key")


def refused(outcome: Finished, *words: str) -> None:
    assert outcome.returncode == 1, str(outcome)
    assert "Traceback" not in outcome.stdout + outcome.stderr, str(outcome)
    for word in words:
        assert word in outcome.stderr, f"{word!r} not said\n{outcome}"


def legacy_store(state: Path, record: Any, **settings: Any) -> None:
    """A state store as hardsnap 0.1.0 wrote it: diskcache's default Disk."""
    import diskcache

    make_private(state)
    with diskcache.Cache(str(state), **settings) as cache:
        cache.set("schema_version", 1)
        cache.set("resource/r", record)


def make_private(directory: Path) -> None:
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)


class RunsCode:
    """Pickles to a call of os.system: loading it creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


# -- the apply lock ------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_apply_lock_that_names_an_outside_file_is_refused_and_the_file_keeps_its_bytes(
    cli: Cli, tmp_path: Path, state_dir: Path, link: str
) -> None:
    config = applied(cli, tmp_path)
    precious = tmp_path / "precious"
    precious.write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    (state_dir / "apply.lock").unlink(missing_ok=True)
    if link == "symlink":
        (state_dir / "apply.lock").symlink_to(precious)
    else:
        os.link(precious, state_dir / "apply.lock")

    outcome = cli("apply", "-c", config, now=T1)

    refused(outcome, str(state_dir / "apply.lock"), link)
    assert precious.read_bytes() == b"root:x:0:0::/root:/bin/sh\n"
    assert snapshots(tmp_path) == ["2026.088.06.00"]


def test_apply_lock_that_is_a_fifo_is_refused_at_once(tmp_path: Path, state_dir: Path) -> None:
    config = backup_config(tmp_path)
    make_private(state_dir)
    os.mkfifo(state_dir / "apply.lock", 0o600)

    finished = subprocess.run(
        [*hardsnap_command(), "apply", "-c", str(config)],
        env=dict(os.environ, HARDSNAP_NOW=T0),
        capture_output=True,
        text=True,
        timeout=60,
    )

    refused(Finished(finished.returncode, finished.stdout, finished.stderr), "apply.lock", "FIFO")
    assert not (tmp_path / "dst").exists()


# -- the state directory and its files ------------------------------------------------------


def writable_by_others(state: Path) -> str:
    os.chmod(state, 0o777)
    return f"chmod 700 {state}"


def writable_by_group(state: Path) -> str:
    os.chmod(state, 0o770)
    return "writable by group"


def owned_by_nobody(state: Path) -> str:
    os.chown(state, NOBODY, NOBODY)
    return f"owned by uid {NOBODY}"


def a_symlink(state: Path) -> str:
    real = state.with_name("real-state")
    state.rename(real)
    state.symlink_to(real)
    return "symlink"


@pytest.mark.parametrize(
    "spoil", [writable_by_others, writable_by_group, owned_by_nobody, a_symlink]
)
@pytest.mark.parametrize("command", COMMANDS)
def test_state_directory_others_could_change_is_refused_naming_the_fix(
    cli: Cli, tmp_path: Path, state_dir: Path, spoil: Callable[[Path], str], command: list[str]
) -> None:
    config = applied(cli, tmp_path)
    before = contents(state_dir)
    said = spoil(state_dir)

    outcome = cli(*command, "-c", config, now=T1)

    refused(outcome, str(state_dir), said, "--state-dir")
    assert contents(state_dir) == before
    assert snapshots(tmp_path) == ["2026.088.06.00"]


def test_new_state_directory_of_mode_0777_is_refused_and_left_empty(
    cli: Cli, tmp_path: Path, state_dir: Path
) -> None:
    config = backup_config(tmp_path)
    state_dir.mkdir()
    os.chmod(state_dir, 0o777)

    outcome = cli("apply", "-c", config)

    refused(outcome, f"state directory {state_dir} is writable by others (mode 0777)")
    assert os.listdir(state_dir) == []
    assert not (tmp_path / "dst").exists()


def database_writable_by_others(state: Path) -> str:
    os.chmod(state / "cache.db", 0o666)
    return "writable by others (mode 0666)"


def database_owned_by_nobody(state: Path) -> str:
    os.chown(state / "cache.db", NOBODY, NOBODY)
    return f"owned by uid {NOBODY}"


def database_symlinked_elsewhere(state: Path) -> str:
    elsewhere = state.parent / "elsewhere.db"
    (state / "cache.db").rename(elsewhere)
    (state / "cache.db").symlink_to(elsewhere)
    return "symlink"


def lock_owned_by_nobody(state: Path) -> str:
    (state / "apply.lock").touch()
    os.chown(state / "apply.lock", NOBODY, NOBODY)
    return "apply.lock"


def stray_file_writable_by_others(state: Path) -> str:
    (state / "notes").write_text("x")
    os.chmod(state / "notes", 0o646)
    return "notes"


def stray_fifo(state: Path) -> str:
    os.mkfifo(state / "pipe", 0o600)
    return "FIFO"


def stray_symlink(state: Path) -> str:
    (state / "cache.db-wal").symlink_to(state.parent / "victim")
    return "cache.db-wal"


@pytest.mark.parametrize(
    "spoil",
    [
        database_writable_by_others,
        database_owned_by_nobody,
        database_symlinked_elsewhere,
        lock_owned_by_nobody,
        stray_file_writable_by_others,
        stray_fifo,
        stray_symlink,
    ],
)
@pytest.mark.parametrize("command", COMMANDS)
def test_file_in_the_state_directory_others_could_change_is_refused_before_opening_the_store(
    cli: Cli, tmp_path: Path, state_dir: Path, spoil: Callable[[Path], str], command: list[str]
) -> None:
    config = applied(cli, tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    said = spoil(state_dir)
    outside = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}

    outcome = cli(*command, "-c", config, now=T1)

    refused(outcome, str(state_dir), said)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == (
        outside
    )
    assert snapshots(tmp_path) == ["2026.088.06.00"]


# -- values: JSON in the database, never pickles or files -----------------------------------


def test_apply_stores_every_value_as_json_in_the_database(
    cli: Cli, tmp_path: Path, state_dir: Path
) -> None:
    applied(cli, tmp_path)

    stored = rows(state_dir)

    assert [key for key, *_ in stored] == ["resource/r", "schema_version"]
    for key, raw, mode, filename, value in stored:
        assert (raw, mode, filename) == (1, MODE_RAW, None), key
        assert isinstance(value, bytes), key
        json.loads(value)
    assert json.loads(dict((key, value) for key, *_, value in stored)["schema_version"]) == 2
    sqlite_companions = ("cache.db-wal", "cache.db-shm")
    assert sorted(set(os.listdir(state_dir)) - set(sqlite_companions)) == [
        "apply.lock",
        "cache.db",
    ]
    assert stat.S_IMODE(os.stat(state_dir / "cache.db").st_mode) == 0o600


def test_row_naming_a_value_file_is_refused_and_the_named_file_is_never_removed(
    cli: Cli, tmp_path: Path, state_dir: Path
) -> None:
    config = applied(cli, tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    sql(
        state_dir,
        "UPDATE Cache SET mode = ?, filename = ?, value = NULL WHERE key = 'resource/r'",
        MODE_BINARY,
        "../victim",
    )

    for command in COMMANDS:
        outcome = cli(*command, "-c", config, now=T1)
        refused(outcome, str(state_dir), "file", "move it aside")
    assert victim.read_bytes() == b"keep me"


def planted_in_a_legacy_store(state: Path, marker: Path) -> None:
    legacy_store(state, RunsCode(marker))


def planted_in_a_legacy_value_file(state: Path, marker: Path) -> None:
    legacy_store(state, RunsCode(marker), disk_min_file_size=0)


def planted_in_a_current_store(state: Path, marker: Path) -> None:
    sql(
        state,
        "UPDATE Cache SET mode = ?, value = ? WHERE key = 'resource/r'",
        MODE_PICKLE,
        pickle.dumps(RunsCode(marker)),
    )


def planted_as_a_key(state: Path, marker: Path) -> None:
    sql(
        state,
        "INSERT INTO Cache (key, raw, store_time, mode, value) VALUES (?, 0, 0, ?, ?)",
        pickle.dumps(RunsCode(marker)),
        MODE_RAW,
        b"1",
    )


@pytest.mark.parametrize(
    "plant",
    [
        planted_in_a_legacy_store,
        planted_in_a_legacy_value_file,
        planted_in_a_current_store,
        planted_as_a_key,
    ],
)
@pytest.mark.parametrize("command", COMMANDS)
def test_pickle_that_would_run_code_is_refused_without_loading_it(
    cli: Cli,
    tmp_path: Path,
    state_dir: Path,
    plant: Callable[[Path, Path], None],
    command: list[str],
) -> None:
    config = backup_config(tmp_path)
    if plant in (planted_in_a_current_store, planted_as_a_key):
        applied(cli, tmp_path)
    marker = tmp_path / "code-ran"
    plant(state_dir, marker)
    before = contents(state_dir)

    outcome = cli(*command, "-c", config, now=T1)

    refused(outcome, str(state_dir), "move it aside")
    assert not marker.exists(), "the pickle ran"
    assert contents(state_dir) == before


def test_unknown_sqlite_setting_in_the_store_is_refused(
    cli: Cli, tmp_path: Path, state_dir: Path
) -> None:
    config = applied(cli, tmp_path)
    sql(state_dir, "INSERT INTO Settings VALUES (?, ?)", "sqlite_temp_store_directory", "'/'")

    for command in COMMANDS:
        refused(cli(*command, "-c", config, now=T1), str(state_dir), "sqlite_temp_store_directory")


# -- state written by hardsnap 0.1.0 ---------------------------------------------------------


@pytest.mark.parametrize("in_file", [False, True], ids=["in the database", "in value files"])
def test_legacy_store_is_read_as_it_is_then_converted_once_and_a_spent_revert_stays_spent(
    cli: Cli, tmp_path: Path, state_dir: Path, in_file: bool
) -> None:
    marker = tmp_path / "reverted"
    config = backup_config(tmp_path, revert=True, on_revert=f"touch {marker}")
    legacy_store(state_dir, LEGACY_RECORD, **({"disk_min_file_size": 0} if in_file else {}))
    legacy_rows = rows(state_dir)
    assert any(mode == MODE_PICKLE for _, _, mode, _, _ in legacy_rows)

    shown = cli("state", "show", "-c", config, "--json")
    planned = cli("plan", "-c", config, "--json")

    assert shown.returncode == 0, str(shown)
    assert shown.json()["resources"]["r"]["revert"] == "spent"
    assert shown.json()["resources"]["r"]["runs"][0]["actions"][0]["skipped"] == ["a", "b"]
    assert planned.returncode == 0, str(planned)
    assert planned.json()["resources"][0]["actions"] == []
    assert rows(state_dir) == legacy_rows, "a read-only command converted the store"

    outcome = cli("apply", "-c", config, "--json")

    assert outcome.returncode == 0, str(outcome)
    assert outcome.json()["resources"][0]["result"] == "settled"
    assert not marker.exists(), "the spent revert ran again"
    stored = {
        key: (raw, mode, filename, value) for key, raw, mode, filename, value in rows(state_dir)
    }
    for key, (raw, mode, filename, _) in stored.items():
        assert (raw, mode, filename) == (1, MODE_RAW, None), key
    assert json.loads(stored["schema_version"][3]) == 2
    converted = json.loads(stored["resource/r"][3])
    expected = json.loads(json.dumps(LEGACY_RECORD))
    assert {key: converted[key] for key in expected} == expected
    assert sorted(path.name for path in state_dir.iterdir() if path.is_dir()) == []
    again = cli("state", "show", "-c", config, "--json")
    assert again.json()["resources"]["r"]["revert"] == "spent"
    assert cli("apply", "-c", config).returncode == 0
    assert not marker.exists()


def test_legacy_store_of_an_unknown_schema_version_is_refused_naming_both_versions(
    cli: Cli, tmp_path: Path, state_dir: Path
) -> None:
    import diskcache

    config = backup_config(tmp_path)
    make_private(state_dir)
    with diskcache.Cache(str(state_dir)) as cache:
        cache.set("schema_version", 7)

    outcome = cli("apply", "-c", config)

    refused(outcome, str(state_dir), "schema version 7", "knows 2")

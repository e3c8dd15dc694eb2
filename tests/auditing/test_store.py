"""The diskcache state store and the apply lock, on real directories."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers.backup.recorded import RecordedState
from hardsnap.providers.files.locking import Busy
from hardsnap.state.disk import StateDisk
from hardsnap.state.legacy import UnsafePickle, plain_unpickle
from hardsnap.state.lock import ApplyLock
from hardsnap.state.store import (
    SCHEMA_KEY,
    SCHEMA_VERSION,
    StateError,
    StateStore,
    UnsafeStateDirectory,
    default_state_dir,
)

MODE_RAW = 1


def test_read_of_a_missing_directory_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    with StateStore.read(str(directory)) as store:
        assert store.names() == []
        assert store.record("r")["runs"] == []
        assert store.recorded() == {}
    assert not directory.exists()


def test_write_creates_a_private_directory_with_a_schema_version(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    with StateStore.write(str(directory)):
        pass
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "cache.db").stat().st_mode) == 0o600
    # The version is JSON in the row, like every value (never a pickle).
    with sqlite3.connect(directory / "cache.db") as connection:
        [(raw, mode, filename, value)] = connection.execute(
            "SELECT raw, mode, filename, value FROM Cache WHERE key = ?", (SCHEMA_KEY,)
        ).fetchall()
    assert (raw, mode, filename) == (1, MODE_RAW, None)
    assert json.loads(value) == SCHEMA_VERSION == 2


def test_saved_record_is_read_back_by_a_new_store(tmp_path: Path) -> None:
    directory = str(tmp_path / "state")
    with StateStore.write(directory) as store:
        record = store.record("etc")
        record["revert_spent_at"] = "2026-03-29T06:00:00Z"
        record["pending_post"] = {"snapshot": "2026.088.06.00", "failed_at": "x"}
        store.save("etc", record)
    with StateStore.read(directory) as store:
        assert store.names() == ["etc"]
        assert store.recorded() == {
            "etc": RecordedState(revert_spent=True, pending_post_snapshot="2026.088.06.00")
        }


def test_save_keeps_only_the_newest_runs(tmp_path: Path) -> None:
    directory = str(tmp_path / "state")
    with StateStore.write(directory) as store:
        record = store.record("r")
        record["runs"] = [{"at": str(index)} for index in range(50)]
        store.save("r", record)
        runs = store.record("r")["runs"]
    assert [run["at"] for run in runs] == [str(index) for index in range(30, 50)]


def test_unknown_schema_version_is_refused_with_the_way_out(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    import diskcache

    with diskcache.Cache(str(directory)) as cache:
        cache.set(SCHEMA_KEY, SCHEMA_VERSION + 1)
    with pytest.raises(StateError, match="schema version"):
        StateStore.write(str(directory))


def test_corrupt_store_gives_a_clear_error_naming_the_path(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / "cache.db").write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(StateError) as raised:
        StateStore.read(str(directory)).names()
    assert str(directory) in str(raised.value)
    assert "move it aside" in str(raised.value)


def test_default_state_dir_prefers_flag_env_then_xdg(tmp_path: Path) -> None:
    assert default_state_dir({"HARDSNAP_STATE_DIR": "/s"}) == "/s"
    assert default_state_dir({"XDG_STATE_HOME": "/x"}) == "/x/hardsnap"
    expected = (
        "/var/lib/hardsnap" if os.geteuid() == 0 else os.path.expanduser("~/.local/state/hardsnap")
    )
    assert default_state_dir({}) == expected


def test_second_lock_names_the_holder_pid(tmp_path: Path) -> None:
    with ApplyLock(str(tmp_path)):
        # flock locks belong to the open file: a second open conflicts even here.
        with pytest.raises(Busy) as raised:
            ApplyLock(str(tmp_path)).__enter__()
        assert raised.value.pid == os.getpid()
        assert f"pid {os.getpid()}" in str(raised.value)


def test_lock_of_a_killed_holder_is_free_again(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from state.lock import ApplyLock\n"
            f"lock = ApplyLock({str(tmp_path)!r}); lock.__enter__()\n"
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(Busy) as raised:
            ApplyLock(str(tmp_path)).__enter__()
        assert raised.value.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
    with ApplyLock(str(tmp_path)):
        pass


def test_unknown_json_schema_version_is_refused_with_the_way_out(tmp_path: Path) -> None:
    directory = str(tmp_path / "state")
    with StateStore.write(directory) as store:
        store._cache.set(SCHEMA_KEY, SCHEMA_VERSION + 1)
    for open_store in (StateStore.write, StateStore.read):
        with pytest.raises(StateError, match=f"schema version {SCHEMA_VERSION + 1}"):
            open_store(directory)


def test_lock_that_is_a_symlink_is_refused_and_its_target_is_not_truncated(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    precious = tmp_path / "precious"
    precious.write_bytes(b"keep")
    (directory / "apply.lock").symlink_to(precious)
    with pytest.raises(UnsafeStateDirectory, match="symlink"):
        ApplyLock(str(directory)).__enter__()
    assert precious.read_bytes() == b"keep"


def test_lock_in_a_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    os.chmod(directory, 0o777)
    with pytest.raises(UnsafeStateDirectory, match="writable by others"):
        ApplyLock(str(directory)).__enter__()
    assert os.listdir(directory) == []


def test_state_disk_never_removes_the_file_a_row_names(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    StateDisk(str(directory), min_file_size=0, pickle_protocol=5).remove("../victim")
    assert victim.read_bytes() == b"keep"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_pickled_with_any_protocol_loads_as_json_data(protocol: int) -> None:
    value = {
        "text": "caf\u00e9 \udcff",
        "numbers": [0, -1, 2**70, 0.25, True, False, None],
        "nested": {"tuple": (1, "two"), "shared": [[]] * 2},
    }
    loaded = plain_unpickle(pickle.dumps(value, protocol=protocol))
    assert loaded == json.loads(json.dumps(value))


class Call:
    """Pickles to a call of `function` with `arguments`."""

    def __init__(self, function: Any, *arguments: Any) -> None:
        self.reduced = (function, arguments)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.reduced


@pytest.mark.parametrize(
    "value",
    [
        Call(print, "ran"),
        {"inner": Call(os.getcwd)},
        Path("/etc"),
        b"bytes",
        {1, 2},
        {1: "int key"},
    ],
)
def test_pickle_of_anything_but_plain_data_is_refused(value: Any, capsys: Any) -> None:
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        with pytest.raises(UnsafePickle):
            plain_unpickle(pickle.dumps(value, protocol=protocol))
    assert "ran" not in capsys.readouterr().out


def test_malformed_or_self_referencing_pickle_is_refused() -> None:
    looped: list[Any] = []
    looped.append(looped)
    for data in (b"", b"\x80\x05garbage", pickle.dumps(looped)):
        with pytest.raises(UnsafePickle):
            plain_unpickle(data)

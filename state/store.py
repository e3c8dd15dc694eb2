"""Persisted state: what hardsnap has done, kept in a diskcache directory.

The state records runs and their results, spent reverts, pending
post_commands and one-time warnings. It never decides whether a snapshot
exists: the target directory on disk is the truth for that.

Each resource has one record, a plain dict of JSON-like values stored under
`resource/<name>`; `schema_version` names the layout of those records.
Values are JSON in the database row (state/disk.py), never pickles: the
directory and its files are checked before anything in it is opened
(state/directory.py), and every row is checked before diskcache reads it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hardsnap.providers import platform
from hardsnap.providers.backup.recorded import RecordedState
from hardsnap.providers.files.report import PATHS_KEPT
from hardsnap.state import database
from hardsnap.state.database import SCHEMA_KEY, SCHEMA_VERSION
from hardsnap.state.directory import StateError as StateError
from hardsnap.state.directory import UnsafeStateDirectory as UnsafeStateDirectory
from hardsnap.state.directory import check_entries, open_state_directory

__all__ = ["SCHEMA_KEY", "SCHEMA_VERSION", "StateError", "UnsafeStateDirectory"]

RESOURCE_PREFIX = "resource/"
VERIFY_PREFIX = "verify/"
RUNS_KEPT = 20


def default_state_dir(environ: dict[str, str] | None = None) -> str:
    """Given the environment, return the state directory SPEC.md names:
    $HARDSNAP_STATE_DIR, else $XDG_STATE_HOME/hardsnap, else
    /var/lib/hardsnap for root and ~/.local/state/hardsnap for others."""
    env = os.environ if environ is None else environ
    if env.get("HARDSNAP_STATE_DIR"):
        return env["HARDSNAP_STATE_DIR"]
    if env.get("XDG_STATE_HOME"):
        return os.path.join(env["XDG_STATE_HOME"], "hardsnap")
    if platform.effective_uid() == 0:
        return "/var/lib/hardsnap"
    return os.path.join(os.path.expanduser("~"), ".local", "state", "hardsnap")


def empty_record() -> dict[str, Any]:
    return {
        "revert_spent_at": None,
        "pending_post": None,
        "cross_fs_warned": False,
        "runs": [],
        "snapshots": {},
    }


def recorded_state(
    record: dict[str, Any], verifications: dict[str, Any] | None = None
) -> RecordedState:
    pending = record.get("pending_post")
    accepted = record.get("gaps_accepted_before")
    corrupted = {
        inode for result in (verifications or {}).values() for inode in result.get("corrupted", ())
    }
    return RecordedState(
        revert_spent=record.get("revert_spent_at") is not None,
        pending_post_snapshot=pending["snapshot"] if pending else None,
        cross_fs_warned=bool(record.get("cross_fs_warned")),
        target=record.get("target"),
        snapshots=tuple(sorted(record.get("snapshots") or {})),
        corrupted=frozenset(corrupted),
        gaps_accepted_before=accepted if isinstance(accepted, str) else None,
    )


class StateStore:
    """The records of every resource hardsnap has applied.

    Open it with `StateStore.read(dir)` for commands that must not write
    (plan, state show: a missing directory reads as empty and is not
    created; the rows are read once, then the database is closed) or
    `StateStore.write(dir)` for apply and verify, which converts a store
    hardsnap 0.1.0 wrote. Both check the directory and every row first.
    """

    def __init__(self, directory: str, cache: Any, values: dict[str, Any] | None = None) -> None:
        self.directory = directory
        # The diskcache.Cache of a store opened for writing, else None.
        self._cache = cache
        # Every key and value of a store opened for reading.
        self._values = values or {}

    @classmethod
    def read(cls, directory: str) -> StateStore:
        fd = open_state_directory(directory, create=False)
        if fd is None:
            return cls(directory, None)
        try:
            check_entries(fd, directory)
            if not database.has_database(fd):
                # An empty file is no store yet; opening it would write one.
                return cls(directory, None)
            return cls(directory, None, database.load(directory, fd, convert=False))
        finally:
            os.close(fd)

    @classmethod
    def write(cls, directory: str) -> StateStore:
        database.check_plain_path(directory)
        fd = open_state_directory(directory, create=True)
        assert fd is not None
        try:
            database.check_writable(fd, directory)
            check_entries(fd, directory)
            if database.has_database(fd):
                database.load(directory, fd, convert=True)
            else:
                database.create_database(fd, directory)
            cache = database.open_cache(directory)
        finally:
            os.close(fd)
        store = cls(directory, cache)
        with store._guard():
            cache.add(SCHEMA_KEY, SCHEMA_VERSION)
        return store

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        from hardsnap.state.disk import ForeignRow

        try:
            yield
        except sqlite3.DatabaseError as error:
            raise StateError(database.unreadable(self.directory, str(error))) from None
        except ForeignRow as error:
            raise StateError(database.foreign(self.directory, str(error))) from None

    def _get(self, key: str) -> Any:
        if self._cache is None:
            return self._values.get(key)
        with self._guard():
            return self._cache.get(key)

    def names(self) -> list[str]:
        """Return the names of every resource with a record, sorted."""
        if self._cache is None:
            keys = list(self._values)
        else:
            with self._guard():
                keys = list(self._cache.iterkeys())
        return sorted(
            key[len(RESOURCE_PREFIX) :]
            for key in keys
            if isinstance(key, str) and key.startswith(RESOURCE_PREFIX)
        )

    def record(self, name: str) -> dict[str, Any]:
        """Return the record of a resource (an empty one if it has none)."""
        stored = self._get(RESOURCE_PREFIX + name)
        record = empty_record()
        if isinstance(stored, dict):
            record.update(stored)
        return record

    def save(self, name: str, record: dict[str, Any]) -> None:
        if self._cache is None:
            raise StateError("state store was opened read-only")
        record["runs"] = record["runs"][-RUNS_KEPT:]
        _trim_skipped(record["runs"])
        # A stopping signal waits until the write is done: no transaction is
        # left open for the run's last save.
        with platform.stopping_signals_held(), self._guard():
            self._cache.set(RESOURCE_PREFIX + name, record)

    def verifications(self, name: str) -> dict[str, Any]:
        """Return the last verification of each snapshot of a resource."""
        stored = self._get(VERIFY_PREFIX + name)
        return stored if isinstance(stored, dict) else {}

    def save_verification(self, name: str, snapshot: str, result: dict[str, Any]) -> None:
        """Record a verification; kept apart from the resource's record, which
        an apply rewrites, so the two never overwrite each other."""
        if self._cache is None:
            raise StateError("state store was opened read-only")
        with platform.stopping_signals_held(), self._guard(), self._cache.transact():
            stored = self.verifications(name)
            stored[snapshot] = result
            self._cache.set(VERIFY_PREFIX + name, stored)

    def forget(self, name: str) -> bool:
        """Drop everything recorded of a resource (its record and its
        verifications); return whether there was anything."""
        if self._cache is None:
            raise StateError("state store was opened read-only")
        with platform.stopping_signals_held(), self._guard(), self._cache.transact():
            found = self._cache.delete(RESOURCE_PREFIX + name)
            found = self._cache.delete(VERIFY_PREFIX + name) or found
        return bool(found)

    def recorded(self) -> dict[str, RecordedState]:
        """Return what the planner needs of every recorded resource."""
        return {
            name: recorded_state(self.record(name), self.verifications(name))
            for name in self.names()
        }


def _trim_skipped(runs: list[Any]) -> None:
    """Keep at most PATHS_KEPT skipped paths in each recorded snapshot
    action, as runs record them now: runs recorded before kept every one
    (200k symlinks left out cost every later plan hundreds of MiB)."""
    for run in runs:
        actions = run.get("actions") if isinstance(run, dict) else None
        for action in actions if isinstance(actions, list) else ():
            skipped = action.get("skipped") if isinstance(action, dict) else None
            if isinstance(skipped, list) and len(skipped) > PATHS_KEPT:
                action.setdefault("skipped_total", len(skipped))
                action["skipped"] = skipped[:PATHS_KEPT]

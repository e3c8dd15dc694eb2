"""Persisted state: what hardsnap has done, kept in a diskcache directory.

The state records runs and their results, spent reverts, pending
post_commands and one-time warnings. It never decides whether a snapshot
exists: the target directory on disk is the truth for that.

Each resource has one record, a plain dict of JSON-like values stored under
`resource/<name>`; `schema_version` names the layout of those records.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from providers.fs import make_private_directory

SCHEMA_VERSION = 1
SCHEMA_KEY = "schema_version"
RESOURCE_PREFIX = "resource/"
VERIFY_PREFIX = "verify/"
RUNS_KEPT = 20


class StateError(Exception):
    """The state directory cannot be used; the message says how to recover."""


@dataclass(frozen=True)
class RecordedState:
    """What the planner needs to know of one resource's history."""

    revert_spent: bool = False
    # Name of the snapshot whose post_command failed and awaits a retry.
    pending_post_snapshot: str | None = None
    cross_fs_warned: bool = False


def default_state_dir(environ: dict[str, str] | None = None) -> str:
    """Given the environment, return the state directory SPEC.md names:
    $HARDSNAP_STATE_DIR, else $XDG_STATE_HOME/hardsnap, else
    /var/lib/hardsnap for root and ~/.local/state/hardsnap for others."""
    env = os.environ if environ is None else environ
    if env.get("HARDSNAP_STATE_DIR"):
        return env["HARDSNAP_STATE_DIR"]
    if env.get("XDG_STATE_HOME"):
        return os.path.join(env["XDG_STATE_HOME"], "hardsnap")
    if os.geteuid() == 0:
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


def recorded_state(record: dict[str, Any]) -> RecordedState:
    pending = record.get("pending_post")
    return RecordedState(
        revert_spent=record.get("revert_spent_at") is not None,
        pending_post_snapshot=pending["snapshot"] if pending else None,
        cross_fs_warned=bool(record.get("cross_fs_warned")),
    )


class StateStore:
    """The records of every resource hardsnap has applied.

    Open it with `StateStore.read(dir)` for commands that must not write
    (plan, state show: a missing directory reads as empty and is not
    created) or `StateStore.write(dir)` for apply.
    """

    def __init__(self, directory: str, cache: Any) -> None:
        self.directory = directory
        self._cache = cache

    @classmethod
    def read(cls, directory: str) -> StateStore:
        database = os.path.join(directory, "cache.db")
        try:
            info = os.stat(database)
        except FileNotFoundError:
            if os.path.lexists(directory) and not os.path.isdir(directory):
                raise StateError(_not_a_directory(directory)) from None
            return cls(directory, None)
        except NotADirectoryError:
            raise StateError(_not_a_directory(directory)) from None
        except OSError as error:
            raise StateError(
                f"cannot read state directory {directory}: {error.strerror}; run as its owner "
                f"or choose another with --state-dir"
            ) from None
        if stat.S_ISREG(info.st_mode) and info.st_size == 0:
            # An empty file is no store yet; opening it would write one.
            return cls(directory, None)
        return cls(directory, _open_cache(directory))

    @classmethod
    def write(cls, directory: str) -> StateStore:
        if os.path.lexists(directory) and not os.path.isdir(directory):
            raise StateError(_not_a_directory(directory))
        try:
            make_private_directory(directory)
        except OSError as error:
            raise StateError(
                f"cannot create state directory {directory}: {error.strerror}"
            ) from None
        cache = _open_cache(directory)
        store = cls(directory, cache)
        with store._guard():
            version = cache.get(SCHEMA_KEY)
            if version is None:
                cache.set(SCHEMA_KEY, SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise StateError(
                    f"state directory {directory} has schema version {version}, this hardsnap "
                    f"knows {SCHEMA_VERSION}: upgrade hardsnap or use another --state-dir"
                )
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
        try:
            yield
        except sqlite3.DatabaseError as error:
            raise StateError(
                f"state store {self.directory} is unreadable ({error}); move it aside to start "
                f"afresh: snapshots on disk are kept and found again"
            ) from None

    def names(self) -> list[str]:
        """Return the names of every resource with a record, sorted."""
        if self._cache is None:
            return []
        with self._guard():
            keys = list(self._cache.iterkeys())
        return sorted(
            key[len(RESOURCE_PREFIX) :]
            for key in keys
            if isinstance(key, str) and key.startswith(RESOURCE_PREFIX)
        )

    def record(self, name: str) -> dict[str, Any]:
        """Return the record of a resource (an empty one if it has none)."""
        if self._cache is None:
            return empty_record()
        with self._guard():
            stored = self._cache.get(RESOURCE_PREFIX + name)
        record = empty_record()
        if isinstance(stored, dict):
            record.update(stored)
        return record

    def save(self, name: str, record: dict[str, Any]) -> None:
        if self._cache is None:
            raise StateError("state store was opened read-only")
        record["runs"] = record["runs"][-RUNS_KEPT:]
        with self._guard():
            self._cache.set(RESOURCE_PREFIX + name, record)

    def verifications(self, name: str) -> dict[str, Any]:
        """Return the last verification of each snapshot of a resource."""
        if self._cache is None:
            return {}
        with self._guard():
            stored = self._cache.get(VERIFY_PREFIX + name)
        return stored if isinstance(stored, dict) else {}

    def save_verification(self, name: str, snapshot: str, result: dict[str, Any]) -> None:
        """Record a verification; kept apart from the resource's record, which
        an apply rewrites, so the two never overwrite each other."""
        if self._cache is None:
            raise StateError("state store was opened read-only")
        with self._guard(), self._cache.transact():
            stored = self.verifications(name)
            stored[snapshot] = result
            self._cache.set(VERIFY_PREFIX + name, stored)

    def recorded(self) -> dict[str, RecordedState]:
        """Return what the planner needs of every recorded resource."""
        return {name: recorded_state(self.record(name)) for name in self.names()}


def _not_a_directory(directory: str) -> str:
    return (
        f"state directory {directory} is not a directory; move it aside or choose another "
        f"with --state-dir (snapshots on disk are kept and found again)"
    )


def _open_cache(directory: str) -> Any:
    import diskcache

    try:
        return diskcache.Cache(directory)
    except (sqlite3.DatabaseError, OSError) as error:
        raise StateError(
            f"cannot open state store {directory} ({error}); check its permissions, or move it "
            f"aside to start afresh: snapshots on disk are kept and found again"
        ) from None

"""How state values sit in diskcache's database: JSON, never pickle, never files.

diskcache's own `Disk` unpickles what it reads (CVE-2025-69872), and its
`JSONDisk` still falls back to pickle for rows it did not write; both open
and unlink value files named by the database. `StateDisk` stores keys as
plain strings and values as JSON bytes in the database row, and refuses any
row in another form without looking further: whoever could write such a
row must not choose what hardsnap loads, opens or deletes as root.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import diskcache
from diskcache.core import MODE_RAW


class ForeignRow(Exception):
    """A row of the state database that hardsnap did not write: a pickled
    key or value, a value kept in a file, or bytes that are not JSON."""


def encode(value: Any) -> bytes:
    """Given a JSON-like value, return the bytes stored for it."""
    return json.dumps(value, allow_nan=False).encode("ascii")


def decode(data: object) -> Any:
    """Given a value column read from the database, return its value. Raise
    ForeignRow unless it holds the JSON bytes `encode` writes."""
    if not isinstance(data, bytes):
        raise ForeignRow(f"a value stored as {type(data).__name__}, not JSON")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ForeignRow("a value that is not valid JSON") from None


def check_key(key: object, raw: object) -> str:
    """Given the key and raw columns of a row, return the key. Raise
    ForeignRow unless it is a plain string (diskcache pickles other keys)."""
    if not raw or not isinstance(key, str):
        raise ForeignRow("a pickled key")
    return key


def check_value_columns(mode: object, filename: object) -> None:
    """Raise ForeignRow unless a row keeps its value in the database as raw
    bytes: a pickled value, or one in a file, is never read."""
    if filename is not None:
        raise ForeignRow(f"a value kept in a file ({filename!r})")
    if mode != MODE_RAW:
        raise ForeignRow(f"a value of diskcache mode {mode} (pickled, or text or bytes)")


class StateDisk(diskcache.Disk):  # type: ignore[misc]
    """A diskcache `Disk` for state values: str keys, JSON values in the row."""

    def __init__(self, directory: str, **settings: Any) -> None:
        # diskcache passes every `disk_*` setting of the database
        # (min_file_size, pickle_protocol...): none of them applies here.
        super().__init__(directory)

    def put(self, key: Any) -> tuple[str, bool]:
        if not isinstance(key, str):
            raise TypeError(f"state keys are strings, not {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> str:
        return check_key(key, raw)

    def store(
        self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN
    ) -> tuple[int, int, None, sqlite3.Binary]:
        if read:
            raise TypeError("state values are JSON-like values, not files")
        return 0, MODE_RAW, None, sqlite3.Binary(encode(value))

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if read:
            raise TypeError("state values are never read as files")
        check_value_columns(mode, filename)
        return decode(value)

    def filename(self, key: Any = None, value: Any = None) -> tuple[str, str]:
        raise TypeError("state values are never kept in files")

    def remove(self, file_path: str) -> None:
        """Remove nothing. diskcache calls this with the filename column of a
        row it replaces or evicts; a row naming "../../etc/shadow" must not
        make root delete it. StateDisk writes no files, so none is left to
        remove."""

"""The state database, read safely: every row is checked before diskcache
reads it, so a value hardsnap did not write (a pickle, a value file, an
odd setting) is refused without being unpickled, and a store of hardsnap
0.1.0 is converted once to JSON rows (through state/legacy.py).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable
from typing import Any

from hardsnap.providers import platform
from hardsnap.state.directory import (
    StateError,
    open_entry,
    open_entry_directory,
)

# state.disk and state.legacy import diskcache and pickletools: only a
# command that opens a store pays for them.

# 2: values are JSON (state/disk.py); 1 (hardsnap 0.1.0): pickles, see state/legacy.py.
SCHEMA_VERSION = 2
SCHEMA_KEY = "schema_version"
DATABASE = "cache.db"
# Settings diskcache keeps in the database: it applies the sqlite_* ones as
# `PRAGMA name = value` text on every open, so only known names with plain
# values pass. The ones that matter here are passed explicitly too.
SETTINGS = {"eviction_policy": "none", "cull_limit": 0, "statistics": 0, "tag_index": 0}
JOURNAL_MODES = frozenset({"delete", "truncate", "persist", "memory", "wal", "off"})


def has_database(fd: int) -> bool:
    try:
        return platform.stat_at(DATABASE, fd).st_size > 0
    except FileNotFoundError:
        return False


def _read_only(fd: int) -> bool:
    return platform.is_read_only(fd)


def _exists(fd: int, name: str) -> bool:
    try:
        platform.stat_at(name, fd)
    except FileNotFoundError:
        return False
    return True


def check_writable(fd: int, directory: str) -> None:
    """Refuse a state directory on a read-only filesystem, before anything
    (a hook, a snapshot) runs that could not be recorded there."""
    if _read_only(fd):
        raise StateError(
            f"state directory {directory} is on a read-only filesystem: apply, verify and "
            f"state forget record there; mount it read-write, or choose another state "
            f"directory with --state-dir (plan and state show read it as it is)"
        )


def create_database(fd: int, directory: str) -> None:
    """Create an empty cache.db (0600 whatever the umask: SQLite gives its
    companion files the mode of the database)."""
    try:
        os.close(open_entry(DATABASE, fd, os.path.join(directory, DATABASE), True, True))
    except OSError as error:
        raise StateError(
            f"cannot create the state store in {directory}: {error.strerror}; choose another "
            f"state directory with --state-dir"
        ) from None


def check_plain_path(directory: str) -> None:
    """Refuse a state directory path that diskcache would rewrite (it
    expands $VARIABLES and a leading ~): it would open another directory
    than the one checked."""
    if os.path.expanduser(os.path.expandvars(directory)) != directory:
        raise StateError(
            f"state directory {directory} holds $ or starts with ~, which would be expanded: "
            f"give it as a plain path"
        )


def open_cache(directory: str) -> Any:
    import diskcache

    from hardsnap.state.disk import StateDisk

    check_plain_path(directory)
    try:
        return diskcache.Cache(directory, disk=StateDisk, **SETTINGS)
    except (sqlite3.DatabaseError, OSError) as error:
        raise StateError(
            f"cannot open state store {directory} ({error}); check its permissions, or move it "
            f"aside to start afresh: snapshots on disk are kept and found again"
        ) from None


def load(directory: str, fd: int, convert: bool) -> dict[str, Any]:
    """Return every key and value of the state database in directory `fd`,
    each row checked before its value is read: a row hardsnap did not
    write is refused, so is a database setting that is not diskcache's.
    A store of hardsnap 0.1.0 is read through state/legacy.py; with
    `convert` its rows are rewritten as JSON, in one transaction, and its
    value files removed. Raise StateError."""
    from urllib.parse import quote

    path = os.path.abspath(os.path.join(directory, DATABASE))
    files: list[str] = []
    # mode=rw: nothing creates the file. It is no link: check_entries
    # refused the directory otherwise, and nobody else may change it.
    mode = "rw"
    if not convert and _read_only(fd):
        # On a read-only mount (a copy mounted for an audit, a sandbox) SQLite
        # can neither make the log's shared-memory file nor fold a log in.
        # With the log and that file there, left by a writer through another
        # mount, it reads through them read-only; without a log, cache.db is
        # all there is, read as immutable, needing no companion file.
        mode = "ro" if _exists(fd, DATABASE + "-wal") else "ro&immutable=1"
    try:
        connection = sqlite3.connect(
            f"file:{quote(path)}?mode={mode}", uri=True, isolation_level=None, timeout=60
        )
    except sqlite3.DatabaseError as error:
        raise StateError(_unreadable(directory, str(error), mode)) from None
    try:
        connection.execute("BEGIN IMMEDIATE" if convert else "BEGIN")
        tables = {
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "Settings" in tables:
            _check_settings(directory, connection.execute("SELECT key, value FROM Settings"))
        rows = []
        if "Cache" in tables:
            rows = connection.execute(
                "SELECT rowid, key, raw, mode, filename, value FROM Cache"
            ).fetchall()
        values, converted = _decode_rows(directory, fd, rows, files)
        if convert and converted:
            from hardsnap.state.disk import encode

            for rowid, value in converted.items():
                connection.execute(
                    "UPDATE Cache SET mode = 1, filename = NULL, size = 0, value = ? "
                    "WHERE rowid = ?",
                    (sqlite3.Binary(encode(value)), rowid),
                )
        connection.execute("COMMIT")
    except sqlite3.DatabaseError as error:
        raise StateError(_unreadable(directory, str(error), mode)) from None
    finally:
        connection.close()
    if convert:
        _remove_value_files(fd, files)
    return values


def _check_settings(directory: str, settings: Iterable[tuple[Any, Any]]) -> None:
    from diskcache.core import DEFAULT_SETTINGS, METADATA

    for key, value in settings:
        if key not in DEFAULT_SETTINGS and key not in METADATA:
            problem = "is not one of diskcache's"
        elif key.startswith("sqlite_") and not _plain_pragma_value(key, value):
            problem = "has a value that is not a number"
        else:
            continue
        raise StateError(
            f"state store {directory} has a setting {str(key)[:80]!r} that {problem}, which "
            f"hardsnap does not write: refused without opening the store; move it aside to "
            f"start afresh: snapshots on disk are kept and found again"
        )


def _plain_pragma_value(key: str, value: Any) -> bool:
    if type(value) is int:
        return True
    return key == "sqlite_journal_mode" and str(value).lower() in JOURNAL_MODES


def _decode_rows(
    directory: str, fd: int, rows: list[tuple[Any, ...]], files: list[str]
) -> tuple[dict[str, Any], dict[int, Any]]:
    """Given the rows of the Cache table, return every key's value, and the
    values of the rows to rewrite as JSON (by rowid): those of a 0.1.0
    store. Append the value files 0.1.0 rows used to `files`."""
    from hardsnap.state import legacy
    from hardsnap.state.disk import ForeignRow, check_key, check_value_columns, decode

    is_legacy = _is_legacy(directory, rows)
    values: dict[str, Any] = {}
    converted: dict[int, Any] = {}
    for rowid, key, raw, mode, filename, value in rows:
        try:
            name = check_key(key, raw)
            if not is_legacy or _is_json_row(mode, filename, value):
                check_value_columns(mode, filename)
                values[name] = decode(value)
                continue
            values[name] = converted[rowid] = _legacy_value(directory, fd, mode, filename, value)
            if filename is not None:
                files.append(filename)
        except ForeignRow as error:
            raise StateError(foreign(directory, str(error))) from None
        except legacy.UnsafePickle as error:
            raise StateError(
                f"state store {directory} holds a record of hardsnap 0.1.0, {name!r:.80}, that "
                f"is not plain data ({error}): refused without loading it; move it aside to "
                f"start afresh: snapshots on disk are kept and found again"
            ) from None
    if is_legacy:
        for rowid, key, *_ in rows:
            if key == SCHEMA_KEY:
                converted[rowid] = values[SCHEMA_KEY] = SCHEMA_VERSION
    return values, converted


def _is_legacy(directory: str, rows: list[tuple[Any, ...]]) -> bool:
    """Return whether a store's rows are hardsnap 0.1.0's: its schema
    version 1 is an int in the row, not JSON (and a store without a version
    whose rows are not all JSON is taken for one). Raise StateError for a
    version this hardsnap does not know."""
    from hardsnap.state import legacy
    from hardsnap.state.disk import ForeignRow, decode

    for _, key, raw, mode, filename, value in rows:
        if key != SCHEMA_KEY or not raw:
            continue
        if _is_json_row(mode, filename, value):
            try:
                version = decode(value)
            except ForeignRow as error:
                raise StateError(foreign(directory, str(error))) from None
            if version == SCHEMA_VERSION:
                return False
        elif mode == 1 and filename is None and type(value) is int:
            version = value
            if version == legacy.LEGACY_SCHEMA_VERSION:
                return True
        else:
            raise StateError(foreign(directory, "a schema version that is not a number"))
        raise StateError(
            f"state directory {directory} has schema version {str(version)[:20]}, this hardsnap "
            f"knows {SCHEMA_VERSION}: upgrade hardsnap or use another --state-dir"
        )
    return not all(_is_json_row(mode, filename, value) for *_, mode, filename, value in rows)


def _is_json_row(mode: Any, filename: Any, value: Any) -> bool:
    return mode == 1 and filename is None and isinstance(value, bytes)


def _legacy_value(directory: str, fd: int, mode: Any, filename: Any, value: Any) -> Any:
    """Return the value of a row hardsnap 0.1.0 wrote (raw scalar, or a
    pickle in the row or in a value file). Raise ForeignRow or UnsafePickle."""
    from hardsnap.state import legacy
    from hardsnap.state.disk import ForeignRow

    if mode == 1 and filename is None:
        return legacy.legacy_scalar(value)
    if mode != 4:
        raise ForeignRow(f"a value of diskcache mode {mode}, which hardsnap 0.1.0 never wrote")
    if filename is None and isinstance(value, bytes):
        return legacy.plain_unpickle(value)
    if value is None and isinstance(filename, str) and legacy.VALUE_FILE.fullmatch(filename):
        return legacy.plain_unpickle(_read_value_file(directory, fd, filename))
    raise ForeignRow(f"a value kept in a file diskcache would not name ({str(filename)[:80]!r})")


def _read_value_file(directory: str, fd: int, filename: str) -> bytes:
    """Return the bytes of a 0.1.0 value file "xx/yy/name.val", each part
    opened below the state directory `fd` without following a link and
    checked like the state directory's own entries."""
    opened: list[int] = []
    path = directory
    try:
        parent = fd
        *folders, name = filename.split("/")
        for folder in folders:
            path = os.path.join(path, folder)
            parent = open_entry_directory(folder, parent, path)
            opened.append(parent)
        path = os.path.join(path, name)
        file_fd = open_entry(name, parent, path, writable=False)
        opened.append(file_fd)
        with os.fdopen(os.dup(file_fd), "rb") as reader:
            return reader.read()
    except OSError as error:
        raise StateError(
            f"cannot read {path} of the state store ({error.strerror}); move the state "
            f"directory aside to start afresh: snapshots on disk are kept and found again"
        ) from None
    finally:
        for opened_fd in opened:
            os.close(opened_fd)


def _remove_value_files(fd: int, files: list[str]) -> None:
    """Remove the 0.1.0 value files whose rows are now JSON, and their
    folders once empty; a leftover is harmless (never read again)."""
    for filename in files:
        first, second, name = filename.split("/")
        with contextlib.suppress(OSError):
            first_fd = platform.open_directory(first, fd)
            try:
                second_fd = platform.open_directory(second, first_fd)
                try:
                    platform.unlink_at(name, second_fd)
                finally:
                    os.close(second_fd)
                with contextlib.suppress(OSError):
                    platform.rmdir_at(second, first_fd)
            finally:
                os.close(first_fd)
            platform.rmdir_at(first, fd)


def _unreadable(directory: str, reason: str, mode: str) -> str:
    if mode == "rw":
        return unreadable(directory, reason)
    # Read-only: an apply writing through another mount may have changed
    # it while it was read.
    return (
        f"state store {directory}, on a read-only filesystem, could not be read ({reason}); "
        f"if an apply was recording through another mount, try again once it ended"
    )


def unreadable(directory: str, reason: str) -> str:
    return (
        f"state store {directory} is unreadable ({reason}); move it aside to start "
        f"afresh: snapshots on disk are kept and found again"
    )


def foreign(directory: str, what: str) -> str:
    return (
        f"state store {directory} holds {what}, which hardsnap does not write: refused without "
        f"reading it; move it aside to start afresh: snapshots on disk are kept and found again"
    )

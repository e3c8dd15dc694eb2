"""Reading the state hardsnap 0.1.0 wrote, once, without running its pickles.

Why this exists: 0.1.0 kept each record as a pickle (diskcache's default
`Disk`), and unpickling runs whatever code the bytes name. Throwing that
state away instead would re-run spent reverts and forget pending
post_commands, so the first apply of a newer hardsnap converts it to JSON
(schema version 2). A pickle is loaded only when every opcode in it builds
a plain container or scalar, by an unpickler that can reach no class or
function; anything else is refused.

When to delete it: once no 0.1.0 state directory is left to convert, that
is, once every host has run one apply of hardsnap 0.2 or later.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
from typing import Any

LEGACY_SCHEMA_VERSION = 1

# diskcache's value file names: two levels of hex directories, then hex.
VALUE_FILE = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{28}\.val")

# Opcodes that build None, bools, ints, floats, strings, lists, tuples and
# dicts, plus the framing and memo bookkeeping around them. Everything that
# names a class or function (GLOBAL, STACK_GLOBAL, INST, OBJ, NEWOBJ,
# NEWOBJ_EX, EXT1/2/4), calls one (REDUCE, BUILD) or asks the loader for an
# object (PERSID, BINPERSID, buffers) is absent, and so are bytes and sets,
# which JSON cannot hold.
PLAIN_OPCODES = frozenset(
    {
        "PROTO",
        "FRAME",
        "STOP",
        "MARK",
        "POP",
        "POP_MARK",
        "DUP",
        "PUT",
        "BINPUT",
        "LONG_BINPUT",
        "MEMOIZE",
        "GET",
        "BINGET",
        "LONG_BINGET",
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "FLOAT",
        "BINFLOAT",
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "EMPTY_DICT",
        "DICT",
        "SETITEM",
        "SETITEMS",
        "EMPTY_LIST",
        "LIST",
        "APPEND",
        "APPENDS",
        "EMPTY_TUPLE",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
    }
)


class UnsafePickle(ValueError):
    """A 0.1.0 value that is not a pickle of plain data."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def plain_unpickle(data: bytes) -> Any:
    """Given a pickle 0.1.0 wrote, return its value as JSON-like data
    (tuples become lists). Raise UnsafePickle, before loading anything, if
    an opcode could reach code; or if the value is not JSON-like."""
    try:
        names = {opcode.name for opcode, _, _ in pickletools.genops(data)}
    except ValueError as error:
        raise UnsafePickle(f"a malformed pickle ({error})") from None
    unsafe = sorted(names - PLAIN_OPCODES)
    if unsafe:
        raise UnsafePickle(f"pickle opcode {', '.join(unsafe)}")
    try:
        value = _PlainUnpickler(io.BytesIO(data)).load()
        return _plain(value)
    except UnsafePickle:
        raise
    except Exception as error:  # whatever it is, no code of the pickle's choosing ran
        raise UnsafePickle(f"a pickle that does not load as plain data ({error!r})") from None


def legacy_scalar(value: object) -> Any:
    """Given a value 0.1.0 kept unpickled in its row (diskcache stores small
    ints, floats and strings as they are), return it. Raise UnsafePickle for
    anything else (0.1.0 wrote no bytes or text files)."""
    if isinstance(value, int | str) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise UnsafePickle(f"a raw {type(value).__name__} value")


def _plain(value: Any) -> Any:
    """Return `value` with tuples as lists; raise UnsafePickle on any type
    JSON cannot hold."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsafePickle("a float that is not finite")
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise UnsafePickle("a dict key that is not a string")
        return {key: _plain(item) for key, item in value.items()}
    raise UnsafePickle(f"a {type(value).__name__} value")

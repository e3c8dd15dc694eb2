"""The C library, for the calls Python's os module lacks.

A symbol this C library does not have (an older libc, another OS, or one
hidden on purpose) is None: each caller then takes its portable path.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, TypeVar

Structure = TypeVar("Structure", bound=ctypes.Structure)


def _load() -> ctypes.CDLL | None:
    # CDLL(None) is the running program's own symbols, libc's included: no
    # library search, which matters in a freshly forked worker.
    try:
        return ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):
        return None


LIBRARY = _load()


def function(name: str) -> Any:
    """The C function `name`, or None when this C library has none."""
    if LIBRARY is None:
        return None
    try:
        return getattr(LIBRARY, name)
    except AttributeError:
        return None


def last_error(what: str) -> OSError:
    """The OSError for the errno a C call just left, naming `what`."""
    number = ctypes.get_errno()
    return OSError(number, os.strerror(number), what)


def call(function: Any, what: str, *arguments: object) -> int:
    """Call a C function that answers -1 on failure; raise its OSError."""
    result: int = function(*arguments)
    if result < 0:
        raise last_error(what)
    return result


def statfs_of(function: Any, fd: int, structure: type[Structure]) -> Structure | None:
    """fstatfs(fd) into the system's `structure`, or None when it cannot tell."""
    if function is None:
        return None
    buffer = structure()
    if function(fd, ctypes.byref(buffer)) != 0:
        return None
    return buffer


def type_name_of(fstatfs: Any, fd: int, struct: type[ctypes.Structure]) -> str | None:
    """The f_fstypename of the filesystem holding `fd` (a BSD statfs)."""
    found = statfs_of(fstatfs, fd, struct)
    return None if found is None else os.fsdecode(found.f_fstypename) or None


def found(*functions: Any) -> bool:
    """Whether the C library has every one of these functions."""
    return None not in functions

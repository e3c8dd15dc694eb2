"""The C library, for the calls Python's os module lacks.

A symbol this C library does not have (an older libc, another OS, or one
hidden on purpose) is None: each caller then takes its portable path.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any


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

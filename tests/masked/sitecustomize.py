"""The masked platform profile: loaded first by every Python of a test run
given PYTHONPATH=tests/masked, it takes away what only Linux offers, so
that hardsnap runs on Linux as on a system without it and its portable
paths are tested. `.ci/run` runs the whole suite this way, inside a mount
namespace with an empty tmpfs over /proc (no mountinfo, no /proc/self/fd,
no /proc/locks).

Removed: the os functions only Linux has (copy_file_range,
sched_getaffinity, memfd_create, the xattr calls, O_NOATIME); hidden: the
C library's syncfs and prctl.
"""

import ctypes
import os

MASKED_OS_NAMES = (
    "copy_file_range",
    "sched_getaffinity",
    "memfd_create",
    "MFD_CLOEXEC",
    "getxattr",
    "setxattr",
    "listxattr",
    "removexattr",
    "O_NOATIME",
)
HIDDEN_SYMBOLS = frozenset({"syncfs", "prctl"})

for _name in MASKED_OS_NAMES:
    if hasattr(os, _name):
        delattr(os, _name)

_find = ctypes.CDLL.__getattr__
_index = ctypes.CDLL.__getitem__


def _hidden_getattr(library: ctypes.CDLL, name: str) -> object:
    if name in HIDDEN_SYMBOLS:
        raise AttributeError(name)
    return _find(library, name)


def _hidden_getitem(library: ctypes.CDLL, name: object) -> object:
    if name in HIDDEN_SYMBOLS:
        raise AttributeError(name)
    return _index(library, name)


ctypes.CDLL.__getattr__ = _hidden_getattr  # type: ignore[method-assign]
ctypes.CDLL.__getitem__ = _hidden_getitem  # type: ignore[method-assign,assignment]
os.environ["HARDSNAP_MASKED_PLATFORM"] = "1"

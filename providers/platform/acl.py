"""ACLs through the POSIX.1e-style C calls of macOS and FreeBSD, carried as
text: read with acl_get_fd_np and acl_to_text, written with acl_from_text
and acl_set_fd_np. Shown among a file's extended attributes under names
no attribute can have (they begin with a NUL byte)."""

from __future__ import annotations

import ctypes
import errno

from hardsnap.providers.platform import libc

KEY_PREFIX = "\0acl:"
_GET = libc.function("acl_get_fd_np")
_SET = libc.function("acl_set_fd_np")
_TO_TEXT = libc.function("acl_to_text")
_FROM_TEXT = libc.function("acl_from_text")
_FREE = libc.function("acl_free")
_AVAILABLE = libc.found(_GET, _SET, _TO_TEXT, _FROM_TEXT, _FREE)
if _AVAILABLE:
    _GET.restype = ctypes.c_void_p
    _GET.argtypes = [ctypes.c_int, ctypes.c_int]
    _TO_TEXT.restype = ctypes.c_void_p
    _TO_TEXT.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    _FROM_TEXT.restype = ctypes.c_void_p
    _FROM_TEXT.argtypes = [ctypes.c_char_p]
    _SET.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    _FREE.argtypes = [ctypes.c_void_p]


def read(fd: int, kinds: dict[str, int]) -> dict[str, bytes]:
    """The ACLs of an open file, one entry per kind it has (`kinds`: name
    -> the system's ACL type number)."""
    found: dict[str, bytes] = {}
    if not _AVAILABLE:
        return found
    for name, kind in kinds.items():
        acl = _GET(fd, kind)
        if not acl:
            continue  # none of this kind, or not on this filesystem
        try:
            text = _TO_TEXT(acl, None)
            if text:
                found[KEY_PREFIX + name] = ctypes.string_at(text)
                _FREE(text)
        finally:
            _FREE(acl)
    return found


def write(fd: int, key: str, value: bytes, kinds: dict[str, int]) -> None:
    """Give an open file the ACL `value` (text), of the kind named by `key`."""
    kind = kinds.get(key[len(KEY_PREFIX) :])
    if not _AVAILABLE or kind is None:
        raise OSError(errno.ENOTSUP, "this system cannot set that ACL")
    acl = _FROM_TEXT(value)
    if not acl:
        raise libc.last_error("acl_from_text")
    try:
        if _SET(fd, acl, kind) != 0:
            raise libc.last_error("acl_set_fd_np")
    finally:
        _FREE(acl)

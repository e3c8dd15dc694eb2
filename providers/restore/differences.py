"""How an entry of the destination differs from the snapshot's: the words a
restore plan gives for replacing it (content, type, mode, owner, mtime,
xattrs, link target, hard link)."""

from __future__ import annotations

import os
import stat

from hardsnap.providers import platform
from hardsnap.providers.files import digest


def differences(
    copy: os.stat_result,
    copy_fd: int | None,
    existing: os.stat_result,
    existing_fd: int | None,
    known: str | None,
) -> list[str]:
    """What differs between the snapshot's entry (`copy`, open as `copy_fd`
    for a file or directory) and the destination's (`existing`, likewise);
    `known` is the copy's digest from the manifest, if it has one."""
    if stat.S_IFMT(copy.st_mode) != stat.S_IFMT(existing.st_mode):
        return ["type"]
    why = []
    if stat.S_ISREG(copy.st_mode) and _content_differs(copy, copy_fd, existing, existing_fd, known):
        why.append("content")
    special = stat.S_ISCHR(copy.st_mode) or stat.S_ISBLK(copy.st_mode)
    if special and platform.device_of(copy) != platform.device_of(existing):
        why.append("device")
    if not stat.S_ISLNK(copy.st_mode) and stat.S_IMODE(copy.st_mode) != stat.S_IMODE(
        existing.st_mode
    ):
        why.append("mode")
    if platform.IS_ROOT and (copy.st_uid, copy.st_gid) != (existing.st_uid, existing.st_gid):
        why.append("owner")
    if not stat.S_ISDIR(copy.st_mode) and copy.st_mtime_ns != existing.st_mtime_ns:
        why.append("mtime")
    if copy_fd is not None and existing_fd is not None and _xattrs(copy_fd) != _xattrs(existing_fd):
        why.append("xattrs")
    return why


def link_differs(copy_text: str, existing_text: str) -> list[str]:
    return [] if copy_text == existing_text else ["link target"]


def _content_differs(
    copy: os.stat_result,
    copy_fd: int | None,
    existing: os.stat_result,
    existing_fd: int | None,
    known: str | None,
) -> bool:
    if copy.st_size != existing.st_size:
        return True
    if copy_fd is None or existing_fd is None:
        return True
    sparse = digest.is_sparse_digest(known) if known else None
    wanted = known or digest.hash_open_file(copy_fd, sparse=sparse)
    return digest.hash_open_file(existing_fd, sparse=digest.is_sparse_digest(wanted)) != wanted


def _xattrs(fd: int) -> dict[str, bytes]:
    try:
        return platform.extended_attributes(fd)
    except OSError:
        return {}

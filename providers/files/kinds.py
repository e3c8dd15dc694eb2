"""The kinds of entries a tree holds, as reports and history name them, and
which of them a snapshot keeps besides regular files and directories."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from hardsnap.providers import platform

_NAMES = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISREG, "file"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)
_SPECIAL = frozenset(("fifo", "socket", "character device", "block device"))


@dataclass(frozen=True)
class Kinds:
    """What a snapshot keeps besides regular files and directories."""

    symlinks: bool = False
    special_files: bool = False
    one_file_system: bool = False


def kind_of(mode: int, precise: bool = True) -> str:
    """The name a report gives an entry of this mode: "directory", "file",
    "symlink", and for the rest "fifo", "socket", "character device" or
    "block device" (all "special file" when not `precise`)."""
    for test, name in _NAMES:
        if test(mode):
            return "special file" if name in _SPECIAL and not precise else name
    return "special file"


def is_kept(mode: int, kinds: Kinds) -> bool:
    """Whether an entry of this (non-file, non-directory) kind goes into
    the snapshot. Devices need root to be made; sockets never are."""
    if stat.S_ISLNK(mode):
        return kinds.symlinks
    if stat.S_ISFIFO(mode):
        return kinds.special_files
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return kinds.special_files and platform.IS_ROOT
    return False

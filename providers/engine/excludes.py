"""Exclude patterns and marker files (exclude_if_present), as SPEC.md says."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import stat
from collections.abc import Iterable

from hardsnap.providers import platform

# A source frozen for a run (source_snapshot) is a btrfs snapshot of this
# name in its subvolume's root; btrfs numbers every subvolume's root 256.
FROZEN_PREFIX = ".hardsnap-source."
SUBVOLUME_ROOT_INODE = 256
CACHEDIR_TAG = "CACHEDIR.TAG"
# The Cache Directory Tagging Specification: a CACHEDIR.TAG counts only
# when it starts with this.
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


class Excludes:
    """Exclude patterns, matched as SPEC.md says.

    A pattern with a `/` is matched (fnmatch) against the path relative to
    the source, anchored at the source root; one without matches any single
    name at any depth. A trailing `/` restricts a pattern to directories.
    """

    def __init__(self, patterns: Iterable[str], markers: Iterable[str] = ()) -> None:
        name_any: list[str] = []
        path_any: list[str] = []
        name_dirs: list[str] = []
        path_dirs: list[str] = []
        for pattern in patterns:
            directories_only = pattern.endswith("/")
            pattern = pattern.rstrip("/")
            if not pattern:
                continue
            anchored = "/" in pattern
            pattern = pattern.lstrip("/")
            if anchored:
                (path_dirs if directories_only else path_any).append(pattern)
            else:
                (name_dirs if directories_only else name_any).append(pattern)
        self._name = _compile(name_any)
        self._path = _compile(path_any)
        self._name_dir = _compile(name_any + name_dirs)
        self._path_dir = _compile(path_any + path_dirs)
        # exclude_if_present: a directory holding one is kept with it alone.
        self.markers = tuple(dict.fromkeys(markers))
        # No pattern at all: a walk need not ask.
        self.empty = self._name_dir is None and self._path_dir is None

    def file(self, relative: str, name: str) -> bool:
        return _hit(self._name, name) or _hit(self._path, relative)

    def directory(self, relative: str, name: str) -> bool:
        return _hit(self._name_dir, name) or _hit(self._path_dir, relative)


def is_frozen_copy(name: str, info: os.stat_result, parent_device: int) -> bool:
    """Whether an entry of a directory is a snapshot `freeze` made (a walk
    of the live tree meanwhile leaves it out)."""
    return (
        name.startswith(FROZEN_PREFIX)
        and stat.S_ISDIR(info.st_mode)
        and info.st_ino == SUBVOLUME_ROOT_INODE
        and info.st_dev != parent_device
    )


def marker_in(directory_fd: int, markers: tuple[str, ...]) -> str | None:
    """The first of `markers` directory `directory_fd` holds, or None: an
    entry of that name (never followed), a CACHEDIR.TAG only as a regular
    file that starts with the tagging specification's signature."""
    for name in markers:
        try:
            info = platform.stat_at(name, directory_fd)
        except OSError:
            continue
        if name != CACHEDIR_TAG:
            return name
        if stat.S_ISREG(info.st_mode) and _signed(name, directory_fd):
            return name
    return None


def _signed(name: str, directory_fd: int) -> bool:
    with contextlib.suppress(OSError):
        fd = platform.open_source(name, directory_fd)
        try:
            return platform.read_at(fd, len(CACHEDIR_SIGNATURE), 0) == CACHEDIR_SIGNATURE
        finally:
            os.close(fd)
    return False


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL)


def _hit(pattern: re.Pattern[str] | None, text: str) -> bool:
    return pattern is not None and pattern.match(text) is not None

"""Exclude patterns, matched as SPEC.md says."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable


class Excludes:
    """Exclude patterns, matched as SPEC.md says.

    A pattern with a `/` is matched (fnmatch) against the path relative to
    the source, anchored at the source root; one without matches any single
    name at any depth. A trailing `/` restricts a pattern to directories.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
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
        # No pattern at all: a walk need not ask.
        self.empty = self._name_dir is None and self._path_dir is None

    def file(self, relative: str, name: str) -> bool:
        return _hit(self._name, name) or _hit(self._path, relative)

    def directory(self, relative: str, name: str) -> bool:
        return _hit(self._name_dir, name) or _hit(self._path_dir, relative)


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL)


def _hit(pattern: re.Pattern[str] | None, text: str) -> bool:
    return pattern is not None and pattern.match(text) is not None

"""Helpers of the hostile-condition tests: what a run leaves in a target, and a
change made just before the engine copies a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hardsnap.providers.backup.target import MARKER
from hardsnap.providers.engine import copying
from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY
from tests.world.files import ODD_NS
from tests.world.trees import DIRECTORY_FLAGS

# More than PATH_MAX (4096) once joined: 30 levels of 200-byte names.
DEEP_LEVELS = 30


DEEP_NAME_LENGTH = 200


def leftovers(target: Path) -> list[str]:
    """hardsnap's work names left in a target (its manifests and owner marker aside)."""
    return sorted(
        name
        for name in os.listdir(target)
        if name.startswith(".hardsnap-") and name not in (MANIFEST_DIRECTORY, MARKER)
    )


def before_copying(monkeypatch: pytest.MonkeyPatch, path: Path, change: Callable[[], None]) -> None:
    """Call `change` each time the engine is about to copy the file at `path`."""
    inode = os.stat(path).st_ino
    original = copying.copy_contents

    def copy_contents(
        source_fd: int, target_fd: int, info: os.stat_result, charge: copying.Charge | None = None
    ) -> int:
        if os.fstat(source_fd).st_ino == inode:
            change()
        return original(source_fd, target_fd, info, charge)

    monkeypatch.setattr(copying, "copy_contents", copy_contents)


def build_deep_tree(source: Path) -> list[bytes]:
    """Nest DEEP_LEVELS directories of DEEP_NAME_LENGTH-byte names, with a
    file every few levels; return the relative path of each directory."""
    directories: list[bytes] = []
    relative = b""
    fd = os.open(source, DIRECTORY_FLAGS)
    try:
        for level in range(DEEP_LEVELS):
            name = f"{level:03d}".encode() + b"d" * (DEEP_NAME_LENGTH - 3)
            os.mkdir(name, 0o755, dir_fd=fd)
            child = os.open(name, DIRECTORY_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            relative += name + b"/"
            directories.append(relative.rstrip(b"/"))
            if level % 10 == 9 or level == DEEP_LEVELS - 1:
                file_fd = os.open("file.txt", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
                os.write(file_fd, f"level {level}".encode())
                os.utime(file_fd, ns=(ODD_NS + level, ODD_NS + level))
                os.close(file_fd)
    finally:
        os.close(fd)
    assert len(directories[-1]) > 4096
    return directories

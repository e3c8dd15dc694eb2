"""On a copy-on-write filesystem, copies are reflinks: a first snapshot of
big files costs almost no new space (XFS with reflink, on a loop mount)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.world.filesystems import xfs_mount
from tests.world.site import empty_site

MIB = 1 << 20


@pytest.fixture
def xfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh XFS filesystem with reflink, loop-mounted under tmp_path."""
    with xfs_mount(tmp_path) as point:
        yield point


def used_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


@pytest.mark.linux_only(reason="reflinks come from copy_file_range")
@pytest.mark.slow
def test_first_snapshot_on_xfs_reflinks_copies_and_uses_almost_no_space(xfs: Path) -> None:
    site = empty_site(xfs, min_free_space=0)
    source = site.source
    block = os.urandom(MIB)
    for index in range(4):
        with open(source / f"big{index}.bin", "wb") as stream:
            for _ in range(32):
                stream.write(block)
    os.sync()
    before = used_bytes(xfs)
    site.write()
    done = site.process("apply")
    assert done.returncode == 0, done
    os.sync()
    snapshot = xfs / "dst" / "2026.088.06.00"
    for index in range(4):
        copy = snapshot / f"big{index}.bin"
        original = source / f"big{index}.bin"
        assert copy.read_bytes() == original.read_bytes()
        assert os.stat(copy).st_ino != os.stat(original).st_ino  # a copy, not a hard link
    # 128 MiB copied; shared extents add only metadata (and the manifest).
    assert used_bytes(xfs) - before < 8 * MIB, (before, used_bytes(xfs))

"""On a copy-on-write filesystem, copies are reflinks: a first snapshot of
big files costs almost no new space (XFS with reflink, on a loop mount)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.world.cli import hardsnap_command
from tests.world.clock import T0
from tests.world.site import write_config

MIB = 1 << 20


@pytest.fixture
def xfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh XFS filesystem with reflink, loop-mounted under tmp_path."""
    if os.geteuid() != 0:
        pytest.skip("a loop mount needs root")
    if shutil.which("mkfs.xfs") is None:
        pytest.skip("mkfs.xfs is not installed (apt-get install xfsprogs)")
    image = tmp_path / "xfs.img"
    with open(image, "wb") as stream:
        stream.truncate(512 * MIB)
    made = subprocess.run(
        ["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"mkfs.xfs refused: {made.stderr.strip()}")
    mount_point = tmp_path / "xfs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"loop mount refused: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def used_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


@pytest.mark.linux_only(reason="reflinks come from copy_file_range")
@pytest.mark.slow
def test_first_snapshot_on_xfs_reflinks_copies_and_uses_almost_no_space(xfs: Path) -> None:
    source = xfs / "src"
    source.mkdir()
    block = os.urandom(MIB)
    for index in range(4):
        with open(source / f"big{index}.bin", "wb") as stream:
            for _ in range(32):
                stream.write(block)
    os.sync()
    before = used_bytes(xfs)
    config = write_config(
        xfs / "hardsnap.yaml",
        {
            "name": "r",
            "type": "backup",
            "source_dir": str(source),
            "target_path": str(xfs / "dst"),
            "min_free_space": 0,
        },
    )
    environment = dict(os.environ, HARDSNAP_NOW=T0, HARDSNAP_STATE_DIR=str(xfs / "state"))
    done = subprocess.run(
        [*hardsnap_command(), "apply", "-c", str(config)],
        capture_output=True,
        text=True,
        env=environment,
    )
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

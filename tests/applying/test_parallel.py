"""Worker processes sharing one queue of directories.

The threshold is lowered so that small trees take the parallel path; each
result is compared with what one walker makes of the same tree."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers.audit.verify import verify_snapshot
from hardsnap.providers.backup.target import MARKER
from hardsnap.providers.engine import copying
from hardsnap.providers.engine import snapshot as snapshot_module
from hardsnap.providers.engine.snapshot import SnapshotFailed
from hardsnap.providers.manifest.format import manifest_path
from hardsnap.providers.manifest.reader import ManifestReader
from tests.world.engine import resource_for, take
from tests.world.files import ODD_NS, make_file

FIRST, SECOND = "2026.088.06.00", "2026.089.06.00"


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry below `root` with its metadata, files with their bytes."""
    found: dict[str, tuple[Any, ...]] = {}
    for directory, directories, files in os.walk(root):
        for name in directories + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            relative = os.path.relpath(path, root)
            content = Path(path).read_bytes() if stat.S_ISREG(info.st_mode) else None
            found[relative] = (info.st_mode, info.st_mtime_ns, info.st_size, content)
    return found


def link_groups(root: Path) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            groups.setdefault(os.lstat(path).st_ino, []).append(os.path.relpath(path, root))
    return sorted(sorted(group) for group in groups.values() if len(group) > 1)


@pytest.fixture
def parallel(monkeypatch: pytest.MonkeyPatch, forks: list[int]) -> list[int]:
    """Share the walk out from the first directory; return the forked pids."""
    monkeypatch.setattr(snapshot_module, "PARALLEL_AFTER_FILES", 0)
    return forks


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for top in range(8):
        for index in range(12):
            make_file(
                root / f"top{top}" / f"sub{index % 3}" / f"f{index}.txt", b"x" * (top + index)
            )
    # Hard-linked names across top-level directories, so across walkers.
    for top in range(7):
        shared = root / f"top{top}" / "shared.bin"
        make_file(shared, b"shared %d" % top)
        os.link(shared, root / f"top{top + 1}" / f"linked-from-{top}.bin")
    make_file(root / "top-level-file", b"root file")
    os.chmod(root / "top3" / "sub1", 0o750)
    os.utime(root / "top5", ns=(ODD_NS, ODD_NS))
    return root


def test_two_walkers_make_the_snapshot_one_walker_makes(
    source: Path, tmp_path: Path, parallel: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, single = tmp_path / "dst", tmp_path / "single"
    take(resource_for(source, target), FIRST, jobs=2)
    take(resource_for(source, single), FIRST, jobs=1)
    for top in range(8):
        make_file(source / f"top{top}" / "sub0" / "f0.txt", b"changed %d" % top)
    for top in range(7):
        # Rewritten in place: both names (in two walkers' shares) change.
        make_file(source / f"top{top}" / "shared.bin", b"rewritten shared %d" % top)
    make_file(source / "top6" / "new.txt", b"new")
    report = take(resource_for(source, target), SECOND, jobs=2)
    assert len(parallel) == 4, "each snapshot is walked by two processes"

    assert tree(target / SECOND) == tree(source)
    assert link_groups(target / SECOND) == link_groups(source)
    unchanged = target / SECOND / "top4" / "sub1" / "f1.txt"
    assert os.lstat(unchanged).st_ino == os.lstat(target / FIRST / "top4/sub1/f1.txt").st_ino

    alone = take(resource_for(source, single), SECOND, jobs=1)
    assert len(parallel) == 4, "jobs=1 walks in one process"
    assert (report.files_copied, report.files_linked, report.bytes_copied) == (
        alone.files_copied,
        alone.files_linked,
        alone.bytes_copied,
    )
    assert sorted(report.skipped) == sorted(alone.skipped)


def test_two_walkers_write_one_whole_manifest(source: Path, tmp_path: Path, parallel: None) -> None:
    target = tmp_path / "dst"
    take(resource_for(source, target), FIRST, jobs=2)
    take(resource_for(source, target), SECOND, jobs=2)
    with ManifestReader(manifest_path(str(target), SECOND)) as manifest:
        paths = {entry.path for _, block in manifest.entries() for entry in block.values()}
        assert manifest.files == len(paths)
    expected = {
        os.path.relpath(os.path.join(directory, name), source)
        for directory, _, files in os.walk(source)
        for name in files
    }
    assert paths == expected
    result = verify_snapshot(str(target), SECOND, content=True)
    assert result.clean, result.findings
    assert not [name for name in os.listdir(target / ".hardsnap-manifests") if "part" in name]


def test_a_failing_worker_fails_the_snapshot_and_leaves_nothing(
    source: Path, tmp_path: Path, parallel: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "dst"
    take(resource_for(source, target), FIRST, jobs=2)
    for top in range(8):  # in both walkers' shares
        make_file(source / f"top{top}" / "sub0" / "f0.txt", b"rewritten %d" % top)
    parent = os.getpid()
    real = copying.copy_contents

    def full_in_the_worker(
        source_fd: int, target_fd: int, info: os.stat_result, charge: copying.Charge | None = None
    ) -> int:
        if os.getpid() != parent:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(source_fd, target_fd, info, charge)

    monkeypatch.setattr(copying, "copy_contents", full_in_the_worker)
    with pytest.raises(SnapshotFailed, match="full"):
        take(resource_for(source, target), SECOND, jobs=2)
    assert sorted(os.listdir(target)) == [".hardsnap-manifests", MARKER, FIRST]
    assert os.listdir(target / ".hardsnap-manifests") == [FIRST], "no worker's share is left"
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no worker left behind, not even a zombie


def test_two_walkers_make_a_first_snapshot_of_a_wide_tree(
    source: Path, tmp_path: Path, parallel: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "dst"
    report = take(resource_for(source, target), FIRST, jobs=2)
    assert len(parallel) == 2, "a first snapshot is walked by two"
    assert tree(target / FIRST) == tree(source)
    assert link_groups(target / FIRST) == link_groups(source)
    assert report.files_copied + report.files_linked == sum(
        len(files) for _, _, files in os.walk(source)
    )
    assert verify_snapshot(str(target), FIRST, content=True).clean


def test_both_walkers_take_linked_files_hashes_from_the_reference_manifest(
    tmp_path: Path, parallel: list[int]
) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    for top in range(100):
        for index in range(12):
            make_file(source / f"top{top:02d}" / f"sub{index % 4}" / f"f{index}", b"%d" % index)
    take(resource_for(source, target), FIRST, jobs=2)
    # Give every file of the reference's manifest a hash no read of the file
    # gives (its hex reversed; same length, so the index still holds).
    path = Path(manifest_path(str(target), FIRST))
    doctored = {}
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines):
        fields = line.split(b"\t")
        if len(fields) == 8:
            fields[6] = fields[6][::-1]
            doctored[fields[7]] = fields[6].decode()
            lines[number] = b"\t".join(fields)
    path.write_bytes(b"\n".join(lines))

    report = take(resource_for(source, target), SECOND, jobs=2)
    assert len(parallel) == 4, "both snapshots are walked by two processes"
    assert report.files_linked == 1200
    with ManifestReader(manifest_path(str(target), SECOND)) as manifest:
        hashes = [entry.sha256 for _, block in manifest.entries() for entry in block.values()]
    assert len(hashes) == 1200
    assert set(hashes) == set(doctored.values()), "linked files were read again for their hash"

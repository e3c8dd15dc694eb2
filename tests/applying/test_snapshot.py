"""The snapshot engine on real trees: what is linked, what is copied, what is kept.

Every test builds a small tree under tmp_path and takes real snapshots with
`providers.backup.take_snapshot`, then looks at inodes and metadata on disk.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers import platform
from hardsnap.providers.backup.naming import is_snapshot_name
from hardsnap.providers.backup.target import PARTIAL_PREFIX, PRUNING_PREFIX
from hardsnap.providers.engine import copying
from hardsnap.providers.engine.snapshot import (
    Excludes,
    SnapshotFailed,
    is_unchanged,
)
from hardsnap.providers.files.capabilities import PROBE
from tests.world.engine import listing, resource_for, take
from tests.world.files import ODD_NS, make_file
from tests.world.users import NOBODY, apply_as_nobody

# An mtime with odd nanoseconds: a float round-trip would lose them.
FIRST = "2026.088.06.00"
SECOND = "2026.089.06.00"
THIRD = "2026.090.06.00"


# -- helpers -------------------------------------------------------------------


def inode(path: Path) -> int:
    return os.lstat(path).st_ino


def relative_tree(root: Path) -> set[str]:
    found = set()
    for directory, directories, files in os.walk(root):
        for name in directories + files:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


@pytest.fixture
def source(tmp_path: Path) -> Path:
    directory = tmp_path / "src"
    directory.mkdir()
    return directory


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "dst"


# -- is_unchanged ----------------------------------------------------------------


def test_is_unchanged_same_size_mtime_and_mode_is_true(tmp_path: Path) -> None:
    a = make_file(tmp_path / "a", b"12345", 0o640)
    b = make_file(tmp_path / "b", b"abcde", 0o640)
    assert is_unchanged(os.stat(a), os.stat(b))


@pytest.mark.parametrize(
    ("data", "mode", "mtime_ns"),
    [
        (b"123456", 0o640, ODD_NS),
        (b"12345", 0o640, ODD_NS + 1),
        (b"12345", 0o600, ODD_NS),
        (b"12345", 0o4640, ODD_NS),
    ],
    ids=["size", "mtime_one_ns_later", "permission_bits", "setuid_bit"],
)
def test_is_unchanged_differing_metadata_is_false(
    tmp_path: Path, data: bytes, mode: int, mtime_ns: int
) -> None:
    source = make_file(tmp_path / "a", b"12345", 0o640)
    reference = make_file(tmp_path / "b", data, mode, mtime_ns)
    assert not is_unchanged(os.stat(source), os.stat(reference))


def test_is_unchanged_reference_directory_is_false(tmp_path: Path) -> None:
    source = make_file(tmp_path / "a", b"", 0o755)
    reference = tmp_path / "d"
    reference.mkdir()
    os.chmod(reference, 0o755)
    os.utime(reference, ns=(ODD_NS, ODD_NS))
    assert not is_unchanged(os.stat(source), os.stat(reference))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_is_unchanged_as_root_owner_or_group_change_is_false(tmp_path: Path) -> None:
    source = make_file(tmp_path / "a", b"x")
    reference = make_file(tmp_path / "b", b"x")
    os.chown(reference, NOBODY, -1)
    os.utime(reference, ns=(ODD_NS, ODD_NS))
    assert not is_unchanged(os.stat(source), os.stat(reference))
    os.chown(reference, 0, NOBODY)
    assert not is_unchanged(os.stat(source), os.stat(reference))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_is_unchanged_not_root_ignores_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_file(tmp_path / "a", b"x")
    reference = make_file(tmp_path / "b", b"x")
    os.chown(reference, NOBODY, NOBODY)
    monkeypatch.setattr(platform, "IS_ROOT", False)
    assert is_unchanged(os.stat(source), os.stat(reference))


# -- Excludes ---------------------------------------------------------------------


def test_excludes_name_pattern_matches_files_at_any_depth() -> None:
    excludes = Excludes(["*.swp"])
    assert excludes.file("top.swp", "top.swp")
    assert excludes.file("a/b/x.swp", "x.swp")
    assert not excludes.file("notes.swp.txt", "notes.swp.txt")
    assert not excludes.file("a/x.txt", "x.txt")


def test_excludes_name_pattern_matches_directories_at_any_depth() -> None:
    excludes = Excludes(["*.swp", "node_modules"])
    assert excludes.directory("dir.swp", "dir.swp")
    assert excludes.directory("a/b/node_modules", "node_modules")
    assert not excludes.directory("a", "a")


def test_excludes_pattern_with_slash_is_anchored_at_the_source_root() -> None:
    excludes = Excludes(["cache/*"])
    assert not excludes.directory("cache", "cache")
    assert excludes.file("cache/c1", "c1")
    assert excludes.directory("cache/sub", "sub")
    assert not excludes.directory("other/cache", "cache")
    assert not excludes.file("other/cache/kept.txt", "kept.txt")
    assert not excludes.file("c1", "c1")


def test_excludes_empty_patterns_match_nothing() -> None:
    excludes = Excludes([])
    assert not excludes.file("a.swp", "a.swp")
    assert not excludes.directory("cache", "cache")


# -- linking and copying ---------------------------------------------------------


def test_second_snapshot_of_unchanged_tree_links_every_file(source: Path, target: Path) -> None:
    make_file(source / "a.txt", b"alpha")
    make_file(source / "sub" / "b.bin", os.urandom(3000), 0o600)
    make_file(source / "sub" / "deeper" / "c", b"", 0o755)
    resource = resource_for(source, target)
    first = take(resource, FIRST)
    second = take(resource, SECOND)
    assert (first.files_copied, first.files_linked) == (3, 0)
    assert (second.files_copied, second.files_linked, second.bytes_copied) == (0, 3, 0)
    for relative in ("a.txt", "sub/b.bin", "sub/deeper/c"):
        assert inode(target / FIRST / relative) == inode(target / SECOND / relative), relative
        assert inode(target / SECOND / relative) != inode(source / relative), relative


def test_snapshot_links_against_the_newest_snapshot(source: Path, target: Path) -> None:
    make_file(source / "a.txt", b"one")
    resource = resource_for(source, target)
    take(resource, FIRST)
    make_file(source / "a.txt", b"two", mtime_ns=ODD_NS + 1)
    take(resource, SECOND)
    take(resource, THIRD)
    assert inode(target / SECOND / "a.txt") == inode(target / THIRD / "a.txt")
    assert inode(target / FIRST / "a.txt") != inode(target / THIRD / "a.txt")
    assert (target / THIRD / "a.txt").read_bytes() == b"two"


def _grow(path: Path) -> None:
    make_file(path, b"data!", 0o644)


def _touch_one_ns(path: Path) -> None:
    os.utime(path, ns=(ODD_NS, ODD_NS + 1))


def _chmod(path: Path) -> None:
    os.chmod(path, 0o600)


def _chown(path: Path) -> None:
    os.chown(path, NOBODY, NOBODY)


@pytest.mark.parametrize(
    "change",
    [
        _grow,
        _touch_one_ns,
        _chmod,
        pytest.param(
            _chown,
            marks=pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root"),
        ),
    ],
    ids=["size", "mtime_ns", "mode", "owner"],
)
def test_changed_file_is_copied_not_linked(
    source: Path, target: Path, change: Callable[[Path], None]
) -> None:
    make_file(source / "changed", b"data", 0o644)
    make_file(source / "same", b"same", 0o644)
    resource = resource_for(source, target)
    take(resource, FIRST)
    change(source / "changed")
    report = take(resource, SECOND)
    assert (report.files_copied, report.files_linked) == (1, 1)
    assert inode(target / SECOND / "changed") != inode(target / FIRST / "changed")
    assert inode(target / SECOND / "same") == inode(target / FIRST / "same")
    copied = os.lstat(target / SECOND / "changed")
    original = os.lstat(source / "changed")
    assert copied.st_mtime_ns == original.st_mtime_ns
    assert stat.S_IMODE(copied.st_mode) == stat.S_IMODE(original.st_mode)
    assert (copied.st_uid, copied.st_gid) == (original.st_uid, original.st_gid)
    assert (target / SECOND / "changed").read_bytes() == (source / "changed").read_bytes()


def test_copy_keeps_content_odd_ns_mtime_and_permission_bits(source: Path, target: Path) -> None:
    files = {
        "exec.sh": (b"#!/bin/sh\necho hi\n", 0o755),
        "secret.key": (b"k" * 100, 0o600),
        "ro.txt": (b"read only\n", 0o444),
        "empty.bin": (b"", 0o640),
        "sticky": (b"s", 0o1644),
        "a/b/deep.dat": (os.urandom(70000), 0o644),
    }
    for index, (relative, (data, mode)) in enumerate(files.items()):
        make_file(source / relative, data, mode, ODD_NS + index)
    take(resource_for(source, target), FIRST)
    for index, (relative, (data, mode)) in enumerate(files.items()):
        copy = target / FIRST / relative
        info = os.lstat(copy)
        assert copy.read_bytes() == data, relative
        assert info.st_mtime_ns == ODD_NS + index, relative
        assert stat.S_IMODE(info.st_mode) == mode, relative
        assert stat.S_ISREG(info.st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_copy_as_root_keeps_owner_and_group(source: Path, target: Path) -> None:
    make_file(source / "theirs", b"x", 0o4755)
    os.chown(source / "theirs", NOBODY, NOBODY)
    # chown clears setuid: set it again so the order owner-then-mode is tested.
    os.chmod(source / "theirs", 0o4755)
    os.utime(source / "theirs", ns=(ODD_NS, ODD_NS))
    take(resource_for(source, target), FIRST)
    info = os.lstat(target / FIRST / "theirs")
    assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY)
    assert stat.S_IMODE(info.st_mode) == 0o4755
    assert info.st_mtime_ns == ODD_NS


def test_directories_keep_mode_and_mtime_and_empty_ones_are_kept(
    source: Path, target: Path
) -> None:
    make_file(source / "priv" / "p.txt", b"p")
    make_file(source / "ro" / "r.txt", b"in a read-only dir", 0o444)
    (source / "empty").mkdir()
    (source / "a" / "b").mkdir(parents=True)
    modes = {"priv": 0o750, "ro": 0o555, "empty": 0o700, "a": 0o711, "a/b": 0o2775}
    for relative, mode in modes.items():
        os.chmod(source / relative, mode)
    for index, relative in enumerate(["a/b", "a", "priv", "ro", "empty"]):
        os.utime(source / relative, ns=(ODD_NS + index, ODD_NS + index))
    os.utime(source, ns=(ODD_NS + 50, ODD_NS + 50))
    resource = resource_for(source, target)
    take(resource, FIRST)
    take(resource, SECOND)
    for name in (FIRST, SECOND):
        snapshot = target / name
        for relative, mode in modes.items():
            info = os.lstat(snapshot / relative)
            assert stat.S_ISDIR(info.st_mode), relative
            assert stat.S_IMODE(info.st_mode) == mode, (name, relative)
            assert info.st_mtime_ns == os.lstat(source / relative).st_mtime_ns, (name, relative)
        assert os.listdir(snapshot / "empty") == []
        assert (snapshot / "ro" / "r.txt").read_bytes() == b"in a read-only dir"
        assert os.lstat(snapshot).st_mtime_ns == ODD_NS + 50
    assert inode(target / FIRST / "ro" / "r.txt") == inode(target / SECOND / "ro" / "r.txt")


def test_symlinks_fifos_and_sockets_are_skipped_not_followed(
    source: Path, target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    make_file(outside / "leak.txt", b"must not be copied")
    make_file(source / "real.txt", b"real")
    os.symlink("real.txt", source / "link-to-file")
    os.symlink(outside, source / "link-to-dir")
    os.symlink("/nonexistent/target", source / "dangling")
    os.mkfifo(source / "fifo")
    monkeypatch.chdir(source)  # AF_UNIX paths are short: bind a relative name
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind("sock")
    finally:
        server.close()
    report = take(resource_for(source, target), FIRST)
    assert relative_tree(target / FIRST) == {"real.txt"}
    skipped = {skip.path: skip.reason for skip in report.skipped}
    assert set(skipped) == {"link-to-file", "link-to-dir", "dangling", "fifo", "sock"}
    assert all("not copied" in reason for reason in skipped.values())
    assert "symlink" in skipped["link-to-dir"]
    assert (report.files_copied, report.files_linked) == (1, 0)


# -- excludes on a real tree -----------------------------------------------------------


def test_exclude_patterns_skip_swp_anywhere_and_cache_contents_at_root(
    source: Path, target: Path
) -> None:
    make_file(source / "keep.txt", b"k")
    make_file(source / "top.swp", b"s")
    make_file(source / "a" / "b" / "x.swp", b"s")
    make_file(source / "a" / "b" / "x.txt", b"t")
    make_file(source / "notes.swp.txt", b"not excluded")
    make_file(source / "dir.swp" / "inside.txt", b"a directory matched by *.swp")
    make_file(source / "cache" / "c1", b"c")
    make_file(source / "cache" / "sub" / "c2", b"c")
    make_file(source / "other" / "cache" / "kept.txt", b"cache/* is anchored at the root")
    resource = resource_for(source, target, exclude=("*.swp", "cache/*"))
    report = take(resource, FIRST)
    assert relative_tree(target / FIRST) == {
        "keep.txt",
        "notes.swp.txt",
        "a",
        "a/b",
        "a/b/x.txt",
        "cache",
        "other",
        "other/cache",
        "other/cache/kept.txt",
    }
    assert (target / FIRST / "cache").is_dir()
    assert report.files_copied == 4
    # Excluded entries are not "skips": nothing unreadable happened.
    assert report.skipped == []


# -- target inside source ----------------------------------------------------------------


def test_target_inside_source_is_never_walked(source: Path) -> None:
    make_file(source / "a.txt", b"a")
    make_file(source / "sub" / "b.txt", b"b")
    target = source / "backups"
    resource = resource_for(source, target)
    take(resource, FIRST)
    report = take(resource, SECOND)
    for name in (FIRST, SECOND):
        assert relative_tree(target / name) == {"a.txt", "sub", "sub/b.txt"}
    assert (report.files_copied, report.files_linked) == (0, 2)


def test_target_inside_source_reached_through_symlink_is_skipped(
    source: Path, tmp_path: Path
) -> None:
    make_file(source / "a.txt", b"a")
    (source / "backups").mkdir()
    alias = tmp_path / "alias"
    os.symlink(source / "backups", alias)
    resource = resource_for(source, alias)
    take(resource, FIRST)
    take(resource, SECOND)
    assert relative_tree(source / "backups" / SECOND) == {"a.txt"}


# -- report ---------------------------------------------------------------------------


def test_report_counts_copies_links_bytes_and_skips(source: Path, target: Path) -> None:
    make_file(source / "a", b"x" * 1000)
    make_file(source / "b", b"y" * 234)
    make_file(source / "d" / "c", b"z" * 10)
    os.symlink("a", source / "link")
    resource = resource_for(source, target)
    first = take(resource, FIRST)
    assert (first.files_copied, first.files_linked, first.bytes_copied) == (3, 0, 1244)
    assert [skip.path for skip in first.skipped] == ["link"]
    make_file(source / "b", b"Y" * 500)
    second = take(resource, SECOND)
    assert (second.files_copied, second.files_linked, second.bytes_copied) == (1, 2, 500)
    assert len(second.skipped) == 1


def test_copy_every_file_when_linking_is_off(source: Path, target: Path) -> None:
    """Without link_unchanged (cross_fs copy), nothing is linked even if unchanged."""
    from hardsnap.providers.engine.snapshot import Walk

    make_file(source / "a", b"x")
    take(resource_for(source, target), FIRST)
    walk = Walk(Excludes([]), link_unchanged=False, min_free_space=0, skip_identity=None)
    source_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    reference_fd = os.open(target / FIRST, os.O_RDONLY | os.O_DIRECTORY)
    try:
        walk.run(source_fd, reference_fd, None)
    finally:
        os.close(source_fd)
        os.close(reference_fd)
    assert (walk.report.files_copied, walk.report.files_linked) == (1, 0)


# -- failures leave no snapshot-named directory ---------------------------------------------


def _fail_on_second_copy(
    monkeypatch: pytest.MonkeyPatch, target: Path, error: BaseException, seen: list[set[str]]
) -> None:
    real = copying.copy_contents
    calls = []

    def copy_contents(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 2:
            seen.append(set(listing(target)))
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(copying, "copy_contents", copy_contents)


def test_failed_walk_leaves_no_snapshot_dir_and_removes_partial_work(
    source: Path, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(source / "a", b"a")
    resource = resource_for(source, target)
    take(resource, FIRST)
    before = {
        path: os.lstat(target / FIRST / path).st_ino for path in relative_tree(target / FIRST)
    }
    make_file(source / "a", b"changed")
    make_file(source / "b", b"new")
    make_file(source / "ro" / "c", b"in a read-only dir", 0o444)
    os.chmod(source / "ro", 0o555)
    seen: list[set[str]] = []
    _fail_on_second_copy(monkeypatch, target, OSError(errno.EBADF, "injected failure"), seen)
    with pytest.raises(SnapshotFailed, match="partial snapshot removed"):
        take(resource, SECOND)
    # While the walk ran, the work lived under a name that is not a snapshot name.
    assert SECOND not in seen[0]
    assert any(name.startswith(PARTIAL_PREFIX) for name in seen[0])
    assert set(listing(target)) == {FIRST}
    after = {path: inode(target / FIRST / path) for path in relative_tree(target / FIRST)}
    assert after == before
    assert (target / FIRST / "a").read_bytes() == b"a"


def test_interrupted_walk_keeps_partial_work_under_its_work_name_and_reraises(
    source: Path, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(source / "a", b"a")
    make_file(source / "b", b"b")
    seen: list[set[str]] = []
    _fail_on_second_copy(monkeypatch, target, KeyboardInterrupt(), seen)
    with pytest.raises(KeyboardInterrupt):
        take(resource_for(source, target), FIRST)
    # Kept for the next apply to resume, never under a snapshot name.
    assert set(listing(target)) == {PARTIAL_PREFIX + FIRST}
    assert not any(is_snapshot_name(name) for name in seen[0])
    monkeypatch.undo()
    report = take(resource_for(source, target), FIRST)
    assert set(listing(target)) == {FIRST}
    assert report.files_kept == 1
    assert relative_tree(target / FIRST) == {"a", "b"}


def test_leftover_partials_are_resumed_or_removed_and_the_rest_left_alone(
    source: Path, target: Path
) -> None:
    make_file(source / "a", b"a")
    older = target / (PARTIAL_PREFIX + "2026.086.06.00")
    make_file(older / "stale.txt", b"stale")
    partial = target / (PARTIAL_PREFIX + "2026.087.06.00")
    make_file(partial / "ro" / "half.txt", b"half", 0o444)
    make_file(partial / "a", b"half-written")
    os.chmod(partial / "ro", 0o555)
    # A half-pruned snapshot is the prune action's to finish, not the snapshot's.
    pruning = target / (PRUNING_PREFIX + "2026.001.06.00")
    make_file(pruning / "old.txt", b"old")
    make_file(target / "foreign.txt", b"not ours")
    take(resource_for(source, target), FIRST)
    assert set(listing(target)) == {FIRST, "foreign.txt", PRUNING_PREFIX + "2026.001.06.00"}
    assert relative_tree(target / FIRST) == {"a"}
    assert (target / FIRST / "a").read_bytes() == b"a"


def test_snapshot_name_that_already_exists_is_refused_untouched(source: Path, target: Path) -> None:
    make_file(source / "a", b"a")
    resource = resource_for(source, target)
    take(resource, FIRST)
    make_file(source / "a", b"changed")
    with pytest.raises(SnapshotFailed):
        take(resource, FIRST)
    assert (target / FIRST / "a").read_bytes() == b"a"
    assert set(listing(target)) == {FIRST}


def test_link_failing_with_emlink_falls_back_to_copy(
    source: Path, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(source / "full", b"too many links", 0o640)
    make_file(source / "fine", b"ok")
    resource = resource_for(source, target)
    take(resource, FIRST)
    real_link = os.link

    def link(src: Any, dst: Any, **kwargs: Any) -> None:
        if os.fsdecode(src) == "full":
            raise OSError(errno.EMLINK, os.strerror(errno.EMLINK))
        real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", link)
    report = take(resource, SECOND)
    assert (report.files_copied, report.files_linked, report.bytes_copied) == (1, 1, 14)
    assert inode(target / SECOND / "full") != inode(target / FIRST / "full")
    assert inode(target / SECOND / "fine") == inode(target / FIRST / "fine")
    copy = os.lstat(target / SECOND / "full")
    assert (target / SECOND / "full").read_bytes() == b"too many links"
    assert copy.st_mtime_ns == ODD_NS
    assert stat.S_IMODE(copy.st_mode) == 0o640


def links_fail(monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    """Every hard link fails with `error`, but the probe's (the target can hold them)."""
    real_link = os.link

    def link(src: Any, dst: Any, **kwargs: Any) -> None:
        if os.fsdecode(src).startswith(PROBE):
            return real_link(src, dst, **kwargs)
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, "link", link)


@pytest.mark.parametrize("error", [errno.EPERM, errno.EACCES, errno.EXDEV, errno.EINVAL])
def test_link_failing_for_any_other_reason_falls_back_to_a_copy_reported_once(
    source: Path, target: Path, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    make_file(source / "a", b"a")
    make_file(source / "b", b"b")
    resource = resource_for(source, target)
    take(resource, FIRST)

    links_fail(monkeypatch, error)
    report = take(resource, SECOND)
    assert set(listing(target)) == {FIRST, SECOND}
    assert (report.files_copied, report.files_linked) == (2, 0)
    assert report.link_failures == 2
    assert inode(target / SECOND / "a") != inode(target / FIRST / "a")


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO])
def test_link_failing_for_want_of_space_or_a_broken_disk_fails_the_snapshot(
    source: Path, target: Path, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    make_file(source / "a", b"a")
    resource = resource_for(source, target)
    take(resource, FIRST)

    links_fail(monkeypatch, error)
    with pytest.raises(SnapshotFailed):
        take(resource, SECOND)
    assert set(listing(target)) == {FIRST}


# -- unreadable entries (run as nobody: root reads everything) ----------------------------------


def test_unreadable_file_and_directory_are_reported_and_run_completes(nobody_dir: Path) -> None:
    source = nobody_dir / "src"
    make_file(source / "ok.txt", b"readable")
    make_file(source / "open" / "inner.txt", b"readable too")
    make_file(source / "secret.txt", b"unreadable", 0o000)
    make_file(source / "locked" / "hidden.txt", b"behind a mode 000 directory")
    outcome = apply_as_nobody(nobody_dir, {source / "locked": 0o000})
    stderr = outcome.stderr
    assert outcome.returncode == 0, outcome
    snapshot = nobody_dir / "dst" / FIRST
    assert relative_tree(snapshot) == {"ok.txt", "open", "open/inner.txt"}, outcome
    assert "secret.txt" in stderr, outcome
    assert "locked" in stderr, outcome

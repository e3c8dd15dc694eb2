"""Hostile conditions, provoked for real: files that move under the walk,
hostile names and trees, symlinks swapped in, secrets, and fidelity of what
a snapshot keeps (issue #3, promises 3, 5, 6 and 7).

Trees are small and live under tmp_path. Faults are injected by wrapping the
engine's own steps (`providers.copying.copy_contents`, `Placer.file`, `Walker.enter`)
so each race happens at one exact moment. Most tests drive the real CLI
in-process; the unreadable-entry test runs it as nobody in a subprocess.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers.backup import effects as backup
from hardsnap.providers.backup.naming import is_snapshot_name
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.backup.target import MARKER
from hardsnap.providers.engine import copying
from hardsnap.providers.engine.directories import Walker
from hardsnap.providers.engine.placing import Placer
from hardsnap.providers.engine.snapshot import Walk
from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY
from tests.world.cli import Cli, Finished
from tests.world.site import write_config
from tests.world.users import hand_to_nobody, run_as_nobody

START = dt.datetime(2026, 3, 29, 6, 0, tzinfo=dt.UTC)  # T0
ODD_NS = 1_700_000_000_123_456_789
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# More than PATH_MAX (4096) once joined: 30 levels of 200-byte names.
DEEP_LEVELS = 30
DEEP_NAME_LENGTH = 200


# -- helpers -------------------------------------------------------------------


def iso(day: int) -> str:
    return (START + dt.timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")


def name_of(day: int) -> str:
    return (START + dt.timedelta(days=day)).strftime("%Y.%j.%H.%M")


def make_file(path: Path, data: bytes, mode: int = 0o644, mtime_ns: int = ODD_NS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def rewrite(path: Path, data: bytes, mtime_ns: int) -> None:
    """Change a file in place (same inode, as a writer would), size and mtime."""
    with open(path, "r+b") as handle:
        handle.truncate(0)
        handle.write(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


@dataclass(frozen=True)
class Node:
    """One entry of a tree, as a restore would have to reproduce it."""

    kind: str
    mode: int
    mtime_ns: int
    uid: int
    gid: int
    # sha256 of a file's content, the target of a symlink, None for a directory.
    data: bytes | None
    xattrs: tuple[tuple[str, bytes], ...]
    inode: int = field(compare=False)
    links: int = field(compare=False)


def _xattrs(fd: int) -> tuple[tuple[str, bytes], ...]:
    if not hasattr(os, "listxattr"):  # the masked platform run
        return ()
    try:
        names = os.listxattr(fd)
    except OSError:
        return ()
    return tuple(sorted((name, os.getxattr(fd, name)) for name in names))


def _node(kind: str, info: os.stat_result, data: bytes | None, fd: int | None) -> Node:
    return Node(
        kind,
        stat.S_IMODE(info.st_mode),
        info.st_mtime_ns,
        info.st_uid,
        info.st_gid,
        data,
        _xattrs(fd) if fd is not None else (),
        info.st_ino,
        info.st_nlink,
    )


def _digest(fd: int) -> bytes:
    hasher = hashlib.sha256()
    while block := os.read(fd, 1 << 20):
        hasher.update(block)
    return hasher.digest()


def tree(root: Path) -> dict[bytes, Node]:
    """Every entry below `root` (and `root` itself as b"."), keyed by its
    relative path as bytes. Walks with directory descriptors and O_NOFOLLOW,
    so it works beyond PATH_MAX and never follows a symlink."""
    found: dict[bytes, Node] = {}
    top = os.open(root, DIRECTORY_FLAGS)
    try:
        found[b"."] = _node("dir", os.fstat(top), None, top)
        _tree_below(top, b"", found)
    finally:
        os.close(top)
    return found


def _tree_below(directory_fd: int, prefix: bytes, found: dict[bytes, Node]) -> None:
    with os.scandir(directory_fd) as entries:
        names = sorted(os.fsencode(entry.name) for entry in entries)
    for name in names:
        relative = prefix + name
        info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            child = os.open(name, DIRECTORY_FLAGS, dir_fd=directory_fd)
            try:
                found[relative] = _node("dir", info, None, child)
                _tree_below(child, relative + b"/", found)
            finally:
                os.close(child)
        elif stat.S_ISREG(info.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory_fd)
            try:
                found[relative] = _node("file", info, _digest(fd), fd)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(info.st_mode):
            found[relative] = _node("symlink", info, os.readlink(name, dir_fd=directory_fd), None)
        else:
            found[relative] = _node("special", info, None, None)


def files_of(nodes: dict[bytes, Node]) -> dict[bytes, Node]:
    return {path: node for path, node in nodes.items() if node.kind == "file"}


def snapshot_names(target: Path) -> list[str]:
    """Snapshot-named real directories in `target` (not symlinks)."""
    if not target.is_dir():
        return []
    return sorted(
        name
        for name in os.listdir(target)
        if is_snapshot_name(name) and stat.S_ISDIR(os.lstat(target / name).st_mode)
    )


def leftovers(target: Path) -> list[str]:
    """hardsnap's work names left in a target (its manifests and owner marker aside)."""
    return sorted(
        name
        for name in os.listdir(target)
        if name.startswith(".hardsnap-") and name not in (MANIFEST_DIRECTORY, MARKER)
    )


def snapshot_action(document: dict[str, Any]) -> dict[str, Any]:
    for action in document["resources"][0]["actions"]:
        if action["kind"] == "snapshot":
            found: dict[str, Any] = action
            return found
    raise AssertionError(f"no snapshot action in {document}")


def skipped_paths(document: dict[str, Any]) -> dict[str, str]:
    return {path_of(skip): skip["reason"] for skip in snapshot_action(document)["skipped"]}


def path_of(entry: dict[str, Any]) -> str:
    """An entry's path, one that is not UTF-8 read back from `path_base64`."""
    if "path_base64" in entry:
        return os.fsdecode(base64.b64decode(entry["path_base64"]))
    return str(entry["path"])


@dataclass
class Site:
    """One resource's source, target and config under tmp_path."""

    root: Path
    source: Path
    target: Path
    config: Path

    def write(self, **overrides: Any) -> Path:
        values: dict[str, Any] = {
            "name": "r",
            "type": "backup",
            "source_dir": str(self.source),
            "target_path": str(self.target),
            "min_free_space": 0,
        }
        values.update(overrides)
        return write_config(self.config, values)

    def apply(self, cli: Cli, day: int = 0) -> tuple[Finished, dict[str, Any]]:
        """Apply on `day` (days after T0), expecting success; return the
        outcome and its JSON document."""
        outcome = cli("apply", "-c", self.config, "--json", now=iso(day))
        assert outcome.returncode == 0, outcome
        assert "Traceback" not in outcome.stderr, outcome
        return outcome, outcome.json()

    def snapshot(self, day: int = 0) -> Path:
        return Path(os.path.realpath(self.target)) / name_of(day)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    source = tmp_path / "src"
    source.mkdir()
    return Site(tmp_path, source, tmp_path / "dst", tmp_path / "hardsnap.yaml")


def xattrs_supported(path: Path) -> None:
    """Skip the test when the filesystem refuses user.* extended attributes."""
    if not hasattr(os, "setxattr"):
        pytest.skip("Linux only: xattr calls (the masked platform run)")
    probe = path / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(f"filesystem of {path} refuses user.* xattrs: {error.strerror}")
        raise
    finally:
        probe.unlink()


# -- promise 3: files that move under us ----------------------------------------------


def test_file_changed_while_copied_is_copied_again_and_snapshot_holds_new_content(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "steady.txt", b"steady")
    growing = make_file(site.source / "growing.log", b"first version")
    growing_inode = os.stat(growing).st_ino
    new_mtime = ODD_NS + 86_400 * 10**9 + 7
    original = copying.copy_contents
    attempts: list[int] = []

    def changing_once(
        source_fd: int, target_fd: int, info: os.stat_result, charge: copying.Charge | None = None
    ) -> int:
        if os.fstat(source_fd).st_ino == growing_inode:
            attempts.append(1)
            if len(attempts) == 1:
                rewrite(growing, b"second version, longer than the first", new_mtime)
        return original(source_fd, target_fd, info, charge)

    monkeypatch.setattr(copying, "copy_contents", changing_once)
    site.write()
    outcome, document = site.apply(cli)

    copy = site.snapshot() / "growing.log"
    assert len(attempts) == 2, "a file that changed during its copy must be copied again"
    assert copy.read_bytes() == b"second version, longer than the first"
    assert os.stat(copy).st_mtime_ns == new_mtime
    assert (site.snapshot() / "steady.txt").read_bytes() == b"steady"
    assert snapshot_action(document)["unstable"] == []
    assert "kept changing" not in outcome.stderr


def test_file_changing_on_every_copy_is_reported_unstable_and_next_run_copies_it_afresh(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "steady.txt", b"steady")
    hot = make_file(site.source / "hot.log", b"v0")
    hot_inode = os.stat(hot).st_ino
    original = copying.copy_contents
    versions: list[bytes] = []

    def changing_always(
        source_fd: int, target_fd: int, info: os.stat_result, charge: copying.Charge | None = None
    ) -> int:
        if os.fstat(source_fd).st_ino == hot_inode:
            version = f"version {len(versions) + 1} ".encode() * (len(versions) + 2)
            versions.append(version)
            rewrite(hot, version, ODD_NS + len(versions) * 10**9)
        return original(source_fd, target_fd, info, charge)

    monkeypatch.setattr(copying, "copy_contents", changing_always)
    site.write()
    outcome, document = site.apply(cli)

    assert document["resources"][0]["result"] == "changed"
    assert snapshot_action(document)["unstable"] == ["hot.log"]
    assert "hot.log kept changing" in outcome.stderr
    assert snapshot_names(site.target) == [name_of(0)]
    # The last copy went as far as the size the file had when it began
    # (the version before), with what the file held by then.
    assert (site.snapshot() / "hot.log").read_bytes() == versions[-1][: len(versions[-2])]
    assert (site.snapshot() / "steady.txt").read_bytes() == b"steady"

    # The file settles: the next snapshot must hold its real content, not a
    # link to the copy that was taken while it moved.
    monkeypatch.setattr(copying, "copy_contents", original)
    site.apply(cli, day=1)
    settled = site.snapshot(1) / "hot.log"
    assert settled.read_bytes() == hot.read_bytes()
    assert os.stat(settled).st_mtime_ns == os.stat(hot).st_mtime_ns
    assert os.stat(settled).st_ino != os.stat(site.snapshot() / "hot.log").st_ino


def test_take_snapshot_reports_a_file_changing_on_every_copy_in_unstable(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    hot = make_file(site.source / "hot.log", b"v0")
    original = copying.copy_contents
    counter = [0]

    def changing_always(
        source_fd: int, target_fd: int, info: os.stat_result, charge: copying.Charge | None = None
    ) -> int:
        counter[0] += 1
        rewrite(hot, b"x" * counter[0], ODD_NS + counter[0])
        return original(source_fd, target_fd, info, charge)

    monkeypatch.setattr(copying, "copy_contents", changing_always)
    resource = Resource(
        name="r", source_dir=str(site.source), target_path=str(site.target), min_free_space=0
    )
    report = backup.take_snapshot(resource, name_of(0), str(site.target))
    assert report.unstable == ["hot.log"]
    assert report.files_copied == 1
    assert (site.target / name_of(0) / "hot.log").is_file()


def test_file_vanishing_between_listing_and_copying_is_skipped_with_reason_not_fatal(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "kept.txt", b"kept")
    doomed = make_file(site.source / "doomed.txt", b"about to vanish")
    original = Placer.file

    def deleting_first(
        self: Placer, name: str, relative: str, info: os.stat_result, frame: Any
    ) -> None:
        if relative == "doomed.txt":
            doomed.unlink()
        original(self, name, relative, info, frame)

    monkeypatch.setattr(Placer, "file", deleting_first)
    site.write()
    outcome, document = site.apply(cli)

    skipped = skipped_paths(document)
    assert "vanished" in skipped["doomed.txt"]
    assert sorted(os.listdir(site.snapshot())) == ["kept.txt"]
    assert "doomed.txt" in outcome.stderr
    assert snapshot_action(document)["files_copied"] == 1


def test_files_vanishing_after_their_directory_was_listed_are_skipped_with_reason(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = site.source / "batch"
    names = [f"file{index}.txt" for index in range(6)]
    for name in names:
        make_file(batch / name, name.encode())
    original = Placer.file
    seen: list[str] = []
    deleted: list[str] = []

    def deleting_siblings(
        self: Placer, name: str, relative: str, info: os.stat_result, frame: Any
    ) -> None:
        # The first file handled in batch/ removes every sibling not yet
        # handled: they were listed, but are gone before they are read.
        if relative.startswith("batch/"):
            seen.append(name)
            if len(seen) == 1:
                for other in names:
                    if other != name:
                        (batch / other).unlink()
                        deleted.append(other)
        original(self, name, relative, info, frame)

    monkeypatch.setattr(Placer, "file", deleting_siblings)
    site.write()
    _, document = site.apply(cli)

    skipped = skipped_paths(document)
    assert len(deleted) == 5
    for name in deleted:
        assert "vanished" in skipped[f"batch/{name}"], skipped
    assert os.listdir(site.snapshot() / "batch") == [seen[0]]


def test_directory_vanishing_between_listing_and_entering_is_skipped_with_reason(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "kept" / "a.txt", b"a")
    make_file(site.source / "gone" / "deep" / "b.txt", b"b")
    original = Walker.enter

    def removing_first(self: Walker, parent: Any, name: str) -> Any:
        if parent.prefix + name == "gone":
            shutil.rmtree(site.source / "gone")
        return original(self, parent, name)

    monkeypatch.setattr(Walker, "enter", removing_first)
    site.write()
    outcome, document = site.apply(cli)

    assert "vanished" in skipped_paths(document)["gone"]
    assert sorted(os.listdir(site.snapshot())) == ["kept"]
    assert (site.snapshot() / "kept" / "a.txt").read_bytes() == b"a"
    assert "gone" in outcome.stderr


def test_file_swapped_for_symlink_before_copy_is_not_followed_and_is_reported(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = make_file(site.root / "outside" / "secret.txt", b"OUTSIDE SECRET")
    swapped = make_file(site.source / "swap.txt", b"innocent")
    make_file(site.source / "kept.txt", b"kept")
    original = Placer.file

    def swapping(self: Placer, name: str, relative: str, info: os.stat_result, frame: Any) -> None:
        if relative == "swap.txt":
            swapped.unlink()
            swapped.symlink_to(outside)
        original(self, name, relative, info, frame)

    monkeypatch.setattr(Placer, "file", swapping)
    site.write()
    _, document = site.apply(cli)

    assert "swap.txt" in skipped_paths(document)
    for node in files_of(tree(site.snapshot())).values():
        assert node.data != hashlib.sha256(b"OUTSIDE SECRET").digest()
    assert not (site.snapshot() / "swap.txt").exists()
    assert os.stat(outside).st_nlink == 1


def test_directory_swapped_for_symlink_before_entering_is_not_followed(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = site.root / "outside"
    make_file(outside / "secret.txt", b"OUTSIDE SECRET")
    make_file(site.source / "sub" / "inner.txt", b"inner")
    make_file(site.source / "kept.txt", b"kept")
    original = Walker.enter

    def swapping(self: Walker, parent: Any, name: str) -> Any:
        if parent.prefix + name == "sub":
            (site.source / "sub").rename(site.root / "moved-away")
            (site.source / "sub").symlink_to(outside)
        return original(self, parent, name)

    monkeypatch.setattr(Walker, "enter", swapping)
    site.write()
    _, document = site.apply(cli)

    assert "sub" in skipped_paths(document)
    assert not (site.snapshot() / "sub" / "secret.txt").exists()
    assert os.stat(outside / "secret.txt").st_nlink == 1


def test_unreadable_files_and_directories_are_reported_by_path_and_run_completes(
    nobody_dir: Path,
) -> None:
    source = nobody_dir / "src"
    make_file(source / "ok.txt", b"readable")
    make_file(source / "open" / "inner.txt", b"readable too")
    make_file(source / "secret.txt", b"mode 000", 0o000)
    make_file(source / "write-only.txt", b"mode 200", 0o200)
    make_file(source / "locked" / "hidden.txt", b"behind a mode 000 directory")
    make_file(source / "search-only" / "hidden.txt", b"behind a mode 111 directory")
    make_file(source / "list-only" / "listed.txt", b"behind a mode 444 directory")
    hostile = os.path.join(os.fsencode(source), b"open", b"bad-\xff\nname")
    make_file(Path(os.fsdecode(hostile)), b"unreadable, hostile name", 0o000)
    target = nobody_dir / "dst"
    state = nobody_dir / "state"
    target.mkdir()
    state.mkdir()
    hand_to_nobody(nobody_dir)
    os.chmod(source / "locked", 0o000)
    os.chmod(source / "search-only", 0o111)
    os.chmod(source / "list-only", 0o444)
    config = write_config(
        nobody_dir / "hardsnap.yaml",
        {"name": "r", "type": "backup", "source_dir": str(source), "target_path": str(target)},
    )
    os.chmod(config, 0o644)
    completed = run_as_nobody(["apply", "--json", "-c", str(config)], nobody_dir, state)
    stdout = completed.stdout.decode("utf-8", "replace")
    stderr = completed.stderr.decode("utf-8", "replace")
    outcome = f"exit {completed.returncode}\n{stdout}\n{stderr}"
    assert completed.returncode == 0, outcome
    assert "Traceback" not in stderr, outcome
    document = json.loads(stdout)
    skipped = skipped_paths(document)
    for path in ("secret.txt", "write-only.txt", "locked", "search-only", "list-only/listed.txt"):
        assert path in skipped, outcome
        assert "ermission denied" in skipped[path], outcome
        assert path in stderr, outcome
    assert os.fsdecode(b"open/bad-\xff\nname") in skipped, outcome
    snapshot = target / name_of(0)
    assert (snapshot / "ok.txt").read_bytes() == b"readable"
    assert (snapshot / "open" / "inner.txt").read_bytes() == b"readable too"
    assert not (snapshot / "secret.txt").exists()
    assert not (snapshot / "locked").exists()
    assert leftovers(target) == []


# -- promise 5: hostile trees ----------------------------------------------------------

HOSTILE_NAMES = [
    b"new\nline",
    b" spaces  around ",
    b"-rf",
    b"--help",
    b"*?[",
    b"[a-z]*",
    b"bad-utf8-\xff\xfe",
    b"latin1-\xe9t\xe9",
    b"tab\there",
    b"back\\slash",
    b"quote'\"",
    b"$(touch pwned)",
    b"\xc3\x28",
]


def build_hostile_tree(source: Path) -> None:
    base = os.fsencode(source)
    for index, name in enumerate(HOSTILE_NAMES):
        path = os.path.join(base, name)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(descriptor, b"content of " + name)
        os.close(descriptor)
        os.utime(path, ns=(ODD_NS + index, ODD_NS + index))
    directory = os.path.join(base, b"-dir\n\xff*?[")
    os.mkdir(directory)
    for name in (b"--", b"\n", b"\xff"):
        path = os.path.join(directory, name)
        with open(path, "wb") as handle:
            handle.write(b"nested " + name)
        os.utime(path, ns=(ODD_NS, ODD_NS))
    os.utime(directory, ns=(ODD_NS, ODD_NS))


def test_hostile_names_are_snapshotted_byte_identical_and_linked_on_the_next_run(
    site: Site, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    build_hostile_tree(site.source)
    site.write(exclude="*.swp")
    source = tree(site.source)

    _, first = site.apply(cli)
    assert tree(site.snapshot()) == source
    assert skipped_paths(first) == {}
    plan = cli("plan", "-c", site.config, "--json", now=iso(1))
    assert plan.returncode == 0, plan
    assert snapshot_action(plan.json())["files_to_link"] == len(files_of(source))

    _, second = site.apply(cli, day=1)
    assert tree(site.snapshot(1)) == source
    assert snapshot_action(second)["files_linked"] == len(files_of(source))
    first_inodes = {path: node.inode for path, node in files_of(tree(site.snapshot())).items()}
    second_inodes = {path: node.inode for path, node in files_of(tree(site.snapshot(1))).items()}
    assert second_inodes == first_inodes
    assert not (tmp_path / "pwned").exists()


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


def test_tree_deeper_than_path_max_is_snapshotted_linked_and_pruned(site: Site, cli: Cli) -> None:
    directories = build_deep_tree(site.source)
    make_file(site.source / "top.txt", b"top")
    site.write(retain="1")
    source = tree(site.source)
    assert directories[-1] + b"/file.txt" in source

    site.apply(cli)
    first = tree(site.snapshot())
    assert first == source

    _, document = site.apply(cli, day=1)
    second = tree(site.snapshot(1))
    assert second == source
    assert snapshot_action(document)["files_linked"] == len(files_of(source))
    for path, node in files_of(second).items():
        assert node.inode == first[path].inode, path

    plan = cli("plan", "-c", site.config, "--json", now=iso(2))
    assert plan.returncode == 0, plan
    assert "Traceback" not in plan.stderr

    _, document = site.apply(cli, day=2)
    prune = [a for a in document["resources"][0]["actions"] if a["kind"] == "prune"]
    assert prune and prune[0]["result"] == "changed", document
    assert snapshot_names(site.target) == [name_of(1), name_of(2)]
    assert leftovers(site.target) == []
    assert tree(site.snapshot(2)) == source


def test_symlink_swapped_in_for_a_directory_of_the_reference_is_not_followed(
    site: Site, cli: Cli
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    make_file(site.source / "sub" / "f.txt", b"source data")
    site.write()
    site.apply(cli)
    # Outside: a file that looks unchanged (same size, mtime and mode) to a
    # walk that would follow the symlink into it.
    outside = site.root / "outside"
    make_file(outside / "f.txt", b"OUTSIDE!!!!")
    make_file(outside / "extra.txt", b"extra")
    before = tree(outside)
    reference_sub = site.snapshot() / "sub"
    shutil.rmtree(reference_sub)
    reference_sub.symlink_to(outside)

    plan = cli("plan", "-c", site.config, "--json", now=iso(1))
    prediction = snapshot_action(plan.json())
    assert (prediction["files_to_copy"], prediction["files_to_link"]) == (1, 1)

    _, document = site.apply(cli, day=1)
    copy = site.snapshot(1) / "sub" / "f.txt"
    assert copy.read_bytes() == b"source data"
    assert os.stat(copy).st_ino != os.stat(outside / "f.txt").st_ino
    assert not (site.snapshot(1) / "sub" / "extra.txt").exists()
    assert tree(outside) == before
    assert [node.links for node in files_of(tree(outside)).values()] == [1, 1]
    assert snapshot_action(document)["files_linked"] == 1


def test_symlink_with_a_snapshot_name_is_neither_reference_nor_window_nor_pruned_through(
    site: Site, cli: Cli
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    site.write()
    site.apply(cli)
    outside = site.root / "outside"
    make_file(outside / "a.txt", b"alpha")
    before = tree(outside)
    # Looks like a newer snapshot of the next day's window, holding an
    # identical-looking a.txt.
    fake = site.target / name_of(1).replace(".06.00", ".00.00")
    fake.symlink_to(outside)

    _, document = site.apply(cli, day=1)
    assert snapshot_action(document)["reference"] == name_of(0)
    assert os.stat(site.snapshot(1) / "a.txt").st_ino == os.stat(site.snapshot() / "a.txt").st_ino

    site.apply(cli, day=31)
    assert fake.is_symlink()
    assert tree(outside) == before
    assert snapshot_names(site.target) == [name_of(1), name_of(31)]


def test_prune_does_not_follow_symlinks_swapped_in_inside_a_snapshot(site: Site, cli: Cli) -> None:
    make_file(site.source / "a.txt", b"alpha")
    make_file(site.source / "c.txt", b"charlie")
    make_file(site.source / "sub" / "f.txt", b"inner")
    site.write()
    site.apply(cli)
    site.apply(cli, day=1)
    outside = site.root / "outside"
    make_file(outside / "big.bin", b"\x01" * (1 << 20))
    make_file(outside / "nested" / "deep.txt", b"deep")
    make_file(site.root / "outside-file.txt", b"lone outside file")
    old = site.snapshot()
    shutil.rmtree(old / "sub")
    (old / "sub").symlink_to(outside)
    (old / "a.txt").unlink()
    (old / "a.txt").symlink_to(site.root / "outside-file.txt")
    before = tree(outside)

    plan = cli("plan", "-c", site.config, "--json", now=iso(31))
    prunes = [a for a in plan.json()["resources"][0]["actions"] if a["kind"] == "prune"]
    assert prunes and prunes[0]["snapshots"] == [name_of(0)], plan
    assert prunes[0]["bytes_freed"] < 1 << 20, "bytes behind a symlink were counted"

    site.apply(cli, day=31)
    assert snapshot_names(site.target) == [name_of(1), name_of(31)]
    assert leftovers(site.target) == []
    assert tree(outside) == before
    assert (site.root / "outside-file.txt").read_bytes() == b"lone outside file"


def test_symlink_swapped_in_for_a_directory_being_built_is_never_written_through(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "sub" / "f.txt", b"inner")
    outside = site.root / "outside"
    outside.mkdir()
    original = Walker._make_directory

    def swapping(self: Walker, name: str, relative: str, parent: Any) -> bool:
        made = original(self, name, relative, parent)
        if name == "sub":
            os.rmdir(name, dir_fd=parent.target_fd)
            os.symlink(outside, name, dir_fd=parent.target_fd)
        return made

    monkeypatch.setattr(Walker, "_make_directory", swapping)
    site.write()
    outcome = cli("apply", "-c", site.config, now=iso(0))
    assert "Traceback" not in outcome.stderr, outcome
    assert os.listdir(outside) == [], outcome
    for name in snapshot_names(site.target):
        # Whatever the run decided, a snapshot that exists is whole and real.
        assert (site.target / name / "sub" / "f.txt").read_bytes() == b"inner"
        assert not (site.target / name / "sub").is_symlink()
    assert leftovers(site.target) == []


def test_target_path_symlink_snapshots_go_to_the_real_directory_and_plan_shows_it(
    site: Site, cli: Cli
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    real = site.root / "big-disk" / "backups"
    real.mkdir(parents=True)
    link = site.root / "var-backups"
    link.symlink_to(real)
    site.target = link
    site.write()

    plan = cli("plan", "-c", site.config, now=iso(0))
    assert plan.returncode == 0, plan
    assert f"{link} (-> {real})" in plan.stdout, plan
    planned = cli("plan", "-c", site.config, "--json", now=iso(0))
    assert planned.json()["resources"][0]["target"] == str(real)

    site.apply(cli)
    site.apply(cli, day=1)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert snapshot_names(real) == [name_of(0), name_of(1)]
    assert (
        os.stat(real / name_of(1) / "a.txt").st_ino == os.stat(real / name_of(0) / "a.txt").st_ino
    )

    site.apply(cli, day=31)
    assert snapshot_names(real) == [name_of(1), name_of(31)]
    assert link.is_symlink()


def test_target_path_dangling_symlink_creates_the_directory_it_points_to(
    site: Site, cli: Cli
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    real = site.root / "not-yet" / "backups"
    link = site.root / "var-backups"
    link.symlink_to(real)
    site.target = link
    site.write()
    site.apply(cli)
    assert link.is_symlink()
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o700
    assert (real / name_of(0) / "a.txt").read_bytes() == b"alpha"


def test_target_path_symlink_repointed_mid_run_keeps_the_snapshot_where_it_was_resolved(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    real = site.root / "disk-a"
    other = site.root / "disk-b"
    real.mkdir()
    other.mkdir()
    link = site.root / "var-backups"
    link.symlink_to(real)
    site.target = link
    site.write()
    repointed: list[str] = []
    original_snapshot = backup.take_snapshot
    original_walk = Walk.run

    def repoint() -> None:
        link.unlink()
        link.symlink_to(other)
        repointed.append(os.readlink(link))

    def repointing_before_snapshot(resource: Resource, name: str, target: str, *rest: Any) -> Any:
        # After plan resolved the link, before the snapshot starts.
        repoint()
        return original_snapshot(resource, name, target, *rest)

    def repointing_during_walk(
        self: Walk, source_fd: int, reference_fd: int | None, target_fd: Any
    ) -> None:
        if target_fd is not None:
            repoint()
        original_walk(self, source_fd, reference_fd, target_fd)

    monkeypatch.setattr(backup, "take_snapshot", repointing_before_snapshot)
    monkeypatch.setattr(Walk, "run", repointing_during_walk)
    site.apply(cli)
    assert repointed == [str(other), str(other)]
    assert snapshot_names(real) == [name_of(0)]
    assert (real / name_of(0) / "a.txt").read_bytes() == b"alpha"
    assert os.listdir(other) == []
    assert leftovers(real) == []


# -- promise 6: secrets stay private ------------------------------------------------------


@pytest.fixture
def no_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_target_and_state_dir_are_created_0700_even_with_umask_0(
    site: Site, cli: Cli, tmp_path: Path, no_umask: None
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    site.target = tmp_path / "backups"
    state = tmp_path / "state-here"
    site.write()
    outcome = cli("apply", "-c", site.config, "--state-dir", str(state), now=iso(0))
    assert outcome.returncode == 0, outcome
    assert stat.S_IMODE(os.stat(site.target).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for path in (site.target, state):
        for directory, directories, files in os.walk(path):
            for name in [*directories, *files]:
                mode = os.lstat(os.path.join(directory, name)).st_mode
                assert not mode & stat.S_IWOTH, os.path.join(directory, name)


def test_missing_parents_of_target_and_state_dir_are_not_left_writable_by_others(
    site: Site, cli: Cli, tmp_path: Path, no_umask: None
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    site.target = tmp_path / "new-disk" / "backups" / "etc"
    state = tmp_path / "new-state" / "hardsnap"
    site.write()
    outcome = cli("apply", "-c", site.config, "--state-dir", str(state), now=iso(0))
    assert outcome.returncode == 0, outcome
    for created in (
        tmp_path / "new-disk",
        tmp_path / "new-disk" / "backups",
        tmp_path / "new-state",
    ):
        mode = stat.S_IMODE(os.stat(created).st_mode)
        # A group- or world-writable parent lets another user swap the
        # target for a symlink of their choosing.
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH), f"{created} created {oct(mode)}"


def test_hooks_get_paths_only_through_env_and_a_target_with_shell_syntax_never_runs(
    site: Site, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    make_file(site.source / "a.txt", b"alpha")
    hostile_source = tmp_path / "src;touch pwned-source;`touch pwned-tick`"
    site.source.rename(hostile_source)
    site.source = hostile_source
    site.target = tmp_path / "t$(touch pwned)"
    marks = tmp_path / "marks"
    marks.mkdir()
    pre = f"printf '%s' \"$HARDSNAP_TARGET\" > {marks / 'pre'}"
    post = f'printf \'%s|%s\' "$HARDSNAP_SOURCE" "$HARDSNAP_SNAPSHOT" > {marks / "post"}'
    site.write(pre_command=pre, post_command=post)
    launched: list[tuple[list[str], dict[str, Any]]] = []

    class SpyPopen(subprocess.Popen[bytes]):
        def __init__(self, args: Any, *rest: Any, **options: Any) -> None:
            argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
            launched.append(([os.fsdecode(argument) for argument in argv], options))
            super().__init__(args, *rest, **options)

    def no_system(command: str) -> int:
        raise AssertionError(f"os.system called with {command!r}")

    monkeypatch.setattr(subprocess, "Popen", SpyPopen)
    monkeypatch.setattr(os, "system", no_system)
    site.apply(cli)

    assert (marks / "pre").read_text() == str(site.target)
    assert (marks / "post").read_text() == f"{hostile_source}|{site.target / name_of(0)}"
    pwned = list(tmp_path.rglob("pwned*"))
    assert pwned == []
    assert (site.target / name_of(0) / "a.txt").read_bytes() == b"alpha"
    shells = [argv for argv, _ in launched if argv[0].endswith("sh")]
    assert shells == [["/bin/sh", "-c", pre], ["/bin/sh", "-c", post]]
    for argv, options in launched:
        assert not options.get("shell"), argv
        assert not any(str(site.target) in argument for argument in argv), argv


# -- promise 7: fidelity ---------------------------------------------------------------------


def test_user_xattrs_on_files_and_directories_are_kept_on_copies_and_links(
    site: Site, cli: Cli
) -> None:
    xattrs_supported(site.source)
    note = make_file(site.source / "note.txt", b"note")
    folder = site.source / "folder"
    make_file(folder / "inner.txt", b"inner")
    os.setxattr(note, "user.plain", b"value")
    os.setxattr(note, "user.binary", b"\x00\xff\n" * 300)
    os.setxattr(folder, "user.folder", b"on a directory")
    os.setxattr(site.source, "user.root", b"on the source root")
    os.utime(folder, ns=(ODD_NS, ODD_NS))
    site.write()
    source = tree(site.source)

    site.apply(cli)
    assert tree(site.snapshot()) == source
    site.apply(cli, day=1)
    assert tree(site.snapshot(1)) == source
    copy = tree(site.snapshot(1))[b"note.txt"]
    assert ("user.plain", b"value") in copy.xattrs


def test_xattr_change_alone_reaches_the_next_snapshot(site: Site, cli: Cli) -> None:
    xattrs_supported(site.source)
    note = make_file(site.source / "note.txt", b"note")
    os.setxattr(note, "user.tag", b"old")
    site.write()
    site.apply(cli)
    # Content, size, mtime and mode stay the same: only the attribute changes.
    os.setxattr(note, "user.tag", b"new")
    site.apply(cli, day=1)
    assert os.getxattr(site.snapshot(1) / "note.txt", "user.tag") == b"new"
    assert os.getxattr(site.snapshot() / "note.txt", "user.tag") == b"old"


def capability_of_net_raw() -> bytes:
    """A version 2 security.capability value granting cap_net_raw, effective."""
    return struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


@pytest.mark.linux_only(reason="xattr calls")
def test_as_root_trusted_and_security_xattrs_and_capabilities_are_kept(
    site: Site, cli: Cli
) -> None:
    if os.geteuid() != 0:
        pytest.skip("trusted.* and security.* xattrs need root")
    tool = make_file(site.source / "tool", b"#!/bin/sh\n", 0o755)
    os.chown(tool, 1234, 5678)
    folder = site.source / "folder"
    folder.mkdir()
    try:
        os.setxattr(tool, "trusted.hardsnap", b"trusted value")
        os.setxattr(tool, "security.hardsnap", b"security value")
        os.setxattr(tool, "security.capability", capability_of_net_raw())
        os.setxattr(folder, "trusted.folder", b"on a directory")
    except OSError as error:
        pytest.skip(f"filesystem refuses trusted/security xattrs: {error.strerror}")
    os.utime(tool, ns=(ODD_NS, ODD_NS))
    os.utime(folder, ns=(ODD_NS, ODD_NS))
    site.write()
    source = tree(site.source)
    site.apply(cli)
    snapshot = tree(site.snapshot())
    assert snapshot == source
    assert ("security.capability", capability_of_net_raw()) in snapshot[b"tool"].xattrs
    assert (snapshot[b"tool"].uid, snapshot[b"tool"].gid) == (1234, 5678)


ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF


def posix_acl(*entries: tuple[int, int, int]) -> bytes:
    """The kernel's xattr form of a POSIX ACL (what setfacl writes)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


@pytest.mark.linux_only(reason="xattr calls")
def test_posix_acls_on_files_and_directories_are_kept(site: Site, cli: Cli) -> None:
    shared = make_file(site.source / "shared.txt", b"shared")
    folder = site.source / "folder"
    make_file(folder / "inner.txt", b"inner")
    access = posix_acl(
        (ACL_USER_OBJ, 6, ACL_UNDEFINED_ID),
        (ACL_USER, 4, 1234),
        (ACL_GROUP_OBJ, 4, ACL_UNDEFINED_ID),
        (ACL_MASK, 4, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    )
    default = posix_acl(
        (ACL_USER_OBJ, 7, ACL_UNDEFINED_ID),
        (ACL_USER, 5, 1234),
        (ACL_GROUP_OBJ, 5, ACL_UNDEFINED_ID),
        (ACL_MASK, 5, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    )
    try:
        os.setxattr(shared, "system.posix_acl_access", access)
        os.setxattr(folder, "system.posix_acl_default", default)
    except OSError as error:
        pytest.skip(f"filesystem refuses POSIX ACLs: {error.strerror}")
    os.utime(shared, ns=(ODD_NS, ODD_NS))
    os.utime(folder, ns=(ODD_NS, ODD_NS))
    site.write()
    source = tree(site.source)
    site.apply(cli)
    copy = site.snapshot()
    assert tree(copy) == source
    assert os.getxattr(copy / "shared.txt", "system.posix_acl_access") == access
    assert os.getxattr(copy / "folder", "system.posix_acl_default") == default
    getfacl = shutil.which("getfacl")
    if getfacl:
        for relative in ("shared.txt", "folder"):
            shown = [
                subprocess.run(
                    [getfacl, "-p", "--omit-header", str(root / relative)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                for root in (site.source, copy)
            ]
            assert shown[0] == shown[1]


def test_hard_linked_names_stay_one_inode_on_first_copy_and_after_a_change(
    site: Site, cli: Cli
) -> None:
    first = make_file(site.source / "a", b"three names")
    os.link(first, site.source / "b")
    (site.source / "sub").mkdir()
    os.link(first, site.source / "sub" / "c")
    pair = make_file(site.source / "x", b"two names")
    os.link(pair, site.source / "y")
    site.write()

    site.apply(cli)
    old = site.snapshot()
    trio = {os.stat(old / name).st_ino for name in ("a", "b", "sub/c")}
    duo = {os.stat(old / name).st_ino for name in ("x", "y")}
    assert len(trio) == 1 and len(duo) == 1 and trio != duo
    assert os.stat(old / "a").st_nlink == 3
    assert os.stat(old / "x").st_nlink == 2

    rewrite(first, b"three names, changed", ODD_NS + 10**9)
    os.link(pair, site.source / "sub" / "z")
    site.apply(cli, day=1)
    new = site.snapshot(1)
    changed = {os.stat(new / name).st_ino for name in ("a", "b", "sub/c")}
    assert len(changed) == 1 and changed != trio
    assert (new / "sub" / "c").read_bytes() == b"three names, changed"
    assert (old / "sub" / "c").read_bytes() == b"three names"
    kept = {os.stat(new / name).st_ino for name in ("x", "y", "sub/z")}
    assert len(kept) == 1
    assert os.stat(new / "a").st_nlink == 3


def test_hard_linked_names_deeper_than_path_max_stay_one_inode(site: Site, cli: Cli) -> None:
    directories = build_deep_tree(site.source)
    # Link within the deepest directory, with short relative names.
    fd = os.open(site.source, DIRECTORY_FLAGS)
    for part in directories[-1].split(b"/"):
        child = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
        os.close(fd)
        fd = child
    try:
        os.link("file.txt", "second-name.txt", src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
    site.write()
    site.apply(cli)
    snapshot = files_of(tree(site.snapshot()))
    bottom = directories[-1] + b"/"
    assert snapshot[bottom + b"file.txt"].inode == snapshot[bottom + b"second-name.txt"].inode


SPARSE_SIZE = 64 << 20


def test_sparse_files_stay_sparse_with_identical_content(site: Site, cli: Cli) -> None:
    middle = site.source / "middle.img"
    with open(middle, "wb") as handle:
        handle.truncate(SPARSE_SIZE)
        handle.seek(SPARSE_SIZE // 2)
        handle.write(b"\xab" * 4096)
    at_ends = site.source / "ends.img"
    with open(at_ends, "wb") as handle:
        handle.write(b"head" * 1024)
        handle.truncate(SPARSE_SIZE)
        handle.seek(SPARSE_SIZE - 4096)
        handle.write(b"tail" * 1024)
    all_hole = site.source / "hole.img"
    with open(all_hole, "wb") as handle:
        handle.truncate(SPARSE_SIZE)
    if os.stat(middle).st_blocks * 512 >= SPARSE_SIZE:
        pytest.skip("the filesystem under tmp_path does not keep holes")
    site.write()
    source = tree(site.source)
    site.apply(cli)
    snapshot = tree(site.snapshot())
    assert snapshot == source
    for name in ("middle.img", "ends.img", "hole.img"):
        copy = os.stat(site.snapshot() / name)
        assert copy.st_size == SPARSE_SIZE
        assert copy.st_blocks * 512 <= 1 << 20, f"{name}: {copy.st_blocks} blocks"


def test_restore_with_cp_a_equals_the_source_on_content_mode_mtime_owner_and_xattrs(
    site: Site, cli: Cli, tmp_path: Path
) -> None:
    if shutil.which("cp") is None:
        pytest.skip("needs cp")
    xattrs_supported(site.source)
    root = os.geteuid() == 0
    make_file(site.source / "plain.txt", b"plain", 0o640, ODD_NS + 1)
    private = make_file(site.source / "conf" / "private.key", b"key", 0o600, ODD_NS + 2)
    tool = make_file(site.source / "bin" / "tool", b"#!/bin/sh\necho hi\n", 0o755, ODD_NS + 3)
    hard = make_file(site.source / "bin" / "hard", b"linked", 0o644, ODD_NS + 4)
    os.link(hard, site.source / "conf" / "hard-too")
    os.setxattr(private, "user.origin", b"vault")
    os.setxattr(site.source / "conf", "user.kind", b"directory")
    if root:
        os.chown(private, 1234, 5678)
        os.chown(tool, 1234, 1234)
        os.chmod(tool, 0o4755)
        os.chown(site.source / "conf", 1234, 5678)
        os.setxattr(tool, "trusted.kept", b"root only")
    os.chmod(site.source / "conf", 0o2750)
    os.chmod(site.source / "bin", 0o755)
    for directory, mtime in (("conf", ODD_NS + 10), ("bin", ODD_NS + 11), (".", ODD_NS + 12)):
        os.utime(site.source / directory, ns=(mtime, mtime))
    site.write()

    site.apply(cli)
    sources = [tree(site.source)]
    # A later snapshot, mostly links, after one change.
    rewrite(site.source / "plain.txt", b"plain, edited", ODD_NS + 20)
    os.utime(site.source, ns=(ODD_NS + 12, ODD_NS + 12))
    site.apply(cli, day=1)
    sources.append(tree(site.source))

    for day, source in enumerate(sources):
        restored = tmp_path / f"restored-{day}"
        subprocess.run(["cp", "-a", str(site.snapshot(day)), str(restored)], check=True)
        assert tree(restored) == source, f"restore of day {day}"
    restored_tree = tree(tmp_path / "restored-1")
    assert restored_tree[b"conf/private.key"].xattrs == (("user.origin", b"vault"),)
    assert stat.S_IMODE(os.stat(tmp_path / "restored-1" / "conf").st_mode) == 0o2750
    if root:
        assert restored_tree[b"bin/tool"].mode == 0o4755
        assert (restored_tree[b"conf/private.key"].uid, restored_tree[b"conf/private.key"].gid) == (
            1234,
            5678,
        )
    assert restored_tree[b"bin/hard"].inode == restored_tree[b"conf/hard-too"].inode

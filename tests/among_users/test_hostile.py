"""Hostile conditions, provoked for real: files that move under the walk,
hostile names and trees, symlinks swapped in, secrets, and fidelity of what
a snapshot keeps (issue #3, promises 3, 5, 6 and 7).

Trees are small and live under tmp_path. Faults are injected by wrapping the
engine's own steps (`providers.copying.copy_contents`, `Placer.file`, `Walker.enter`)
so each race happens at one exact moment. Most tests drive the real CLI
in-process; the unreadable-entry test runs it as nobody in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers.backup import effects as backup
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.backup.target import MARKER
from hardsnap.providers.engine import copying
from hardsnap.providers.engine.directories import Walker
from hardsnap.providers.engine.placing import Placer
from hardsnap.providers.engine.snapshot import Walk
from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY
from tests.world.cli import Cli
from tests.world.clock import at, iso, name_of
from tests.world.documents import skipped_paths, snapshot_action
from tests.world.engine import resource_for, take
from tests.world.files import ODD_NS, make_file, rewrite, snapshots_in, xattrs_supported
from tests.world.site import Site, empty_site
from tests.world.trees import DIRECTORY_FLAGS, Node, files_of, tree
from tests.world.users import apply_as_nobody

# More than PATH_MAX (4096) once joined: 30 levels of 200-byte names.
DEEP_LEVELS = 30
DEEP_NAME_LENGTH = 200


# -- helpers -------------------------------------------------------------------


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


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return empty_site(tmp_path, min_free_space=0)


# -- promise 3: files that move under us ----------------------------------------------


def test_file_changed_while_copied_is_copied_again_and_snapshot_holds_new_content(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "steady.txt", b"steady")
    growing = make_file(site.source / "growing.log", b"first version")
    new_mtime = ODD_NS + 86_400 * 10**9 + 7
    attempts: list[int] = []

    def changing_once() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            rewrite(growing, b"second version, longer than the first", new_mtime)

    before_copying(monkeypatch, growing, changing_once)
    site.write()
    outcome, document = site.apply_json()

    copy = site.taken_at() / "growing.log"
    assert len(attempts) == 2, "a file that changed during its copy must be copied again"
    assert copy.read_bytes() == b"second version, longer than the first"
    assert os.stat(copy).st_mtime_ns == new_mtime
    assert (site.taken_at() / "steady.txt").read_bytes() == b"steady"
    assert snapshot_action(document)["unstable"] == []
    assert "kept changing" not in outcome.stderr


def test_file_changing_on_every_copy_is_reported_unstable_and_next_run_copies_it_afresh(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "steady.txt", b"steady")
    hot = make_file(site.source / "hot.log", b"v0")
    versions: list[bytes] = []

    def changing_always() -> None:
        version = f"version {len(versions) + 1} ".encode() * (len(versions) + 2)
        versions.append(version)
        rewrite(hot, version, ODD_NS + len(versions) * 10**9)

    before_copying(monkeypatch, hot, changing_always)
    site.write()
    outcome, document = site.apply_json()

    assert document["resources"][0]["result"] == "changed"
    assert snapshot_action(document)["unstable"] == ["hot.log"]
    assert "hot.log kept changing" in outcome.stderr
    assert snapshots_in(site.target) == [name_of(at(0))]
    # The last copy went as far as the size the file had when it began
    # (the version before), with what the file held by then.
    assert (site.taken_at() / "hot.log").read_bytes() == versions[-1][: len(versions[-2])]
    assert (site.taken_at() / "steady.txt").read_bytes() == b"steady"

    # The file settles: the next snapshot must hold its real content, not a
    # link to the copy that was taken while it moved.
    monkeypatch.undo()
    site.apply_json(at(1))
    settled = site.taken_at(at(1)) / "hot.log"
    assert settled.read_bytes() == hot.read_bytes()
    assert os.stat(settled).st_mtime_ns == os.stat(hot).st_mtime_ns
    assert os.stat(settled).st_ino != os.stat(site.taken_at() / "hot.log").st_ino


def test_take_snapshot_reports_a_file_changing_on_every_copy_in_unstable(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    hot = make_file(site.source / "hot.log", b"v0")
    counter = [0]

    def changing_always() -> None:
        counter[0] += 1
        rewrite(hot, b"x" * counter[0], ODD_NS + counter[0])

    before_copying(monkeypatch, hot, changing_always)
    report = take(resource_for(site.source, site.target), name_of(at(0)))
    assert report.unstable == ["hot.log"]
    assert report.files_copied == 1
    assert (site.target / name_of(at(0)) / "hot.log").is_file()


def test_file_vanishing_between_listing_and_copying_is_skipped_with_reason_not_fatal(
    site: Site, monkeypatch: pytest.MonkeyPatch
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
    outcome, document = site.apply_json()

    skipped = skipped_paths(document)
    assert "vanished" in skipped["doomed.txt"]
    assert sorted(os.listdir(site.taken_at())) == ["kept.txt"]
    assert "doomed.txt" in outcome.stderr
    assert snapshot_action(document)["files_copied"] == 1


def test_files_vanishing_after_their_directory_was_listed_are_skipped_with_reason(
    site: Site, monkeypatch: pytest.MonkeyPatch
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
    _, document = site.apply_json()

    skipped = skipped_paths(document)
    assert len(deleted) == 5
    for name in deleted:
        assert "vanished" in skipped[f"batch/{name}"], skipped
    assert os.listdir(site.taken_at() / "batch") == [seen[0]]


def test_directory_vanishing_between_listing_and_entering_is_skipped_with_reason(
    site: Site, monkeypatch: pytest.MonkeyPatch
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
    outcome, document = site.apply_json()

    assert "vanished" in skipped_paths(document)["gone"]
    assert sorted(os.listdir(site.taken_at())) == ["kept"]
    assert (site.taken_at() / "kept" / "a.txt").read_bytes() == b"a"
    assert "gone" in outcome.stderr


def test_file_swapped_for_symlink_before_copy_is_not_followed_and_is_reported(
    site: Site, monkeypatch: pytest.MonkeyPatch
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
    _, document = site.apply_json()

    assert "swap.txt" in skipped_paths(document)
    for node in files_of(tree(site.taken_at())).values():
        assert node.data != hashlib.sha256(b"OUTSIDE SECRET").digest()
    assert not (site.taken_at() / "swap.txt").exists()
    assert os.stat(outside).st_nlink == 1


def test_directory_swapped_for_symlink_before_entering_is_not_followed(
    site: Site, monkeypatch: pytest.MonkeyPatch
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
    _, document = site.apply_json()

    assert "sub" in skipped_paths(document)
    assert not (site.taken_at() / "sub" / "secret.txt").exists()
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
    modes = {source / "locked": 0o000, source / "search-only": 0o111, source / "list-only": 0o444}
    outcome = apply_as_nobody(nobody_dir, modes, "--json")
    stdout, stderr, target = outcome.stdout, outcome.stderr, nobody_dir / "dst"
    assert outcome.returncode == 0, outcome
    assert "Traceback" not in stderr, outcome
    document = json.loads(stdout)
    skipped = skipped_paths(document)
    for path in ("secret.txt", "write-only.txt", "locked", "search-only", "list-only/listed.txt"):
        assert path in skipped, outcome
        assert "ermission denied" in skipped[path], outcome
        assert path in stderr, outcome
    assert os.fsdecode(b"open/bad-\xff\nname") in skipped, outcome
    snapshot = target / name_of(at(0))
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

    _, first = site.apply_json()
    assert tree(site.taken_at()) == source
    assert skipped_paths(first) == {}
    plan = cli("plan", "-c", site.config, "--json", now=iso(at(1)))
    assert plan.returncode == 0, plan
    assert snapshot_action(plan.json())["files_to_link"] == len(files_of(source))

    _, second = site.apply_json(at(1))
    assert tree(site.taken_at(at(1))) == source
    assert snapshot_action(second)["files_linked"] == len(files_of(source))
    first_inodes = {path: node.inode for path, node in files_of(tree(site.taken_at())).items()}
    second_inodes = {
        path: node.inode for path, node in files_of(tree(site.taken_at(at(1)))).items()
    }
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

    site.apply_json()
    first = tree(site.taken_at())
    assert first == source

    _, document = site.apply_json(at(1))
    second = tree(site.taken_at(at(1)))
    assert second == source
    assert snapshot_action(document)["files_linked"] == len(files_of(source))
    for path, node in files_of(second).items():
        assert node.inode == first[path].inode, path

    plan = cli("plan", "-c", site.config, "--json", now=iso(at(2)))
    assert plan.returncode == 0, plan
    assert "Traceback" not in plan.stderr

    _, document = site.apply_json(at(2))
    prune = [a for a in document["resources"][0]["actions"] if a["kind"] == "prune"]
    assert prune and prune[0]["result"] == "changed", document
    assert snapshots_in(site.target) == [name_of(at(1)), name_of(at(2))]
    assert leftovers(site.target) == []
    assert tree(site.taken_at(at(2))) == source


def test_symlink_swapped_in_for_a_directory_of_the_reference_is_not_followed(
    site: Site, cli: Cli
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    make_file(site.source / "sub" / "f.txt", b"source data")
    site.write()
    site.apply_json()
    # Outside: a file that looks unchanged (same size, mtime and mode) to a
    # walk that would follow the symlink into it.
    outside = site.root / "outside"
    make_file(outside / "f.txt", b"OUTSIDE!!!!")
    make_file(outside / "extra.txt", b"extra")
    before = tree(outside)
    reference_sub = site.taken_at() / "sub"
    shutil.rmtree(reference_sub)
    reference_sub.symlink_to(outside)

    plan = cli("plan", "-c", site.config, "--json", now=iso(at(1)))
    prediction = snapshot_action(plan.json())
    assert (prediction["files_to_copy"], prediction["files_to_link"]) == (1, 1)

    _, document = site.apply_json(at(1))
    copy = site.taken_at(at(1)) / "sub" / "f.txt"
    assert copy.read_bytes() == b"source data"
    assert os.stat(copy).st_ino != os.stat(outside / "f.txt").st_ino
    assert not (site.taken_at(at(1)) / "sub" / "extra.txt").exists()
    assert tree(outside) == before
    assert [node.links for node in files_of(tree(outside)).values()] == [1, 1]
    assert snapshot_action(document)["files_linked"] == 1


def test_symlink_with_a_snapshot_name_is_neither_reference_nor_window_nor_pruned_through(
    site: Site,
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    site.write()
    site.apply_json()
    outside = site.root / "outside"
    make_file(outside / "a.txt", b"alpha")
    before = tree(outside)
    # Looks like a newer snapshot of the next day's window, holding an
    # identical-looking a.txt.
    fake = site.target / name_of(at(1)).replace(".06.00", ".00.00")
    fake.symlink_to(outside)

    _, document = site.apply_json(at(1))
    assert snapshot_action(document)["reference"] == name_of(at(0))
    assert (
        os.stat(site.taken_at(at(1)) / "a.txt").st_ino == os.stat(site.taken_at() / "a.txt").st_ino
    )

    site.apply_json(at(31))
    assert fake.is_symlink()
    assert tree(outside) == before
    assert snapshots_in(site.target) == [name_of(at(1)), name_of(at(31))]


def test_prune_does_not_follow_symlinks_swapped_in_inside_a_snapshot(site: Site, cli: Cli) -> None:
    make_file(site.source / "a.txt", b"alpha")
    make_file(site.source / "c.txt", b"charlie")
    make_file(site.source / "sub" / "f.txt", b"inner")
    site.write()
    site.apply_json()
    site.apply_json(at(1))
    outside = site.root / "outside"
    make_file(outside / "big.bin", b"\x01" * (1 << 20))
    make_file(outside / "nested" / "deep.txt", b"deep")
    make_file(site.root / "outside-file.txt", b"lone outside file")
    old = site.taken_at()
    shutil.rmtree(old / "sub")
    (old / "sub").symlink_to(outside)
    (old / "a.txt").unlink()
    (old / "a.txt").symlink_to(site.root / "outside-file.txt")
    before = tree(outside)

    plan = cli("plan", "-c", site.config, "--json", now=iso(at(31)))
    prunes = [a for a in plan.json()["resources"][0]["actions"] if a["kind"] == "prune"]
    assert prunes and prunes[0]["snapshots"] == [name_of(at(0))], plan
    assert prunes[0]["bytes_freed"] < 1 << 20, "bytes behind a symlink were counted"

    site.apply_json(at(31))
    assert snapshots_in(site.target) == [name_of(at(1)), name_of(at(31))]
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
    outcome = cli("apply", "-c", site.config, now=iso(at(0)))
    assert "Traceback" not in outcome.stderr, outcome
    assert os.listdir(outside) == [], outcome
    for name in snapshots_in(site.target):
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

    plan = cli("plan", "-c", site.config, now=iso(at(0)))
    assert plan.returncode == 0, plan
    assert f"{link} (-> {real})" in plan.stdout, plan
    planned = cli("plan", "-c", site.config, "--json", now=iso(at(0)))
    assert planned.json()["resources"][0]["target"] == str(real)

    site.apply_json()
    site.apply_json(at(1))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert snapshots_in(real) == [name_of(at(0)), name_of(at(1))]
    assert (
        os.stat(real / name_of(at(1)) / "a.txt").st_ino
        == os.stat(real / name_of(at(0)) / "a.txt").st_ino
    )

    site.apply_json(at(31))
    assert snapshots_in(real) == [name_of(at(1)), name_of(at(31))]
    assert link.is_symlink()


def test_target_path_dangling_symlink_creates_the_directory_it_points_to(site: Site) -> None:
    make_file(site.source / "a.txt", b"alpha")
    real = site.root / "not-yet" / "backups"
    link = site.root / "var-backups"
    link.symlink_to(real)
    site.target = link
    site.write()
    site.apply_json()
    assert link.is_symlink()
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o700
    assert (real / name_of(at(0)) / "a.txt").read_bytes() == b"alpha"


def test_target_path_symlink_repointed_mid_run_keeps_the_snapshot_where_it_was_resolved(
    site: Site, monkeypatch: pytest.MonkeyPatch
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
    site.apply_json()
    assert repointed == [str(other), str(other)]
    assert snapshots_in(real) == [name_of(at(0))]
    assert (real / name_of(at(0)) / "a.txt").read_bytes() == b"alpha"
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
    outcome = cli("apply", "-c", site.config, "--state-dir", str(state), now=iso(at(0)))
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
    outcome = cli("apply", "-c", site.config, "--state-dir", str(state), now=iso(at(0)))
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
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    site.apply_json()

    assert (marks / "pre").read_text() == str(site.target)
    assert (marks / "post").read_text() == f"{hostile_source}|{site.target / name_of(at(0))}"
    pwned = list(tmp_path.rglob("pwned*"))
    assert pwned == []
    assert (site.target / name_of(at(0)) / "a.txt").read_bytes() == b"alpha"
    shells = [argv for argv, _ in launched if argv[0].endswith("sh")]
    assert shells == [["/bin/sh", "-c", pre], ["/bin/sh", "-c", post]]
    for argv, options in launched:
        assert not options.get("shell"), argv
        assert not any(str(site.target) in argument for argument in argv), argv


def snapshot_settled(site: Site, *settled: Path) -> tuple[dict[bytes, Node], Path]:
    """Give `settled` an old mtime back (made in them since), snapshot the
    source: the source's tree and the snapshot's directory."""
    for path in settled:
        os.utime(path, ns=(ODD_NS, ODD_NS))
    site.write()
    source = tree(site.source)
    site.apply_json()
    return source, site.taken_at()


# -- promise 7: fidelity ---------------------------------------------------------------------


def test_user_xattrs_on_files_and_directories_are_kept_on_copies_and_links(site: Site) -> None:
    xattrs_supported(site.source)
    note = make_file(site.source / "note.txt", b"note")
    folder = site.source / "folder"
    make_file(folder / "inner.txt", b"inner")
    os.setxattr(note, "user.plain", b"value")
    os.setxattr(note, "user.binary", b"\x00\xff\n" * 300)
    os.setxattr(folder, "user.folder", b"on a directory")
    os.setxattr(site.source, "user.root", b"on the source root")
    source, copy = snapshot_settled(site, folder)
    assert tree(copy) == source
    site.apply_json(at(1))
    assert tree(site.taken_at(at(1))) == source
    copy = tree(site.taken_at(at(1)))[b"note.txt"]
    assert ("user.plain", b"value") in copy.xattrs


def test_xattr_change_alone_reaches_the_next_snapshot(site: Site) -> None:
    xattrs_supported(site.source)
    note = make_file(site.source / "note.txt", b"note")
    os.setxattr(note, "user.tag", b"old")
    site.write()
    site.apply_json()
    # Content, size, mtime and mode stay the same: only the attribute changes.
    os.setxattr(note, "user.tag", b"new")
    site.apply_json(at(1))
    assert os.getxattr(site.taken_at(at(1)) / "note.txt", "user.tag") == b"new"
    assert os.getxattr(site.taken_at() / "note.txt", "user.tag") == b"old"


def capability_of_net_raw() -> bytes:
    """A version 2 security.capability value granting cap_net_raw, effective."""
    return struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


@pytest.mark.linux_only(reason="xattr calls")
def test_as_root_trusted_and_security_xattrs_and_capabilities_are_kept(site: Site) -> None:
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
    source, copy = snapshot_settled(site, tool, folder)
    snapshot = tree(copy)
    assert snapshot == source
    assert ("security.capability", capability_of_net_raw()) in snapshot[b"tool"].xattrs
    assert (snapshot[b"tool"].uid, snapshot[b"tool"].gid) == (1234, 5678)


ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF


def posix_acl(*entries: tuple[int, int, int]) -> bytes:
    """The kernel's xattr form of a POSIX ACL (what setfacl writes)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def acl_granting_user_1234(owner: int, user: int, group: int, other: int) -> bytes:
    """An ACL of these permission bits for the owner, user 1234, the group
    (the mask as wide as the last two) and others."""
    return posix_acl(
        (ACL_USER_OBJ, owner, ACL_UNDEFINED_ID),
        (ACL_USER, user, 1234),
        (ACL_GROUP_OBJ, group, ACL_UNDEFINED_ID),
        (ACL_MASK, max(user, group), ACL_UNDEFINED_ID),
        (ACL_OTHER, other, ACL_UNDEFINED_ID),
    )


@pytest.mark.linux_only(reason="xattr calls")
def test_posix_acls_on_files_and_directories_are_kept(site: Site) -> None:
    shared = make_file(site.source / "shared.txt", b"shared")
    folder = site.source / "folder"
    make_file(folder / "inner.txt", b"inner")
    access, default = acl_granting_user_1234(6, 4, 4, 0), acl_granting_user_1234(7, 5, 5, 0)
    try:
        os.setxattr(shared, "system.posix_acl_access", access)
        os.setxattr(folder, "system.posix_acl_default", default)
    except OSError as error:
        pytest.skip(f"filesystem refuses POSIX ACLs: {error.strerror}")
    source, copy = snapshot_settled(site, shared, folder)
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


def test_hard_linked_names_stay_one_inode_on_first_copy_and_after_a_change(site: Site) -> None:
    first = make_file(site.source / "a", b"three names")
    os.link(first, site.source / "b")
    (site.source / "sub").mkdir()
    os.link(first, site.source / "sub" / "c")
    pair = make_file(site.source / "x", b"two names")
    os.link(pair, site.source / "y")
    site.write()

    site.apply_json()
    old = site.taken_at()
    trio = {os.stat(old / name).st_ino for name in ("a", "b", "sub/c")}
    duo = {os.stat(old / name).st_ino for name in ("x", "y")}
    assert len(trio) == 1 and len(duo) == 1 and trio != duo
    assert os.stat(old / "a").st_nlink == 3
    assert os.stat(old / "x").st_nlink == 2

    rewrite(first, b"three names, changed", ODD_NS + 10**9)
    os.link(pair, site.source / "sub" / "z")
    site.apply_json(at(1))
    new = site.taken_at(at(1))
    changed = {os.stat(new / name).st_ino for name in ("a", "b", "sub/c")}
    assert len(changed) == 1 and changed != trio
    assert (new / "sub" / "c").read_bytes() == b"three names, changed"
    assert (old / "sub" / "c").read_bytes() == b"three names"
    kept = {os.stat(new / name).st_ino for name in ("x", "y", "sub/z")}
    assert len(kept) == 1
    assert os.stat(new / "a").st_nlink == 3


def test_hard_linked_names_deeper_than_path_max_stay_one_inode(site: Site) -> None:
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
    site.apply_json()
    snapshot = files_of(tree(site.taken_at()))
    bottom = directories[-1] + b"/"
    assert snapshot[bottom + b"file.txt"].inode == snapshot[bottom + b"second-name.txt"].inode


SPARSE_SIZE = 64 << 20


def test_sparse_files_stay_sparse_with_identical_content(site: Site) -> None:
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
    site.apply_json()
    snapshot = tree(site.taken_at())
    assert snapshot == source
    for name in ("middle.img", "ends.img", "hole.img"):
        copy = os.stat(site.taken_at() / name)
        assert copy.st_size == SPARSE_SIZE
        assert copy.st_blocks * 512 <= 1 << 20, f"{name}: {copy.st_blocks} blocks"


def test_restore_with_cp_a_equals_the_source_on_content_mode_mtime_owner_and_xattrs(
    site: Site, tmp_path: Path
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

    site.apply_json()
    sources = [tree(site.source)]
    # A later snapshot, mostly links, after one change.
    rewrite(site.source / "plain.txt", b"plain, edited", ODD_NS + 20)
    os.utime(site.source, ns=(ODD_NS + 12, ODD_NS + 12))
    site.apply_json(at(1))
    sources.append(tree(site.source))

    for day, source in enumerate(sources):
        restored = tmp_path / f"restored-{day}"
        subprocess.run(["cp", "-a", str(site.taken_at(at(day))), str(restored)], check=True)
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

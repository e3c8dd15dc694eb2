"""Knowing what you have: manifests checked against the trees, `verify`,
`diff`, real space per snapshot, and the source guards (issue 5).

Real directories under tmp_path, real inodes, the CLI run in-process through
the `cli` fixture (a crash fails the test) and HARDSNAP_NOW for the clock.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers.engine import copying
from hardsnap.providers.files.escaping import format_bytes
from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY, PARTIAL_SUFFIX, ManifestReader
from tests.world.cli import Cli, Finished
from tests.world.clock import at, iso, name_of
from tests.world.documents import action_results, resource_of
from tests.world.files import ODD_NS, files_below, make_file, rewrite
from tests.world.site import Site, empty_site, write_config

UNKNOWN_SNAPSHOT = "2020.001.00.00"

# Names that a text-only manifest could get wrong.
NEWLINE_NAME = b"new\nline.txt"
INVALID_UTF8_NAME = b"bad\xff\xfename.bin"

# What a manifest says of a file, keyed elsewhere by its relative path's bytes:
# (size, mtime_ns, mode, uid, gid, inode, sha256).
FileRecord = tuple[int, int, int, int, int, int, str | None]


# -- helpers -------------------------------------------------------------------


def sha256_of(path: Path | bytes) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def walk_snapshot(root: Path) -> tuple[dict[bytes, FileRecord], set[bytes]]:
    """Every regular file below `root` (relative path bytes -> what a
    manifest should say of it) and every directory, found by os.walk on
    bytes paths: independent of hardsnap's own walkers."""
    base = os.fsencode(root)
    files: dict[bytes, FileRecord] = {}
    directories: set[bytes] = set()
    for directory, _, names in os.walk(base):
        relative_directory = os.path.relpath(directory, base)
        directories.add(b"" if relative_directory == b"." else relative_directory)
        for name in names:
            full = os.path.join(directory, name)
            info = os.lstat(full)
            if not stat.S_ISREG(info.st_mode):
                continue
            files[os.path.relpath(full, base)] = (
                info.st_size,
                info.st_mtime_ns,
                stat.S_IMODE(info.st_mode),
                info.st_uid,
                info.st_gid,
                info.st_ino,
                sha256_of(full),
            )
    return files, directories


def read_manifest(path: Path) -> tuple[dict[bytes, FileRecord], set[bytes], ManifestReader]:
    """A manifest's files (relative path bytes -> record) and directories."""
    files: dict[bytes, FileRecord] = {}
    with ManifestReader(str(path)) as reader:
        directories = {os.fsencode(directory) for directory in reader.directories()}
        for _, block in reader.entries():
            for entry in block.values():
                key = os.fsencode(entry.path)
                assert key not in files, f"{entry.path!r} listed twice"
                files[key] = (
                    entry.size,
                    entry.mtime_ns,
                    entry.mode,
                    entry.uid,
                    entry.gid,
                    entry.inode,
                    entry.sha256,
                )
    return files, directories, reader


def problems_of(document: dict[str, Any], snapshot: str) -> list[tuple[str, str]]:
    for entry in document["snapshots"]:
        if entry["name"] == snapshot:
            return sorted((problem["path"], problem["problem"]) for problem in entry["problems"])
    raise AssertionError(f"no snapshot {snapshot} in {document}")


@pytest.fixture
def world(tmp_path: Path) -> Site:
    return empty_site(tmp_path)


def apply_ok(cli: Cli, world: Site, days: float, *extra: str) -> dict[str, Any]:
    outcome = cli("apply", "-c", world.config, "--json", *extra, now=iso(at(days)))
    assert outcome.returncode == 0, outcome
    document: dict[str, Any] = outcome.json()
    assert resource_of(document)["result"] == "changed", outcome
    return document


def blocks(directory: Path, *names: str) -> int:
    """The bytes allocated to these files of a directory."""
    return sum(os.stat(directory / name).st_blocks * 512 for name in names)


def state_snapshots(cli: Cli, world: Site) -> dict[str, dict[str, Any]]:
    outcome = cli("state", "show", "-c", world.config, "--json")
    assert outcome.returncode == 0, outcome
    return {entry["name"]: entry for entry in outcome.json()["resources"]["r"]["snapshots"]}


# -- 1. manifests checked against the trees -------------------------------------


def build_varied_source(source: Path) -> None:
    """Files that will be linked, changed, hard-linked in the source, with a
    newline and invalid UTF-8 in their names, and an empty directory."""
    make_file(source / "keep.txt", b"kept across snapshots\n")
    make_file(source / "edit.txt", b"first version\n", 0o600)
    make_file(source / "run.sh", b"#!/bin/sh\necho hi\n", 0o755)
    make_file(source / "sub" / "deeper" / "x.txt", b"deep")
    make_file(source / "pair_a", b"two names, one inode")
    os.link(source / "pair_a", source / "sub" / "pair_b")
    (source / "empty").mkdir()
    odd = os.fsencode(source)
    for name in (NEWLINE_NAME, os.path.join(b"sub", INVALID_UTF8_NAME)):
        with open(os.path.join(odd, name), "wb") as handle:
            handle.write(b"odd name " + name)
        os.utime(os.path.join(odd, name), ns=(ODD_NS, ODD_NS))


def assert_manifest_matches_tree(world: Site, name: str) -> dict[bytes, FileRecord]:
    manifest_files, manifest_directories, reader = read_manifest(world.manifest(name))
    tree_files, tree_directories = walk_snapshot(world.snapshot(name))
    assert set(manifest_files) == set(tree_files)
    for path, record in tree_files.items():
        assert manifest_files[path] == record, path
    assert manifest_directories == tree_directories
    assert reader.files == len(tree_files)
    assert reader.bytes == sum(record[0] for record in tree_files.values())
    return manifest_files


def test_manifests_of_two_applies_match_an_independent_walk_of_each_snapshot(
    world: Site, cli: Cli
) -> None:
    build_varied_source(world.source)
    world.write()
    apply_ok(cli, world, 0)
    rewrite(world.source / "edit.txt", b"second, longer version\n", ODD_NS + 1)
    make_file(world.source / "sub" / "added.txt", b"new in the second")
    apply_ok(cli, world, 1)
    first, second = name_of(at(0)), name_of(at(1))
    assert world.snapshots() == [first, second]

    first_files = assert_manifest_matches_tree(world, first)
    second_files = assert_manifest_matches_tree(world, second)

    expected = {
        b"keep.txt",
        b"edit.txt",
        b"run.sh",
        b"pair_a",
        b"sub/pair_b",
        b"sub/deeper/x.txt",
        NEWLINE_NAME,
        b"sub/" + INVALID_UTF8_NAME,
    }
    assert set(first_files) == expected
    assert set(second_files) == expected | {b"sub/added.txt"}
    _, directories, _ = read_manifest(world.manifest(second))
    assert directories == {b"", b"empty", b"sub", b"sub/deeper"}
    # The source's hard-linked pair stays one inode inside each snapshot.
    assert first_files[b"pair_a"][5] == first_files[b"sub/pair_b"][5]
    assert first_files[b"run.sh"][2] == 0o755 and first_files[b"edit.txt"][2] == 0o600


def test_linked_files_inherit_their_hash_from_the_reference_manifest(world: Site, cli: Cli) -> None:
    build_varied_source(world.source)
    world.write()
    apply_ok(cli, world, 0)
    rewrite(world.source / "edit.txt", b"changed\n", ODD_NS + 7)
    apply_ok(cli, world, 1)
    first, _, _ = read_manifest(world.manifest(name_of(at(0))))
    second, _, _ = read_manifest(world.manifest(name_of(at(1))))

    linked = [path for path in second if path in first and second[path][5] == first[path][5]]
    assert sorted(linked) == sorted(set(first) - {b"edit.txt"})
    for path in linked:
        assert second[path][6] == first[path][6], path
        assert second[path][6] == sha256_of(world.snapshot(name_of(at(1))) / os.fsdecode(path))
    assert second[b"edit.txt"][5] != first[b"edit.txt"][5]
    assert second[b"edit.txt"][6] == hashlib.sha256(b"changed\n").hexdigest()


def test_manifest_lives_outside_the_snapshot_so_cp_a_does_not_copy_it(
    world: Site, cli: Cli
) -> None:
    build_varied_source(world.source)
    world.write()
    apply_ok(cli, world, 0)
    snapshot = world.snapshot(name_of(at(0)))
    assert world.manifest(name_of(at(0))).is_file()
    assert not world.manifest(name_of(at(0))).is_relative_to(snapshot)

    restored = world.root / "restored"
    subprocess.run(["cp", "-a", str(snapshot), str(restored)], check=True)
    restored_names = {
        name for _, directories, files in os.walk(restored) for name in directories + files
    }
    assert MANIFEST_DIRECTORY not in restored_names
    assert not any(name.startswith(".hardsnap") for name in restored_names)
    assert files_below(restored) == files_below(snapshot)


def test_prune_removes_the_manifests_of_pruned_snapshots(world: Site, cli: Cli) -> None:
    make_file(world.source / "a.txt", b"alpha")
    world.write(retain="1")
    apply_ok(cli, world, 0)
    apply_ok(cli, world, 1)
    assert world.manifests() == [name_of(at(0)), name_of(at(1))]

    document = apply_ok(cli, world, 2)
    assert action_results(document)["prune"] == "changed"
    assert world.snapshots() == [name_of(at(1)), name_of(at(2))]
    assert world.manifests() == [name_of(at(1)), name_of(at(2))]


def test_failed_snapshot_leaves_no_manifest_and_no_partial_manifest(
    world: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(world.source / "a.txt", b"alpha")
    make_file(world.source / "b.txt", b"bravo")
    world.write()
    apply_ok(cli, world, 0)
    rewrite(world.source / "a.txt", b"alpha 2", ODD_NS + 1)
    rewrite(world.source / "b.txt", b"bravo 2", ODD_NS + 1)

    partial = world.manifest(name_of(at(1)) + PARTIAL_SUFFIX)
    seen_partial: list[bool] = []
    real_copy = copying.copy_contents

    def failing_copy(
        input_fd: int, output_fd: int, info: os.stat_result, charge: copying.Charge | None = None
    ) -> int:
        seen_partial.append(partial.exists())
        if len(seen_partial) == 2:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_copy(input_fd, output_fd, info, charge)

    monkeypatch.setattr(copying, "copy_contents", failing_copy)
    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(1)))
    assert outcome.returncode == 1, outcome
    assert action_results(outcome.json())["snapshot"] == "failed"
    assert seen_partial == [True, True]  # the manifest was being written
    assert world.snapshots() == [name_of(at(0))]
    assert world.manifests() == [name_of(at(0))]
    assert not any(name.startswith(".hardsnap-partial") for name in os.listdir(world.target))


# -- 2. verify -------------------------------------------------------------------


@pytest.fixture
def two_snapshots(world: Site, cli: Cli) -> Site:
    """Day 0 and day 1: a.txt and sub/b.txt linked from day 0 into day 1,
    c.txt changed (copied) and new.txt only in day 1."""
    make_file(world.source / "a.txt", b"alpha")
    make_file(world.source / "sub" / "b.txt", b"bravo!", 0o600)
    make_file(world.source / "c.txt", b"charlie")
    world.write()
    apply_ok(cli, world, 0)
    rewrite(world.source / "c.txt", b"charlie, second", ODD_NS + 5)
    make_file(world.source / "new.txt", b"only in the second")
    apply_ok(cli, world, 1)
    assert world.snapshots() == [name_of(at(0)), name_of(at(1))]
    first, second = world.snapshot(name_of(at(0))), world.snapshot(name_of(at(1)))
    assert os.lstat(first / "a.txt").st_ino == os.lstat(second / "a.txt").st_ino
    assert os.lstat(first / "c.txt").st_ino != os.lstat(second / "c.txt").st_ino
    return world


@pytest.fixture
def newest_file(two_snapshots: Site) -> Path:
    """The file only the second snapshot holds."""
    return two_snapshots.snapshot(name_of(at(1))) / "new.txt"


def verify(cli: Cli, world: Site, *args: str, days: float = 2) -> Finished:
    return cli("verify", "r", *args, "-c", world.config, now=iso(at(days)))


def test_verify_fresh_snapshots_is_clean_in_text_and_json(two_snapshots: Site, cli: Cli) -> None:
    world = two_snapshots
    outcome = verify(cli, world)
    assert outcome.returncode == 0, outcome
    assert f"{name_of(at(0))}: clean (3 files, metadata)" in outcome.stdout
    assert f"{name_of(at(1))}: clean (4 files, metadata)" in outcome.stdout
    assert "All 2 snapshots clean." in outcome.stdout

    outcome = verify(cli, world, "--json", "--content")
    assert outcome.returncode == 0, outcome
    assert outcome.json() == {
        "resource": "r",
        "clean": True,
        "snapshots": [
            {
                "name": name_of(at(0)),
                "result": "clean",
                "content": True,
                "files": 3,
                "problems": [],
            },
            {
                "name": name_of(at(1)),
                "result": "clean",
                "content": True,
                "files": 4,
                "problems": [],
            },
        ],
    }


def test_verify_reports_an_edit_through_a_hard_link_in_every_snapshot_sharing_it(
    two_snapshots: Site, cli: Cli
) -> None:
    world = two_snapshots
    with open(world.snapshot(name_of(at(1))) / "a.txt", "ab") as handle:
        handle.write(b" edited")

    outcome = verify(cli, world, "--json")
    assert outcome.returncode == 1, outcome
    document = outcome.json()
    assert document["clean"] is False
    for snapshot in (name_of(at(0)), name_of(at(1))):
        assert problems_of(document, snapshot) == [("a.txt", "changed")]
    entry = document["snapshots"][0]
    assert entry["result"] == "damaged"
    assert set(entry["problems"][0]) == {"path", "problem", "detail"}
    assert "size 5 -> 12" in entry["problems"][0]["detail"]

    text = verify(cli, world)
    assert text.returncode == 1, text
    assert "2 snapshots of 2 with problems." in text.stdout
    assert text.stdout.count("changed    a.txt") == 2


def test_verify_flipped_byte_with_size_and_mtime_restored_is_clean_by_metadata_corrupted_by_content(
    two_snapshots: Site, newest_file: Path, cli: Cli
) -> None:
    world = two_snapshots
    before = os.lstat(newest_file)
    with open(newest_file, "r+b") as handle:
        handle.seek(3)
        byte = handle.read(1)
        handle.seek(3)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.utime(newest_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.lstat(newest_file)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    outcome = verify(cli, world)
    assert outcome.returncode == 0, outcome
    assert "All 2 snapshots clean." in outcome.stdout

    outcome = verify(cli, world, "--content", "--json")
    assert outcome.returncode == 1, outcome
    assert problems_of(outcome.json(), name_of(at(1))) == [("new.txt", "corrupted")]
    assert problems_of(outcome.json(), name_of(at(0))) == []
    text = verify(cli, world, "--content")
    assert text.returncode == 1, text
    assert "corrupted  new.txt" in text.stdout
    assert "contents and metadata" in text.stdout


def test_verify_content_reports_a_flipped_byte_in_a_shared_file_in_both_snapshots(
    two_snapshots: Site, cli: Cli
) -> None:
    world = two_snapshots
    path = world.snapshot(name_of(at(0))) / "sub" / "b.txt"
    before = os.lstat(path)
    path.write_bytes(b"brAvo!")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    outcome = verify(cli, world, "--content", "--json")
    assert outcome.returncode == 1, outcome
    for snapshot in (name_of(at(0)), name_of(at(1))):
        assert problems_of(outcome.json(), snapshot) == [("sub/b.txt", "corrupted")]


def test_verify_reports_a_deleted_file_as_missing_only_where_it_was_deleted(
    two_snapshots: Site, cli: Cli
) -> None:
    world = two_snapshots
    (world.snapshot(name_of(at(0))) / "sub" / "b.txt").unlink()
    outcome = verify(cli, world, "--json")
    assert outcome.returncode == 1, outcome
    assert problems_of(outcome.json(), name_of(at(0))) == [("sub/b.txt", "missing")]
    assert problems_of(outcome.json(), name_of(at(1))) == []


def test_verify_reports_a_removed_directory_and_its_files_as_missing(
    two_snapshots: Site, cli: Cli
) -> None:
    world = two_snapshots
    shutil.rmtree(world.snapshot(name_of(at(1))) / "sub")
    outcome = verify(cli, world, "--json", name_of(at(1)))
    assert outcome.returncode == 1, outcome
    assert problems_of(outcome.json(), name_of(at(1))) == [
        ("sub", "missing"),
        ("sub/b.txt", "missing"),
    ]


def test_verify_reports_an_extra_file_and_directory_as_unexpected(
    two_snapshots: Site, cli: Cli
) -> None:
    world = two_snapshots
    make_file(world.snapshot(name_of(at(1))) / "extra.txt", b"planted")
    (world.snapshot(name_of(at(1))) / "sub" / "newdir").mkdir()
    outcome = verify(cli, world, "--json")
    assert outcome.returncode == 1, outcome
    assert problems_of(outcome.json(), name_of(at(1))) == [
        ("extra.txt", "unexpected"),
        ("sub/newdir", "unexpected"),
    ]
    assert problems_of(outcome.json(), name_of(at(0))) == []


def test_verify_reports_a_file_recreated_with_same_content_and_metadata_as_replaced(
    two_snapshots: Site, newest_file: Path, cli: Cli
) -> None:
    world = two_snapshots
    old = os.lstat(newest_file)
    # Written beside it first, so the new file cannot reuse the old inode.
    twin = newest_file.with_name("new.txt.twin")
    twin.write_bytes(newest_file.read_bytes())
    os.chown(twin, old.st_uid, old.st_gid)
    os.chmod(twin, stat.S_IMODE(old.st_mode))
    os.utime(twin, ns=(old.st_atime_ns, old.st_mtime_ns))
    newest_file.unlink()
    os.rename(twin, newest_file)
    new = os.lstat(newest_file)
    assert new.st_ino != old.st_ino
    for field in ("st_size", "st_mtime_ns", "st_mode", "st_uid", "st_gid"):
        assert getattr(new, field) == getattr(old, field), field

    outcome = verify(cli, world, "--json", "--content")
    assert outcome.returncode == 1, outcome
    assert problems_of(outcome.json(), name_of(at(1))) == [("new.txt", "replaced")]
    detail = outcome.json()["snapshots"][1]["problems"][0]["detail"]
    assert str(old.st_ino) in detail and str(new.st_ino) in detail


def test_verify_named_snapshots_checks_only_those(two_snapshots: Site, cli: Cli) -> None:
    world = two_snapshots
    (world.snapshot(name_of(at(1))) / "new.txt").unlink()
    outcome = verify(cli, world, name_of(at(0)), "--json")
    assert outcome.returncode == 0, outcome
    assert [entry["name"] for entry in outcome.json()["snapshots"]] == [name_of(at(0))]

    outcome = verify(cli, world, name_of(at(1)))
    assert outcome.returncode == 1, outcome
    assert name_of(at(0)) not in outcome.stdout
    assert "missing    new.txt" in outcome.stdout
    shown = state_snapshots(cli, world)
    assert shown[name_of(at(0))]["verified"]["clean"] is True
    assert shown[name_of(at(1))]["verified"]["clean"] is False


def test_verify_unknown_snapshot_exits_1_naming_it(two_snapshots: Site, cli: Cli) -> None:
    world = two_snapshots
    outcome = verify(cli, world, UNKNOWN_SNAPSHOT)
    assert outcome.returncode == 1, outcome
    assert f"no snapshot {UNKNOWN_SNAPSHOT}" in outcome.stdout + outcome.stderr
    assert UNKNOWN_SNAPSHOT not in state_snapshots(cli, world)


def test_verify_unknown_resource_exits_2(two_snapshots: Site, cli: Cli) -> None:
    outcome = cli("verify", "nope", "-c", two_snapshots.config)
    assert outcome.returncode == 2, outcome
    assert 'no resource named "nope"' in outcome.stderr


def test_verify_resource_without_snapshots_is_clean(world: Site, cli: Cli) -> None:
    world.write()
    outcome = verify(cli, world, "--json")
    assert outcome.returncode == 0, outcome
    assert outcome.json() == {"resource": "r", "clean": True, "snapshots": []}


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_verify_reports_a_missing_or_damaged_manifest_while_the_snapshot_stays_usable(
    two_snapshots: Site, cli: Cli, damage: str
) -> None:
    world = two_snapshots
    manifest = world.manifest(name_of(at(1)))
    if damage == "missing":
        manifest.unlink()
    else:
        size = manifest.stat().st_size
        os.truncate(manifest, size // 2)

    outcome = verify(cli, world, "--json")
    assert outcome.returncode == 1, outcome
    assert problems_of(outcome.json(), name_of(at(1))) == [("", "manifest")]
    assert problems_of(outcome.json(), name_of(at(0))) == []
    text = verify(cli, world)
    assert text.returncode == 1, text
    assert "manifest" in text.stdout and str(manifest) in text.stdout

    # Still browsable, and everything else keeps working.
    assert (world.snapshot(name_of(at(1))) / "new.txt").read_bytes() == b"only in the second"
    shown = cli("state", "show", "-c", world.config)
    assert shown.returncode == 0, shown
    assert name_of(at(1)) in shown.stdout
    assert set(state_snapshots(cli, world)) == {name_of(at(0)), name_of(at(1))}
    planned = cli("plan", "-c", world.config, now=iso(at(2)))
    assert planned.returncode == 0, planned
    assert name_of(at(2)) in planned.stdout
    apply_ok(cli, world, 2)
    assert world.snapshots() == [name_of(at(0)), name_of(at(1)), name_of(at(2))]
    # The new snapshot's manifest is sound, its hashes read from the files.
    assert_manifest_matches_tree(world, name_of(at(2)))
    outcome = verify(cli, world, name_of(at(2)), "--content")
    assert outcome.returncode == 0, outcome


def test_state_show_gives_each_snapshots_last_verification(two_snapshots: Site, cli: Cli) -> None:
    world = two_snapshots
    shown = state_snapshots(cli, world)
    assert [shown[name]["verified"] for name in (name_of(at(0)), name_of(at(1)))] == [None, None]
    text = cli("state", "show", "-c", world.config)
    assert text.stdout.count("never") == 2, text

    assert verify(cli, world, days=2).returncode == 0
    (world.snapshot(name_of(at(1))) / "new.txt").unlink()
    assert verify(cli, world, name_of(at(1)), "--content", days=3).returncode == 1

    shown = state_snapshots(cli, world)
    assert shown[name_of(at(0))]["verified"] == {
        "at": iso(at(2)),
        "content": False,
        "clean": True,
        "problems": 0,
    }
    assert shown[name_of(at(1))]["verified"] == {
        "at": iso(at(3)),
        "content": True,
        "clean": False,
        "problems": 1,
    }
    text = cli("state", "show", "-c", world.config)
    assert text.returncode == 0, text
    assert "2026-03-31: clean (metadata)" in text.stdout
    assert "2026-04-01: 1 problems (content)" in text.stdout


# -- 3. diff -----------------------------------------------------------------------


@pytest.fixture
def three_snapshots(world: Site, cli: Cli) -> Site:
    """Day 0 -> 1: a linked, b changed, c added, gone/ removed, fresh/ added,
    morph turned from a file into a directory. Day 1 -> 2: a changed."""
    make_file(world.source / "a.txt", b"alpha")
    make_file(world.source / "b.txt", b"bravo")
    make_file(world.source / "gone" / "x.txt", b"xx")
    make_file(world.source / "gone" / "y" / "z.txt", b"zzz")
    make_file(world.source / "morph", b"file")
    world.write()
    apply_ok(cli, world, 0)

    rewrite(world.source / "b.txt", b"bravo-2", ODD_NS + 1)
    make_file(world.source / "c.txt", b"cc")
    shutil.rmtree(world.source / "gone")
    make_file(world.source / "fresh" / "one.txt", b"1")
    make_file(world.source / "fresh" / "deep" / "two.txt", b"22")
    (world.source / "morph").unlink()
    make_file(world.source / "morph" / "inner.txt", b"inner")
    apply_ok(cli, world, 1)

    rewrite(world.source / "a.txt", b"alpha, longer", ODD_NS + 2)
    apply_ok(cli, world, 2)
    assert world.snapshots() == [name_of(at(0)), name_of(at(1)), name_of(at(2))]
    return world


def diff(cli: Cli, world: Site, *args: str) -> Finished:
    return cli("diff", "r", *args, "-c", world.config)


FIRST_TO_SECOND = {
    "resource": "r",
    "from": name_of(at(0)),
    "to": name_of(at(1)),
    "added": [
        {"path": "c.txt", "size_before": None, "size_after": 2},
        {"path": "fresh/deep/two.txt", "size_before": None, "size_after": 2},
        {"path": "fresh/one.txt", "size_before": None, "size_after": 1},
        {"path": "morph/inner.txt", "size_before": None, "size_after": 5},
    ],
    "removed": [
        {"path": "gone/x.txt", "size_before": 2, "size_after": None},
        {"path": "gone/y/z.txt", "size_before": 3, "size_after": None},
        {"path": "morph", "size_before": 4, "size_after": None},
    ],
    "changed": [{"path": "b.txt", "size_before": 5, "size_after": 7}],
    "unchanged": 1,
}


def test_diff_defaults_to_the_two_newest_snapshots(three_snapshots: Site, cli: Cli) -> None:
    outcome = diff(cli, three_snapshots)
    assert outcome.returncode == 0, outcome
    assert outcome.stdout.splitlines() == [
        f'diff "r": {name_of(at(1))} -> {name_of(at(2))}',
        "~ a.txt (5 B -> 13 B)",
        "1 change: 0 added, 0 removed, 1 changed; 5 unchanged",
    ]


def test_diff_json_lists_added_removed_changed_with_sizes_and_counts_linked_as_unchanged(
    three_snapshots: Site, cli: Cli
) -> None:
    outcome = diff(cli, three_snapshots, name_of(at(0)), name_of(at(1)), "--json")
    assert outcome.returncode == 0, outcome
    assert outcome.json() == FIRST_TO_SECOND


def test_diff_text_shows_each_change_with_its_sizes_and_a_summary(
    three_snapshots: Site, cli: Cli
) -> None:
    outcome = diff(cli, three_snapshots, name_of(at(0)), name_of(at(1)))
    assert outcome.returncode == 0, outcome
    assert outcome.stdout.splitlines() == [
        f'diff "r": {name_of(at(0))} -> {name_of(at(1))}',
        "~ b.txt (5 B -> 7 B)",
        "+ c.txt (2 B)",
        "+ fresh/deep/two.txt (2 B)",
        "+ fresh/one.txt (1 B)",
        "- gone/x.txt (2 B)",
        "- gone/y/z.txt (3 B)",
        "- morph (4 B)",
        "+ morph/inner.txt (5 B)",
        "8 changes: 4 added, 3 removed, 1 changed; 1 unchanged",
    ]


def test_diff_naming_only_a_compares_it_with_the_snapshot_after_it(
    three_snapshots: Site, cli: Cli
) -> None:
    outcome = diff(cli, three_snapshots, name_of(at(0)), "--json")
    assert outcome.returncode == 0, outcome
    assert outcome.json() == FIRST_TO_SECOND


def test_diff_naming_only_the_newest_snapshot_exits_1_saying_none_follows(
    three_snapshots: Site, cli: Cli
) -> None:
    outcome = diff(cli, three_snapshots, name_of(at(2)))
    assert outcome.returncode == 1, outcome
    assert "newest" in outcome.stderr and name_of(at(2)) in outcome.stderr


def test_diff_across_two_days_sees_the_file_changed_in_either(
    three_snapshots: Site, cli: Cli
) -> None:
    outcome = diff(cli, three_snapshots, name_of(at(0)), name_of(at(2)), "--json")
    assert outcome.returncode == 0, outcome
    document = outcome.json()
    assert [item["path"] for item in document["changed"]] == ["a.txt", "b.txt"]
    assert document["unchanged"] == 0


def test_diff_counts_a_file_with_the_same_content_but_a_new_inode_as_changed(
    world: Site, cli: Cli
) -> None:
    make_file(world.source / "same.txt", b"same")
    world.write()
    apply_ok(cli, world, 0)
    os.utime(world.source / "same.txt", ns=(ODD_NS + 9, ODD_NS + 9))
    apply_ok(cli, world, 1)
    document = diff(cli, world, "--json").json()
    assert document["changed"] == [{"path": "same.txt", "size_before": 4, "size_after": 4}]
    assert document["unchanged"] == 0


@pytest.mark.parametrize("applies", [0, 1])
def test_diff_with_fewer_than_two_snapshots_exits_1_with_a_message(
    world: Site, cli: Cli, applies: int
) -> None:
    make_file(world.source / "a.txt", b"alpha")
    world.write()
    for day in range(applies):
        apply_ok(cli, world, day)
    outcome = diff(cli, world)
    assert outcome.returncode == 1, outcome
    assert f"has {applies} snapshot(s)" in outcome.stderr
    assert "a diff needs two" in outcome.stderr
    assert outcome.stdout == ""


@pytest.mark.parametrize("position", ["first", "second"])
def test_diff_unknown_snapshot_exits_1_naming_it(
    three_snapshots: Site, cli: Cli, position: str
) -> None:
    args = (
        [UNKNOWN_SNAPSHOT, name_of(at(1))]
        if position == "first"
        else [name_of(at(0)), UNKNOWN_SNAPSHOT]
    )
    outcome = diff(cli, three_snapshots, *args)
    assert outcome.returncode == 1, outcome
    assert f"no snapshot {UNKNOWN_SNAPSHOT}" in outcome.stderr


def test_diff_unknown_resource_exits_2(three_snapshots: Site, cli: Cli) -> None:
    outcome = cli("diff", "nope", "-c", three_snapshots.config)
    assert outcome.returncode == 2, outcome
    assert 'no resource named "nope"' in outcome.stderr


# -- 4. real space -----------------------------------------------------------------


def test_state_show_gives_bytes_copied_and_bytes_exclusive_per_snapshot(
    world: Site, cli: Cli
) -> None:
    make_file(world.source / "shared.txt", b"S" * 100)  # linked in both: counts for neither
    make_file(world.source / "changes.txt", b"C" * 20)  # 20 in the first, 30 in the second
    make_file(world.source / "pair_a", b"P" * 7)  # one inode, two names: 7 bytes once
    os.link(world.source / "pair_a", world.source / "pair_b")
    world.write(retain="1")
    apply_ok(cli, world, 0)
    rewrite(world.source / "changes.txt", b"C" * 30, ODD_NS + 1)
    (world.source / "pair_a").unlink()
    (world.source / "pair_b").unlink()
    make_file(world.source / "late.txt", b"L" * 3)
    apply_ok(cli, world, 1)

    shown = state_snapshots(cli, world)
    first, second = shown[name_of(at(0))], shown[name_of(at(1))]
    # Exclusive bytes are the blocks its files alone hold (at least one each).
    first_alone = blocks(world.snapshot(name_of(at(0))), "changes.txt", "pair_a")
    second_alone = blocks(world.snapshot(name_of(at(1))), "changes.txt", "late.txt")
    assert first_alone >= 2 * 512 and second_alone >= 2 * 512
    assert (first["bytes_copied"], first["bytes_exclusive"]) == (100 + 20 + 7, first_alone)
    assert (second["bytes_copied"], second["bytes_exclusive"]) == (30 + 3, second_alone)
    assert (first["files_copied"], first["files_linked"]) == (3, 1)
    assert (second["files_copied"], second["files_linked"]) == (2, 1)

    # The planned prune of the first frees what it holds alone.
    outcome = cli("plan", "-c", world.config, "--json", now=iso(at(1.5)))
    assert outcome.returncode == 0, outcome
    prune = [a for a in resource_of(outcome.json())["actions"] if a["kind"] == "prune"]
    assert [(a["snapshots"], a["bytes_freed"]) for a in prune] == [([name_of(at(0))], first_alone)]
    text = cli("state", "show", "-c", world.config)
    assert text.returncode == 0, text
    assert "127 B" in text.stdout and "33 B" in text.stdout
    assert format_bytes(first_alone) in text.stdout and format_bytes(second_alone) in text.stdout


def test_bytes_exclusive_grows_when_the_other_snapshot_sharing_a_file_is_pruned(
    world: Site, cli: Cli
) -> None:
    make_file(world.source / "shared.txt", b"S" * 50)
    world.write(retain="1")
    apply_ok(cli, world, 0)
    apply_ok(cli, world, 0.75)  # next day (00:00), same file linked
    shown = state_snapshots(cli, world)
    assert [shown[name]["bytes_exclusive"] for name in sorted(shown)] == [0, 0]

    # The file changes; on day 1.75 (midnight) day 0 expires, day 0.75 (a day old)
    # stays.
    rewrite(world.source / "shared.txt", b"T" * 50, ODD_NS + 1)
    document = apply_ok(cli, world, 1.75)
    assert action_results(document)["prune"] == "changed"
    shown = state_snapshots(cli, world)
    assert list(shown) == [name_of(at(0.75)), name_of(at(1.75))]
    assert shown[name_of(at(0.75))]["bytes_exclusive"] == blocks(
        world.snapshot(name_of(at(0.75))), "shared.txt"
    )
    assert shown[name_of(at(0.75))]["bytes_exclusive"] > 0
    assert shown[name_of(at(1.75))]["bytes_copied"] == 50


# -- 5. source guards --------------------------------------------------------------


@pytest.fixture
def filled_then_emptied(world: Site, cli: Cli) -> Site:
    """Snapshots of three files on days 0 and 2 (retain 2 keeps both), then
    the source emptied (as an unmounted disk looks) and retain 1, so on day 3
    the day-0 snapshot is expired and day 2's is not."""
    for index in range(3):
        make_file(world.source / f"f{index}.txt", b"data")
    world.write(retain="2")
    apply_ok(cli, world, 0)
    apply_ok(cli, world, 2)
    world.write(retain="1")
    for path in world.source.iterdir():
        path.unlink()
    return world


def test_plan_refuses_an_empty_source_when_the_newest_snapshot_has_files(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    world.write(retain="1", post_command=world.marker_command("post"))
    outcome = cli("plan", "-c", world.config, now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert "refused: source_dir" in outcome.stdout
    assert "is empty" in outcome.stdout
    assert "3 files" in outcome.stdout
    assert "--allow-empty-source" in outcome.stdout

    outcome = cli("plan", "-c", world.config, "--allow-empty-source", now=iso(at(3)))
    assert outcome.returncode == 0, outcome
    assert "refused" not in outcome.stdout


def test_apply_refuses_an_empty_source_with_no_snapshot_no_prune_and_no_hook(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    world.write(retain="1", post_command=world.marker_command("post"))
    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    document = outcome.json()
    assert resource_of(document)["result"] == "failed"
    assert "--allow-empty-source" in resource_of(document)["message"]
    assert action_results(document) == {
        "snapshot": "failed",
        "prune": "upstream_failed",
        "post_command": "upstream_failed",
    }
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]
    assert world.manifests() == [name_of(at(0)), name_of(at(2))]
    assert os.listdir(world.marks) == []

    text = cli("apply", "-c", world.config, now=iso(at(3)))
    assert text.returncode == 1, text
    assert "is empty" in text.stderr
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]


def test_apply_allow_empty_source_takes_the_empty_snapshot_and_prunes(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    document = apply_ok(cli, world, 3, "--allow-empty-source")
    assert action_results(document) == {"snapshot": "changed", "prune": "changed"}
    assert world.snapshots() == [name_of(at(2)), name_of(at(3))]
    assert os.listdir(world.snapshot(name_of(at(3)))) == []
    with ManifestReader(str(world.manifest(name_of(at(3))))) as reader:
        assert reader.files == 0


def test_missing_source_without_pre_command_is_refused_with_no_snapshot_and_no_prune(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    world.source.rmdir()
    outcome = cli("plan", "-c", world.config, now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert "does not exist" in outcome.stdout

    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert resource_of(outcome.json())["result"] == "failed"
    assert "does not exist" in resource_of(outcome.json())["message"]
    assert action_results(outcome.json()) == {"snapshot": "failed", "prune": "upstream_failed"}
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]
    # --allow-empty-source does not make a missing source acceptable.
    outcome = cli("apply", "-c", world.config, "--allow-empty-source", now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]


def test_pre_command_that_mounts_a_missing_source_lets_the_snapshot_run(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    world.source.rmdir()
    source = shlex.quote(str(world.source))
    world.write(
        retain="1",
        pre_command=f"mkdir -p {source} && printf mounted > {source}/disk.txt",
        post_command=world.marker_command("post"),
    )
    planned = cli("plan", "-c", world.config, now=iso(at(3)))
    assert planned.returncode == 0, planned
    assert "does not exist yet" in planned.stdout

    document = apply_ok(cli, world, 3)
    assert action_results(document) == {
        "pre_command": "changed",
        "snapshot": "changed",
        "prune": "changed",
        "post_command": "changed",
    }
    assert world.snapshots() == [name_of(at(2)), name_of(at(3))]
    assert (world.snapshot(name_of(at(3))) / "disk.txt").read_bytes() == b"mounted"
    assert world.mark("post").exists()


def test_pre_command_that_leaves_the_source_empty_fails_the_snapshot_and_skips_the_rest(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    world.write(
        retain="1",
        pre_command=world.marker_command("pre"),
        post_command=world.marker_command("post"),
    )
    planned = cli("plan", "-c", world.config, now=iso(at(3)))
    assert planned.returncode == 0, planned
    assert "is empty: the snapshot fails unless pre_command fills it" in planned.stdout

    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    document = outcome.json()
    assert action_results(document) == {
        "pre_command": "changed",
        "snapshot": "failed",
        "prune": "upstream_failed",
        "post_command": "upstream_failed",
    }
    snapshot = next(a for a in resource_of(document)["actions"] if a["kind"] == "snapshot")
    assert "is empty" in snapshot["message"] and "--allow-empty-source" in snapshot["message"]
    assert world.mark("pre").exists()
    assert not world.mark("post").exists()
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]
    assert world.manifests() == [name_of(at(0)), name_of(at(2))]


def test_empty_source_holding_only_the_target_inside_it_is_refused(world: Site, cli: Cli) -> None:
    target = world.source / "backups"
    make_file(world.source / "a.txt", b"alpha")
    world.target = target
    world.write()
    apply_ok(cli, world, 0)
    (world.source / "a.txt").unlink()
    outcome = cli("apply", "-c", world.config, now=iso(at(1)))
    assert outcome.returncode == 1, outcome
    assert "is empty" in outcome.stderr
    assert world.snapshots() == [name_of(at(0))]


def test_empty_source_is_refused_even_when_the_newest_snapshot_has_no_manifest(
    filled_then_emptied: Site, cli: Cli
) -> None:
    # A snapshot made before manifests existed, or whose manifest was lost,
    # still holds files: an empty source is still the sign of an unmounted disk.
    world = filled_then_emptied
    world.manifest(name_of(at(2))).unlink()
    assert os.listdir(world.snapshot(name_of(at(2))))
    outcome = cli("plan", "-c", world.config, now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert "--allow-empty-source" in outcome.stdout
    outcome = cli("apply", "-c", world.config, now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]


def shrunk(world: Site, cli: Cli, files: int, removed: int) -> None:
    """A snapshot of a source of `files` files, `removed` of them deleted since."""
    for index in range(files):
        make_file(world.source / f"f{index}.txt", b"data")
    world.write()
    apply_ok(cli, world, 0)
    for index in range(removed):
        (world.source / f"f{index}.txt").unlink()


def test_source_that_lost_more_than_half_its_files_warns_in_plan_and_apply_and_snapshots(
    world: Site, cli: Cli
) -> None:
    shrunk(world, cli, 5, 3)
    warning = "the source holds 2 files, the newest snapshot 5: more than half are gone since"

    planned = cli("plan", "-c", world.config, now=iso(at(1)))
    assert planned.returncode == 0, planned
    assert warning in planned.stdout

    outcome = cli("apply", "-c", world.config, now=iso(at(1)))
    assert outcome.returncode == 0, outcome
    assert f"warning: r: {warning}" in outcome.stderr
    assert warning not in outcome.stdout
    assert world.snapshots() == [name_of(at(0)), name_of(at(1))]
    assert sorted(os.listdir(world.snapshot(name_of(at(1))))) == ["f3.txt", "f4.txt"]


def test_source_that_lost_exactly_half_its_files_gives_no_warning(world: Site, cli: Cli) -> None:
    shrunk(world, cli, 4, 2)
    planned = cli("plan", "-c", world.config, now=iso(at(1)))
    assert planned.returncode == 0, planned
    assert "more than half" not in planned.stdout
    outcome = cli("apply", "-c", world.config, now=iso(at(1)))
    assert outcome.returncode == 0, outcome
    assert "more than half" not in outcome.stderr


def test_apply_json_warns_of_a_shrunken_source_in_its_document_and_on_stderr(
    world: Site, cli: Cli
) -> None:
    shrunk(world, cli, 5, 4)
    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(1)))
    assert outcome.returncode == 0, outcome
    warnings = resource_of(outcome.json())["warnings"]
    assert any("more than half are gone" in warning for warning in warnings), warnings
    assert "more than half are gone" in outcome.stderr


def test_empty_first_snapshot_without_a_reference_is_taken(world: Site, cli: Cli) -> None:
    world.write()
    planned = cli("plan", "-c", world.config, "--json", now=iso(at(0)))
    assert planned.returncode == 0, planned
    assert resource_of(planned.json())["refusal"] is None
    apply_ok(cli, world, 0)
    assert world.snapshots() == [name_of(at(0))]
    assert os.listdir(world.snapshot(name_of(at(0)))) == []
    # An empty source after an empty snapshot is no alarm either.
    apply_ok(cli, world, 1)
    assert world.snapshots() == [name_of(at(0)), name_of(at(1))]
    assert json.loads(cli("verify", "r", "-c", world.config, "--json").stdout)["clean"] is True


def test_verify_and_diff_still_reach_a_resource_removed_from_the_config(
    three_snapshots: Site, cli: Cli
) -> None:
    world = three_snapshots
    write_config(
        world.config,
        {
            "name": "other",
            "type": "backup",
            "source_dir": str(world.source),
            "target_path": str(world.root / "elsewhere"),
        },
    )
    outcome = verify(cli, world, "--json")
    assert outcome.returncode == 0, outcome
    assert [s["name"] for s in outcome.json()["snapshots"]] == world.snapshots()
    outcome = diff(cli, world, name_of(at(0)), name_of(at(1)), "--json")
    assert outcome.returncode == 0, outcome
    assert outcome.json() == FIRST_TO_SECOND
    assert cli("verify", "never-existed", "-c", world.config).returncode == 2

"""verify: snapshots checked against their manifests, by metadata and by
content; what drifted, rotted, went missing or was planted is reported per
snapshot.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.auditing.audits import (
    UNKNOWN_SNAPSHOT,
    apply_ok,
    assert_manifest_matches_tree,
    problems_of,
    state_snapshots,
    verify,
)
from tests.world.cli import Cli
from tests.world.clock import at, iso, name_of
from tests.world.files import make_file
from tests.world.site import Site

# -- 2. verify -------------------------------------------------------------------


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

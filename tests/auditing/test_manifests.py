"""Manifests checked against an independent walk of each snapshot, kept outside
the snapshots and removed with them, and the real space each snapshot takes
(state show).
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess

import pytest

from hardsnap.providers.engine import copying
from hardsnap.providers.files.escaping import format_bytes
from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY, PARTIAL_SUFFIX
from tests.auditing.audits import (
    INVALID_UTF8_NAME,
    NEWLINE_NAME,
    apply_ok,
    assert_manifest_matches_tree,
    blocks,
    build_varied_source,
    read_manifest,
    sha256_of,
    state_snapshots,
)
from tests.world.cli import Cli
from tests.world.clock import at, iso, name_of
from tests.world.documents import action_results, resource_of
from tests.world.files import ODD_NS, files_below, make_file, rewrite
from tests.world.site import Site

# -- 1. manifests checked against the trees -------------------------------------


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

"""diff: what was added, removed and changed between two snapshots, in text and
JSON.
"""

from __future__ import annotations

import os

import pytest

from tests.auditing.audits import (
    FIRST_TO_SECOND,
    UNKNOWN_SNAPSHOT,
    apply_ok,
    diff,
)
from tests.world.cli import Cli
from tests.world.clock import at, name_of
from tests.world.files import ODD_NS, make_file
from tests.world.site import Site

# -- 3. diff -----------------------------------------------------------------------


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

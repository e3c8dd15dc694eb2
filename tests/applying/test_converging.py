"""The real CLI converging: one snapshot per window, plan that changes nothing,
the JSON documents, state, --resource, the clock and help.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.applying.cli_steps import (
    append_line,
    state_listing,
)
from tests.world.cli import Cli, hardsnap_command
from tests.world.clock import at, iso, name_of
from tests.world.documents import actions_of, kinds, result_of
from tests.world.files import files_below, lines_of, make_file
from tests.world.site import Site

# -- windows and convergence ---------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "first", "same_window", "next_window"),
    [
        ("daily", "2026-03-29T06:00:00Z", "2026-03-29T23:59:00Z", "2026-03-30T00:00:00Z"),
        ("hourly", "2026-03-29T06:00:00Z", "2026-03-29T06:59:00Z", "2026-03-29T07:00:00Z"),
        # 2026-03-23 is a Monday, 03-29 a Sunday of the same ISO week.
        ("weekly", "2026-03-23T00:00:00Z", "2026-03-29T23:59:00Z", "2026-03-30T00:00:00Z"),
    ],
)
def test_apply_takes_one_snapshot_per_window_and_settles_within_it(
    world: Site, cli: Cli, schedule: str, first: str, same_window: str, next_window: str
) -> None:
    world.write(schedule=schedule)
    outcome = cli("apply", "-c", world.config, now=first)
    assert outcome.returncode == 0, outcome
    first_name = name_of(dt.datetime.fromisoformat(first))
    assert world.snapshots() == [first_name]

    outcome = cli("apply", "-c", world.config, "--json", now=same_window)
    assert outcome.returncode == 0, outcome
    assert result_of(outcome.json()) == "settled"
    assert actions_of(outcome.json()) == []
    outcome = cli("apply", "-c", world.config, now=same_window)
    assert outcome.returncode == 0, outcome
    assert "No changes" in outcome.stdout
    assert world.snapshots() == [first_name]

    outcome = cli("apply", "-c", world.config, now=next_window)
    assert outcome.returncode == 0, outcome
    assert world.snapshots() == [first_name, name_of(dt.datetime.fromisoformat(next_window))]


def test_apply_window_uses_utc_not_the_offset_of_hardsnap_now(world: Site, cli: Cli) -> None:
    world.write()
    assert cli("apply", "-c", world.config, now=iso(at(0))).returncode == 0
    # 01:00+02:00 on the 30th is still the 29th in UTC.
    outcome = cli("apply", "-c", world.config, now="2026-03-30T01:00:00+02:00")
    assert outcome.returncode == 0, outcome
    assert "No changes" in outcome.stdout
    assert world.snapshots() == ["2026.088.06.00"]


def test_three_daily_applies_make_three_named_snapshots_with_the_source_content(
    world: Site, cli: Cli
) -> None:
    world.write()
    for day in range(3):
        assert cli("apply", "-c", world.config, now=iso(at(day))).returncode == 0
    assert world.snapshots() == ["2026.088.06.00", "2026.089.06.00", "2026.090.06.00"]
    for name in world.snapshots():
        assert files_below(world.target / name) == ["a.txt", "sub/b.txt"]
        assert (world.target / name / "sub" / "b.txt").read_bytes() == b"bravo!"
    first = os.lstat(world.target / "2026.088.06.00" / "a.txt")
    last = os.lstat(world.target / "2026.090.06.00" / "a.txt")
    assert first.st_ino == last.st_ino


# -- plan changes nothing --------------------------------------------------------------


def test_plan_on_a_fresh_config_creates_no_target_no_state_and_runs_no_hook(
    world: Site, cli: Cli, state_dir: Path
) -> None:
    world.write(
        target_path=str(world.root / "deep" / "dst"),
        pre_command=append_line(world.mark("pre"), "pre"),
        post_command=append_line(world.mark("post"), "post"),
    )
    outcome = cli("plan", "-c", world.config)
    assert outcome.returncode == 0, outcome
    assert "snapshot" in outcome.stdout
    assert not (world.root / "deep").exists()
    assert not state_dir.exists()
    assert os.listdir(world.marks) == []


def test_plan_with_existing_state_leaves_state_dir_and_target_unchanged(
    world: Site, cli: Cli, state_dir: Path
) -> None:
    world.write(
        retain="3",
        pre_command=append_line(world.mark("pre"), "pre"),
        post_command=append_line(world.mark("post"), "post"),
    )
    for day in range(3):
        assert cli("apply", "-c", world.config, now=iso(at(day))).returncode == 0
    listing = state_listing(state_dir)
    shown = cli("state", "show", "--json", now=None).stdout
    snapshots = world.snapshots()
    hooks_before = (lines_of(world.mark("pre")), lines_of(world.mark("post")))

    # A new window with expired snapshots: a plan full of changes.
    outcome = cli("plan", "-c", world.config, "--json", now=iso(at(5)))
    assert outcome.returncode == 0, outcome
    assert kinds(actions_of(outcome.json())) == [
        "pre_command",
        "snapshot",
        "prune",
        "post_command",
    ]
    assert state_listing(state_dir) == listing
    assert cli("state", "show", "--json", now=None).stdout == shown
    assert world.snapshots() == snapshots
    assert (lines_of(world.mark("pre")), lines_of(world.mark("post"))) == hooks_before


def test_plan_detailed_exitcode_is_2_with_changes_0_without_and_1_on_invalid_config(
    world: Site, cli: Cli
) -> None:
    world.write()
    outcome = cli("plan", "-c", world.config, "--detailed-exitcode")
    assert outcome.returncode == 2, outcome
    assert cli("plan", "-c", world.config).returncode == 0
    assert cli("apply", "-c", world.config).returncode == 0
    outcome = cli("plan", "-c", world.config, "--detailed-exitcode", now=iso(at(0, hours=17)))
    assert outcome.returncode == 0, outcome
    assert cli("plan", "-c", world.config, "--detailed-exitcode", now=iso(at(1))).returncode == 2

    world.write(schedule="fortnightly")
    outcome = cli("plan", "-c", world.config, "--detailed-exitcode")
    assert outcome.returncode == 1, outcome
    assert "schedule" in outcome.stderr
    assert cli("plan", "-c", world.config).returncode == 2


# -- JSON ----------------------------------------------------------------------------


def test_plan_json_lists_actions_in_order_with_snapshot_prediction_and_prune(
    world: Site, cli: Cli
) -> None:
    world.write(pre_command="echo from-pre", post_command="echo from-post")
    outcome = cli("plan", "-c", world.config, "--json", now=iso(at(-40)))
    document = json.loads(outcome.stdout)  # exactly one JSON document
    assert outcome.returncode == 0, outcome
    assert [resource["name"] for resource in document["resources"]] == ["r"]
    actions = actions_of(document)
    assert kinds(actions) == ["pre_command", "snapshot", "post_command"]
    snapshot = actions[1]
    assert snapshot["snapshot"] == name_of(at(-40))
    assert snapshot["reference"] is None
    assert (snapshot["files_to_copy"], snapshot["files_to_link"]) == (2, 0)
    assert snapshot["bytes_to_copy"] == len(b"alpha") + len(b"bravo!")

    assert cli("apply", "-c", world.config, now=iso(at(-40))).returncode == 0
    assert cli("apply", "-c", world.config, now=iso(at(-10))).returncode == 0
    make_file(world.source / "a.txt", b"alpha, longer now")
    outcome = cli("plan", "-c", world.config, "--json")
    document = json.loads(outcome.stdout)
    actions = actions_of(document)
    assert kinds(actions) == ["pre_command", "snapshot", "prune", "post_command"]
    snapshot, prune = actions[1], actions[2]
    assert snapshot["snapshot"] == name_of(at(0))
    assert snapshot["reference"] == name_of(at(-10))
    assert (snapshot["files_to_copy"], snapshot["files_to_link"]) == (1, 1)
    assert snapshot["bytes_to_copy"] == len(b"alpha, longer now")
    assert prune["snapshots"] == [name_of(at(-40))]
    assert "bytes_freed" in prune


def test_plan_json_prune_action_reports_bytes_freed_as_a_count(world: Site, cli: Cli) -> None:
    make_file(world.source / "unique.bin", b"u" * 5000)
    make_file(world.source / "shared.bin", b"s" * 100_000)
    world.write()
    assert cli("apply", "-c", world.config, now=iso(at(-31))).returncode == 0
    make_file(world.source / "unique.bin", b"v" * 6000)
    assert cli("apply", "-c", world.config, now=iso(at(-2))).returncode == 0
    outcome = cli("plan", "-c", world.config, "--json")
    prune = [action for action in actions_of(outcome.json()) if action["kind"] == "prune"]
    assert prune and prune[0]["snapshots"] == [name_of(at(-31))], outcome
    freed = prune[0]["bytes_freed"]
    # Only unique.bin's old copy is freed: the rest is linked from the kept snapshot.
    assert isinstance(freed, int), f"bytes_freed is {freed!r}"
    assert 5000 <= freed < 100_000


def test_apply_json_is_one_document_with_results_and_snapshot_counts(world: Site, cli: Cli) -> None:
    os.symlink("a.txt", world.source / "link")
    world.write(pre_command="echo noise-on-stdout; echo noise-on-stderr >&2")
    outcome = cli("apply", "-c", world.config, "--json")
    assert outcome.returncode == 0, outcome
    document = json.loads(outcome.stdout)
    assert result_of(document) == "changed"
    actions = actions_of(document)
    assert kinds(actions) == ["pre_command", "snapshot"]
    assert all(action["result"] == "changed" for action in actions)
    snapshot = actions[1]
    assert snapshot["snapshot"] == name_of(at(0))
    assert (snapshot["files_copied"], snapshot["files_linked"]) == (2, 0)
    assert snapshot["bytes_copied"] == 11
    skipped = snapshot["skipped"]
    if isinstance(skipped, list):  # entries, or a count: SPEC leaves it open
        assert [entry["path"] for entry in skipped] == ["link"]
    else:
        assert skipped == 1

    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(1)))
    document = json.loads(outcome.stdout)
    snapshot = actions_of(document)[1]
    assert (snapshot["files_copied"], snapshot["files_linked"], snapshot["bytes_copied"]) == (
        0,
        2,
        0,
    )


# -- state, --resource, the clock, help -------------------------------------------------------


def test_state_show_and_plan_list_a_resource_removed_from_the_config_as_unmanaged(
    world: Site, cli: Cli
) -> None:
    other_target = world.root / "dst-other"
    keep = world.resource()
    gone = world.resource(name="gone", target_path=str(other_target))
    world.write(keep, gone)
    assert cli("apply", "-c", world.config).returncode == 0
    world.write(keep)
    shown = cli("state", "show", "-c", world.config, "--json", now=None)
    assert shown.returncode == 0, shown
    resources = shown.json()["resources"]
    assert resources["r"]["managed"] is True
    assert resources["gone"]["managed"] is False
    assert [entry["name"] for entry in resources["gone"]["snapshots"]] == [name_of(at(0))]
    text = cli("state", "show", "-c", world.config, now=None)
    assert text.returncode == 0 and "gone" in text.stdout
    plan = cli("plan", "-c", world.config, now=iso(at(1)))
    assert "gone" in plan.stdout
    # Removing a resource undoes nothing.
    assert cli("apply", "-c", world.config, now=iso(at(1))).returncode == 0
    assert world.snapshots(other_target) == [name_of(at(0))]


def test_apply_resource_option_applies_only_that_resource(world: Site, cli: Cli) -> None:
    target_b = world.root / "dst-b"
    world.write(
        world.resource(name="a", pre_command=append_line(world.mark("a"), "a")),
        world.resource(name="b", target_path=str(target_b)),
    )
    outcome = cli("apply", "-c", world.config, "--resource", "b")
    assert outcome.returncode == 0, outcome
    assert world.snapshots(target_b) == [name_of(at(0))]
    assert not world.target.exists()
    assert not world.mark("a").exists()


def test_apply_unknown_resource_exits_2_and_changes_nothing(world: Site, cli: Cli) -> None:
    world.write(pre_command=append_line(world.mark("pre"), "pre"))
    outcome = cli("apply", "-c", world.config, "--resource", "nope")
    assert outcome.returncode == 2, outcome
    assert "nope" in outcome.stderr
    assert not world.target.exists()
    assert not world.mark("pre").exists()


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_invalid_hardsnap_now_is_a_clear_error(world: Site, cli: Cli, command: str) -> None:
    world.write()
    outcome = cli(command, "-c", world.config, now="yesterday at noon")
    assert outcome.returncode == 1, outcome
    assert "HARDSNAP_NOW" in outcome.stderr
    assert "yesterday at noon" in outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert not world.target.exists()


def test_python_m_reconcile_help_lists_the_commands() -> None:
    completed = subprocess.run(
        [*hardsnap_command(), "--help"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    for command in ("validate", "plan", "apply", "state"):
        assert command in completed.stdout


def test_a_refused_resource_shows_its_reason_and_no_actions_in_plan(world: Site, cli: Cli) -> None:
    world.write(retain="1", post_command="echo done")
    assert cli("apply", "-c", world.config, now=iso(at(0))).returncode == 0
    assert cli("apply", "-c", world.config, now=iso(at(1))).returncode == 0
    for path in sorted(world.source.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    # An empty source (an unmounted disk): the snapshot and the prune that
    # would follow are refused; the plan shows the reason, not the actions.
    text = cli("plan", "-c", world.config, now=iso(at(2)))
    assert text.returncode == 1, text
    assert "refused: source_dir" in text.stdout
    actions = [line for line in text.stdout.splitlines() if line.startswith(("  +", "  -", "  <"))]
    assert actions == [], text.stdout
    assert "no changes" not in text.stdout
    assert text.stdout.rstrip().endswith("Plan: 1 resource refused."), text.stdout
    document = cli("plan", "-c", world.config, "--json", now=iso(at(2))).json()
    resource = document["resources"][0]
    assert resource["refusal"] and resource["actions"] == [] and resource["changes"] is False

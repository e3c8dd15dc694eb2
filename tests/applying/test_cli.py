"""The real CLI end to end: windows, plan, JSON, hooks, revert, prune, cross_fs,
free space, the apply lock and state.

Runs in-process through the `cli` fixture (a crash fails the test), and as a
subprocess where a process must be killed or held.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardsnap.providers.backup.target import MARKER
from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY
from tests.conftest import Mount
from tests.world.cli import Cli, hardsnap_command
from tests.world.clock import T0, at, iso, name_of
from tests.world.documents import actions_of, kinds, result_of
from tests.world.files import files_below, lines_of, make_file
from tests.world.site import Site, empty_site, write_config

# -- helpers -------------------------------------------------------------------


def append_line(marker: Path, text: str) -> str:
    """A hook command appending `text` (expanded by the shell) to a marker file."""
    return f'echo "{text}" >> {shlex.quote(str(marker))}'


def wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until a marker file exists (or fail if the process ends first)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"process ended ({process.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {timeout}s")
        time.sleep(0.02)


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path`, from /proc/self/mountinfo."""
    device = os.stat(path).st_dev
    wanted = f"{os.major(device)}:{os.minor(device)}"
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[2] == wanted:
                return fields[fields.index("-") + 1]
    return "?"


def state_listing(directory: Path) -> dict[str, str | None]:
    """Files of a state dir and the bytes of those that are not SQLite's own."""
    found: dict[str, str | None] = {}
    for root, _, files in os.walk(directory):
        for file in files:
            if re.search(r"-(wal|shm|journal)$", file):
                continue
            path = os.path.join(root, file)
            relative = os.path.relpath(path, directory)
            found[relative] = (
                None
                if file.endswith(".db")
                else hashlib.sha256(Path(path).read_bytes()).hexdigest()
            )
    return found


@pytest.fixture
def world(tmp_path: Path) -> Site:
    site = empty_site(tmp_path)
    make_file(site.source / "a.txt", b"alpha")
    make_file(site.source / "sub" / "b.txt", b"bravo!", 0o600)
    return site


def refused_before_anything(world: Site, cli: Cli, *said: str) -> None:
    """apply is refused saying `said` before its pre_command runs or the
    target is made, and plan says the resource cannot converge."""
    outcome = cli("apply", "-c", world.config)
    assert outcome.returncode == 1, outcome
    for words in said:
        assert words in outcome.stderr, outcome
    assert not world.target.exists()
    assert not world.mark("pre").exists()
    assert cli("plan", "-c", world.config).returncode == 1


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


# -- hooks -------------------------------------------------------------------------------


def test_hooks_run_pre_then_snapshot_then_prune_then_post(world: Site, cli: Cli) -> None:
    order = world.mark("order")
    listing = '$(ls "$HARDSNAP_TARGET" | tr "\\n" " ")'
    world.write(
        pre_command=append_line(order, f"pre: {listing}"),
        post_command=append_line(order, f"post: {listing}"),
    )
    assert cli("apply", "-c", world.config, now=iso(at(-40))).returncode == 0
    assert cli("apply", "-c", world.config, now=iso(at(-10))).returncode == 0
    order.unlink()
    outcome = cli("apply", "-c", world.config, now=iso(at(0)))
    assert outcome.returncode == 0, outcome
    old, kept, new = name_of(at(-40)), name_of(at(-10)), name_of(at(0))
    assert [line.strip() for line in lines_of(order)] == [
        f"pre: {old} {kept}",
        f"post: {kept} {new}",
    ]
    assert world.snapshots() == [kept, new]


def test_hooks_see_resource_source_target_and_snapshot_in_the_environment(
    world: Site, cli: Cli
) -> None:
    environment = "$HARDSNAP_RESOURCE|$HARDSNAP_SOURCE|$HARDSNAP_TARGET|${HARDSNAP_SNAPSHOT-unset}"
    world.write(
        pre_command=append_line(world.mark("pre"), environment),
        post_command=append_line(world.mark("post"), environment),
    )
    assert cli("apply", "-c", world.config, now=iso(at(0))).returncode == 0
    assert cli("apply", "-c", world.config, now=iso(at(1))).returncode == 0
    base = f"r|{world.source}|{world.target}"
    first, second = (str(world.target / name_of(at(day))) for day in (0, 1))
    assert lines_of(world.mark("pre")) == [f"{base}|unset", f"{base}|{first}"]
    assert lines_of(world.mark("post")) == [f"{base}|{first}", f"{base}|{second}"]
    assert os.path.isdir(second)


def test_hook_values_with_shell_metacharacters_arrive_intact_and_unexpanded(
    world: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    strange = world.root / "src $(touch PWNED) ; `touch PWNED2` 'q' \"d\" & $HOME *"
    strange.mkdir()
    make_file(strange / "f.txt", b"x")
    target = world.root / "dst; touch PWNED3"
    source_out, target_out = world.mark("source"), world.mark("target")
    world.write(
        source_dir=str(strange),
        target_path=str(target),
        pre_command=f'printf "%s" "$HARDSNAP_SOURCE" > {shlex.quote(str(source_out))}',
        post_command=f'printf "%s" "$HARDSNAP_TARGET" > {shlex.quote(str(target_out))}',
    )
    monkeypatch.chdir(world.marks)
    outcome = cli("apply", "-c", world.config)
    assert outcome.returncode == 0, outcome
    assert source_out.read_text() == str(strange)
    assert target_out.read_text() == str(target)
    for directory in (world.root, world.marks):
        assert not any(name.startswith("PWNED") for name in os.listdir(directory))
    assert files_below(target / name_of(at(0))) == ["f.txt"]


def test_failed_pre_command_aborts_resource_with_no_snapshot(world: Site, cli: Cli) -> None:
    world.write(
        pre_command=f"{append_line(world.mark('pre'), 'pre')}; exit 3",
        post_command=append_line(world.mark("post"), "post"),
    )
    outcome = cli("apply", "-c", world.config, "--json")
    assert outcome.returncode == 1, outcome
    document = json.loads(outcome.stdout)
    assert result_of(document) == "failed"
    results = {action["kind"]: action["result"] for action in actions_of(document)}
    assert results == {
        "pre_command": "failed",
        "snapshot": "upstream_failed",
        "post_command": "upstream_failed",
    }
    assert lines_of(world.mark("pre")) == ["pre"]
    assert not world.mark("post").exists()
    assert world.snapshots() == []
    # The next apply tries again from the start.
    outcome = cli("apply", "-c", world.config, now=iso(at(0, hours=1)))
    assert outcome.returncode == 1, outcome
    assert lines_of(world.mark("pre")) == ["pre", "pre"]


def test_failed_post_command_keeps_snapshot_and_only_it_is_retried_until_it_succeeds(
    world: Site, cli: Cli
) -> None:
    allowed = world.mark("allowed")
    post = world.mark("post")
    world.write(
        pre_command=append_line(world.mark("pre"), "pre"),
        post_command=(
            f"{append_line(post, '$HARDSNAP_SNAPSHOT')}; [ -e {shlex.quote(str(allowed))} ]"
        ),
    )
    snapshot = str(world.target / name_of(at(0)))
    outcome = cli("apply", "-c", world.config, "--json")
    assert outcome.returncode == 1, outcome
    assert result_of(outcome.json()) == "failed"
    results = {action["kind"]: action["result"] for action in actions_of(outcome.json())}
    assert results == {"pre_command": "changed", "snapshot": "changed", "post_command": "failed"}
    assert world.snapshots() == [name_of(at(0))]

    shown = cli("state", "show", "--json", now=None)
    assert shown.returncode == 0, shown
    pending = shown.json()["resources"]["r"]["post_command_pending"]
    assert pending and pending["snapshot"] == name_of(at(0))

    plan = cli("plan", "-c", world.config, "--json", now=iso(at(0, hours=1)))
    assert kinds(actions_of(plan.json())) == ["post_command"]

    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(0, hours=1)))
    assert outcome.returncode == 1, outcome
    assert kinds(actions_of(outcome.json())) == ["post_command"]

    allowed.touch()
    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(0, hours=2)))
    assert outcome.returncode == 0, outcome
    assert kinds(actions_of(outcome.json())) == ["post_command"]
    assert result_of(outcome.json()) == "changed"

    outcome = cli("apply", "-c", world.config, now=iso(at(0, hours=3)))
    assert outcome.returncode == 0, outcome
    assert "No changes" in outcome.stdout
    assert lines_of(post) == [snapshot, snapshot, snapshot]
    assert lines_of(world.mark("pre")) == ["pre"]
    assert world.snapshots() == [name_of(at(0))]
    shown = cli("state", "show", "--json", now=None)
    assert not shown.json()["resources"]["r"]["post_command_pending"]


def test_revert_runs_once_then_settles_and_a_normal_apply_rearms_it(world: Site, cli: Cli) -> None:
    revert = append_line(world.mark("revert"), "reverted $HARDSNAP_RESOURCE")
    hooks = {
        "pre_command": append_line(world.mark("pre"), "pre"),
        "post_command": append_line(world.mark("post"), "post"),
    }
    world.write(revert=True, on_revert=revert, **hooks)
    plan = cli("plan", "-c", world.config, "--json")
    assert kinds(actions_of(plan.json())) == ["revert"]
    outcome = cli("apply", "-c", world.config, "--json")
    assert outcome.returncode == 0, outcome
    assert result_of(outcome.json()) == "changed"
    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(1)))
    assert result_of(outcome.json()) == "settled"
    assert lines_of(world.mark("revert")) == ["reverted r"]
    assert world.snapshots() == []
    assert not world.mark("pre").exists() and not world.mark("post").exists()
    assert cli("plan", "-c", world.config, "--detailed-exitcode", now=iso(at(2))).returncode == 0
    assert cli("state", "show", "--json", now=None).json()["resources"]["r"]["revert"] == "spent"

    world.write(revert=False, on_revert=revert, **hooks)
    assert cli("apply", "-c", world.config, now=iso(at(2))).returncode == 0
    assert world.snapshots() == [name_of(at(2))]
    assert cli("state", "show", "--json", now=None).json()["resources"]["r"]["revert"] != "spent"

    world.write(revert=True, on_revert=revert, **hooks)
    shown = cli("state", "show", "-c", world.config, "--json", now=None)
    assert shown.json()["resources"]["r"]["revert"] == "armed"
    assert cli("apply", "-c", world.config, now=iso(at(3))).returncode == 0
    assert cli("apply", "-c", world.config, now=iso(at(4))).returncode == 0
    assert lines_of(world.mark("revert")) == ["reverted r", "reverted r"]
    assert world.snapshots() == [name_of(at(2))]


def test_failed_revert_is_retried_by_the_next_apply(world: Site, cli: Cli) -> None:
    allowed = world.mark("allowed")
    world.write(
        revert=True,
        on_revert=f"{append_line(world.mark('revert'), 'r')}; [ -e {shlex.quote(str(allowed))} ]",
    )
    assert cli("apply", "-c", world.config).returncode == 1
    allowed.touch()
    assert cli("apply", "-c", world.config, now=iso(at(0, hours=1))).returncode == 0
    assert cli("apply", "-c", world.config, now=iso(at(0, hours=2))).returncode == 0
    assert lines_of(world.mark("revert")) == ["r", "r"]


# -- retain, keep_min, the target ---------------------------------------------------------


def test_retain_prunes_snapshots_older_than_retain_days(world: Site, cli: Cli) -> None:
    world.write(retain="3")
    # Day i at 06:00 + 10*i minutes: no snapshot is ever exactly `retain` days old.
    times = [at(day, minutes=10 * day) for day in range(6)]
    for index, moment in enumerate(times):
        outcome = cli("apply", "-c", world.config, now=iso(moment))
        assert outcome.returncode == 0, outcome
        kept = [name_of(t) for t in times[: index + 1] if moment - t < dt.timedelta(days=3)]
        assert world.snapshots() == kept, f"after apply {index}"
    assert len(world.snapshots()) == 3


def test_keep_min_keeps_the_newest_snapshots_whatever_their_age(world: Site, cli: Cli) -> None:
    # Twice a day (hourly windows): each run finds the last within retain.
    world.write(schedule="hourly", retain="1", keep_min=3)
    times = [at(day / 2, minutes=10 * day) for day in range(6)]
    for moment in times:
        assert cli("apply", "-c", world.config, now=iso(moment)).returncode == 0
    # times[3] and times[4] are more than a day old, kept as two of the three newest.
    assert world.snapshots() == [name_of(t) for t in times[3:]]


def test_keep_min_zero_prunes_an_expired_snapshot_of_the_current_window(
    world: Site, cli: Cli
) -> None:
    # 2026-03-23 is a Monday; on Sunday the week's snapshot is six days old.
    world.write(schedule="weekly", retain="1", keep_min=0)
    assert cli("apply", "-c", world.config, now="2026-03-23T00:00:00Z").returncode == 0
    outcome = cli("apply", "-c", world.config, now="2026-03-29T23:00:00Z")
    assert outcome.returncode == 0, outcome
    assert world.snapshots() == []


def test_default_keep_min_never_prunes_the_newest_snapshot(world: Site, cli: Cli) -> None:
    world.write(schedule="weekly", retain="1")
    assert cli("apply", "-c", world.config, now="2026-03-23T00:00:00Z").returncode == 0
    # Same week, so no new snapshot: the only one is past retain but the newest.
    outcome = cli("apply", "-c", world.config, "--json", now="2026-03-29T23:00:00Z")
    assert outcome.returncode == 0, outcome
    assert result_of(outcome.json()) == "settled"
    assert world.snapshots() == ["2026.082.00.00"]


def test_entries_in_target_that_are_not_snapshots_are_untouched(world: Site, cli: Cli) -> None:
    outside = world.root / "outside"
    make_file(outside / "precious.txt", b"precious")
    world.target.mkdir()
    make_file(world.target / "keepme" / "inner.txt", b"not a snapshot")
    make_file(world.target / "notes.txt", b"operator notes")
    make_file(world.target / "2019-01-01" / "x", b"another tool's dir")
    make_file(world.target / "2026.001.00.00", b"a file with a snapshot name")
    os.symlink(outside, world.target / "2026.002.00.00")
    (world.target / "2026.003.00.00.bak").mkdir()
    before = {
        path: (path.read_bytes() if path.is_file() else None, os.lstat(path).st_mtime_ns)
        for path in [*world.target.rglob("*"), *outside.rglob("*")]
    }
    world.write(retain="2")
    for day in range(4):
        assert cli("apply", "-c", world.config, now=iso(at(day, minutes=day))).returncode == 0
    assert world.snapshots() == [name_of(at(day, minutes=day)) for day in (2, 3)]
    after = {
        path: (path.read_bytes() if path.is_file() else None, os.lstat(path).st_mtime_ns)
        for path in before
    }
    assert after == before
    assert os.readlink(world.target / "2026.002.00.00") == str(outside)


def test_missing_target_path_is_created_with_mode_0700(world: Site, cli: Cli) -> None:
    target = world.root / "new" / "nested" / "dst"
    world.write(target_path=str(target))
    old_umask = os.umask(0)
    try:
        outcome = cli("apply", "-c", world.config)
    finally:
        os.umask(old_umask)
    assert outcome.returncode == 0, outcome
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    assert world.snapshots(target) == [name_of(at(0))]


def test_relative_paths_resolve_against_the_config_folder_from_another_cwd(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    make_file(folder / "data" / "right.txt", b"right")
    elsewhere = tmp_path / "elsewhere"
    make_file(elsewhere / "data" / "wrong.txt", b"wrong")
    write_config(
        folder / "hardsnap.yaml",
        {"name": "r", "type": "backup", "source_dir": "data", "target_path": "../backups/data"},
    )
    monkeypatch.chdir(elsewhere)
    outcome = cli("apply", "-c", "../conf/hardsnap.yaml")
    assert outcome.returncode == 0, outcome
    snapshot = tmp_path / "backups" / "data" / name_of(at(0))
    assert files_below(snapshot) == ["right.txt"]
    assert not (elsewhere / "backups").exists()
    assert not (tmp_path / "conf" / "backups").exists()


# -- cross_fs ------------------------------------------------------------------------------


@pytest.fixture
def other_fs_source(tmp_path: Path) -> Iterator[Path]:
    """A source directory on /dev/shm (tmpfs), another device than tmp_path."""
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    directory = Path(tempfile.mkdtemp(prefix="hardsnap-test-", dir="/dev/shm"))
    try:
        if os.stat(directory).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm and tmp_path are on the same filesystem")
        make_file(directory / "f1.txt", b"one")
        make_file(directory / "sub" / "f2.txt", b"two", 0o600)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.linux_only(reason="the test reads /proc/self/mountinfo")
def test_cross_fs_fail_refuses_naming_both_filesystems_and_the_fix(
    world: Site, cli: Cli, other_fs_source: Path
) -> None:
    world.write(source_dir=str(other_fs_source), pre_command=append_line(world.mark("pre"), "x"))
    refused_before_anything(
        world, cli, filesystem_type(other_fs_source), filesystem_type(world.root), "cross_fs"
    )


def test_refused_apply_json_fails_the_snapshot_and_runs_nothing_else(
    world: Site, cli: Cli, other_fs_source: Path
) -> None:
    world.write(source_dir=str(other_fs_source), pre_command=append_line(world.mark("pre"), "x"))
    outcome = cli("apply", "-c", world.config, "--json")
    assert outcome.returncode == 1, outcome
    resource = outcome.json()["resources"][0]
    assert resource["result"] == "failed" and "cross_fs" in resource["message"]
    results = {action["kind"]: action["result"] for action in resource["actions"]}
    assert results == {"pre_command": "upstream_failed", "snapshot": "failed"}
    assert not world.mark("pre").exists()


def test_cross_fs_copy_warns_on_every_run_and_copies_every_file(
    world: Site, cli: Cli, other_fs_source: Path
) -> None:
    world.write(source_dir=str(other_fs_source), cross_fs="copy")
    for day in range(2):
        outcome = cli("apply", "-c", world.config, now=iso(at(day)))
        assert outcome.returncode == 0, outcome
        assert "warning" in outcome.stderr and "filesystem" in outcome.stderr, outcome
    first, second = (world.target / name_of(at(day)) for day in range(2))
    assert files_below(second) == ["f1.txt", "sub/f2.txt"]
    for relative in ("f1.txt", "sub/f2.txt"):
        assert os.lstat(first / relative).st_ino != os.lstat(second / relative).st_ino
        assert (second / relative).read_bytes() == (other_fs_source / relative).read_bytes()


def test_cross_fs_warn_warns_on_the_first_run_only_and_copies(
    world: Site, cli: Cli, other_fs_source: Path
) -> None:
    world.write(source_dir=str(other_fs_source), cross_fs="warn")
    first_run = cli("apply", "-c", world.config, now=iso(at(0)))
    assert first_run.returncode == 0, first_run
    assert "filesystem" in first_run.stderr, first_run
    second_run = cli("apply", "-c", world.config, now=iso(at(1)))
    assert second_run.returncode == 0, second_run
    assert "filesystem" not in second_run.stderr, second_run
    first, second = (world.target / name_of(at(day)) for day in range(2))
    assert os.lstat(first / "f1.txt").st_ino != os.lstat(second / "f1.txt").st_ino


def test_cross_fs_link_hard_links_unchanged_files_to_the_reference(
    world: Site, cli: Cli, other_fs_source: Path
) -> None:
    world.write(source_dir=str(other_fs_source), cross_fs="link")
    assert cli("apply", "-c", world.config, now=iso(at(0))).returncode == 0
    make_file(other_fs_source / "f1.txt", b"changed")
    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(1)))
    assert outcome.returncode == 0, outcome
    snapshot = actions_of(outcome.json())[0]
    assert (snapshot["files_copied"], snapshot["files_linked"]) == (1, 1)
    first, second = (world.target / name_of(at(day)) for day in range(2))
    assert os.lstat(first / "sub/f2.txt").st_ino == os.lstat(second / "sub/f2.txt").st_ino
    assert os.lstat(first / "f1.txt").st_ino != os.lstat(second / "f1.txt").st_ino
    assert (second / "f1.txt").read_bytes() == b"changed"


# -- free space --------------------------------------------------------------------------


def test_min_free_space_above_free_space_refuses_and_creates_nothing(world: Site, cli: Cli) -> None:
    world.write(min_free_space="1000T", pre_command=append_line(world.mark("pre"), "pre"))
    refused_before_anything(world, cli, "min_free_space")


def test_free_space_falling_below_min_during_copy_aborts_and_keeps_earlier_snapshot(
    world: Site, cli: Cli, tmpfs: Mount
) -> None:
    target = tmpfs("small", "size=8m") / "dst"
    world.write(target_path=str(target), cross_fs="copy", min_free_space="1M")
    assert cli("apply", "-c", world.config, now=iso(at(0))).returncode == 0
    earlier = target / name_of(at(0))
    for index in range(3):
        make_file(world.source / f"big{index}.bin", os.urandom(4 << 20))
    outcome = cli("apply", "-c", world.config, now=iso(at(1)))
    assert outcome.returncode == 1, outcome
    # In human units, with what the run held back besides the floor.
    said = re.search(
        r"free space on the target is down to (\d+\.\d [KMG]iB), short of the "
        r"(\d+\.\d [KMG]iB) the run needs: min_free_space \(1\.0 MiB\), "
        r"\d+\.\d [KMG]iB for what it writes next",
        outcome.stderr,
    )
    assert said, outcome
    assert not re.search(r"\d{5}", outcome.stderr.split("free space")[1]), outcome
    assert sorted(os.listdir(target)) == sorted([MANIFEST_DIRECTORY, MARKER, name_of(at(0))])
    assert files_below(earlier) == ["a.txt", "sub/b.txt"]
    assert (earlier / "sub" / "b.txt").read_bytes() == b"bravo!"


# -- the apply lock ----------------------------------------------------------------------


def test_second_apply_while_lock_held_exits_75_naming_pid_and_kill_leaves_no_stale_lock(
    world: Site, cli: Cli
) -> None:
    started, release = world.mark("started"), world.mark("release")
    wait = (
        f"touch {shlex.quote(str(started))}; "
        f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.05; done"
    )
    world.write(pre_command=wait)
    command = [*hardsnap_command(), "apply", "-c", str(world.config)]
    environment = dict(os.environ, HARDSNAP_NOW=T0)
    with open(world.root / "holder.log", "wb") as log:
        holder = subprocess.Popen(
            command, env=environment, stdout=log, stderr=log, start_new_session=True
        )
    try:
        wait_for(started, holder)
        begun = time.monotonic()
        second = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=30
        )
        assert time.monotonic() - begun < 15
        assert second.returncode == 75, second
        assert str(holder.pid) in second.stderr, second.stderr
        assert world.snapshots() == []
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
        # The hook runs in a session of its own, which outlives a SIGKILL of
        # hardsnap: let it end whatever happened above.
        release.touch()
    outcome = cli("apply", "-c", world.config)
    assert outcome.returncode == 0, outcome
    assert world.snapshots() == [name_of(at(0))]


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

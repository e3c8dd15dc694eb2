"""Hooks in their order and environment, retried when they failed, revert run
once; retain and keep_min pruning, and a target's other entries left alone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import stat
from pathlib import Path

import pytest

from tests.applying.cli_steps import (
    append_line,
)
from tests.world.cli import Cli
from tests.world.clock import at, iso, name_of
from tests.world.documents import actions_of, kinds, result_of
from tests.world.files import files_below, lines_of, make_file
from tests.world.site import Site, write_config

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

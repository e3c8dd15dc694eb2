"""plan and state show read a state store they cannot write: one on a
read-only mount (an audit of a mounted copy, a sandbox that mounts the state
directory read-only), including one an apply is still writing through
another mount. Real bind mounts, the real CLI as a subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.world import cli
from tests.world.cli import Finished
from tests.world.clock import T0
from tests.world.site import backup_config

T1 = "2026-03-30T06:00:00Z"


def run(state: Path, *arguments: str | Path, now: str = T0) -> Finished:
    environment = dict(os.environ, HARDSNAP_STATE_DIR=str(state), HARDSNAP_NOW=now)
    done = cli.run([str(argument) for argument in arguments], environment, timeout=120)
    return Finished(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """view(directory): the directory bind-mounted read-only at a new path;
    unmounted at the end of the test. Skips where mounting is refused."""
    mounted: list[Path] = []

    def view(directory: Path) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a read-only bind mount needs root")
        point = tmp_path / f"view-{len(mounted)}"
        point.mkdir()
        for options in (["--bind"], ["-o", "remount,bind,ro"]):
            done = subprocess.run(
                ["mount", *options, str(directory), str(point)], capture_output=True, text=True
            )
            if done.returncode != 0:
                if options == ["--bind"]:
                    pytest.skip(f"mount --bind refused: {done.stderr.strip()}")
                mounted.append(point)
                pytest.skip(f"remounting read-only refused: {done.stderr.strip()}")
            if options == ["--bind"]:
                mounted.append(point)
        return point

    yield view
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=True)


def applied(tmp_path: Path, state: Path) -> Path:
    config = backup_config(tmp_path)
    outcome = run(state, "apply", "-c", config, "--allow-new-target")
    assert outcome.returncode == 0, str(outcome)
    return config


def shown(state: Path, config: Path, now: str = T0) -> Any:
    outcome = run(state, "state", "show", "-c", config, "--json", now=now)
    assert outcome.returncode == 0, str(outcome)
    assert "Traceback" not in outcome.stderr, str(outcome)
    return outcome.json()


def test_plan_and_state_show_read_a_store_on_a_read_only_mount(
    tmp_path: Path, state_dir: Path, read_only_view: Callable[[Path], Path]
) -> None:
    config = applied(tmp_path, state_dir)
    view = read_only_view(state_dir)

    from_view = shown(view, config)
    planned = run(view, "plan", "-c", config, "--json")

    assert from_view == shown(state_dir, config)
    assert len(from_view["resources"]["r"]["runs"]) == 1
    assert planned.returncode == 0, str(planned)
    assert planned.json() == run(state_dir, "plan", "-c", config, "--json").json()
    assert planned.json()["resources"][0]["actions"] == []


def test_a_read_only_view_of_a_store_an_apply_writes_shows_its_latest_runs(
    tmp_path: Path, state_dir: Path, read_only_view: Callable[[Path], Path]
) -> None:
    config = applied(tmp_path, state_dir)
    # Another reader keeps the database open, so the next apply's changes
    # stay in its write-ahead log (cache.db-wal) instead of being folded
    # into cache.db when the apply closes it.
    reader = sqlite3.connect(state_dir / "cache.db")
    try:
        reader.execute("SELECT count(*) FROM Cache").fetchall()
        outcome = run(state_dir, "apply", "-c", config, now=T1)
        assert outcome.returncode == 0, str(outcome)
        assert (state_dir / "cache.db-wal").stat().st_size > 0
        view = read_only_view(state_dir)

        from_view = shown(view, config, now=T1)

        assert len(from_view["resources"]["r"]["runs"]) == 2
        assert from_view == shown(state_dir, config, now=T1)
    finally:
        reader.close()


def test_apply_with_a_read_only_state_directory_is_refused_saying_so_and_runs_nothing(
    tmp_path: Path, state_dir: Path, read_only_view: Callable[[Path], Path]
) -> None:
    config = applied(tmp_path, state_dir)
    marker = tmp_path / "pre_command ran"
    text = config.read_text() + f'    pre_command: "touch {marker}"\n'
    config.write_text(text)
    view = read_only_view(state_dir)
    before = sorted(os.listdir(tmp_path / "dst"))

    outcome = run(view, "apply", "-c", config, now=T1)

    assert outcome.returncode == 1, str(outcome)
    assert "Traceback" not in outcome.stderr, str(outcome)
    assert f"state directory {view} is on a read-only filesystem" in outcome.stderr, str(outcome)
    assert "move it aside" not in outcome.stderr, str(outcome)
    assert not marker.exists(), "a hook ran although nothing could be recorded"
    assert sorted(os.listdir(tmp_path / "dst")) == before


def test_a_store_on_a_read_only_mount_that_cannot_be_read_is_reported_without_advice_to_move_it(
    tmp_path: Path, state_dir: Path, read_only_view: Callable[[Path], Path]
) -> None:
    config = applied(tmp_path, state_dir)
    database = state_dir / "cache.db"
    database.write_bytes(b"not a database, but what a writer left half-way " * 100)
    view = read_only_view(state_dir)

    outcome = run(view, "state", "show", "-c", config)

    assert outcome.returncode == 1, str(outcome)
    assert "Traceback" not in outcome.stderr, str(outcome)
    assert f"state store {view}, on a read-only filesystem, could not be read" in outcome.stderr
    assert "move it aside" not in outcome.stderr, str(outcome)

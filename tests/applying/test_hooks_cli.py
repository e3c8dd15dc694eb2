"""Hooks through the real CLI: a hook that leaves a background child holding
its output open does not keep apply (and its locks) waiting, and a hook that
runs past `hook_timeout` fails the resource, its processes ended.

Run as subprocesses with a timeout, so a hang fails the test instead of
stalling the suite. Time bounds are generous upper bounds, far below the
sleeps they guard against.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.world.cli import hardsnap_command
from tests.world.clock import T0
from tests.world.processes import is_running, wait_until_gone
from tests.world.site import write_config

SNAPSHOT_NAME = re.compile(r"\d{4}\.\d{3}\.\d{2}\.\d{2}")


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids the hooks wrote down; any still running at the end are killed."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if is_running(pid):
            os.kill(pid, signal.SIGKILL)


def apply(config: Path, seconds: float = 60) -> subprocess.CompletedProcess[str]:
    """`hardsnap apply` as a subprocess; on a hang, stop it the way systemd
    would (SIGTERM, which ends its hooks' groups) and fail."""
    process = subprocess.Popen(
        [*hardsnap_command(), "apply", "-c", str(config)],
        env=dict(os.environ, HARDSNAP_NOW=T0),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.terminate()
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"apply did not finish within {seconds}s\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def snapshots(target: Path) -> list[str]:
    if not target.exists():
        return []
    return sorted(entry.name for entry in target.iterdir() if SNAPSHOT_NAME.fullmatch(entry.name))


def backup_config(tmp_path: Path, **settings: object) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "file.txt").write_text("hello\n")
    return write_config(
        tmp_path / "hardsnap.yaml",
        {
            "name": "r",
            "type": "backup",
            "source_dir": str(source),
            "target_path": str(tmp_path / "dst"),
            "min_free_space": 0,
            **settings,
        },
    )


def test_post_command_leaving_a_background_child_does_not_keep_apply_waiting(
    tmp_path: Path, leftovers: list[int]
) -> None:
    pid_file = tmp_path / "child.pid"
    config = backup_config(tmp_path, post_command=f"sleep 1000 & echo $! > '{pid_file}'; echo done")
    started = time.monotonic()

    finished = apply(config)

    leftovers.append(int(pid_file.read_text()))
    assert finished.returncode == 0, finished
    assert time.monotonic() - started < 60
    assert len(snapshots(tmp_path / "dst")) == 1
    assert wait_until_gone(leftovers[0]), "the hook's background child outlived apply"
    again = apply(config)
    assert again.returncode == 0, again


def test_pre_command_past_hook_timeout_fails_the_resource_and_is_ended(
    tmp_path: Path, leftovers: list[int]
) -> None:
    pid_file = tmp_path / "hook.pid"
    config = backup_config(
        tmp_path,
        hook_timeout=1,
        pre_command=f"sleep 100 & echo $! > '{pid_file}'; echo $$ >> '{pid_file}'; sleep 100",
    )
    started = time.monotonic()

    finished = apply(config, seconds=60)

    leftovers.extend(int(pid) for pid in pid_file.read_text().split())
    assert finished.returncode == 1, finished
    assert time.monotonic() - started < 60
    assert "timed out" in finished.stdout + finished.stderr, finished
    assert snapshots(tmp_path / "dst") == [], "a snapshot was taken after its pre_command timed out"
    for pid in leftovers:
        assert wait_until_gone(pid), f"hook process {pid} outlived its timeout"

"""Helpers of the end-to-end CLI tests: hook commands that leave marks, a
filesystem's type, a state directory's files, and a refusal that changed
nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.world.cli import Cli
from tests.world.site import Site


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

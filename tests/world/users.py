"""Another user on the machine: the nobody user runs hardsnap, or owns what
hardsnap (as root) must treat as input."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.world.cli import hardsnap_command
from tests.world.clock import T0

NOBODY = 65534


def hand_to_nobody(root: Path) -> None:
    """Give everything below `root` to the nobody user."""
    for directory, directories, files in os.walk(root):
        for name in [*directories, *files]:
            os.chown(os.path.join(directory, name), NOBODY, NOBODY)


def run_as_nobody(
    arguments: list[str], cwd: Path, state: Path, now: str = T0
) -> subprocess.CompletedProcess[bytes]:
    """Run the installed CLI as the nobody user, with its own state dir."""
    environment = dict(os.environ, HARDSNAP_NOW=now, HARDSNAP_STATE_DIR=str(state))
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            *hardsnap_command(),
            *arguments,
        ],
        env=environment,
        cwd=cwd,
        capture_output=True,
        timeout=60,
    )

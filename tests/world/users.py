"""Another user on the machine: the nobody user runs hardsnap, or owns what
hardsnap (as root) must treat as input."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.world.cli import Finished, hardsnap_command
from tests.world.clock import T0
from tests.world.site import write_config

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


def apply_as_nobody(root: Path, modes: dict[Path, int], *options: str) -> Finished:
    """Back up root/src into root/dst as the nobody user: everything below
    `root` is theirs, then `modes` are set (what mode 000 keeps from them,
    root could read anyway)."""
    target, state = root / "dst", root / "state"
    target.mkdir()
    state.mkdir()
    hand_to_nobody(root)
    for path, mode in modes.items():
        os.chmod(path, mode)
    resource = {"name": "r", "type": "backup", "source_dir": str(root / "src")}
    config = write_config(root / "hardsnap.yaml", {**resource, "target_path": str(target)})
    done = run_as_nobody(["apply", *options, "-c", str(config)], root, state)
    stdout, stderr = (stream.decode("utf-8", "replace") for stream in (done.stdout, done.stderr))
    return Finished(done.returncode, stdout, stderr)

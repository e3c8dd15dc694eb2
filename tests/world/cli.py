"""Running the real CLI: in-process (a crash fails the test) or as a process
of its own; either way its exit code and output as one Finished."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from hardsnap.reconcile.cli import app


def hardsnap_command() -> list[str]:
    """The installed CLI as a subprocess command (for kill, lock and uid tests)."""
    if "HARDSNAP_CMD" in os.environ:
        return shlex.split(os.environ["HARDSNAP_CMD"])
    return [sys.executable, "-m", "hardsnap"]


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--stdout--\n{self.stdout}\n--stderr--\n{self.stderr}"


def run(
    arguments: list[str],
    environment: dict[str, str],
    timeout: float = 300,
    cwd: Path | None = None,
) -> Finished:
    """Run the CLI to its end as a subprocess (in `cwd` when given)."""
    done = subprocess.run(
        [*hardsnap_command(), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        # Bytes that are not UTF-8 come through (as lone surrogates) for a
        # test to find, instead of failing the decoding.
        errors="surrogateescape",
        timeout=timeout,
        cwd=cwd,
    )
    return Finished(done.returncode, done.stdout, done.stderr)


# The `cli` fixture: cli("plan", "-c", config, now=T0, env={...}).
Cli = Callable[..., Finished]


def environment(state: Path, now: str | None) -> dict[str, str]:
    """This process's environment for a hardsnap process: its own state
    directory, a clock (HARDSNAP_NOW, ISO) or the real one, no colours."""
    values = dict(os.environ, HARDSNAP_STATE_DIR=str(state), NO_COLOR="1", COLUMNS="300")
    values.pop("HARDSNAP_NOW", None)
    if now is not None:
        values["HARDSNAP_NOW"] = now
    return values


def invoke(arguments: list[str], environment: Mapping[str, str]) -> Finished:
    """Run the CLI in-process with these environment variables set."""
    shown = [str(argument) for argument in arguments]
    result = CliRunner().invoke(app, shown, env=dict(environment), catch_exceptions=False)
    return Finished(result.exit_code, result.stdout, result.stderr)

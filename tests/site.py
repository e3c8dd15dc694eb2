"""One resource's world under a test's directory: source, target, config,
state, and the real CLI run on them (in-process, or as a process)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from hardsnap.reconcile.cli import app
from tests.conftest import write_config
from tests.processes import Finished, run

UTC = dt.UTC
# 2026-03-29 is a Sunday, day 088 of 2026.
START = dt.datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
SNAPSHOT_NAME = re.compile(r"\d{4}\.\d{3}\.\d{2}\.\d{2}")
ODD_NS = 1_700_000_000_123_456_789


def at(days: float = 0, hours: float = 0) -> dt.datetime:
    return START + dt.timedelta(days=days, hours=hours)


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def name_of(moment: dt.datetime) -> str:
    return moment.strftime("%Y.%j.%H.%M")


def make_file(path: Path, data: bytes, mode: int = 0o644, mtime_ns: int = ODD_NS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def snapshots_in(target: Path) -> list[str]:
    """Snapshot-named real directories in a target, oldest first."""
    if not target.is_dir():
        return []
    return sorted(
        name
        for name in os.listdir(target)
        if SNAPSHOT_NAME.fullmatch(name) and stat.S_ISDIR(os.lstat(target / name).st_mode)
    )


def work_left(target: Path) -> list[str]:
    """What runs left in a target besides snapshots: work and prune leftovers."""
    if not target.is_dir():
        return []
    return sorted(
        name
        for name in os.listdir(target)
        if name.startswith((".hardsnap-partial.", ".hardsnap-pruning."))
    )


def tree_of(root: Path) -> dict[str, bytes]:
    """Every regular file below `root` and its content."""
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


@dataclass
class Site:
    root: Path
    source: Path
    target: Path
    config: Path
    state: Path
    values: dict[str, Any] = field(default_factory=dict)

    def write(self, **overrides: Any) -> Path:
        """(Re)write the config with one resource "r" and these settings."""
        values: dict[str, Any] = {
            "name": "r",
            "type": "backup",
            "source_dir": str(self.source),
            "target_path": str(self.target),
            "min_free_space": 0,
        }
        values.update(overrides)
        self.values = values
        return write_config(self.config, values)

    def environment(self, now: dt.datetime | None) -> dict[str, str]:
        values = dict(os.environ, HARDSNAP_STATE_DIR=str(self.state), NO_COLOR="1")
        values.pop("HARDSNAP_NOW", None)
        if now is not None:
            values["HARDSNAP_NOW"] = iso(now)
        return values

    def cli(self, *arguments: str, now: dt.datetime | None = START) -> Finished:
        """Run a command in-process (a crash fails the test)."""
        environment = {"HARDSNAP_STATE_DIR": str(self.state)}
        if now is not None:
            environment["HARDSNAP_NOW"] = iso(now)
        result = CliRunner().invoke(
            app, [*arguments, "-c", str(self.config)], env=environment, catch_exceptions=False
        )
        return Finished(result.exit_code, result.stdout, result.stderr)

    def process(
        self, *arguments: str, now: dt.datetime | None = START, timeout: float = 300
    ) -> Finished:
        """Run a command as a process of its own (killed, and the test
        failed, if it runs longer than `timeout` seconds)."""
        return run([*arguments, "-c", str(self.config)], self.environment(now), timeout)

    def apply(self, now: dt.datetime = START, *options: str) -> Finished:
        return self.cli("apply", *options, now=now)

    def plan_json(self, now: dt.datetime = START, *options: str) -> dict[str, Any]:
        done = self.cli("plan", "--json", *options, now=now)
        document: dict[str, Any] = json.loads(done.stdout)
        return document

    def state_json(self, now: dt.datetime | None = None) -> dict[str, Any]:
        done = self.cli("state", "show", "--json", now=now)
        assert done.returncode == 0, done
        document: dict[str, Any] = json.loads(done.stdout)
        return document["resources"]["r"]  # type: ignore[no-any-return]

    def snapshots(self) -> list[str]:
        return snapshots_in(self.target)


def new_site(root: Path) -> Site:
    source = root / "src"
    make_file(source / "a.txt", b"alpha\n")
    make_file(source / "sub" / "b.txt", b"bravo\n", 0o600)
    site = Site(root, source, root / "dst", root / "hardsnap.yaml", root / "state")
    site.write()
    return site

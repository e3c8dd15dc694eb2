"""One resource's world under a test's directory: source, target, config,
state, and the real CLI run on them (in-process, or as a process)."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.world.cli import Finished, invoke, run
from tests.world.clock import START, iso
from tests.world.files import make_file, snapshots_in


def write_config(path: Path, *resources: dict[str, Any]) -> Path:
    """Write a config file holding `resources` (values rendered as JSON, valid YAML)."""
    lines = ["resources:"]
    for resource in resources:
        for index, (key, value) in enumerate(resource.items()):
            lead = "  - " if index == 0 else "    "
            lines.append(f"{lead}{key}: {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    # Whatever the umask: a config others may write is refused.
    os.chmod(path, 0o644)
    return path


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
        return invoke([*arguments, "-c", str(self.config)], environment)

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

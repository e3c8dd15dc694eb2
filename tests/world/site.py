"""One resource's world under a test's directory: source, target, config,
state, and the real CLI run on them (in-process, or as a process)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardsnap.providers.manifest.format import manifest_path
from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY, ManifestReader
from tests.world.cli import Finished, environment, invoke, run
from tests.world.clock import START, iso, name_of
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
    """One test's world: a source, a target, a config and a state directory
    under `root`, hook markers in `marks`, and the real CLI run on them."""

    root: Path
    source: Path
    target: Path
    config: Path
    state: Path
    marks: Path
    # Settings every resource written gets unless a test says otherwise.
    defaults: dict[str, Any] = field(default_factory=dict)
    # The last resource written by `write`.
    values: dict[str, Any] = field(default_factory=dict)

    def resource(self, **overrides: Any) -> dict[str, Any]:
        """Resource "r" of this site's source and target, with these settings."""
        values: dict[str, Any] = {
            "name": "r",
            "type": "backup",
            "source_dir": str(self.source),
            "target_path": str(self.target),
            **self.defaults,
        }
        values.update(overrides)
        return values

    def write(self, *resources: dict[str, Any], **overrides: Any) -> Path:
        """(Re)write the config: these resources, or resource "r" with
        these settings."""
        resources = resources or (self.resource(**overrides),)
        self.values = resources[0]
        return write_config(self.config, *resources)

    def environment(self, now: dt.datetime | None) -> dict[str, str]:
        return environment(self.state, None if now is None else iso(now))

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

    def apply_json(
        self, now: dt.datetime = START, *options: str
    ) -> tuple[Finished, dict[str, Any]]:
        """`apply --json`, which must succeed: what it printed, and its document."""
        done = self.cli("apply", "--json", *options, now=now)
        assert done.returncode == 0, done
        assert "Traceback" not in done.stderr, done
        document: dict[str, Any] = done.json()
        return done, document

    def plan_json(self, now: dt.datetime = START, *options: str) -> dict[str, Any]:
        done = self.cli("plan", "--json", *options, now=now)
        document: dict[str, Any] = json.loads(done.stdout)
        return document

    def state_json(self, now: dt.datetime | None = None) -> dict[str, Any]:
        done = self.cli("state", "show", "--json", now=now)
        assert done.returncode == 0, done
        document: dict[str, Any] = json.loads(done.stdout)
        return document["resources"]["r"]  # type: ignore[no-any-return]

    def snapshots(self, target: Path | None = None) -> list[str]:
        return snapshots_in(target or self.target)

    def snapshot(self, name: str) -> Path:
        """A snapshot's directory, where the target really is."""
        return Path(os.path.realpath(self.target)) / name

    def taken_at(self, moment: dt.datetime = START) -> Path:
        """The directory of the snapshot taken at `moment`."""
        return self.snapshot(name_of(moment))

    def manifest(self, name: str) -> Path:
        return self.target / MANIFEST_DIRECTORY / name

    def manifests(self) -> list[str]:
        directory = self.target / MANIFEST_DIRECTORY
        return sorted(os.listdir(directory)) if directory.is_dir() else []

    def mark(self, name: str) -> Path:
        """Where a hook leaves a trace (the folder is made when first asked)."""
        self.marks.mkdir(exist_ok=True)
        return self.marks / name

    def marker_command(self, name: str) -> str:
        """A hook command that leaves a line in mark `name` each time it runs."""
        return f"echo ran >> {shlex.quote(str(self.mark(name)))}"


def empty_site(root: Path, **defaults: Any) -> Site:
    """A site whose source is empty and whose config is not written yet."""
    source = root / "src"
    source.mkdir(parents=True, exist_ok=True)
    config, state, marks = root / "hardsnap.yaml", root / "state", root / "marks"
    return Site(root, source, root / "dst", config, state, marks, defaults)


def new_site(root: Path) -> Site:
    """A site with two files (one in a subdirectory) and its config written."""
    site = empty_site(root, min_free_space=0)
    make_file(site.source / "a.txt", b"alpha\n")
    make_file(site.source / "sub" / "b.txt", b"bravo\n", 0o600)
    site.write()
    return site


def backup_config(root: Path, **extra: Any) -> Path:
    source = root / "src"
    source.mkdir(exist_ok=True)
    (source / "file").write_text("data\n")
    resource = {
        "name": "r",
        "type": "backup",
        "source_dir": "src",
        "target_path": "dst",
        "min_free_space": 0,
        **extra,
    }
    return write_config(root / "hardsnap.yaml", resource)


def digests(site: Site, snapshot: str) -> dict[str, str | None]:
    """Each file's digest as the snapshot's manifest records it."""
    with ManifestReader(manifest_path(str(site.target), snapshot)) as manifest:
        return {
            entry.path: entry.sha256 for _, block in manifest.entries() for entry in block.values()
        }

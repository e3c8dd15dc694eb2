"""hardsnap's own parts driven below the CLI, for tests that inject a fault
at one exact step: a resource built directly, a snapshot taken by the
provider, a target listed and a manifest read back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hardsnap.providers.backup import effects
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.backup.target import MARKER
from hardsnap.providers.files.report import SnapshotReport
from hardsnap.providers.manifest.format import manifest_path
from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY, ManifestReader


def resource_for(source: Path, target: Path, **settings: Any) -> Resource:
    """Resource "r" from `source` into `target`, no free space kept unless said."""
    values: dict[str, Any] = {"min_free_space": 0, **settings}
    return Resource(name="r", source_dir=str(source), target_path=str(target), **values)


def take(resource: Resource, name: str, jobs: int | None = None) -> SnapshotReport:
    """Take snapshot `name` of `resource` (with `jobs` walkers when given)."""
    request = None if jobs is None else effects.SnapshotRequest(jobs=jobs)
    return effects.take_snapshot(
        resource, name, os.path.realpath(resource.target_path), request=request
    )


def listing(directory: Path) -> list[str]:
    """Entries of a target, less hardsnap's manifests and owner marker (kept
    beside the snapshots)."""
    if not directory.exists():
        return []
    return sorted(set(os.listdir(directory)) - {MANIFEST_DIRECTORY, MARKER})


def manifest_digests(target: Path, snapshot: str) -> dict[str, str | None]:
    """Each file's digest as the snapshot's manifest records it."""
    with ManifestReader(manifest_path(str(target), snapshot)) as manifest:
        return {
            entry.path: entry.sha256 for _, block in manifest.entries() for entry in block.values()
        }

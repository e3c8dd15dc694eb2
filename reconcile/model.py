"""The desired state: a whole config file, its resources in file order."""

from __future__ import annotations

from dataclasses import dataclass

from hardsnap.providers.backup.resource import Resource


@dataclass(frozen=True)
class Config:
    """A whole config file: its resources in file order."""

    path: str
    resources: tuple[Resource, ...]
    # Where the Prometheus text-format metrics go after every apply.
    metrics_file: str | None = None

    def resource(self, name: str) -> Resource | None:
        for resource in self.resources:
            if resource.name == name:
                return resource
        return None

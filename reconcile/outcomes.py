"""What an apply did: each action's and resource's outcome, the whole report,
and the Reporter interface through which the applier tells a screen or a log
what it does as it goes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from hardsnap.providers.backup.actions import Action
from hardsnap.providers.backup.suspension import Suspension, pruning_json


class Result(enum.StrEnum):
    CHANGED = "changed"
    SETTLED = "settled"
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    # SIGINT or SIGTERM stopped it; a snapshot's work is kept for resuming.
    INTERRUPTED = "interrupted"


@dataclass
class ActionOutcome:
    action: Action
    result: Result
    message: str | None = None
    duration: float = 0.0
    # Kind-specific results: counts of a snapshot, exit code of a hook, ...
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        document = self.action.to_json()
        document.update(self.details)
        document.update(result=self.result.value, message=self.message, duration=self.duration)
        return document


@dataclass
class ResourceOutcome:
    name: str
    result: Result = Result.SETTLED
    actions: list[ActionOutcome] = field(default_factory=list)
    message: str | None = None
    notes: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)
    duration: float = 0.0
    # Why this run pruned nothing that expired (clock sanity), if it did not.
    suspended: Suspension | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "result": self.result.value,
            "message": self.message,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "duration": self.duration,
            **pruning_json(self.suspended),
            "actions": [outcome.to_json() for outcome in self.actions],
        }


@dataclass
class ApplyReport:
    resources: list[ResourceOutcome]
    unmanaged: tuple[str, ...] = ()
    # Warnings not about one resource (the metrics file).
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(outcome.result is Result.FAILED for outcome in self.resources)


class Reporter:
    """Told what the applier does as it goes, to show it; does nothing itself."""

    # Whether a first snapshot is worth a counting walk beforehand, so that
    # its progress has a total (a live progress bar).
    wants_totals = False

    def action_started(self, resource: str, action: Action, expected_files: int | None) -> None:
        """An action starts; for a snapshot, `expected_files` is the reference's
        file count (an estimate of the work), when known."""

    def snapshot_progress(self, files: int, bytes_copied: int) -> None:
        """A running snapshot has handled `files` files and copied `bytes_copied`."""

    def action_finished(self, resource: ResourceOutcome, outcome: ActionOutcome) -> None:
        """An action ended (or was not run because one it depends on failed)."""

    def resource_finished(self, outcome: ResourceOutcome) -> None:
        """A resource is done: its outcome is final."""

    def close(self) -> None:
        """The apply ended, however it ended: leave the screen clean."""

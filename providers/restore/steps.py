"""What a restore does or would do: one step per entry."""

from __future__ import annotations

from dataclasses import dataclass, field

# Names a restore makes: its temporary files, and what it replaced kept beside.
TEMPORARY = ".hardsnap-restore-"
REPLACED = ".hardsnap-replaced-"


@dataclass(frozen=True)
class Step:
    """One entry of a restore: created, replaced (why), equal, deleted, or
    damaged (its copy does not match the manifest: not restored)."""

    path: str
    action: str
    why: tuple[str, ...] = ()


@dataclass
class Restoration:
    snapshot: str
    path: str
    destination: str
    applied: bool
    # Remove what the destination holds and the snapshot lacks; replace
    # without keeping what is replaced beside.
    delete: bool = False
    overwrite: bool = False
    steps: list[Step] = field(default_factory=list)
    # Where what was replaced was kept (relative to the destination's folder).
    kept_beside: list[str] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for step in self.steps if step.action == action)

    @property
    def pending(self) -> bool:
        return any(step.action in ("create", "replace", "delete") for step in self.steps)

    @property
    def damaged(self) -> list[str]:
        return [step.path for step in self.steps if step.action == "damaged"]

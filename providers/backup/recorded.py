"""What the state records of a resource's earlier applies, as its plan reads
it (the state store keeps it; the plan never writes it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecordedState:
    """What the planner needs to know of one resource's history."""

    revert_spent: bool = False
    # Name of the snapshot whose post_command failed and awaits a retry.
    pending_post_snapshot: str | None = None
    cross_fs_warned: bool = False
    # The resolved target of the last apply, and the snapshots recorded
    # there: when none of them is left, the target is taken for an
    # unmounted disk.
    target: str | None = None
    snapshots: tuple[str, ...] = ()
    # Inodes that `verify --content` last found corrupted in any snapshot.
    corrupted: frozenset[int] = frozenset()
    # The newest snapshot an apply left while pruning was not suspended: a
    # gap in the names that begins before it is not waited for (pruning
    # already ran past it, or the operator resumed it).
    gaps_accepted_before: str | None = None

"""A resource's planned change, as its provider answers the core: the actions
one run would take, each with what it waits for, and why not more.

The core (reconcile/) orders the actions of every resource in an action
graph, renders them and has the applier carry them out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from hardsnap.providers.backup.retention import Reason
from hardsnap.providers.backup.suspension import Suspension


class ActionKind(enum.StrEnum):
    """The closed vocabulary of actions, in their usual order of execution."""

    PRE_COMMAND = "pre_command"
    SNAPSHOT = "snapshot"
    PRUNE = "prune"
    POST_COMMAND = "post_command"
    REVERT = "revert"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]

    @property
    def rank(self) -> int:
        return list(ActionKind).index(self)


_SYMBOLS = {
    ActionKind.PRE_COMMAND: ">",
    ActionKind.SNAPSHOT: "+",
    ActionKind.PRUNE: "-",
    ActionKind.POST_COMMAND: "<",
    ActionKind.REVERT: "~",
}


@dataclass(frozen=True)
class Action:
    """One thing a resource will do. `reason` explains it to humans only."""

    kind: ActionKind
    reason: str
    # The hook's shell command (pre_command, post_command, revert).
    command: str | None = None
    # snapshot: the name to create. Hooks: the snapshot they see as
    # HARDSNAP_SNAPSHOT, if any.
    snapshot: str | None = None
    # snapshot: the newest existing snapshot, linked against.
    reference: str | None = None
    # snapshot: whether unchanged files are hard-linked (else all are copied).
    link_unchanged: bool = True
    # snapshot: take it even from an empty source (apply --allow-empty-source).
    allow_empty_source: bool = False
    # snapshot: the snapshots the state records in the target; when none of
    # them is there any more, the snapshot is refused unless allow_new_target.
    expected: tuple[str, ...] = ()
    allow_new_target: bool = False
    # snapshot: inodes that `verify --content` found corrupted: files of
    # the reference that are one of them are copied, not linked.
    corrupted: tuple[int, ...] = ()
    # snapshot: the work an interrupted run left, resumed, and how many of
    # its files are kept (None when not predicted).
    resumes: str | None = None
    files_kept: int | None = None
    # snapshot: predicted counts, None when the walk was not done.
    files_to_copy: int | None = None
    files_to_link: int | None = None
    bytes_to_copy: int | None = None
    # snapshot: free bytes the target keeps after the predicted copy.
    free_bytes_after: int | None = None
    # snapshot: symlinks and special files it makes, and those the
    # settings leave out (None when the walk was not done).
    symlinks: int | None = None
    special_files: int | None = None
    symlinks_skipped: int | None = None
    special_files_skipped: int | None = None
    # snapshot: directories kept empty but for their marker (exclude_if_present).
    directories_excluded: int | None = None
    # snapshot: the btrfs subvolume frozen for the run (source_snapshot).
    source_snapshot: str | None = None
    # prune: the snapshots to remove, oldest first.
    prune: tuple[str, ...] = ()
    # prune: bytes of the files no other snapshot links to; None when not measured.
    bytes_freed: int | None = None
    # post_command: true when retrying one that failed on an earlier apply.
    retry: bool = False
    # The kinds of action this one runs after, and only if they succeeded.
    after: tuple[ActionKind, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"kind": self.kind.value, "reason": self.reason}
        if self.kind is ActionKind.PRUNE:
            document.update(snapshots=list(self.prune), bytes_freed=self.bytes_freed)
        else:
            document.update((key, getattr(self, key)) for key in _SHOWN[self.kind])
        return document


# What plan --json shows of each kind of action besides its kind and reason.
_HOOK = ("command", "snapshot")
_SHOWN = {
    ActionKind.SNAPSHOT: (
        "snapshot",
        "reference",
        "link_unchanged",
        "files_to_copy",
        "files_to_link",
        "bytes_to_copy",
        "free_bytes_after",
        "resumes",
        "files_kept",
        "symlinks",
        "special_files",
        "symlinks_skipped",
        "special_files_skipped",
        "directories_excluded",
        "source_snapshot",
    ),
    ActionKind.PRE_COMMAND: _HOOK,
    ActionKind.POST_COMMAND: (*_HOOK, "retry"),
    ActionKind.REVERT: _HOOK,
}


@dataclass(frozen=True)
class Pruning:
    """Clock sanity on one run of a resource (providers/backup/suspension.py)."""

    # Why this run prunes nothing that expired; None when it prunes.
    suspended: Suspension | None = None
    # The suspension that `apply --resume-pruning` lifts on this run.
    resumed: Suspension | None = None
    # The newest snapshot before the run (none dated after now): while
    # pruning is not suspended, a gap that begins before it is accepted.
    newest: str | None = None


@dataclass(frozen=True)
class Change:
    """What one run would do to a resource, with why and why not."""

    # target_path with symlinks resolved.
    target: str
    # In the order they were planned; each names the kinds it runs after.
    actions: tuple[Action, ...] = ()
    # Why nothing (or less) is planned, and warnings, for humans.
    notes: tuple[str, ...] = ()
    # Set when the resource cannot converge: nothing of it will run.
    refusal: str | None = None
    # One-time cross_fs warning this run will give (and record).
    warning: str | None = None
    # Warnings given on every run while their cause lasts.
    warnings: tuple[str, ...] = ()
    # Warnings about the resource's settings, for validate and plan only.
    config_warnings: tuple[str, ...] = ()
    # The existing snapshots retention keeps, oldest first, with the rules
    # keeping each (providers/backup/retention.py).
    kept: tuple[tuple[str, tuple[Reason, ...]], ...] = ()
    pruning: Pruning = Pruning()

"""The backup provider plans its resource: (resource, facts, recorded state,
now, the operator's overrides) -> the Change one run would make.

Pure: no I/O, no clock, no logging. Everything it knows of the world comes
in as facts it observed (facts.py) and state recorded by earlier applies.
The core (reconcile/planner.py) calls plan_resource once per resource and
orders the actions of all of them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hardsnap.providers.backup import pruning
from hardsnap.providers.backup.actions import Action, ActionKind, Change, Pruning
from hardsnap.providers.backup.facts import Facts, links_unchanged
from hardsnap.providers.backup.frozen import Frozen
from hardsnap.providers.backup.naming import snapshot_in_window, snapshot_name, window_of
from hardsnap.providers.backup.recorded import RecordedState
from hardsnap.providers.backup.refusals import (
    cross_fs_refusal,
    empty_source_refusal,
    free_after_snapshot,
    free_space_refusal,
    missing_source_refusal,
    missing_target_refusal,
    ownership_refusal,
)
from hardsnap.providers.backup.resource import CrossFs, Resource
from hardsnap.providers.backup.suspension import Suspension


@dataclass(frozen=True)
class Overrides:
    """What the operator allowed on the command line, against a refusal."""

    # Snapshot an empty source even when the newest snapshot has files
    # (else refused as a likely unmounted disk).
    allow_empty_source: bool = False
    # Start a new chain in a target that lost every snapshot the state
    # records there (else refused as a likely unmounted disk).
    allow_new_target: bool = False
    # Prune although pruning is suspended (clock sanity): the operator
    # says the clock is right and the gap in the snapshots is real.
    resume_pruning: bool = False


def needs_snapshot(resource: Resource, facts: Facts, now: dt.datetime) -> bool:
    """Whether a converge now would take a snapshot of this resource."""
    if resource.revert:
        return False
    return snapshot_in_window(facts.snapshots, now, resource.schedule) is None


def plan_resource(
    resource: Resource,
    facts: Facts,
    recorded: RecordedState | None,
    now: dt.datetime,
    overrides: Overrides | None = None,
) -> Change:
    recorded = recorded or RecordedState()
    overrides = overrides or Overrides()
    allow_empty_source = overrides.allow_empty_source
    newest = facts.snapshots[-1] if facts.snapshots else None

    if resource.revert:
        if recorded.revert_spent:
            return Change(
                facts.target,
                notes=("revert already ran; set revert: false (or remove it) to re-arm",),
            )
        revert = Action(
            ActionKind.REVERT,
            "revert is true and on_revert has not yet succeeded",
            command=resource.on_revert,
            snapshot=newest,
        )
        return Change(facts.target, (revert,))

    notes: list[str] = []
    suspended = pruning.suspended(resource, facts.snapshots, recorded, now)
    if suspended and overrides.resume_pruning:
        prune = Pruning(resumed=suspended, newest=newest)
        notes.append(pruning.resumed_note(resource, suspended))
    else:
        prune = Pruning(suspended=suspended, newest=newest)
    warnings = _warnings(resource, facts, prune.suspended)
    config_warnings = _config_warnings(resource)
    expected = recorded.snapshots if recorded.target == facts.target else ()
    refusal = facts.target_error or ownership_refusal(resource, facts)
    missing_target = missing_target_refusal(resource, facts, expected, overrides.allow_new_target)
    if missing_target and resource.pre_command:
        # It may mount the target: the snapshot checks again after it.
        notes.append(f"{missing_target} (checked again after pre_command, which may mount it)")
    elif missing_target:
        refusal = refusal or missing_target
    if refusal:
        return Change(
            facts.target,
            refusal=refusal,
            warnings=warnings,
            config_warnings=config_warnings,
            pruning=prune,
        )
    actions: list[Action] = []
    warning = None
    window = window_of(now, resource.schedule)
    current = snapshot_in_window(facts.snapshots, now, resource.schedule)
    if current is None:
        name = snapshot_name(now)
        predicted = facts.prediction
        if resource.pre_command:
            actions.append(
                Action(
                    ActionKind.PRE_COMMAND,
                    "runs before the snapshot; failing aborts the resource",
                    command=resource.pre_command,
                    snapshot=newest,
                )
            )
        actions.append(
            Action(
                ActionKind.SNAPSHOT,
                f"{resource.schedule.value} window {window} has no snapshot yet",
                snapshot=name,
                reference=newest,
                link_unchanged=links_unchanged(resource, facts),
                allow_empty_source=allow_empty_source,
                expected=expected,
                allow_new_target=overrides.allow_new_target,
                corrupted=tuple(sorted(recorded.corrupted)),
                resumes=facts.partial,
                files_kept=predicted.files_kept if predicted else None,
                files_to_copy=predicted.files_to_copy if predicted else None,
                files_to_link=predicted.files_to_link if predicted else None,
                bytes_to_copy=predicted.bytes_to_copy if predicted else None,
                symlinks=predicted.symlinks if predicted else None,
                special_files=predicted.special_files if predicted else None,
                symlinks_skipped=predicted.symlinks_skipped if predicted else None,
                special_files_skipped=predicted.special_files_skipped if predicted else None,
                directories_excluded=predicted.directories_excluded if predicted else None,
                source_snapshot=facts.frozen.volume if isinstance(facts.frozen, Frozen) else None,
                free_bytes_after=free_after_snapshot(facts),
                after=(ActionKind.PRE_COMMAND,),
            ),
        )
        refusal, warning = _snapshot_problems(resource, facts, recorded, allow_empty_source)
        if facts.partial and predicted is not None:
            notes.append(
                f"resumes the work an interrupted run left ({facts.partial}): "
                f"keeps {predicted.files_kept} files"
            )
        notes.extend(_source_notes(resource, facts, allow_empty_source))
        if isinstance(facts.frozen, Frozen):
            notes.append(
                f"walks a read-only btrfs snapshot of {facts.frozen.volume}, made for the run "
                f"and removed after it (source_snapshot: btrfs): every file from one instant"
            )
        post_snapshot: str | None = name
        post_reason, retry = "runs after the snapshot and prune", False
    else:
        notes.append(f"{resource.schedule.value} window {window} already has {current}")
        post_snapshot = recorded.pending_post_snapshot
        post_reason = f"retry: failed on an earlier apply after snapshot {post_snapshot}"
        retry = True

    doomed = pruning.planned_prune(resource, facts, recorded, now, prune.resumed is not None)
    if doomed:
        freed = facts.bytes_freed
        bytes_freed = freed[1] if freed is not None and freed[0] == tuple(doomed) else None
        keep = f", keeping the {resource.keep_min} newest" if resource.keep_min else ""
        periods = [
            f"{rule} {count}"
            for rule, count in (
                ("keep_weekly", resource.keep_weekly),
                ("keep_monthly", resource.keep_monthly),
                ("keep_yearly", resource.keep_yearly),
            )
            if count
        ]
        if periods:
            keep += f" and what {', '.join(periods)} keep"
        if facts.interrupted_prunes:
            keep += "; finishing a prune that was interrupted"
        actions.append(
            Action(
                ActionKind.PRUNE,
                f"older than {resource.retain_days} days{keep}",
                prune=tuple(doomed),
                bytes_freed=bytes_freed,
                after=(ActionKind.SNAPSHOT,),
            ),
        )

    if resource.post_command and post_snapshot is not None:
        actions.append(
            Action(
                ActionKind.POST_COMMAND,
                post_reason,
                command=resource.post_command,
                snapshot=post_snapshot,
                retry=retry,
                after=(ActionKind.SNAPSHOT, ActionKind.PRUNE),
            ),
        )
    elif recorded.pending_post_snapshot and not resource.post_command and current is not None:
        notes.append("a failed post_command is pending, but none is configured any more")

    retention = pruning.retention(resource, facts, now)
    return Change(
        facts.target,
        tuple(actions),
        notes=tuple(notes),
        refusal=refusal,
        warning=warning,
        warnings=warnings,
        config_warnings=config_warnings,
        kept=tuple((name, retention[name]) for name in facts.snapshots if retention.get(name)),
        pruning=prune,
    )


def _config_warnings(resource: Resource) -> tuple[str, ...]:
    warning = pruning.short_retain_warning(resource)
    return (warning,) if warning else ()


def _warnings(resource: Resource, facts: Facts, suspended: Suspension | None) -> tuple[str, ...]:
    """What is odd about the target, said on every run while it lasts."""
    warnings = []
    if facts.future_snapshots:
        warnings.append(
            f"{', '.join(facts.future_snapshots)} in {facts.target} "
            f"{'is' if len(facts.future_snapshots) == 1 else 'are'} dated after now "
            f"(clock skew, or a hand-made copy): never used as reference, never pruned"
        )
    if suspended:
        warnings.append(pruning.suspension_warning(resource, suspended))
    if facts.source_path_weakness is not None:
        directory, why = facts.source_path_weakness
        warnings.append(
            f"source_dir {resource.source_dir} is reached through {directory}, which {why}: "
            f"whoever can write it could put another directory in the source's place (a "
            f"symlink swapped in is refused, never followed; a directory is not told apart)"
        )
    if facts.target_open_to_others:
        warnings.append(
            f"target_path {facts.target} is writable by other users: chmod go-w "
            f"{facts.target} (hardsnap never follows what they put there, but they can "
            f"delete or alter snapshots)"
        )
    if facts.target_readable_by_others:
        warnings.append(
            f"target_path {facts.target} can be read by other users: chmod 700 "
            f"{facts.target} (snapshots keep every file's owner and mode, but not the "
            f"protection of the source's parent directories: a file only a 0700 directory "
            f"of the source kept from them is readable here, and they can rewrite their own "
            f"files in every snapshot that shares the inode)"
        )
    return tuple(warnings)


def _source_notes(resource: Resource, facts: Facts, allow_empty_source: bool) -> list[str]:
    """Warnings about the source: missing or empty while a pre_command may
    still fill it (the snapshot checks again), or shrunk by more than half."""
    notes = []
    if resource.pre_command and not facts.source_exists:
        notes.append(
            f"source_dir {resource.source_dir} does not exist yet: the snapshot fails "
            f"unless pre_command provides it"
        )
    elif resource.pre_command and not allow_empty_source and empty_source_refusal(resource, facts):
        notes.append(
            f"source_dir {resource.source_dir} is empty: the snapshot fails unless "
            f"pre_command fills it (or --allow-empty-source is given)"
        )
    predicted = facts.prediction
    if predicted is not None and facts.reference_files:
        files = predicted.files_to_copy + predicted.files_to_link + predicted.files_kept
        if files * 2 < facts.reference_files:
            notes.append(
                f"warning: the source holds {files} files, the newest snapshot "
                f"{facts.reference_files}: more than half are gone since"
            )
    return notes


def _snapshot_problems(
    resource: Resource, facts: Facts, recorded: RecordedState, allow_empty_source: bool
) -> tuple[str | None, str | None]:
    """Return (why the snapshot cannot start, a cross_fs warning to give)."""
    refusal = warning = None
    if not resource.pre_command:
        # Without a pre_command nothing can mount or fill the source first.
        if not facts.source_exists:
            refusal = missing_source_refusal(resource, facts)
        elif not allow_empty_source:
            refusal = empty_source_refusal(resource, facts)
    if refusal is None and facts.same_filesystem is False:
        if resource.cross_fs is CrossFs.FAIL:
            refusal = cross_fs_refusal(resource, facts)
        elif resource.cross_fs is CrossFs.COPY or (
            resource.cross_fs is CrossFs.WARN and not recorded.cross_fs_warned
        ):
            warning = (
                f"source_dir {resource.source_dir} ({facts.source_filesystem}) and target_path "
                f"{resource.target_path} ({facts.target_filesystem}) are on different "
                f"filesystems: every file is copied (cross_fs: {resource.cross_fs.value})"
            )
    if refusal is None and isinstance(facts.frozen, str):
        refusal = facts.frozen
    if refusal is None:
        refusal = free_space_refusal(resource, facts)
    return refusal, warning

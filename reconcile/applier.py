"""The applier: carries out a plan, and is the only caller of effects.

Each resource's actions run in the plan's order; an action whose
predecessor failed does not run and is marked "upstream_failed". The
resource's record is saved after every action, so an apply that dies
leaves true partial state behind.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

from hardsnap.providers.backup import effects as backup
from hardsnap.providers.backup import hooks
from hardsnap.providers.backup.actions import Action, ActionKind
from hardsnap.providers.backup.target import TargetLocks
from hardsnap.providers.engine.snapshot import SnapshotFailed
from hardsnap.providers.files.escaping import error_text, escape_name
from hardsnap.reconcile import monitoring, pings
from hardsnap.reconcile.outcomes import (
    ActionOutcome,
    ApplyReport,
    Reporter,
    ResourceOutcome,
    Result,
)
from hardsnap.reconcile.plan import Plan, ResourcePlan
from hardsnap.state.store import StateStore


def apply(
    plan: Plan,
    store: StateStore,
    hook_cwd: str,
    reporter: Reporter | None = None,
    locks: TargetLocks | None = None,
    jobs: int | None = None,
) -> ApplyReport:
    """Carry out `plan`, recording every result in `store`; return the report.

    `reporter` is told of each action and resource as they go; `locks` hold
    the targets' locks, taken before the plan was made; `jobs` processes
    share each snapshot's walk (None: one per CPU this process may use).
    """
    reporter = reporter or Reporter()
    report = ApplyReport(resources=[], unmanaged=plan.unmanaged)
    for resource_plan in plan.resources:
        outcome = _Resource(resource_plan, plan.now, store, hook_cwd, reporter, locks, jobs).run()
        report.resources.append(outcome)
        reporter.resource_finished(outcome)
    return report


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class _Resource:
    """The apply of one resource: its actions, its record, its outcome."""

    def __init__(
        self,
        plan: ResourcePlan,
        now: dt.datetime,
        store: StateStore,
        hook_cwd: str,
        reporter: Reporter,
        locks: TargetLocks | None,
        jobs: int | None = None,
    ) -> None:
        self.plan = plan
        self.locks = locks
        self.jobs = jobs
        # The action running now: the one an interrupt stops.
        self._current: Action | None = None
        self.resource = plan.resource
        self.now = now
        self.store = store
        self.hook_cwd = hook_cwd
        self.reporter = reporter
        self.outcome = ResourceOutcome(plan.resource.name, notes=plan.notes)
        self.record = store.record(self.resource.name)
        self.run_record: dict[str, Any] = {
            "at": _iso(now),
            "started": _iso(dt.datetime.now(dt.UTC)),
            # Overwritten when the run ends: what a killed run leaves behind.
            "result": "incomplete",
            "duration": None,
            "actions": [],
        }

    def run(self) -> ResourceOutcome:
        started = time.monotonic()
        resource = self.resource
        if not resource.revert:
            # A normal apply re-arms a spent revert.
            self.record["revert_spent_at"] = None
        if not resource.post_command:
            self.record["pending_post"] = None
        if self.record.get("target") != self.plan.target:
            # What the state knows of snapshots is of the old target's.
            self.record["snapshots"] = {}
        self.record["target"] = self.plan.target
        self.outcome.warnings.extend(self.plan.warnings)
        self.outcome.suspended = self.plan.pruning.suspended
        if not self.plan.refusal:
            # Before any action: a run stopped half-way has it recorded.
            self._remember_pruning(self.plan.pruning.newest)
        if self.plan.refusal:
            self._refuse(self.plan.refusal)
        elif self.plan.has_changes:
            self.record["runs"].append(self.run_record)
            self._save()
            self._ping("/start", f"{resource.name}: starting {len(self.plan.actions)} action(s)")
            try:
                self._run_actions()
            except KeyboardInterrupt:
                self._interrupted(started)
                raise
        self._tell_the_world()
        self.outcome.duration = round(time.monotonic() - started, 3)
        self.record["last_run"] = {
            "at": _iso(self.now),
            "success": self.outcome.result is not Result.FAILED,
            "duration": self.outcome.duration,
        }
        if self.outcome.result is not Result.FAILED:
            self.record["last_success_at"] = _iso(self.now)
        self.run_record["duration"] = self.outcome.duration
        self.run_record["result"] = self.outcome.result.value
        self.run_record["message"] = self.outcome.message
        if self.plan.refusal:
            self.record["runs"].append(self.run_record)
        self._save()
        return self.outcome

    def _interrupted(self, started: float) -> None:
        """Record that SIGINT or SIGTERM stopped this resource's run."""
        self.outcome.result = Result.INTERRUPTED
        self.outcome.message = "interrupted"
        if self._current is not None:
            message = "interrupted"
            if self._current.kind is ActionKind.SNAPSHOT:
                message += "; the work so far is kept for the next apply to resume"
            outcome = ActionOutcome(self._current, Result.INTERRUPTED, message)
            self.outcome.actions.append(outcome)
            self.run_record["actions"].append(outcome.to_json())
        self.outcome.duration = round(time.monotonic() - started, 3)
        self.run_record.update(
            result=Result.INTERRUPTED.value,
            message=self.outcome.message,
            duration=self.outcome.duration,
        )
        self._save()

    def _remember_pruning(self, newest: str | None) -> None:
        """Record whether pruning is suspended (for the metrics) and, while
        it is not, the newest snapshot: a gap that begins before it is
        accepted (pruning ran past it) and never suspends pruning again."""
        suspended = self.plan.pruning.suspended
        self.record["pruning_suspended_since"] = suspended.since if suspended else None
        if suspended is None and newest is not None:
            self.record["gaps_accepted_before"] = newest

    def _ping(self, suffix: str, body: str) -> None:
        if self.resource.ping_url:
            warning = pings.ping(self.resource.ping_url, suffix, body)
            if warning:
                self.outcome.warnings.append(warning)

    def _tell_the_world(self) -> None:
        """After a failure or refusal: on_failure, then the /fail ping; after
        a change: the success ping. A settled resource says nothing."""
        outcome = self.outcome
        if outcome.result is Result.FAILED:
            message = outcome.message or "failed"
            warning = monitoring.run_on_failure(self.resource, message, self.hook_cwd)
            if warning:
                outcome.warnings.append(warning)
            self._ping("/fail", f"{self.resource.name}: {self._failure_kind()}")
        elif outcome.result is Result.CHANGED:
            done = ", ".join(
                f"{action.action.kind.value} {action.action.snapshot or ''}".strip()
                for action in outcome.actions
            )
            self._ping("", f"{self.resource.name}: changed: {done}")

    def _failure_kind(self) -> str:
        """What failed, for the /fail ping: never the error itself, which
        may name source paths or quote a hook's output."""
        if self.plan.refusal:
            return "refused (hardsnap plan on the host says why)"
        first = next((o for o in self.outcome.actions if o.result is Result.FAILED), None)
        if first is None:
            return "failed"
        kind = f"{first.action.kind.value} failed"
        exit_code = first.details.get("exit_code")
        return kind if exit_code is None else f"{kind} (exit code {exit_code})"

    def _refuse(self, refusal: str) -> None:
        """Nothing of a refused resource runs: its snapshot fails with the
        refusal, and every other action is reported as not run."""
        self.outcome.result = Result.FAILED
        self.outcome.message = refusal
        for action in self.plan.actions:
            if action.kind is ActionKind.SNAPSHOT:
                outcome = ActionOutcome(action, Result.FAILED, refusal)
            else:
                outcome = ActionOutcome(
                    action, Result.UPSTREAM_FAILED, "not run: the snapshot was refused"
                )
            self.outcome.actions.append(outcome)
            self.run_record["actions"].append(outcome.to_json())

    def _save(self) -> None:
        self.store.save(self.resource.name, self.record)

    def _run_actions(self) -> None:
        if self.plan.warning:
            self.outcome.warnings.append(self.plan.warning)
            self.record["cross_fs_warned"] = True
        results: dict[ActionKind, Result] = {}
        for action in self.plan.actions:
            upstream = [
                kind
                for kind in self.plan.depends_on(action.kind)
                if results[kind] is not Result.CHANGED
            ]
            if upstream:
                outcome = ActionOutcome(
                    action,
                    Result.UPSTREAM_FAILED,
                    f"not run: {upstream[0].value} did not succeed",
                )
            else:
                outcome = self._run_action(action)
            results[action.kind] = outcome.result
            self.outcome.actions.append(outcome)
            self.run_record["actions"].append(outcome.to_json())
            self._save()
            self.reporter.action_finished(self.outcome, outcome)
        failed = any(result is not Result.CHANGED for result in results.values())
        self.outcome.result = Result.FAILED if failed else Result.CHANGED
        if failed:
            first = next(o for o in self.outcome.actions if o.result is Result.FAILED)
            self.outcome.message = f"{first.action.kind.value} failed: {first.message}"

    def _run_action(self, action: Action) -> ActionOutcome:
        expected = None
        if action.files_to_copy is not None and action.files_to_link is not None:
            expected = action.files_to_copy + action.files_to_link + (action.files_kept or 0)
        elif action.kind is ActionKind.SNAPSHOT and action.reference:
            made = self.record["snapshots"].get(action.reference)
            if made:
                expected = made["files_copied"] + made["files_linked"] + made.get("files_kept", 0)
        self.reporter.action_started(self.resource.name, action, expected)
        self._current = action
        started = time.monotonic()
        runner = {
            ActionKind.PRE_COMMAND: self._hook,
            ActionKind.POST_COMMAND: self._hook,
            ActionKind.REVERT: self._hook,
            ActionKind.SNAPSHOT: self._snapshot,
            ActionKind.PRUNE: self._prune,
        }[action.kind]
        outcome = runner(action)
        self._current = None
        outcome.duration = round(time.monotonic() - started, 3)
        return outcome

    def _snapshot_path(self, name: str | None) -> str | None:
        return os.path.join(self.resource.target_path, name) if name else None

    def _hook(self, action: Action) -> ActionOutcome:
        assert action.command is not None
        environment = hooks.hook_environment(
            self.resource.name,
            self.resource.source_dir,
            self.resource.target_path,
            self._snapshot_path(action.snapshot),
        )
        if action.kind is ActionKind.POST_COMMAND:
            # Recorded before it runs: one interrupted or killed is retried.
            self.record["pending_post"] = {"snapshot": action.snapshot, "failed_at": _iso(self.now)}
            self._save()
        result = hooks.run_hook(
            action.command, environment, self.hook_cwd, self.resource.hook_timeout
        )
        details = {"exit_code": result.exit_code, "output_tail": result.output_tail}
        if action.kind is ActionKind.POST_COMMAND and result.succeeded:
            self.record["pending_post"] = None
        if action.kind is ActionKind.REVERT and result.succeeded:
            self.record["revert_spent_at"] = _iso(self.now)
        if result.succeeded:
            return ActionOutcome(action, Result.CHANGED, details=details)
        if result.timed_out:
            return ActionOutcome(
                action,
                Result.FAILED,
                f"timed out after {self.resource.hook_timeout}s (hook_timeout); its processes "
                f"were ended",
                details=details,
            )
        message = f"exit code {result.exit_code}"
        last_line = result.output_tail.strip().splitlines()[-1:] if result.output_tail else []
        if last_line:
            message += f": {last_line[0]}"
        return ActionOutcome(action, Result.FAILED, message, details=details)

    def _snapshot(self, action: Action) -> ActionOutcome:
        assert action.snapshot is not None
        request = backup.SnapshotRequest(
            allow_empty_source=action.allow_empty_source,
            expected=action.expected,
            allow_new_target=action.allow_new_target,
            corrupted=frozenset(action.corrupted),
            jobs=self.jobs,
        )
        try:
            report = backup.take_snapshot(
                self.resource,
                action.snapshot,
                self.plan.target,
                self.reporter.snapshot_progress,
                request,
                self.locks,
            )
        except SnapshotFailed as error:
            return ActionOutcome(action, Result.FAILED, str(error))
        except OSError as error:
            return ActionOutcome(action, Result.FAILED, error_text(error))
        details = {
            "files_copied": report.files_copied,
            "files_linked": report.files_linked,
            "bytes_copied": report.bytes_copied,
            # The first entries left out, with every one counted by reason.
            "skipped": [{"path": skip.path, "reason": skip.reason} for skip in report.skipped],
            "skipped_total": report.skipped_total,
            "skipped_by_reason": dict(report.skipped_by_reason),
            "unstable": list(report.unstable),
            "unstable_total": report.unstable_total,
            "files_kept": report.files_kept,
            "resumed": report.resumed,
            "symlinks": report.symlinks,
            "special_files": report.special_files,
            "symlinks_skipped": report.symlinks_skipped,
            "special_files_skipped": report.special_files_skipped,
            "directories_excluded": report.directories_excluded,
        }
        if report.symlinks_skipped and not self.record.get("symlinks_hinted"):
            # Said once: skipping is the original resource's behaviour.
            self.record["symlinks_hinted"] = True
            self.outcome.warnings.append(
                f"{report.symlinks_skipped} symlink(s) of the source were left out "
                f"(symlinks: skip, the default); set symlinks: keep to keep them, and "
                f"special_files: keep for FIFOs and device nodes"
            )
        for skip in report.skipped:
            if not skip.reason.endswith("not copied"):
                self.outcome.warnings.append(f"skipped {escape_name(skip.path)}: {skip.reason}")
        unshown = {
            reason: count - sum(1 for skip in report.skipped if skip.reason == reason)
            for reason, count in report.skipped_by_reason.items()
            if not reason.endswith("not copied")
        }
        if any(unshown.values()):
            counts = ", ".join(f"{count} {reason}" for reason, count in unshown.items() if count)
            self.outcome.warnings.append(f"and more skipped, not named here: {counts}")
        for path in report.unstable:
            self.outcome.warnings.append(f"{escape_name(path)} kept changing while it was copied")
        if report.unstable_total > len(report.unstable):
            self.outcome.warnings.append(
                f"and {report.unstable_total - len(report.unstable)} more files kept changing "
                f"while they were copied"
            )
        warnings = (
            report.not_kept_warning(),
            report.shrink_warning(),
            report.link_failure_warning(),
        )
        for warning in warnings:
            if warning:
                self.outcome.warnings.append(warning)
        self.outcome.warnings.extend(report.leftovers)
        self.record["last_snapshot_bytes_copied"] = report.bytes_copied
        self.record["snapshots"][action.snapshot] = {
            "created_at": _iso(self.now),
            "files_copied": report.files_copied,
            "files_linked": report.files_linked,
            "files_kept": report.files_kept,
            "bytes_copied": report.bytes_copied,
            "skipped": report.skipped_total,
        }
        self._remember_pruning(action.snapshot)
        return ActionOutcome(action, Result.CHANGED, details=details)

    def _prune(self, action: Action) -> ActionOutcome:
        try:
            removed, freed, warnings = backup.prune(
                self.plan.target, list(action.prune), self.locks
            )
        except SnapshotFailed as error:
            return ActionOutcome(action, Result.FAILED, str(error))
        except OSError as error:
            return ActionOutcome(action, Result.FAILED, error_text(error))
        self.outcome.warnings.extend(warnings)
        for name in removed:
            self.record["snapshots"].pop(name, None)
        return ActionOutcome(
            action, Result.CHANGED, details={"pruned": removed, "bytes_freed": freed}
        )

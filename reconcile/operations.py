"""What each command does, between parsing its options and rendering its result.

Observe, plan, apply: these functions wire the provider, the planner, the
applier and the state store together. Only `apply_config` changes anything.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from hardsnap.providers.audit import history
from hardsnap.providers.audit import verify as audit
from hardsnap.providers.backup import observe, pruning, retention
from hardsnap.providers.backup.naming import future_names
from hardsnap.providers.backup.plan import Overrides
from hardsnap.providers.backup.pruning import policy
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.backup.suspension import pruning_json
from hardsnap.providers.backup.target import TargetLocks, freed_by_pruning, list_snapshots
from hardsnap.providers.files.compact import IntTable
from hardsnap.providers.files.escaping import escape_name
from hardsnap.reconcile import applier, monitoring, outcomes, planner
from hardsnap.reconcile.model import Config
from hardsnap.reconcile.plan import Plan
from hardsnap.state.lock import ApplyLock
from hardsnap.state.store import StateStore, recorded_state


class UnknownResource(Exception):
    """--resource named a resource that the config does not have."""


def select(config: Config, names: list[str]) -> list[Resource]:
    """Return the resources named (all when `names` is empty), in config order."""
    if not names:
        return list(config.resources)
    known = {resource.name for resource in config.resources}
    for name in names:
        if name not in known:
            from hardsnap.reconcile.config import closest

            raise UnknownResource(
                f'no resource named "{name}" in {config.path}{closest(name, sorted(known))}'
            )
    return [resource for resource in config.resources if resource.name in names]


def make_plan(
    resources: list[Resource],
    store: StateStore,
    now: dt.datetime,
    predict: bool,
    overrides: Overrides | None = None,
    predict_first: bool = False,
) -> Plan:
    """Observe every resource and plan. With `predict`, walk the source of each
    resource due for a snapshot to count what it would copy and link; with
    `predict_first`, only of those due for their first snapshot (whose
    progress has no earlier snapshot to measure against)."""
    recorded = store.recorded()
    resume = overrides is not None and overrides.resume_pruning
    facts = {
        resource.name: observe.read(
            resource, recorded.get(resource.name), now, predict, predict_first, resume
        )
        for resource in resources
    }
    return planner.plan(resources, facts, recorded, now, overrides)


def plan_config(
    config: Config, state_dir: str, now: dt.datetime, overrides: Overrides | None = None
) -> Plan:
    """Return the plan for a config; reads only."""
    with StateStore.read(state_dir) as store:
        return make_plan(list(config.resources), store, now, True, overrides)


def apply_config(
    config: Config,
    state_dir: str,
    now: dt.datetime,
    names: list[str],
    reporter: outcomes.Reporter | None = None,
    overrides: Overrides | None = None,
    jobs: int | None = None,
) -> outcomes.ApplyReport:
    """Converge the selected resources of a config; return what happened.
    `jobs` processes share each snapshot's walk (None: one per CPU).

    Both locks are taken before anything is observed or run: the state
    directory's, and every selected target's. Raise locking.Busy (or HeldByOther)
    when another apply holds one.
    """
    resources = select(config, names)
    targets = [os.path.realpath(resource.target_path) for resource in resources]
    with (
        StateStore.write(state_dir) as store,
        ApplyLock(state_dir),
        TargetLocks(targets) as locks,
    ):
        wants_totals = reporter is not None and reporter.wants_totals
        plan = make_plan(resources, store, now, False, overrides, predict_first=wants_totals)
        hook_cwd = os.path.dirname(os.path.abspath(config.path))
        report = applier.apply(plan, store, hook_cwd, reporter, locks, jobs)
        if config.metrics_file:
            report.warnings.extend(
                monitoring.write_metrics(config.metrics_file, _metrics(config, store))
            )
        return report


def _metrics(config: Config, store: StateStore) -> str:
    """The metrics of every resource of the config, from its record."""
    values = {}
    for resource in config.resources:
        try:
            snapshots = len(list_snapshots(os.path.realpath(resource.target_path)))
        except OSError:
            snapshots = 0
        values[resource.name] = monitoring.resource_metrics(store.record(resource.name), snapshots)
    return monitoring.metrics_text(values)


class NoSuchSnapshot(Exception):
    """A snapshot named on the command line is not in the target."""


class CannotForget(Exception):
    """`state forget` named a resource still in the config, or one with no
    recorded state."""


def forget_resource(config: Config, state_dir: str, name: str) -> None:
    """Drop the recorded state of a resource no longer in the config. Its
    snapshots stay where they are. Raise CannotForget, or locking.Busy while
    an apply runs."""
    if config.resource(name) is not None:
        raise CannotForget(
            f'resource "{name}" is still in {config.path}: remove it from the config first '
            f"(its snapshots stay on disk either way)"
        )
    with StateStore.read(state_dir) as store:
        if name not in store.names():
            raise CannotForget(f'no recorded state of a resource named "{name}"')
    with StateStore.write(state_dir) as store, ApplyLock(state_dir):
        store.forget(name)


def _target_of(config: Config, name: str, state_dir: str) -> str:
    """The real target of a resource: from the config, or, for one removed
    from it, from its recorded state (its snapshots are still there)."""
    if config.resource(name) is None:
        with StateStore.read(state_dir) as store:
            recorded = store.record(name).get("target") if name in store.names() else None
        if recorded:
            return str(recorded)
    resource = select(config, [name])[0]
    return os.path.realpath(resource.target_path)


def verify_resource(
    config: Config,
    state_dir: str,
    name: str,
    snapshots: list[str],
    content: bool,
    now: dt.datetime,
) -> list[audit.Verification]:
    """Verify snapshots of a resource (all when none are named) against their
    manifests, and record each result in state."""
    target = _target_of(config, name, state_dir)
    present = list_snapshots(target)
    chosen = snapshots or list(present)
    hashes = IntTable()
    results = []
    for snapshot in chosen:
        if snapshot not in present:
            result = audit.Verification(snapshot, content)
            result.findings.append(
                audit.Finding("", "missing", f"no snapshot {snapshot} in {target}")
            )
        else:
            result = audit.verify_snapshot(target, snapshot, content, hashes)
        results.append(result)
    with StateStore.write(state_dir) as store:
        for result in results:
            if result.snapshot in present:
                store.save_verification(
                    name,
                    result.snapshot,
                    {
                        "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "content": content,
                        "clean": result.clean,
                        "problems": len(result.findings),
                        # What the next snapshot must copy rather than link.
                        "corrupted": sorted(
                            {f.inode for f in result.findings if f.inode is not None}
                        ),
                    },
                )
    return results


def diff_resource(
    config: Config, state_dir: str, name: str, before: str | None, after: str | None
) -> audit.Difference:
    """Compare two snapshots of a resource (default: the two newest)."""
    target = _target_of(config, name, state_dir)
    present = list_snapshots(target)
    if before is None:
        if len(present) < 2:
            raise NoSuchSnapshot(
                f'resource "{name}" has {len(present)} snapshot(s) in {target}: a diff needs two'
            )
        before, after = present[-2], present[-1]
    elif after is None:
        later = [snapshot for snapshot in present if snapshot > before]
        if before in present and not later:
            raise NoSuchSnapshot(f"{before} is the newest snapshot: there is none after it")
        after = later[0] if later else present[-1] if present else before
    for snapshot in (before, after):
        if snapshot not in present:
            raise NoSuchSnapshot(f"no snapshot {snapshot} in {target}")
    assert after is not None
    return audit.diff_snapshots(target, before, after)


def state_view(
    config: Config | None, state_dir: str, name: str | None, now: dt.datetime
) -> dict[str, Any]:
    """Return what `state show` shows: per resource its snapshots on disk and
    the rules keeping each at `now`, revert status, pending post_command,
    last runs, and whether it is managed."""
    view: dict[str, Any] = {}
    with StateStore.read(state_dir) as store:
        configured = {r.name: r for r in config.resources} if config else {}
        names = list(configured) + [n for n in store.names() if n not in configured]
        for resource_name in names:
            if name is not None and resource_name != name:
                continue
            view[resource_name] = _resource_view(
                configured.get(resource_name),
                store.record(resource_name),
                store.verifications(resource_name),
                now,
            )
    return view


def _resource_view(
    resource: Resource | None,
    record: dict[str, Any],
    verifications: dict[str, Any],
    now: dt.datetime,
) -> dict[str, Any]:
    target = os.path.realpath(resource.target_path) if resource else record.get("target")
    names = list_snapshots(target) if target else ()
    known = record.get("snapshots", {})
    # Why each snapshot is still there (null for a resource no longer
    # configured, or a snapshot dated after now: no rule applies).
    current = [name for name in names if name not in future_names(names, now)]
    kept = retention.reasons(current, now, policy(resource)) if resource else {}
    # Whether the next apply prunes (null fields for a resource no longer configured).
    shown_pruning: dict[str, Any] = {
        "pruning": None,
        "pruning_suspended_since": None,
        "pruning_resumes_at": None,
    }
    if resource is not None:
        suspended = pruning.suspended(resource, tuple(current), recorded_state(record), now)
        shown_pruning = pruning_json(suspended)
    snapshots = []
    for name in names:
        try:
            exclusive: int | None = freed_by_pruning(target or "", [name])
        except OSError:
            exclusive = None
        snapshots.append(
            {
                "name": name,
                "path": os.path.join(target or "", name),
                **known.get(name, {}),
                # What pruning this snapshot alone would free now.
                "bytes_exclusive": exclusive,
                "verified": _shown_verification(verifications.get(name)),
                "kept_by": [reason.to_json() for reason in kept[name]] if name in kept else None,
            }
        )
    if record.get("revert_spent_at"):
        revert = "spent"
    elif resource is not None and resource.revert:
        revert = "armed"
    else:
        revert = "none"
    runs = record.get("runs", [])
    return {
        "managed": resource is not None,
        "source_dir": resource.source_dir if resource else None,
        "target_path": resource.target_path if resource else target,
        "snapshots": snapshots,
        "revert": revert,
        "revert_spent_at": record.get("revert_spent_at"),
        **shown_pruning,
        "post_command_pending": record.get("pending_post"),
        "last_result": runs[-1]["result"] if runs else None,
        "runs": runs,
    }


def _shown_verification(verified: dict[str, Any] | None) -> dict[str, Any] | None:
    """A snapshot's last verification as `state show` gives it: the inodes
    it found corrupted are for the next snapshot, not for the reader."""
    if verified is None:
        return None
    return {key: value for key, value in verified.items() if key != "corrupted"}


def history_of_path(config: Config, state_dir: str, name: str, path: str) -> history.History:
    """The versions of one path of a resource's source across its snapshots.
    `path` is relative to source_dir, or absolute below it. Raise
    NoSuchSnapshot when it is outside the source or in no snapshot."""
    resource = config.resource(name)
    if resource is None:
        select(config, [name])  # raises UnknownResource with a suggestion
    assert resource is not None
    source = os.path.normpath(resource.source_dir)
    given = os.path.normpath(path)
    if os.path.isabs(given):
        if given != source and not given.startswith(source.rstrip("/") + "/"):
            raise NoSuchSnapshot(f"{escape_name(path)} is not below source_dir {source}")
        given = os.path.relpath(given, source)
    relative = "" if given == "." else given
    if relative == ".." or relative.startswith("../"):
        raise NoSuchSnapshot(f"{escape_name(path)} is not below source_dir {source}")
    target = _target_of(config, name, state_dir)
    snapshots = list(list_snapshots(target))
    if not snapshots:
        raise NoSuchSnapshot(f'resource "{name}" has no snapshots in {target}')
    found = history.history_of(target, snapshots, relative)
    if not found.versions:
        raise NoSuchSnapshot(
            f'{escape_name(path)} is in no snapshot of resource "{name}" in {target}'
        )
    return found

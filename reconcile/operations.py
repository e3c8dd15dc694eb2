"""What each command does, between parsing its options and rendering its result.

Observe, plan, apply: these functions wire the provider, the planner, the
applier and the state store together. Only `apply_config` changes anything.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from providers import backup
from reconcile import applier, planner
from reconcile.model import Config, Resource
from reconcile.plan import Plan
from state.lock import ApplyLock
from state.store import StateStore


class UnknownResource(Exception):
    """--resource named a resource that the config does not have."""


def select(config: Config, names: list[str]) -> list[Resource]:
    """Return the resources named (all when `names` is empty), in config order."""
    if not names:
        return list(config.resources)
    known = {resource.name for resource in config.resources}
    for name in names:
        if name not in known:
            from reconcile.config import closest

            raise UnknownResource(
                f'no resource named "{name}" in {config.path}{closest(name, sorted(known))}'
            )
    return [resource for resource in config.resources if resource.name in names]


def make_plan(
    resources: list[Resource], store: StateStore, now: dt.datetime, predict: bool
) -> Plan:
    """Observe every resource and plan. With `predict`, walk the source of each
    resource due for a snapshot to count what it would copy and link."""
    facts = {}
    for resource in resources:
        observed = backup.observe(resource)
        if predict and planner.needs_snapshot(resource, observed, now):
            observed = backup.predict(resource, observed)
        if predict:
            doomed = planner.planned_prune(resource, observed, now)
            if doomed:
                observed = backup.measure_prune(observed, doomed)
        facts[resource.name] = observed
    return planner.plan(resources, facts, store.recorded(), now)


def plan_config(config: Config, state_dir: str, now: dt.datetime) -> Plan:
    """Return the plan for a config; reads only."""
    with StateStore.read(state_dir) as store:
        return make_plan(list(config.resources), store, now, predict=True)


def apply_config(
    config: Config,
    state_dir: str,
    now: dt.datetime,
    names: list[str],
    reporter: applier.Reporter | None = None,
) -> applier.ApplyReport:
    """Converge the selected resources of a config; return what happened.

    Raise LockHeld when another apply holds the state directory.
    """
    resources = select(config, names)
    with StateStore.write(state_dir) as store, ApplyLock(state_dir):
        plan = make_plan(resources, store, now, predict=False)
        hook_cwd = os.path.dirname(os.path.abspath(config.path))
        return applier.apply(plan, store, hook_cwd, reporter)


def state_view(config: Config | None, state_dir: str, name: str | None) -> dict[str, Any]:
    """Return what `state show` shows: per resource its snapshots on disk,
    revert status, pending post_command, last runs, and whether it is managed."""
    view: dict[str, Any] = {}
    with StateStore.read(state_dir) as store:
        configured = {r.name: r for r in config.resources} if config else {}
        names = list(configured) + [n for n in store.names() if n not in configured]
        for resource_name in names:
            if name is not None and resource_name != name:
                continue
            view[resource_name] = _resource_view(
                configured.get(resource_name), store.record(resource_name)
            )
    return view


def _resource_view(resource: Resource | None, record: dict[str, Any]) -> dict[str, Any]:
    target = os.path.realpath(resource.target_path) if resource else record.get("target")
    names = backup.list_snapshots(target) if target else ()
    known = record.get("snapshots", {})
    snapshots = [
        {"name": name, "path": os.path.join(target or "", name), **known.get(name, {})}
        for name in names
    ]
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
        "post_command_pending": record.get("pending_post"),
        "last_result": runs[-1]["result"] if runs else None,
        "runs": runs,
    }

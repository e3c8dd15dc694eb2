"""The planner: (resources, facts, recorded state, now) -> Plan.

Pure: no I/O, no clock, no logging. Everything it knows of the world comes
in as facts observed by the provider and state recorded by earlier applies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import networkx as nx

from providers.backup import (
    Facts,
    cross_fs_refusal,
    free_after_snapshot,
    free_space_refusal,
    links_unchanged,
)
from providers.naming import expired, snapshot_in_window, snapshot_name, window_of
from reconcile.model import CrossFs, Resource
from reconcile.plan import Action, ActionKind, Plan, ResourcePlan
from state.store import RecordedState


def plan(
    resources: Sequence[Resource],
    facts: Mapping[str, Facts],
    state: Mapping[str, RecordedState],
    now: dt.datetime,
) -> Plan:
    """Given the desired resources, their facts and recorded state (both by
    resource name) and the time, return what a converge would do."""
    names = {resource.name for resource in resources}
    return Plan(
        now=now,
        resources=tuple(
            plan_resource(resource, facts[resource.name], state.get(resource.name), now)
            for resource in resources
        ),
        unmanaged=tuple(sorted(name for name in state if name not in names)),
    )


def needs_snapshot(resource: Resource, facts: Facts, now: dt.datetime) -> bool:
    """Whether a converge now would take a snapshot of this resource."""
    if resource.revert:
        return False
    return snapshot_in_window(facts.snapshots, now, resource.schedule) is None


def planned_prune(resource: Resource, facts: Facts, now: dt.datetime) -> list[str]:
    """Return the snapshots a converge now would prune, oldest first."""
    if resource.revert:
        return []
    names = list(facts.snapshots)
    if snapshot_in_window(names, now, resource.schedule) is None:
        names.append(snapshot_name(now))
    doomed = expired(names, now, resource.retain_days, resource.keep_min)
    # A prune that was killed half-way is finished whatever the retention.
    return sorted({*facts.interrupted_prunes, *doomed})


def plan_resource(
    resource: Resource, facts: Facts, recorded: RecordedState | None, now: dt.datetime
) -> ResourcePlan:
    recorded = recorded or RecordedState()
    graph = nx.DiGraph()
    newest = facts.snapshots[-1] if facts.snapshots else None

    if resource.revert:
        if recorded.revert_spent:
            return ResourcePlan(
                resource,
                facts.target,
                graph,
                notes=("revert already ran; set revert: false (or remove it) to re-arm",),
            )
        graph.add_node(
            ActionKind.REVERT,
            action=Action(
                ActionKind.REVERT,
                "revert is true and on_revert has not yet succeeded",
                command=resource.on_revert,
                snapshot=newest,
            ),
        )
        return ResourcePlan(resource, facts.target, graph)

    notes: list[str] = []
    if facts.target_error:
        return ResourcePlan(resource, facts.target, graph, refusal=facts.target_error)
    refusal = warning = None
    window = window_of(now, resource.schedule)
    current = snapshot_in_window(facts.snapshots, now, resource.schedule)
    if current is None:
        name = snapshot_name(now)
        predicted = facts.prediction
        graph.add_node(
            ActionKind.SNAPSHOT,
            action=Action(
                ActionKind.SNAPSHOT,
                f"{resource.schedule.value} window {window} has no snapshot yet",
                snapshot=name,
                reference=newest,
                link_unchanged=links_unchanged(resource, facts),
                files_to_copy=predicted.files_to_copy if predicted else None,
                files_to_link=predicted.files_to_link if predicted else None,
                bytes_to_copy=predicted.bytes_to_copy if predicted else None,
                free_bytes_after=free_after_snapshot(facts),
            ),
        )
        if resource.pre_command:
            graph.add_node(
                ActionKind.PRE_COMMAND,
                action=Action(
                    ActionKind.PRE_COMMAND,
                    "runs before the snapshot; failing aborts the resource",
                    command=resource.pre_command,
                    snapshot=newest,
                ),
            )
            graph.add_edge(ActionKind.PRE_COMMAND, ActionKind.SNAPSHOT)
        refusal, warning = _snapshot_problems(resource, facts, recorded)
        if not facts.source_exists:
            notes.append(f"source_dir {resource.source_dir} does not exist (yet)")
        post_snapshot: str | None = name
        post_reason, retry = "runs after the snapshot and prune", False
    else:
        notes.append(f"{resource.schedule.value} window {window} already has {current}")
        post_snapshot = recorded.pending_post_snapshot
        post_reason = f"retry: failed on an earlier apply after snapshot {post_snapshot}"
        retry = True

    doomed = planned_prune(resource, facts, now)
    if doomed:
        freed = facts.bytes_freed
        bytes_freed = freed[1] if freed is not None and freed[0] == tuple(doomed) else None
        keep = f", keeping the {resource.keep_min} newest" if resource.keep_min else ""
        if facts.interrupted_prunes:
            keep += "; finishing a prune that was interrupted"
        graph.add_node(
            ActionKind.PRUNE,
            action=Action(
                ActionKind.PRUNE,
                f"older than {resource.retain_days} days{keep}",
                prune=tuple(doomed),
                bytes_freed=bytes_freed,
            ),
        )
        if ActionKind.SNAPSHOT in graph:
            graph.add_edge(ActionKind.SNAPSHOT, ActionKind.PRUNE)

    if resource.post_command and post_snapshot is not None:
        graph.add_node(
            ActionKind.POST_COMMAND,
            action=Action(
                ActionKind.POST_COMMAND,
                post_reason,
                command=resource.post_command,
                snapshot=post_snapshot,
                retry=retry,
            ),
        )
        for before in (ActionKind.SNAPSHOT, ActionKind.PRUNE):
            if before in graph:
                graph.add_edge(before, ActionKind.POST_COMMAND)
    elif recorded.pending_post_snapshot and not resource.post_command and current is not None:
        notes.append("a failed post_command is pending, but none is configured any more")

    return ResourcePlan(
        resource, facts.target, graph, notes=tuple(notes), refusal=refusal, warning=warning
    )


def _snapshot_problems(
    resource: Resource, facts: Facts, recorded: RecordedState
) -> tuple[str | None, str | None]:
    """Return (why the snapshot cannot start, a cross_fs warning to give)."""
    refusal = warning = None
    if facts.same_filesystem is False:
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
    if refusal is None:
        refusal = free_space_refusal(resource, facts)
    return refusal, warning

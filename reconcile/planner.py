"""The planner: (resources, facts, recorded state, now) -> Plan.

Each resource's provider plans its own change (providers/backup/plan.py);
the planner asks it once per resource and puts the actions in a graph.
Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from hardsnap.providers.backup.facts import Facts
from hardsnap.providers.backup.plan import Overrides, plan_resource
from hardsnap.providers.backup.recorded import RecordedState
from hardsnap.providers.backup.resource import Resource
from hardsnap.reconcile.plan import Plan, ResourcePlan


def plan(
    resources: Sequence[Resource],
    facts: Mapping[str, Facts],
    state: Mapping[str, RecordedState],
    now: dt.datetime,
    overrides: Overrides | None = None,
) -> Plan:
    """Given the desired resources, their facts and recorded state (both by
    resource name), the time and the operator's overrides, return what a
    converge would do."""
    names = {resource.name for resource in resources}
    overrides = overrides or Overrides()
    return Plan(
        now=now,
        resources=tuple(
            ResourcePlan.of(
                resource,
                plan_resource(
                    resource, facts[resource.name], state.get(resource.name), now, overrides
                ),
            )
            for resource in resources
        ),
        unmanaged=tuple(sorted(name for name in state if name not in names)),
    )

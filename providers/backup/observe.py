"""What the backup provider reads of a resource before it plans: the facts
on disk, with, when asked, a dry walk of the source for a snapshot that is
due and the bytes a due prune would free. Reads only."""

from __future__ import annotations

import datetime as dt

from hardsnap.providers.backup import effects, facts, pruning
from hardsnap.providers.backup.facts import Facts
from hardsnap.providers.backup.plan import needs_snapshot
from hardsnap.providers.backup.recorded import RecordedState
from hardsnap.providers.backup.resource import Resource


def read(
    resource: Resource,
    recorded: RecordedState | None,
    now: dt.datetime,
    predict: bool,
    predict_first: bool = False,
    resume_pruning: bool = False,
) -> Facts:
    """The facts of `resource` now. `predict`: count what a due snapshot
    would copy and link (a dry walk of the source) and the bytes a due prune
    would free (`resume_pruning`: as if pruning were resumed);
    `predict_first`: walk only for a first snapshot (whose progress has no
    earlier snapshot to measure against)."""
    observed = facts.observe(resource, now)
    walk = predict or (predict_first and not observed.snapshots)
    if walk and needs_snapshot(resource, observed, now):
        corrupted = recorded.corrupted if recorded else frozenset()
        observed = effects.predict(resource, observed, corrupted)
    if predict:
        doomed = pruning.planned_prune(resource, observed, recorded, now, resume_pruning)
        if doomed:
            observed = effects.measure_prune(observed, doomed)
    return observed

"""What a converge prunes, for the planner: retention by rule
(providers/backup/retention.py) and clock sanity (providers/backup/suspension.py) over
the snapshots a run leaves, with the sentences that explain them.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt

from hardsnap.providers.backup.facts import Facts
from hardsnap.providers.backup.naming import snapshot_in_window, snapshot_name
from hardsnap.providers.backup.recorded import RecordedState
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.backup.retention import Policy, Reason, reasons
from hardsnap.providers.backup.suspension import WINDOWS, Suspension, iso, retain_span, suspension

WINDOW_WORDS = {"hourly": "hour", "daily": "day", "weekly": "week"}


def policy(resource: Resource) -> Policy:
    return Policy(
        resource.retain_days,
        resource.keep_min,
        resource.keep_weekly,
        resource.keep_monthly,
        resource.keep_yearly,
    )


def names_after_run(resource: Resource, names: tuple[str, ...], now: dt.datetime) -> list[str]:
    """The snapshots a converge now leaves before it prunes: `names` (none
    dated after now) and the one it takes when its window has none."""
    after = list(names)
    if not resource.revert and snapshot_in_window(after, now, resource.schedule) is None:
        after.append(snapshot_name(now))
    return after


def retention(resource: Resource, facts: Facts, now: dt.datetime) -> dict[str, tuple[Reason, ...]]:
    """The rules keeping each snapshot once this run's snapshot (if one is
    due) exists: it counts for keep_min and the period rules."""
    return reasons(names_after_run(resource, facts.snapshots, now), now, policy(resource))


def suspended(
    resource: Resource,
    names: tuple[str, ...],
    recorded: RecordedState | None,
    now: dt.datetime,
) -> Suspension | None:
    """Why a converge now would not prune this resource (clock sanity), or
    None when it prunes what expired."""
    if resource.revert:
        return None
    return suspension(
        names_after_run(resource, names, now),
        now,
        resource.retain_days,
        resource.schedule,
        recorded.gaps_accepted_before if recorded else None,
    )


def planned_prune(
    resource: Resource,
    facts: Facts,
    recorded: RecordedState | None,
    now: dt.datetime,
    resume: bool = False,
) -> list[str]:
    """Return the snapshots a converge now would prune, oldest first;
    `resume`: prune even while pruning is suspended (--resume-pruning)."""
    if resource.revert:
        return []
    doomed: list[str] = []
    if resume or suspended(resource, facts.snapshots, recorded, now) is None:
        doomed = [name for name, rules in retention(resource, facts, now).items() if not rules]
    # A prune that was killed half-way is finished whatever the retention.
    return sorted({*facts.interrupted_prunes, *doomed})


def suspension_warning(resource: Resource, suspension: Suspension) -> str:
    """Said on every run while pruning is suspended: why, until when, and
    how to resume at once."""
    gap = suspension.gap()
    length = f"{gap.days} days" if gap >= dt.timedelta(days=2) else f"{gap // _HOUR} hours"
    until = f" (from {iso(suspension.resumes_at)})" if suspension.resumes_at else ""
    return (
        f"pruning is suspended since {suspension.since}: no snapshot between "
        f"{suspension.before} and it ({length}, more than retain "
        f"{_days(resource.retain_days)} plus one {WINDOW_WORDS[resource.schedule.value]}). "
        f"Did the clock jump ahead, or did runs stop? Nothing is pruned until the snapshots "
        f"since then span {_days(resource.retain_days)}{until}, or, if the clock is right, "
        f"at once with hardsnap apply --resume-pruning"
    )


def resumed_note(resource: Resource, suspension: Suspension) -> str:
    return (
        f"pruning resumed (--resume-pruning): the gap between {suspension.before} and "
        f"{suspension.since} is accepted; snapshots older than retain "
        f"({_days(resource.retain_days)}) are pruned as usual"
    )


def short_retain_warning(resource: Resource) -> str | None:
    """A warning for a resource whose retain is shorter than its schedule's
    window: by its next snapshot every older one has expired."""
    if resource.revert or retain_span(resource.retain_days) >= WINDOWS[resource.schedule]:
        return None
    return (
        f"retain ({_days(resource.retain_days)}) is shorter than the {resource.schedule.value} "
        f"window: each snapshot has expired by the next, so the resource keeps only its newest "
        f"snapshot plus what keep_min, keep_weekly, keep_monthly and keep_yearly select"
    )


_HOUR = dt.timedelta(hours=1)


def _days(count: int) -> str:
    return f"{count} day{'' if count == 1 else 's'}"

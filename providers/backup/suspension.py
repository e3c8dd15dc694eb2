"""Clock sanity: whether pruning waits, from snapshot names and the time.

A clock that jumps ahead, or runs that stop for long, leave a gap in the
snapshot names longer than `retain` days plus one schedule window. Every
snapshot before such a gap looks expired to the runs after it, so pruning
is suspended until the snapshots taken since the gap span `retain` days:
a clock that stays wrong must stay wrong for a whole retention period
before any history can go.

Pruning itself thins the names (keep_weekly keeps one snapshot a week),
and an operator may accept a gap (`apply --resume-pruning`): a gap that
begins before `accepted_before`, the newest snapshot an apply left while
pruning was not suspended (recorded in state), is not waited for.
Pure functions of names and time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from hardsnap.providers.backup.naming import snapshot_time
from hardsnap.providers.backup.resource import Schedule

WINDOWS = {
    Schedule.HOURLY: dt.timedelta(hours=1),
    Schedule.DAILY: dt.timedelta(days=1),
    Schedule.WEEKLY: dt.timedelta(weeks=1),
}
# Longer retains are the same as forever; this keeps the sums below in range.
MOST_DAYS = dt.timedelta.max.days - 7


@dataclass(frozen=True)
class Suspension:
    """Pruning waits: no snapshot was taken between `before` and `since`,
    for longer than retain plus one window."""

    # The newest snapshot before the gap, and the first after it (in a
    # plan, possibly the snapshot that run takes).
    before: str
    since: str
    # When the snapshots since the gap span retain days: a run from then on
    # prunes again. None when that is past the year 9999.
    resumes_at: dt.datetime | None

    def gap(self) -> dt.timedelta:
        return _time(self.since) - _time(self.before)


def retain_span(retain_days: int) -> dt.timedelta:
    return dt.timedelta(days=min(retain_days, MOST_DAYS))


def suspension(
    names: Iterable[str],
    now: dt.datetime,
    retain_days: int,
    schedule: Schedule,
    accepted_before: str | None = None,
) -> Suspension | None:
    """Given the snapshot names a run leaves (the one it takes included;
    names dated after now do not count), return why its pruning is
    suspended, or None when it may prune. A gap that begins before
    `accepted_before` is not waited for, unless that name is dated after
    now (the clock went back: it proves nothing)."""
    times = sorted(
        (moment, name)
        for name in names
        if (moment := snapshot_time(name)) is not None and moment <= now
    )
    accepted = snapshot_time(accepted_before) if accepted_before else None
    if accepted is not None and accepted > now:
        accepted = None
    retain = retain_span(retain_days)
    longest = retain + WINDOWS[schedule]
    latest = None
    for (earlier, before), (later, since) in pairwise(times):
        if later - earlier > longest and (accepted is None or earlier >= accepted):
            latest = (before, since, later)
    if latest is None:
        return None
    before, since, start = latest
    if times[-1][0] - start >= retain:
        return None
    try:
        resumes_at: dt.datetime | None = start + retain
    except OverflowError:
        resumes_at = None
    return Suspension(before, since, resumes_at)


def pruning_json(suspended: Suspension | None) -> dict[str, Any]:
    """The JSON fields that show whether a resource's pruning is suspended."""
    if suspended is None:
        return {"pruning": "active", "pruning_suspended_since": None, "pruning_resumes_at": None}
    return {
        "pruning": "suspended",
        "pruning_suspended_since": suspended.since,
        "pruning_resumes_at": iso(suspended.resumes_at) if suspended.resumes_at else None,
    }


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(name: str) -> dt.datetime:
    moment = snapshot_time(name)
    assert moment is not None
    return moment

"""Retention: which snapshots a resource keeps, and by which rule.

A snapshot is kept while any rule keeps it: its age is within `retain`
days, it is one of the `keep_min` newest, or it is the newest snapshot of
one of the `keep_weekly` most recent ISO weeks (`keep_monthly` calendar
months, `keep_yearly` years, all UTC) that have a snapshot, the current
one included. Each rule is counted on its own over all the snapshots
given: a snapshot kept by one rule still counts for the others. The
grandfather-father-son schedule is `retain` plus the three period rules.
Pure functions of names and time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hardsnap.providers.backup.naming import snapshot_time

# A period rule: its config key, and the label of the period a time lies in.
PERIODS: tuple[tuple[str, Callable[[dt.datetime], str]], ...] = (
    ("keep_weekly", lambda moment: "{}-W{:02d}".format(*moment.isocalendar()[:2])),
    ("keep_monthly", lambda moment: moment.strftime("%Y-%m")),
    ("keep_yearly", lambda moment: moment.strftime("%Y")),
)


@dataclass(frozen=True)
class Policy:
    """A resource's retention settings."""

    retain_days: int
    keep_min: int = 1
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0

    def count(self, rule: str) -> int:
        return int(getattr(self, rule))


@dataclass(frozen=True)
class Reason:
    """One rule keeping one snapshot; `period` names the week, month or
    year a period rule keeps it for."""

    rule: str
    period: str | None = None

    def describe(self, policy: Policy) -> str:
        if self.rule == "retain":
            return f"retain (within {policy.retain_days} days)"
        if self.rule == "keep_min":
            return f"keep_min (one of the {policy.keep_min} newest)"
        return f"{self.rule} (newest of {self.period})"

    def to_json(self) -> dict[str, str | None]:
        return {"rule": self.rule, "period": self.period}


def reasons(
    names: Iterable[str], now: dt.datetime, policy: Policy
) -> dict[str, tuple[Reason, ...]]:
    """Given snapshot names (none dated after `now`), return for each, in
    name order, the rules that keep it: none when it expires."""
    times = {name: moment for name in names if (moment := snapshot_time(name)) is not None}
    ordered = sorted(times)
    kept: dict[str, list[Reason]] = {name: [] for name in ordered}
    limit = dt.timedelta(days=min(policy.retain_days, dt.timedelta.max.days))
    for name in ordered:
        if now - times[name] <= limit:
            kept[name].append(Reason("retain"))
    if policy.keep_min > 0:
        for name in ordered[-policy.keep_min :]:
            kept[name].append(Reason("keep_min"))
    for rule, period_of in PERIODS:
        count = policy.count(rule)
        if count <= 0:
            continue
        newest_of: dict[str, str] = {}
        for name in ordered:  # oldest first: the newest of each period wins
            newest_of[period_of(times[name])] = name
        for period in sorted(newest_of, reverse=True)[:count]:
            kept[newest_of[period]].append(Reason(rule, period))
    return {name: tuple(rules) for name, rules in kept.items()}


def expired(names: Iterable[str], now: dt.datetime, policy: Policy) -> list[str]:
    """Given snapshot names, return those no rule keeps, oldest first."""
    return [name for name, rules in reasons(names, now, policy).items() if not rules]

"""Retention rules (providers/backup/retention.py): retain, keep_min and the
grandfather-father-son period rules, each counted on its own."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from hardsnap.providers.backup.naming import snapshot_name, snapshot_time
from hardsnap.providers.backup.retention import Policy, Reason, expired, reasons

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def daily(first: dt.datetime, last: dt.datetime) -> list[str]:
    """A snapshot every day at 06:00 from `first` to `last`."""
    names, moment = [], first
    while moment <= last:
        names.append(snapshot_name(moment))
        moment += dt.timedelta(days=1)
    return names


def test_without_period_rules_retain_and_keep_min_decide() -> None:
    names = daily(NOW - dt.timedelta(days=10), NOW)
    policy = Policy(retain_days=7, keep_min=1)
    assert expired(names, NOW, policy) == names[:3]
    kept = reasons(names, NOW, policy)
    assert kept[names[-1]] == (Reason("retain"), Reason("keep_min"))
    assert kept[names[3]] == (Reason("retain"),)


def test_a_year_of_dailies_keeps_a_week_four_sundays_twelve_months_and_the_years() -> None:
    names = daily(dt.datetime(2025, 1, 1, 6, tzinfo=UTC), NOW)
    policy = Policy(retain_days=7, keep_min=1, keep_weekly=4, keep_monthly=12, keep_yearly=3)
    kept = {name: rules for name, rules in reasons(names, NOW, policy).items() if rules}
    weekly = sorted(
        name for name, rules in kept.items() if any(r.rule == "keep_weekly" for r in rules)
    )
    monthly = sorted(
        name for name, rules in kept.items() if any(r.rule == "keep_monthly" for r in rules)
    )
    yearly = sorted(
        name for name, rules in kept.items() if any(r.rule == "keep_yearly" for r in rules)
    )
    # ISO weeks end on Sunday: the newest of each past week is its Sunday;
    # the current week (Monday 30 Nov - Wednesday 2 Dec) keeps today's.
    assert [snapshot_time(name).strftime("%a %d %b") for name in weekly] == [  # type: ignore[union-attr]
        "Sun 15 Nov",
        "Sun 22 Nov",
        "Sun 29 Nov",
        "Wed 02 Dec",
    ]
    # The last day of each of the eleven past months, and today for December.
    assert [snapshot_time(name).strftime("%d %b %Y") for name in monthly] == [  # type: ignore[union-attr]
        "31 Jan 2026",
        "28 Feb 2026",
        "31 Mar 2026",
        "30 Apr 2026",
        "31 May 2026",
        "30 Jun 2026",
        "31 Jul 2026",
        "31 Aug 2026",
        "30 Sep 2026",
        "31 Oct 2026",
        "30 Nov 2026",
        "02 Dec 2026",
    ]
    # Only two years have snapshots: both are kept, a third is not invented.
    assert [snapshot_time(name).strftime("%d %b %Y") for name in yearly] == [  # type: ignore[union-attr]
        "31 Dec 2025",
        "02 Dec 2026",
    ]
    within = [name for name in names if NOW - snapshot_time(name) <= dt.timedelta(days=7)]  # type: ignore[operator]
    assert set(kept) == set(within) | set(weekly) | set(monthly) | set(yearly)
    assert kept[snapshot_name(dt.datetime(2026, 1, 31, 6, tzinfo=UTC))] == (
        Reason("keep_monthly", "2026-01"),
    )
    assert kept[snapshot_name(NOW)] == (
        Reason("retain"),
        Reason("keep_min"),
        Reason("keep_weekly", "2026-W49"),
        Reason("keep_monthly", "2026-12"),
        Reason("keep_yearly", "2026"),
    )


def test_periods_count_only_those_that_have_a_snapshot() -> None:
    # Weeks of silence (a broken timer) do not use up keep_weekly: the four
    # most recent weeks *with* a snapshot reach back to early October.
    names = [snapshot_name(NOW - dt.timedelta(days=days)) for days in (60, 45, 30, 29, 28, 2, 1, 0)]
    policy = Policy(retain_days=3, keep_min=1, keep_weekly=4)
    kept = reasons(names, NOW, policy)
    assert [name for name in names if kept[name]] == [names[i] for i in (0, 1, 4, 5, 6, 7)]
    assert kept[names[0]] == (Reason("keep_weekly", "2026-W40"),)  # Saturday 3 October
    assert kept[names[1]] == (Reason("keep_weekly", "2026-W42"),)  # Sunday 18 October
    # 2, 3 and 4 November share week 45: its newest, the 4th, is kept.
    assert kept[names[4]] == (Reason("keep_weekly", "2026-W45"),)
    assert expired(names, NOW, policy) == names[2:4]


def test_the_rules_are_each_counted_over_all_snapshots() -> None:
    # keep_min 2 keeps the two newest; keep_weekly 1 keeps the newest of the
    # current week, the same snapshot: nothing extra is kept because of it.
    names = [snapshot_name(NOW - dt.timedelta(days=days)) for days in (20, 10, 1, 0)]
    policy = Policy(retain_days=1, keep_min=2, keep_weekly=1)
    assert expired(names, NOW, policy) == names[:2]


@given(
    days=st.lists(st.integers(0, 800), min_size=1, max_size=40, unique=True),
    policy=st.builds(
        Policy,
        retain_days=st.integers(1, 400),
        keep_min=st.integers(0, 5),
        keep_weekly=st.integers(0, 6),
        keep_monthly=st.integers(0, 14),
        keep_yearly=st.integers(0, 3),
    ),
)
def test_each_period_rule_keeps_the_newest_of_its_most_recent_periods(
    days: list[int], policy: Policy
) -> None:
    names = sorted(snapshot_name(NOW - dt.timedelta(days=day, hours=day % 7)) for day in days)
    kept = reasons(names, NOW, policy)
    for rule, label in (
        ("keep_weekly", lambda m: "{}-W{:02d}".format(*m.isocalendar()[:2])),
        ("keep_monthly", lambda m: m.strftime("%Y-%m")),
        ("keep_yearly", lambda m: m.strftime("%Y")),
    ):
        periods: dict[str, str] = {}
        for name in names:
            periods[label(snapshot_time(name))] = name  # newest of each period wins
        expected = {periods[p] for p in sorted(periods, reverse=True)[: policy.count(rule)]}
        chosen = {name for name, rules in kept.items() if any(r.rule == rule for r in rules)}
        assert chosen == expected, rule
    assert set(kept) == set(names)
    newest = names[-policy.keep_min :] if policy.keep_min else []
    assert all(kept[name] for name in newest)
    assert expired(names, NOW, policy) == [name for name in names if not kept[name]]

"""Clock sanity (providers/backup/suspension.py): when pruning is suspended, as a
pure function of snapshot names, the time and the name the state records."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from hardsnap.providers.backup.naming import snapshot_in_window, snapshot_name
from hardsnap.providers.backup.resource import Schedule
from hardsnap.providers.backup.retention import Policy, expired
from hardsnap.providers.backup.suspension import Suspension, suspension

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 29, 6, 0, tzinfo=UTC)


def names_at(*days: float) -> list[str]:
    return [snapshot_name(NOW + dt.timedelta(days=day)) for day in days]


def test_no_snapshots_or_no_gap_never_suspends() -> None:
    assert suspension([], NOW, 1, Schedule.DAILY) is None
    assert suspension(names_at(-3, -2, -1, 0), NOW, 1, Schedule.DAILY) is None


def test_a_gap_of_exactly_retain_plus_one_window_is_not_a_gap() -> None:
    assert suspension(names_at(-8, 0), NOW, 7, Schedule.DAILY) is None
    before, since = names_at(-8 - 1 / 1440, 0)
    assert suspension([before, since], NOW, 7, Schedule.DAILY) == Suspension(
        before, since, NOW + dt.timedelta(days=7)
    )


def test_the_window_is_an_hour_a_day_or_a_week() -> None:
    hours = [NOW - dt.timedelta(hours=25, minutes=1), NOW]
    names = [snapshot_name(moment) for moment in hours]
    assert suspension(names, NOW, 1, Schedule.HOURLY) is not None
    assert suspension(names, NOW, 1, Schedule.DAILY) is None
    assert suspension(names_at(-9, 0), NOW, 1, Schedule.DAILY) is not None
    assert suspension(names_at(-8, 0), NOW, 1, Schedule.WEEKLY) is None
    assert suspension(names_at(-8.1, 0), NOW, 1, Schedule.WEEKLY) is not None


def test_the_latest_gap_counts_and_ends_once_the_snapshots_after_it_span_retain() -> None:
    names = names_at(-100, -50, -3, -2, -1, 0)
    found = suspension(names, NOW, 5, Schedule.DAILY)
    assert found == Suspension(names[1], names[2], NOW + dt.timedelta(days=2))
    assert found.gap() == dt.timedelta(days=47)
    assert suspension(names_at(-100, -50, -5, 0), NOW, 5, Schedule.DAILY) is None


def test_a_gap_that_begins_before_the_accepted_name_is_not_waited_for() -> None:
    names = names_at(-60, -2, -1, 0)
    assert suspension(names, NOW, 7, Schedule.DAILY, names[1]) is None
    # One that begins at it is the gap of a new jump: waited for.
    assert suspension(names, NOW, 7, Schedule.DAILY, names[0]) is not None


def test_an_accepted_name_dated_after_now_proves_nothing() -> None:
    names = names_at(-60, 0)
    (later,) = names_at(365)
    assert suspension(names, NOW, 7, Schedule.DAILY, later) is not None


def test_names_dated_after_now_and_other_names_do_not_count() -> None:
    assert suspension([*names_at(-1, 0, 400), "notes.txt"], NOW, 7, Schedule.DAILY) is None


def test_a_retain_too_long_for_dates_never_suspends_nor_overflows() -> None:
    assert suspension(names_at(-3000, 0), NOW, 10**9, Schedule.WEEKLY) is None


@given(
    retain=st.integers(1, 10),
    schedule=st.sampled_from(list(Schedule)),
    days_before=st.integers(1, 15),
    jump_days=st.integers(0, 800),
    runs_after=st.integers(1, 30),
    keep_min=st.integers(0, 2),
)
def test_a_clock_that_jumps_and_stays_loses_nothing_until_a_retain_period_of_wrong_dates(
    retain: int,
    schedule: Schedule,
    days_before: int,
    jump_days: int,
    runs_after: int,
    keep_min: int,
) -> None:
    """Daily runs, then the clock jumps ahead and stays: each run takes its
    snapshot when its window has none, prunes what expired unless pruning is
    suspended, and records the newest snapshot after an unsuspended run (as
    the applier does). No snapshot from before the jump goes while the
    wrong-dated ones span less than retain; a jump no longer than retain
    plus one window suspends nothing."""
    policy = Policy(retain, keep_min)
    step = dt.timedelta(days=1)
    names: list[str] = []
    accepted: str | None = None
    jumped_at = NOW + days_before * step + dt.timedelta(days=jump_days)
    moments = [NOW + day * step for day in range(days_before)]
    moments += [jumped_at + run * step for run in range(runs_after)]
    for clock in moments:
        if snapshot_in_window(names, clock, schedule) is None:
            names.append(snapshot_name(clock))
        suspended = suspension(names, clock, retain, schedule, accepted)
        before_jump = [name for name in names if name < snapshot_name(jumped_at)]
        if suspended is None:
            doomed = expired(names, clock, policy)
            wrong_dated_span = clock - jumped_at
            gap = jumped_at - (NOW + (days_before - 1) * step)
            if clock >= jumped_at and gap > dt.timedelta(days=retain) + _window(schedule):
                assert not set(doomed) & set(before_jump) or wrong_dated_span >= dt.timedelta(
                    days=retain
                )
            accepted = names[-1] if names else None
            names = [name for name in names if name not in doomed]
        else:
            assert suspended.since == snapshot_name(jumped_at)


def _window(schedule: Schedule) -> dt.timedelta:
    return {
        Schedule.HOURLY: dt.timedelta(hours=1),
        Schedule.DAILY: dt.timedelta(days=1),
        Schedule.WEEKLY: dt.timedelta(weeks=1),
    }[schedule]

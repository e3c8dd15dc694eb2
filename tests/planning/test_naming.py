"""The pure naming helpers: snapshot names, schedule windows and retention."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardsnap.providers.backup import retention
from hardsnap.providers.backup.naming import (
    is_snapshot_name,
    snapshot_in_window,
    snapshot_name,
    snapshot_time,
    window_of,
)
from hardsnap.providers.backup.resource import Schedule

UTC = dt.UTC
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
MINUS_FIVE = dt.timezone(dt.timedelta(hours=-5))
# 2026-03-29 is a Sunday, day 088 of 2026, in ISO week 2026-W13.
SUNDAY = dt.datetime(2026, 3, 29, 6, 0, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# Aware times whose UTC year has four digits, in UTC or any whole-minute offset.
timezones = st.builds(
    dt.timezone,
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
        lambda minutes: dt.timedelta(minutes=minutes)
    ),
)
aware_times = st.datetimes(
    min_value=dt.datetime(1001, 1, 1),
    max_value=dt.datetime(9998, 12, 31),
    timezones=st.one_of(st.just(UTC), timezones),
)


def truncated_to_minute(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


# --- snapshot_name -----------------------------------------------------------


def test_snapshot_name_of_utc_time_is_year_day_of_year_hour_minute() -> None:
    assert snapshot_name(SUNDAY) == "2026.088.06.00"


def test_snapshot_name_pads_day_hour_and_minute_with_zeros() -> None:
    assert snapshot_name(utc(2026, 1, 1, 3, 5)) == "2026.001.03.05"


def test_snapshot_name_drops_seconds_and_microseconds() -> None:
    moment = dt.datetime(2026, 3, 29, 6, 7, 59, 999_999, tzinfo=UTC)
    assert snapshot_name(moment) == "2026.088.06.07"


def test_snapshot_name_of_non_utc_time_names_its_utc_minute() -> None:
    # 00:30 at +02:00 on new year's day is 22:30 UTC on the last day of 2025.
    assert snapshot_name(dt.datetime(2026, 1, 1, 0, 30, tzinfo=PLUS_TWO)) == "2025.365.22.30"
    # 21:00 at -05:00 is 02:00 UTC the next day.
    assert snapshot_name(dt.datetime(2026, 3, 28, 21, 0, tzinfo=MINUS_FIVE)) == "2026.088.02.00"


def test_snapshot_name_of_last_day_of_leap_year_is_day_366() -> None:
    assert snapshot_name(utc(2024, 12, 31, 23, 59)) == "2024.366.23.59"


def test_snapshot_name_of_last_day_of_common_year_is_day_365() -> None:
    assert snapshot_name(utc(2025, 12, 31, 23, 59)) == "2025.365.23.59"


def test_snapshot_name_pads_year_below_1000_to_four_digits() -> None:
    # YYYY is four digits; an unpadded year would not read back as a snapshot.
    name = snapshot_name(utc(999, 1, 1))
    assert name == "0999.001.00.00"
    assert snapshot_time(name) == utc(999, 1, 1)


@given(aware_times)
def test_snapshot_name_read_back_is_the_time_truncated_to_the_minute(moment: dt.datetime) -> None:
    assert snapshot_time(snapshot_name(moment)) == truncated_to_minute(moment)


@given(aware_times, aware_times)
def test_snapshot_names_sort_in_time_order(first: dt.datetime, second: dt.datetime) -> None:
    if truncated_to_minute(first) < truncated_to_minute(second):
        assert snapshot_name(first) < snapshot_name(second)
    elif truncated_to_minute(first) == truncated_to_minute(second):
        assert snapshot_name(first) == snapshot_name(second)
    else:
        assert snapshot_name(first) > snapshot_name(second)


# --- snapshot_time -----------------------------------------------------------


def test_snapshot_time_of_valid_name_is_aware_utc_time() -> None:
    moment = snapshot_time("2026.088.06.00")
    assert moment == SUNDAY
    assert moment is not None
    assert moment.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("2026.001.00.00", utc(2026, 1, 1)),
        ("2026.365.23.59", utc(2026, 12, 31, 23, 59)),
        ("2024.060.12.30", utc(2024, 2, 29, 12, 30)),
        ("2024.366.00.00", utc(2024, 12, 31)),
        ("2000.366.01.01", utc(2000, 12, 31, 1, 1)),
        ("9999.365.23.59", utc(9999, 12, 31, 23, 59)),
        ("0001.001.00.00", utc(1, 1, 1)),
    ],
    ids=["day-001", "day-365", "leap-day", "leap-366", "2000-leap-366", "year-9999", "year-0001"],
)
def test_snapshot_time_of_valid_name_is_its_utc_minute(name: str, expected: dt.datetime) -> None:
    assert snapshot_time(name) == expected
    assert is_snapshot_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "2026.000.06.00",  # day 000
        "2025.366.06.00",  # day 366 in a common year
        "1900.366.06.00",  # 1900 is not a leap year
        "2026.367.06.00",  # day 367
        "2026.999.06.00",
        "2026.088.24.00",  # hour 24
        "2026.088.99.00",
        "2026.088.06.60",  # minute 60
        "2026.088.06.99",
        "0000.001.00.00",  # there is no year 0
    ],
)
def test_snapshot_time_of_impossible_name_is_none(name: str) -> None:
    assert snapshot_time(name) is None
    assert not is_snapshot_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "026.088.06.00",  # year too short
        "02026.088.06.00",  # year too long
        "2026.88.06.00",  # day too short
        "2026.0088.06.00",  # day too long
        "2026.088.6.00",  # hour too short
        "2026.088.006.00",  # hour too long
        "2026.088.06.0",  # minute too short
        "2026.088.06.000",  # minute too long
        "2026.088.06",  # no minute
        "2026.088.06.00.00",  # a field too many
        "2026-088-06-00",  # wrong separator
        "2026.088.06.00 ",  # trailing space
        " 2026.088.06.00",  # leading space
        "2026.088.06.00\n",  # trailing newline
        "2026.088.06.00.tmp",
        ".hardsnap-partial.2026.088.06.00",
        "2026.O88.06.00",  # a letter O for a zero
        "+026.088.06.00",
        "2026.088.-6.00",
        "",
        "latest",
    ],
)
def test_snapshot_time_of_wrongly_shaped_name_is_none(name: str) -> None:
    assert snapshot_time(name) is None
    assert not is_snapshot_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "\u0662\u0660\u0662\u0666.\u0660\u0668\u0668.\u0660\u0666.\u0660\u0660",  # Arabic-Indic
        "\uff12\uff10\uff12\uff16.088.06.00",  # fullwidth year
        "2026.088.06.\u0966\u0966",  # Devanagari minute
    ],
    ids=["arabic-indic", "fullwidth-year", "devanagari-minute"],
)
def test_snapshot_time_of_name_with_non_ascii_digits_is_none(name: str) -> None:
    # YYYY.JJJ.HH.MM means ASCII digits: another directory is never touched.
    assert snapshot_time(name) is None
    assert not is_snapshot_name(name)


# --- window_of ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "schedule", "shared"),
    [
        (utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 23, 59, 59), Schedule.DAILY, True),
        (utc(2026, 3, 28, 23, 59, 59), utc(2026, 3, 29, 0, 0), Schedule.DAILY, False),
        (utc(2026, 3, 29, 6, 0), utc(2026, 3, 29, 6, 59, 59), Schedule.HOURLY, True),
        (utc(2026, 3, 29, 6, 59, 59), utc(2026, 3, 29, 7, 0), Schedule.HOURLY, False),
        (utc(2026, 3, 28, 6, 30), utc(2026, 3, 29, 6, 30), Schedule.HOURLY, False),
    ],
    ids=[
        "daily-same-utc-date",
        "daily-across-utc-midnight",
        "hourly-same-utc-hour",
        "hourly-next-hour",
        "hourly-same-hour-other-day",
    ],
)
def test_window_of_is_shared_within_a_utc_date_or_hour_only(
    first: dt.datetime, second: dt.datetime, schedule: Schedule, shared: bool
) -> None:
    assert (window_of(first, schedule) == window_of(second, schedule)) is shared


def test_window_of_daily_same_day_of_year_in_other_year_differs() -> None:
    assert window_of(utc(2025, 3, 30), Schedule.DAILY) != window_of(
        utc(2026, 3, 29), Schedule.DAILY
    )
    assert window_of(utc(2025, 12, 31), Schedule.DAILY) != window_of(
        utc(2026, 1, 1), Schedule.DAILY
    )


def test_window_of_daily_converts_non_utc_time_to_utc_date() -> None:
    # 23:30 at -05:00 on the 28th is 04:30 UTC on the 29th.
    evening = dt.datetime(2026, 3, 28, 23, 30, tzinfo=MINUS_FIVE)
    assert window_of(evening, Schedule.DAILY) == window_of(utc(2026, 3, 29, 12), Schedule.DAILY)
    assert window_of(evening, Schedule.DAILY) != window_of(utc(2026, 3, 28, 12), Schedule.DAILY)
    # 01:30 at +02:00 on the 29th is 23:30 UTC on the 28th.
    night = dt.datetime(2026, 3, 29, 1, 30, tzinfo=PLUS_TWO)
    assert window_of(night, Schedule.DAILY) == window_of(utc(2026, 3, 28, 12), Schedule.DAILY)


def test_window_of_hourly_converts_half_hour_offset_to_utc_hour() -> None:
    # 12:10 at +05:30 is 06:40 UTC.
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    moment = dt.datetime(2026, 3, 29, 12, 10, tzinfo=india)
    assert window_of(moment, Schedule.HOURLY) == window_of(utc(2026, 3, 29, 6, 0), Schedule.HOURLY)
    assert window_of(moment, Schedule.HOURLY) != window_of(utc(2026, 3, 29, 7, 0), Schedule.HOURLY)


def test_window_of_weekly_sunday_and_monday_differ() -> None:
    assert window_of(utc(2026, 3, 29, 23, 59, 59), Schedule.WEEKLY) != window_of(
        utc(2026, 3, 30, 0, 0), Schedule.WEEKLY
    )


def test_window_of_weekly_monday_to_sunday_share_window() -> None:
    monday = utc(2026, 3, 23, 0, 0)
    windows = {
        window_of(monday + dt.timedelta(hours=hours), Schedule.WEEKLY) for hours in range(168)
    }
    assert windows == {window_of(monday, Schedule.WEEKLY)}


def test_window_of_weekly_previous_sunday_differs_from_monday() -> None:
    assert window_of(utc(2026, 3, 22, 12), Schedule.WEEKLY) != window_of(
        utc(2026, 3, 23, 12), Schedule.WEEKLY
    )


def test_window_of_weekly_iso_week_1_starting_in_previous_year_spans_new_year() -> None:
    # Monday 2024-12-30 starts ISO week 2025-W01.
    assert window_of(utc(2024, 12, 30), Schedule.WEEKLY) == window_of(
        utc(2025, 1, 5, 23, 59), Schedule.WEEKLY
    )
    assert window_of(utc(2024, 12, 29, 23, 59), Schedule.WEEKLY) != window_of(
        utc(2024, 12, 30), Schedule.WEEKLY
    )


def test_window_of_weekly_iso_week_53_ending_in_next_year_spans_new_year() -> None:
    # Friday 2021-01-01 belongs to ISO week 2020-W53, Monday 2020-12-28 to Sunday 2021-01-03.
    assert window_of(utc(2020, 12, 28), Schedule.WEEKLY) == window_of(
        utc(2021, 1, 1), Schedule.WEEKLY
    )
    assert window_of(utc(2021, 1, 3, 23, 59), Schedule.WEEKLY) == window_of(
        utc(2020, 12, 31), Schedule.WEEKLY
    )
    assert window_of(utc(2021, 1, 4), Schedule.WEEKLY) != window_of(
        utc(2021, 1, 3), Schedule.WEEKLY
    )


def test_window_of_weekly_same_week_number_in_other_iso_year_differs() -> None:
    # 2026-01-01 is in 2026-W01; 2027-01-01 is in 2026-W53; 2027-01-07 in 2027-W01.
    assert window_of(utc(2026, 1, 1), Schedule.WEEKLY) != window_of(
        utc(2027, 1, 7), Schedule.WEEKLY
    )
    assert window_of(utc(2026, 12, 31), Schedule.WEEKLY) == window_of(
        utc(2027, 1, 1), Schedule.WEEKLY
    )


def test_window_of_weekly_converts_non_utc_time_to_utc_week() -> None:
    # Sunday 23:30 at -05:00 is Monday 04:30 UTC: the next week.
    sunday_evening = dt.datetime(2026, 3, 29, 23, 30, tzinfo=MINUS_FIVE)
    assert window_of(sunday_evening, Schedule.WEEKLY) == window_of(
        utc(2026, 3, 30, 12), Schedule.WEEKLY
    )
    # Monday 01:00 at +02:00 is Sunday 23:00 UTC: the week before.
    monday_morning = dt.datetime(2026, 3, 30, 1, 0, tzinfo=PLUS_TWO)
    assert window_of(monday_morning, Schedule.WEEKLY) == window_of(SUNDAY, Schedule.WEEKLY)


@given(aware_times, aware_times)
def test_window_of_labels_are_equal_exactly_when_windows_match(
    first: dt.datetime, second: dt.datetime
) -> None:
    a, b = first.astimezone(UTC), second.astimezone(UTC)
    same_day = a.date() == b.date()
    assert (window_of(a, Schedule.DAILY) == window_of(b, Schedule.DAILY)) == same_day
    same_hour = same_day and a.hour == b.hour
    assert (window_of(first, Schedule.HOURLY) == window_of(second, Schedule.HOURLY)) == same_hour
    same_week = a.isocalendar()[:2] == b.isocalendar()[:2]
    assert (window_of(first, Schedule.WEEKLY) == window_of(second, Schedule.WEEKLY)) == same_week


@given(aware_times, st.integers(min_value=-8 * 24 * 60, max_value=8 * 24 * 60))
def test_window_of_nearby_times_share_window_exactly_when_same_period(
    moment: dt.datetime, minutes: int
) -> None:
    # Nearby pairs make equal windows common, which random pairs rarely are.
    other = moment + dt.timedelta(minutes=minutes)
    a, b = moment.astimezone(UTC), other.astimezone(UTC)
    assert (window_of(moment, Schedule.DAILY) == window_of(other, Schedule.DAILY)) == (
        a.date() == b.date()
    )
    assert (window_of(moment, Schedule.HOURLY) == window_of(other, Schedule.HOURLY)) == (
        a.date() == b.date() and a.hour == b.hour
    )
    assert (window_of(moment, Schedule.WEEKLY) == window_of(other, Schedule.WEEKLY)) == (
        a.isocalendar()[:2] == b.isocalendar()[:2]
    )


@given(aware_times, st.sampled_from(list(Schedule)))
def test_window_of_snapshot_name_time_is_window_of_the_time(
    moment: dt.datetime, schedule: Schedule
) -> None:
    named = snapshot_time(snapshot_name(moment))
    assert named is not None
    assert window_of(named, schedule) == window_of(moment, schedule)


# --- snapshot_in_window ------------------------------------------------------


def test_snapshot_in_window_without_snapshots_is_none() -> None:
    assert snapshot_in_window([], SUNDAY, Schedule.DAILY) is None


def test_snapshot_in_window_finds_snapshot_of_same_utc_date() -> None:
    names = ["2026.086.06.00", "2026.087.23.59", "2026.088.00.00"]
    assert snapshot_in_window(names, utc(2026, 3, 29, 23, 59), Schedule.DAILY) == "2026.088.00.00"


def test_snapshot_in_window_ignores_snapshot_of_previous_day() -> None:
    assert snapshot_in_window(["2026.087.23.59"], SUNDAY, Schedule.DAILY) is None


def test_snapshot_in_window_with_several_in_window_returns_newest_whatever_input_order() -> None:
    names = ["2026.088.12.00", "2026.088.00.01", "2026.088.23.00", "2026.087.06.00"]
    for _ in range(5):
        random.shuffle(names)
        assert snapshot_in_window(names, SUNDAY, Schedule.DAILY) == "2026.088.23.00"


def test_snapshot_in_window_counts_snapshot_later_than_now_in_same_window() -> None:
    # A backfill at 06:00 finds the 22:00 snapshot of the same day.
    assert snapshot_in_window(["2026.088.22.00"], SUNDAY, Schedule.DAILY) == "2026.088.22.00"


def test_snapshot_in_window_ignores_names_that_are_not_snapshots() -> None:
    names = ["2026.088.06.00.tmp", ".hardsnap-partial.2026.088.06.00", "2026.088.24.00", "x"]
    assert snapshot_in_window(names, SUNDAY, Schedule.DAILY) is None


def test_snapshot_in_window_hourly_needs_same_utc_hour() -> None:
    names = ["2026.088.05.59", "2026.088.07.00"]
    assert snapshot_in_window(names, SUNDAY, Schedule.HOURLY) is None
    assert snapshot_in_window([*names, "2026.088.06.59"], SUNDAY, Schedule.HOURLY) == (
        "2026.088.06.59"
    )


def test_snapshot_in_window_weekly_finds_monday_snapshot_on_sunday() -> None:
    # Monday 2026-03-23 is day 082, Sunday 2026-03-29 day 088.
    assert snapshot_in_window(["2026.082.00.00"], SUNDAY, Schedule.WEEKLY) == "2026.082.00.00"
    assert snapshot_in_window(["2026.081.23.59"], SUNDAY, Schedule.WEEKLY) is None


def test_snapshot_in_window_weekly_across_new_year_finds_december_snapshot() -> None:
    # Monday 2026-12-28 (2026.362) and Sunday 2027-01-03 are both in 2026-W53.
    assert snapshot_in_window(["2026.362.06.00"], utc(2027, 1, 3, 12), Schedule.WEEKLY) == (
        "2026.362.06.00"
    )
    assert snapshot_in_window(["2026.362.06.00"], utc(2027, 1, 4, 0), Schedule.WEEKLY) is None


def test_snapshot_in_window_converts_non_utc_now() -> None:
    # 01:30 at +02:00 on the 29th is the 28th (day 087) in UTC.
    now = dt.datetime(2026, 3, 29, 1, 30, tzinfo=PLUS_TWO)
    assert snapshot_in_window(["2026.087.06.00"], now, Schedule.DAILY) == "2026.087.06.00"
    assert snapshot_in_window(["2026.088.00.00"], now, Schedule.DAILY) is None


# --- expired: retain and keep_min (the period rules: tests/planning/test_retention.py) ---


def expired(names: list[str], now: dt.datetime, retain_days: int, keep_min: int) -> list[str]:
    return retention.expired(names, now, retention.Policy(retain_days, keep_min))


def test_expired_exactly_retain_days_old_is_kept() -> None:
    # 2026.081.06.00 is exactly 7 days before SUNDAY.
    assert expired(["2026.081.06.00", "2026.088.06.00"], SUNDAY, 7, 1) == []


def test_expired_one_minute_more_than_retain_days_is_pruned() -> None:
    assert expired(["2026.081.05.59", "2026.088.06.00"], SUNDAY, 7, 1) == ["2026.081.05.59"]


def test_expired_seconds_of_now_count_against_retain() -> None:
    # Name times are whole minutes; now at 06:00:30 is 30 seconds past 7 days.
    now = utc(2026, 3, 29, 6, 0, 30)
    assert expired(["2026.081.06.00", "2026.088.06.00"], now, 7, 1) == ["2026.081.06.00"]


def test_expired_returns_oldest_first_whatever_input_order() -> None:
    names = ["2026.050.00.00", "2025.300.00.00", "2026.088.06.00", "2026.001.00.00"]
    expected = ["2025.300.00.00", "2026.001.00.00", "2026.050.00.00"]
    for _ in range(5):
        random.shuffle(names)
        assert expired(names, SUNDAY, 30, 1) == expected


def test_expired_keep_min_keeps_newest_even_when_all_are_old() -> None:
    names = ["2026.001.00.00", "2026.002.00.00", "2026.003.00.00", "2026.004.00.00"]
    assert expired(names, SUNDAY, 7, 1) == ["2026.001.00.00", "2026.002.00.00", "2026.003.00.00"]
    assert expired(names, SUNDAY, 7, 3) == ["2026.001.00.00"]


def test_expired_keep_min_at_least_count_keeps_all() -> None:
    names = ["2026.001.00.00", "2026.002.00.00"]
    assert expired(names, SUNDAY, 7, 2) == []
    assert expired(names, SUNDAY, 7, 10) == []


def test_expired_keep_min_zero_prunes_even_the_newest() -> None:
    names = ["2026.001.00.00", "2026.002.00.00"]
    assert expired(names, SUNDAY, 7, 0) == names


def test_expired_keep_min_counts_newest_names_not_only_old_ones() -> None:
    # The newest is young anyway, so keep_min 1 protects nothing extra.
    names = ["2026.001.00.00", "2026.002.00.00", "2026.088.06.00"]
    assert expired(names, SUNDAY, 7, 1) == ["2026.001.00.00", "2026.002.00.00"]
    assert expired(names, SUNDAY, 7, 2) == ["2026.001.00.00"]


def test_expired_ignores_names_that_are_not_snapshots() -> None:
    # "latest" sorts after every snapshot: it must not count as the newest.
    names = ["latest", "2026.001.00.00", "2026.002.00.00", "2026.002.24.00", ".hardsnap-x"]
    assert expired(names, SUNDAY, 7, 1) == ["2026.001.00.00"]
    assert expired(["notes.txt", "2025.366.00.00"], SUNDAY, 7, 0) == []


def test_expired_without_snapshots_is_empty() -> None:
    assert expired([], SUNDAY, 30, 0) == []


def test_expired_snapshot_newer_than_now_is_kept() -> None:
    # A backfill: now lies before some snapshots.
    assert expired(["2026.100.00.00", "2026.200.00.00"], SUNDAY, 1, 0) == []


def test_expired_with_non_utc_now_measures_in_absolute_time() -> None:
    # 08:00 at +02:00 is 06:00 UTC: exactly 7 days after 2026.081.06.00.
    now = dt.datetime(2026, 3, 29, 8, 0, tzinfo=PLUS_TWO)
    assert expired(["2026.081.06.00"], now, 7, 0) == []
    later = dt.datetime(2026, 3, 29, 8, 1, tzinfo=PLUS_TWO)
    assert expired(["2026.081.06.00"], later, 7, 0) == ["2026.081.06.00"]


def test_expired_across_leap_day_counts_real_days() -> None:
    # 2024.059 is Feb 28; 2024.067 is Mar 7: 8 days apart because of Feb 29.
    now = utc(2024, 3, 7)
    assert expired(["2024.059.00.00"], now, 8, 0) == []
    assert expired(["2024.059.00.00"], now, 7, 0) == ["2024.059.00.00"]


@given(
    st.lists(
        st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 12, 31)),
        max_size=12,
    ),
    st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 12, 31)),
    st.integers(min_value=1, max_value=400),
    st.integers(min_value=0, max_value=5),
)
def test_expired_is_old_snapshots_outside_keep_min_newest_oldest_first(
    times: list[dt.datetime], now: dt.datetime, retain: int, keep_min: int
) -> None:
    names = sorted({snapshot_name(moment.replace(tzinfo=UTC)) for moment in times})
    now = now.replace(tzinfo=UTC)
    newest = set(names[-keep_min:]) if keep_min else set()
    result = expired(names, now, retain, keep_min)
    assert result == sorted(result)
    assert result == [
        name
        for name in names
        if name not in newest and now - truncated(name) > dt.timedelta(days=retain)
    ]


def truncated(name: str) -> dt.datetime:
    moment = snapshot_time(name)
    assert moment is not None
    return moment

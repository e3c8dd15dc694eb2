"""Snapshot names and schedule windows: pure functions of time.

A snapshot is named after the UTC minute it was taken, `YYYY.JJJ.HH.MM`
(year, day of year, hour, minute), so names sort in time order.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from hardsnap.providers.backup.resource import Schedule

SNAPSHOT_NAME = re.compile(r"([0-9]{4})\.([0-9]{3})\.([0-9]{2})\.([0-9]{2})")
UTC = dt.UTC


def snapshot_name(now: dt.datetime) -> str:
    """Given an aware time, return the snapshot name of its UTC minute."""
    moment = now.astimezone(UTC)
    day = moment.timetuple().tm_yday
    return f"{moment.year:04d}.{day:03d}.{moment.hour:02d}.{moment.minute:02d}"


def snapshot_time(name: str) -> dt.datetime | None:
    """Given a directory name, return the UTC time it names, or None if it is
    not a snapshot name (including impossible days, hours or minutes)."""
    match = SNAPSHOT_NAME.fullmatch(name)
    if not match:
        return None
    year, day, hour, minute = (int(part) for part in match.groups())
    if not (year >= 1 and 1 <= day <= 366 and hour < 24 and minute < 60):
        return None
    start = dt.datetime(year, 1, 1, hour, minute, tzinfo=UTC)
    moment = start + dt.timedelta(days=day - 1)
    if moment.year != year:
        return None
    return moment


def is_snapshot_name(name: str) -> bool:
    return snapshot_time(name) is not None


def future_names(names: Iterable[str], now: dt.datetime) -> tuple[str, ...]:
    """Given snapshot names, return those dated after `now` (clock skew, a
    hand-made copy): never a reference, never in a window, never pruned."""
    return tuple(name for name in names if _time(name) > now)


def window_of(moment: dt.datetime, schedule: Schedule) -> str:
    """Given a time and a schedule, return a label naming its window.

    Two times share a window exactly when their labels are equal: the same
    UTC hour (hourly), UTC date (daily) or ISO week, Monday to Sunday (weekly).
    """
    moment = moment.astimezone(UTC)
    if schedule is Schedule.HOURLY:
        return moment.strftime("%Y.%j.%H")
    if schedule is Schedule.DAILY:
        return moment.strftime("%Y.%j")
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def snapshot_in_window(names: Iterable[str], now: dt.datetime, schedule: Schedule) -> str | None:
    """Given snapshot names, return the newest one in the window of `now`, if any."""
    current = window_of(now, schedule)
    found = None
    for name in sorted(names):
        moment = snapshot_time(name)
        if moment is not None and window_of(moment, schedule) == current:
            found = name
    return found


def _time(name: str) -> dt.datetime:
    moment = snapshot_time(name)
    assert moment is not None
    return moment

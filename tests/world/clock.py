"""The tests' clock: every run is given its moment (HARDSNAP_NOW), from a
fixed start; snapshot names follow from it."""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC
# 2026-03-29 is a Sunday, day 088 of 2026.
START = dt.datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
T0 = "2026-03-29T06:00:00Z"


def at(days: float = 0, hours: float = 0, minutes: float = 0) -> dt.datetime:
    return START + dt.timedelta(days=days, hours=hours, minutes=minutes)


def iso(moment: dt.datetime) -> str:
    """As HARDSNAP_NOW takes it: UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def name_of(moment: dt.datetime) -> str:
    """The name of a snapshot taken at `moment`."""
    return moment.astimezone(UTC).strftime("%Y.%j.%H.%M")


def time_of(name: str) -> dt.datetime:
    """When the snapshot of this name was taken."""
    return dt.datetime.strptime(name, "%Y.%j.%H.%M").replace(tzinfo=UTC)

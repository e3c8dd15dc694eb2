"""The tests' clock: every run is given its moment (HARDSNAP_NOW), from a
fixed start; snapshot names follow from it."""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC
# 2026-03-29 is a Sunday, day 088 of 2026.
START = dt.datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
T0 = "2026-03-29T06:00:00Z"


def at(days: float = 0, hours: float = 0) -> dt.datetime:
    return START + dt.timedelta(days=days, hours=hours)


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def name_of(moment: dt.datetime) -> str:
    return moment.strftime("%Y.%j.%H.%M")

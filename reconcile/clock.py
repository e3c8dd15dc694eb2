"""The time a plan or apply runs at: the real clock, or HARDSNAP_NOW."""

from __future__ import annotations

import datetime as dt
import os


class ClockError(Exception):
    """HARDSNAP_NOW is set but is not an ISO-8601 time."""


def now(environ: dict[str, str] | None = None) -> dt.datetime:
    """Return the current time (aware, UTC), or HARDSNAP_NOW when set.

    A HARDSNAP_NOW without a UTC offset is taken as UTC.
    """
    env = os.environ if environ is None else environ
    value = env.get("HARDSNAP_NOW", "").strip()
    if not value:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ClockError(
            f"HARDSNAP_NOW={value!r} is not an ISO-8601 time (e.g. 2026-03-29T06:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise ClockError(
            f"HARDSNAP_NOW={value!r} is out of range: in UTC it falls outside years 1 to 9999"
        ) from None

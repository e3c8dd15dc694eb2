"""Retention people can live with, through the real CLI: the period rules
keep a grandfather-father-son history, and plan, apply and state show say
which rule keeps each snapshot."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from tests.world.clock import at, name_of
from tests.world.site import Site, new_site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return new_site(tmp_path)


def history(site: Site, first: dt.datetime, days: int) -> list[str]:
    """Given a site with one snapshot taken by hardsnap at `first`, add a
    snapshot a day for `days` more days the way the timer would have made
    them (hard-linked copies of the first), and return every name."""
    original = site.target / name_of(first)
    names = [name_of(first)]
    for day in range(1, days + 1):
        name = name_of(first + dt.timedelta(days=day))
        subprocess.run(["cp", "-al", str(original), str(site.target / name)], check=True)
        names.append(name)
    return names


def test_tiers_keep_a_week_of_dailies_sundays_and_month_ends_and_plan_says_why(
    site: Site,
) -> None:
    first = at(-100)  # 19 December 2025
    site.write(retain="7", keep_weekly="4", keep_monthly="3")
    assert site.apply(first).returncode == 0
    names = history(site, first, 99)
    now = at(0)  # Sunday 29 March 2026, 06:00; 2026.088.06.00 not yet taken

    plan = site.plan_json(now)["resources"][0]
    kept = {entry["snapshot"]: entry["rules"] for entry in plan["kept"]}
    assert kept[name_of(at(-29))] == [{"rule": "keep_monthly", "period": "2026-02"}]  # 28 Feb
    assert kept[name_of(at(-7))] == [
        {"rule": "retain", "period": None},
        {"rule": "keep_weekly", "period": "2026-W12"},  # Sunday 22 Mar
    ]
    text = site.cli("plan", now=now)
    assert text.returncode == 0, text
    assert f"keeps {name_of(at(-29))}: keep_monthly (newest of 2026-02)" in text.stdout
    assert f"keeps {name_of(at(-14))}: keep_weekly (newest of 2026-W11)" in text.stdout
    prune = next(a for a in plan["actions"] if a["kind"] == "prune")
    assert "keep_weekly 4, keep_monthly 3" in prune["reason"]

    applied = site.apply(now)
    assert applied.returncode == 0, applied
    expected = {
        name_of(at(-57)),  # 31 January: January's newest (the 3rd month back)
        name_of(at(-29)),  # 28 February: February's newest
        name_of(at(-21)),  # Sunday 8 March: week 10's newest
        name_of(at(-14)),  # Sunday 15 March: week 11's newest
        *(name_of(at(-days)) for days in range(1, 8)),  # within 7 days
        name_of(now),  # the new one: week 13's and March's newest
    }
    assert set(site.snapshots()) == expected
    assert set(names) - expected == set(prune["snapshots"])

    shown = site.cli("state", "show", "--json", now=now)
    snapshots = json.loads(shown.stdout)["resources"]["r"]["snapshots"]
    kept_by = {entry["name"]: entry["kept_by"] for entry in snapshots}
    assert kept_by[name_of(at(-57))] == [{"rule": "keep_monthly", "period": "2026-01"}]
    assert kept_by[name_of(now)][0] == {"rule": "retain", "period": None}
    text = site.cli("state", "show", now=now)
    assert "keep_monthly 2026-01" in text.stdout
    # A day later (Monday, week 14) week 10 falls out of the four weeks kept;
    # Sunday 22 March leaves the 7 days but stays as week 12's newest.
    later = site.apply(at(1))
    assert later.returncode == 0, later
    assert set(site.snapshots()) == (expected - {name_of(at(-21))}) | {name_of(at(1))}


def test_a_timer_broken_for_two_weeks_leaves_the_weekly_history_in_place(site: Site) -> None:
    site.write(retain="3", keep_weekly="8")
    for day in range(-30, -13):
        assert site.apply(at(day)).returncode == 0, day
    before = site.snapshots()
    # Two weeks without a run (longer than retain plus a day): pruning is
    # suspended until the snapshots since the gap span retain (3 days), so
    # nothing at all is pruned on days 0 to 2 (clock sanity), and on day 3
    # only what no rule keeps.
    for day in range(3):
        assert site.apply(at(day)).returncode == 0
        assert site.snapshots() == [*before, *(name_of(at(d)) for d in range(day + 1))]
    assert site.apply(at(3)).returncode == 0
    weekly_sundays = [name_of(at(days)) for days in (-28, -21)]  # Sundays of weeks 9 and 10
    left = site.snapshots()
    assert all(name in left for name in weekly_sundays)
    assert name_of(at(-14)) in left  # the newest of week 11 (a Sunday)
    within_retain = {name_of(at(day)) for day in range(4)}
    assert set(left) == {*weekly_sundays, name_of(at(-14)), *within_retain}


def test_state_show_says_what_the_next_apply_would_prune(site: Site) -> None:
    site.write(retain="2", keep_min="1")
    assert site.apply(at(0)).returncode == 0
    assert site.apply(at(1)).returncode == 0
    later = at(3, hours=12)  # no gap yet: 2.5 days since the newest, retain 2 plus one day
    shown = site.cli("state", "show", "--json", now=later)
    snapshots = json.loads(shown.stdout)["resources"]["r"]["snapshots"]
    assert [entry["kept_by"] for entry in snapshots] == [[], [{"rule": "keep_min", "period": None}]]
    text = site.cli("state", "show", now=later)
    assert "nothing: the next apply prunes it" in text.stdout
    # Two days later the newest is older than retain plus one day: the next
    # apply prunes nothing (clock sanity), and state show says so.
    text = site.cli("state", "show", now=at(5))
    assert "nothing, but pruning is suspended" in text.stdout, text
    assert "nothing: the next apply prunes it" not in text.stdout, text

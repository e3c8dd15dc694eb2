"""Clock sanity through the real CLI: a clock that jumps ahead and stays
there, one that comes back, a host that was off for months, and schedules
whose window is longer than retain. HARDSNAP_NOW is the clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.world.clock import at, name_of
from tests.world.files import read_metrics
from tests.world.site import Site, new_site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return new_site(tmp_path)


def with_metrics(site: Site, metrics: Path, **settings: object) -> None:
    """Write the site's config with these settings and a metrics_file."""
    site.write(**settings)
    site.config.write_text(f"metrics_file: {metrics}\n" + site.config.read_text())


def test_a_clock_that_stays_a_year_ahead_prunes_nothing_until_a_whole_retain_period_passed(
    site: Site, tmp_path: Path
) -> None:
    metrics = tmp_path / "hardsnap.prom"
    with_metrics(site, metrics, retain="5")
    for day in range(5):
        assert site.apply(at(day)).returncode == 0, day
    real = site.snapshots()
    assert len(real) == 5
    # The clock jumps a year ahead and stays there: every run snapshots,
    # prunes nothing and says why, naming the way to resume.
    runs = []
    for day in range(365, 370):
        runs.append(site.apply(at(day)))
        assert runs[-1].returncode == 0, runs[-1]
        assert site.snapshots() == [*real, *(name_of(at(d)) for d in range(365, day + 1))], day
    for done in runs:
        assert "pruning is suspended" in done.stderr, done
        assert "--resume-pruning" in done.stderr, done
        assert f"since {name_of(at(365))}" in done.stderr, done
    state = site.state_json(at(369))
    assert state["pruning"] == "suspended"
    assert state["pruning_suspended_since"] == name_of(at(365))
    assert state["pruning_resumes_at"] == "2027-04-03T06:00:00Z"  # 365 + retain 5 days
    text = site.cli("state", "show", now=at(369))
    assert f"pruning: suspended since {name_of(at(365))}" in text.stdout, text
    assert read_metrics(metrics)[("hardsnap_pruning_suspended", "r")] == 1
    plan = site.plan_json(at(370))["resources"][0]
    assert plan["pruning"] == "active"  # this run's snapshot makes them span 5 days
    assert [a["snapshots"] for a in plan["actions"] if a["kind"] == "prune"] == [real]

    # Wrong-dated snapshots now span retain: the history can go, and goes.
    done = site.apply(at(370))
    assert done.returncode == 0, done
    assert "suspended" not in done.stderr, done
    assert site.snapshots() == [name_of(at(day)) for day in range(365, 371)]
    assert site.state_json(at(370))["pruning"] == "active"
    assert read_metrics(metrics)[("hardsnap_pruning_suspended", "r")] == 0


def test_weekly_with_retain_shorter_than_its_window_prunes_on_a_weekly_timer_and_says_so(
    site: Site,
) -> None:
    site.write(schedule="weekly", retain="1")
    mondays = [at(days) for days in (1, 8, 15)]  # 30 March 2026 is a Monday
    for monday in mondays:
        done = site.apply(monday)
        assert done.returncode == 0, done
        assert site.snapshots() == [name_of(monday)], done
        assert "suspended" not in done.stderr, done
    warning = "keeps only its newest snapshot"
    checked = site.cli("validate")
    assert checked.returncode == 0, checked
    assert warning in checked.stderr, checked
    plan = site.cli("plan", now=at(22))
    assert plan.returncode == 0, plan
    assert warning in plan.stdout, plan
    assert f"- prune         {name_of(mondays[-1])}" in plan.stdout, plan


def test_resume_pruning_after_two_months_off_prunes_at_once_and_the_gap_stays_accepted(
    site: Site,
) -> None:
    site.write(retain="3", keep_weekly="4")
    for day in range(5):  # Sunday 29 March to Thursday 2 April
        assert site.apply(at(day)).returncode == 0, day
    # The host was off for two months; its clock is right.
    back = site.apply(at(64))
    assert back.returncode == 0, back
    assert "pruning is suspended" in back.stderr and "--resume-pruning" in back.stderr, back
    assert site.snapshots() == [*(name_of(at(day)) for day in (0, 1, 2, 3, 4, 64))]
    planned = site.plan_json(at(65), "--resume-pruning")["resources"][0]
    assert planned["pruning"] == "active"
    assert any("pruning resumed (--resume-pruning)" in note for note in planned["notes"])

    resumed = site.apply(at(65), "--resume-pruning")
    assert resumed.returncode == 0, resumed
    assert "suspended" not in resumed.stderr, resumed
    # keep_weekly keeps the newest of weeks 13 and 14, from before the gap.
    assert site.snapshots() == [*(name_of(at(day)) for day in (0, 4, 64, 65))]
    # The gap between days 4 and 64 is still in the names, but accepted:
    # the next runs prune as usual, without the option and without a warning.
    for day in (66, 67, 68):
        done = site.apply(at(day))
        assert done.returncode == 0, done
        assert "suspended" not in done.stderr, done
        assert site.state_json(at(day))["pruning"] == "active"
    assert site.snapshots() == [*(name_of(at(day)) for day in (0, 4, 65, 66, 67, 68))]


def test_a_clock_that_jumps_ahead_and_comes_back_prunes_as_before_and_keeps_its_stray(
    site: Site,
) -> None:
    site.write(retain="2")
    for day in range(3):
        assert site.apply(at(day)).returncode == 0, day
    jumped = site.apply(at(365))
    assert jumped.returncode == 0, jumped
    assert "pruning is suspended" in jumped.stderr, jumped
    stray = name_of(at(365))
    # Back to the right time: the stray is dated after now, never pruned,
    # warned about; the real snapshots have no gap and prune as before.
    for day in (3, 4):
        done = site.apply(at(day))
        assert done.returncode == 0, done
        assert f"{stray} in" in done.stderr and "dated after now" in done.stderr, done
        assert "suspended" not in done.stderr, done
    assert site.snapshots() == [name_of(at(2)), name_of(at(3)), name_of(at(4)), stray]
    state = site.state_json(at(4))
    assert state["pruning"] == "active"

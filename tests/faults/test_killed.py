"""Applies killed at any moment: never an incomplete directory under a snapshot
name, every earlier snapshot intact, the next run resumes.
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Mount
from tests.faults.faults import (
    FILES,
    KILL_SEED,
    PARTIAL,
    PRUNING,
    RETAIN_DAYS,
    WARM_UP_DAYS,
    Spawn,
    Verified,
    assert_resumed,
    assert_same_tree,
    build_tree,
    copies_among,
    finished_work,
    hardsnap,
    rewrite_some,
    scan,
    state_show,
)
from tests.world.clock import at, iso, name_of, time_of
from tests.world.engine import listing
from tests.world.files import snapshots_in
from tests.world.processes import Apply, wait_for_entry
from tests.world.site import Site, empty_site

# -- 1. killed at any moment -------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """When to kill: after `delay` seconds from the start, or from the moment
    the run's work directory (`partial`) or a prune (`pruning`) appears."""

    kind: str
    delay: float = 0.0


def kill_schedule(rng: random.Random, duration: float) -> list[Trigger]:
    """One kill during the first prune, one at the very start, one around the
    end, delays spread over a whole run (one random point per stratum), and
    last a kill mid-walk so that the final apply has a partial snapshot to resume."""
    strata = 9
    middle = [
        Trigger("delay", 0.0),
        Trigger("delay", duration * rng.uniform(0.95, 1.1)),
        Trigger("partial", rng.uniform(0.0, 0.2)),
        Trigger("partial", rng.uniform(0.0, 0.2)),
        *(Trigger("delay", duration * (index + rng.random()) / strata) for index in range(strata)),
    ]
    rng.shuffle(middle)
    return [Trigger("pruning"), *middle, Trigger("partial", rng.uniform(0.01, 0.06))]


def pull_trigger(trigger: Trigger, apply: Apply, target: Path, now: dt.datetime) -> None:
    before = set(listing(target))
    if trigger.kind == "partial":
        work = PARTIAL + name_of(now)
        if wait_for_entry(target, lambda name: name == work, apply):
            apply.wait_at_most(trigger.delay)
    elif trigger.kind == "pruning":
        wait_for_entry(target, lambda name: name.startswith(PRUNING) and name not in before, apply)
    else:
        apply.wait_at_most(trigger.delay)
    apply.kill()


@pytest.mark.slow
def test_apply_killed_at_random_moments_never_leaves_an_incomplete_snapshot_and_resumes(
    tmpfs: Mount, spawn: Spawn
) -> None:
    """Daily applies of a 20k-file tree (2% rewritten between runs, retain 2
    days so runs prune), each SIGKILLed at a seeded random moment, each
    followed by a full check of the target; then one apply let run."""
    site = empty_site(tmpfs("area", "size=512m"), min_free_space="1M")
    source, target, state = site.source, site.target, site.state
    build_tree(source, FILES)
    config = site.write(retain=str(RETAIN_DAYS))
    verified = Verified(target)

    durations: list[float] = []
    for day in range(WARM_UP_DAYS):
        expected = scan(source)
        started = time.monotonic()
        warm_up = hardsnap("apply", "-c", config, state=state, now=at(day))
        durations.append(time.monotonic() - started)
        assert warm_up.returncode == 0, warm_up
        assert verified.check(at(day), expected) == []
    assert len(verified.snapshots) == RETAIN_DAYS + 1, "the last warm-up did not prune"
    # A whole run of linking and pruning: the median of the runs after the
    # first (which copies everything), not thrown off by one slow run.
    duration = statistics.median(durations[1:])

    rng = random.Random(KILL_SEED)
    killed = in_snapshot = in_prune = 0
    # One line per round, printed as it goes: pytest shows them when a check fails.
    history = [f"a whole run takes {duration:.2f} s"]
    print(history[0])
    for round_number, trigger in enumerate(kill_schedule(rng, duration), start=1):
        now = at(WARM_UP_DAYS + round_number - 1)
        rewrite_some(source, FILES, round_number)
        expected = scan(source)
        kept = finished_work(target, expected)
        before = set(listing(target))
        started = time.monotonic()
        apply = spawn(config, state, now)
        pull_trigger(trigger, apply, target, now)
        code = apply.wait()
        elapsed = time.monotonic() - started
        leftovers = listing(target)
        history.append(
            f"round {round_number} at {iso(now)}: {trigger} after {elapsed:.2f} s, "
            f"exit {code}, target {leftovers}"
        )
        print(history[-1])
        what = "\n".join(history)
        if code == -signal.SIGKILL:
            killed += 1
        else:
            assert code == 0, f"{what}\nthe apply ended by itself but failed: {apply}"

        leftovers = verified.check(now, expected)
        if name_of(now) in verified.snapshots and kept:
            assert_resumed(target / name_of(now), kept)
            print(f"  resumed: kept {len(kept)} files finished by killed runs")
        in_snapshot += any(name.startswith(PARTIAL) for name in leftovers)
        in_prune += any(name.startswith(PRUNING) and name not in before for name in leftovers)
        shown = state_show(config, state, in_process=True)
        names = [entry["name"] for entry in shown["resources"]["r"]["snapshots"]]
        assert names == snapshots_in(target), what

    what = "\n".join(history)
    assert killed >= 10, f"only {killed} applies were still running when killed:\n{what}"
    assert in_snapshot >= 1, f"no kill landed while a snapshot was being written:\n{what}"
    assert in_prune >= 1, f"no kill landed during a prune:\n{what}"

    # The last kill was mid-walk: an apply that is let run must resume its work.
    now = at(WARM_UP_DAYS + round_number)
    rewrite_some(source, FILES, round_number + 1)
    expected = scan(source)
    kept = finished_work(target, expected)
    reference = target / snapshots_in(target)[-1]
    assert copies_among(kept, reference) > 0, "the killed run left no copied file to reuse"
    # After a run of kills the newest snapshot may be older than retain plus
    # one day: then pruning is suspended (clock sanity) until the snapshots
    # since the gap span retain, which daily runs reach within retain days.
    retain = dt.timedelta(days=RETAIN_DAYS)
    before = snapshots_in(target)
    gap = not before or now - time_of(before[-1]) > retain + dt.timedelta(days=1)
    final = hardsnap("apply", "-c", config, state=state, now=now)
    assert final.returncode == 0, final
    assert verified.check(now, expected) == [], "the final apply left work behind"
    assert name_of(now) in verified.snapshots
    assert_resumed(target / name_of(now), kept)
    if gap and before:
        assert snapshots_in(target) == [*before, name_of(now)], "pruned after a gap"
        assert "pruning is suspended" in final.stderr, final
    for _ in range(RETAIN_DAYS):
        if all(now - time_of(name) <= retain for name in snapshots_in(target)[:-1]):
            break
        now += dt.timedelta(days=1)
        assert hardsnap("apply", "-c", config, state=state, now=now).returncode == 0
    for name in snapshots_in(target)[:-1]:
        assert now - time_of(name) <= retain, f"{name} was not pruned"
    shown = state_show(config, state)["resources"]["r"]
    assert shown["last_result"] == "changed", shown["runs"][-1:]


@pytest.mark.slow
def test_apply_in_the_same_window_after_a_kill_during_prune_removes_the_half_pruned_snapshot(
    big_site: Site, spawn: Spawn
) -> None:
    config = big_site.write(retain="1")
    state, target = big_site.state, big_site.target
    for day in (0, 1):
        assert hardsnap("apply", "-c", config, state=state, now=at(day)).returncode == 0
    expected = scan(big_site.source)
    apply = spawn(config, state, at(2))
    pruning = PRUNING + name_of(at(0))
    assert wait_for_entry(target, lambda name: name == pruning, apply), str(apply)
    apply.kill()
    assert apply.wait() == -signal.SIGKILL
    assert listing(target) == sorted([name_of(at(1)), name_of(at(2)), pruning])
    assert_same_tree(scan(target / name_of(at(2))), expected, "the new snapshot")

    again = hardsnap("apply", "-c", config, state=state, now=at(2))
    assert again.returncode == 0, again
    assert listing(target) == [name_of(at(1)), name_of(at(2))], (
        "the half-pruned snapshot was left behind"
    )
    assert_same_tree(scan(target / name_of(at(2))), expected, "the new snapshot")

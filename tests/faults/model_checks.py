"""The model-based test's checks, after every step: complete snapshots,
nothing outside touched, hand-made entries untouched, convergence."""

from __future__ import annotations

import datetime as dt
import os
import stat
from itertools import pairwise
from typing import Any

from hypothesis import event
from hypothesis.stateful import (
    invariant,
)

from hardsnap.providers.backup.target import MARKER, PARTIAL_PREFIX, PRUNING_PREFIX
from hardsnap.providers.manifest.reader import MANIFEST_DIRECTORY
from tests.faults.model_edits import SourceEdits
from tests.faults.model_support import (
    SNAPSHOT_NAME,
    WINDOW_LENGTHS,
    Entry,
    contents,
    differences,
    identity,
    inodes,
    iso,
    name_of,
    real_directory,
    time_of,
    window_of,
)


class ModelChecks(SourceEdits):
    """What is checked after every step, and the convergence invariant."""

    # -- the model's checks ------------------------------------------------------------------

    def present_snapshots(self) -> set[str]:
        """Snapshot-named real directories in the target, hand-made ones aside."""
        if not self.target.is_dir():
            return set()
        return {
            name
            for name in os.listdir(self.target)
            if SNAPSHOT_NAME.fullmatch(name)
            and name not in self.hand_made
            and real_directory(self.target / name)
        }

    def leftovers(self) -> list[str]:
        if not self.target.is_dir():
            return []
        return sorted(
            name
            for name in os.listdir(self.target)
            if name.startswith((PARTIAL_PREFIX, PRUNING_PREFIX))
        )

    def pruning_suspended(self, names: set[str]) -> bool:
        """The SPEC's clock sanity for an apply at the model's clock that
        finds `names`: a gap longer than retain plus one window among them
        and the snapshot the apply takes (when its window has none), after
        which the snapshots span less than retain. A gap that begins before
        the newest snapshot an apply left while pruning was not suspended is
        not waited for (the state records it), unless that is dated after now."""
        now, schedule = self.clock, self.values["schedule"]
        retain = dt.timedelta(days=int(self.values["retain"]))
        times = sorted(time_of(name) for name in names if time_of(name) <= now)
        if not any(window_of(moment, schedule) == window_of(now, schedule) for moment in times):
            times.append(time_of(name_of(now)))
        accepted = time_of(self.accepted) if self.accepted else None
        if accepted is not None and accepted > now:
            accepted = None
        gaps = [
            later
            for earlier, later in pairwise(times)
            if later - earlier > retain + WINDOW_LENGTHS[schedule]
            and (accepted is None or earlier >= accepted)
        ]
        return bool(gaps) and times[-1] - gaps[-1] < retain

    def observe(self, before: set[str], what: str) -> None:
        """After a command at the model's clock: check every entry of the
        target against the model (invariants 1, 2 and 4) and learn the new
        snapshot, if any."""
        now, schedule = self.clock, self.values["schedule"]
        suspended = self.pruning_suspended(before)
        names = sorted(os.listdir(self.target)) if self.target.is_dir() else []
        source: dict[str, Entry] | None = None
        created = []
        for name in names:
            if name in self.hand_made or name in (MANIFEST_DIRECTORY, MARKER):
                continue
            if name.startswith((PARTIAL_PREFIX, PRUNING_PREFIX)):
                continue
            path = self.target / name
            assert SNAPSHOT_NAME.fullmatch(name), f"{what}: unexpected entry {name}"
            assert stat.S_ISDIR(os.lstat(path).st_mode), f"{what}: {name} is no directory"
            if name in self.snapshots:
                actual = contents(path, self.symlinks_kept)
                assert actual == self.snapshots[name], (
                    f"{what}: snapshot {name} changed: "
                    f"{differences(actual, self.snapshots[name])}\n{self.story()}"
                )
                assert inodes(path) == self.snapshot_inodes[name], (
                    f"{what}: files of snapshot {name} were replaced\n{self.story()}"
                )
                continue
            assert name == name_of(now), (
                f"{what} at {iso(now)} made snapshot {name}\n{self.story()}"
            )
            filled = [
                other
                for other in before
                if time_of(other) <= now
                and window_of(time_of(other), schedule) == window_of(now, schedule)
            ]
            assert not filled, f"{what}: {name} made in a window {filled} already filled"
            if source is None:
                source = contents(self.source, self.symlinks_kept)
            actual = contents(path, self.symlinks_kept)
            assert actual == source, (
                f"{what}: new snapshot {name} is not the source: "
                f"{differences(actual, source)}\n{self.story()}"
            )
            self.snapshots[name] = actual
            self.snapshot_inodes[name] = inodes(path)
            created.append(name)
            self.note(f"  took {name}")
            event(f"{what}: took a snapshot")
        present = self.present_snapshots()
        vanished = sorted(set(self.snapshots) - present)
        if vanished:
            self.check_pruned(vanished, before, created, suspended, what)
        if not suspended:
            # What the applier records: a gap before it is accepted.
            counted = [name for name in before | set(created) if time_of(name) <= now]
            self.accepted = max(counted, default=self.accepted)
        if vanished:
            event(f"{what}: pruned")
        for name in vanished:
            del self.snapshots[name]
            del self.snapshot_inodes[name]
            self.note(f"  pruned {name}")
        self.check_untouched(what)

    def check_pruned(
        self, vanished: list[str], before: set[str], created: list[str], suspended: bool, what: str
    ) -> None:
        """Only expired snapshots go: older than retain days, not dated
        after now, not among the keep_min newest, and not while pruning is
        suspended (the clock sanity rule)."""
        now = self.clock
        retain = dt.timedelta(days=int(self.values["retain"]))
        counted = sorted(name for name in before | set(created) if time_of(name) <= now)
        keep_min = int(self.values["keep_min"])
        protected = set(counted[-keep_min:]) if keep_min else set()
        for name in vanished:
            assert time_of(name) <= now, f"{what}: {name}, dated after now, was pruned"
            assert now - time_of(name) > retain, f"{what}: {name} pruned, not expired"
            assert name not in protected, f"{what}: {name}, one of the keep_min newest, pruned"
            assert not suspended, (
                f"{what}: {name} pruned while pruning is suspended\n{self.story()}"
            )

    def check_untouched(self, what: str) -> None:
        """The outside sentinel and the hand-made entries are as they were."""
        outside = identity(self.outside)
        assert outside == self.outside_before, (
            f"{what} changed files outside the target: "
            f"{differences(outside, self.outside_before)}\n{self.story()}"
        )
        for name, expected in self.hand_made.items():
            actual = identity(self.target / name)
            assert actual == expected, (
                f"{what} touched hand-made {name}: {differences(actual, expected)}\n{self.story()}"
            )

    # -- invariant 5 -------------------------------------------------------------------------

    @invariant()
    def converges(self) -> None:
        """A plain apply converges and a second one reports settled."""
        if not self.values:
            return
        try:
            self.check_convergence()
        finally:
            self.failing_hooks_expire()

    def check_convergence(self) -> None:
        self.check_untouched("the step")
        before = self.present_snapshots()
        suspended = self.pruning_suspended(before)
        first, outcome = self.apply_json()
        self.compare_with_plan(outcome, before)
        if first.returncode != 0:
            event(f"convergence: exit {first.returncode}")
            return
        assert outcome["pruning"] == ("suspended" if suspended else "active"), (
            f"the model says pruning is suspended: {suspended}; apply: {first}\n{self.story()}"
        )
        if suspended:
            event("clock sanity: pruning suspended")
        if outcome["result"] == "settled":
            # Itself the settled apply after a converged one.
            assert self.present_snapshots() == before, f"settled, yet: {first}"
        else:
            second, outcome = self.apply_json()
        if outcome["result"] != "settled":
            # keep_min 0 prunes the window's own snapshot once it expired
            # (weekly, retain shorter than the window): this run fills the
            # window again.
            kinds = [action["kind"] for action in outcome["actions"]]
            assert int(self.values["keep_min"]) == 0 and kinds == ["snapshot"], (
                f"the apply after a converging one did {kinds}: {second}\n{self.story()}"
            )
            event("keep_min 0: the window's expired snapshot pruned, then taken again")
            third, outcome = self.apply_json()
            assert outcome["result"] == "settled", f"third apply: {third}\n{self.story()}"
        assert not [name for name in self.leftovers() if name.startswith(PRUNING_PREFIX)], (
            f"a settled target still holds prune leftovers {self.leftovers()}\n{self.story()}"
        )
        self.check_nothing_expired()

    def check_nothing_expired(self) -> None:
        """Settled: no snapshot is left that the prune rules would remove."""
        now = self.clock
        retain = dt.timedelta(days=int(self.values["retain"]))
        counted = sorted(name for name in self.present_snapshots() if time_of(name) <= now)
        if self.pruning_suspended(set(counted)):
            return
        keep_min = int(self.values["keep_min"])
        expired = [
            name
            for name in (counted[:-keep_min] if keep_min else counted)
            if now - time_of(name) > retain
        ]
        assert not expired, f"settled at {iso(now)} with expired {expired}\n{self.story()}"

    def compare_with_plan(self, outcome: dict[str, Any], before: set[str]) -> None:
        """The SPEC: a plan's predictions equal what an apply right after does."""
        plan, self.last_plan = self.last_plan, None
        if plan is None or outcome["result"] == "failed":
            return
        planned = {action["kind"]: action for action in plan["actions"]}
        done = {action["kind"]: action for action in outcome["actions"]}
        assert set(planned) == set(done), f"plan {planned}\napply {done}\n{self.story()}"
        if "snapshot" in planned:
            plan_snapshot, snapshot = planned["snapshot"], done["snapshot"]
            for predicted, actual in (
                ("snapshot", "snapshot"),
                ("reference", "reference"),
                ("files_to_copy", "files_copied"),
                ("files_to_link", "files_linked"),
                ("bytes_to_copy", "bytes_copied"),
            ):
                assert plan_snapshot[predicted] == snapshot[actual], (
                    f"plan said {predicted} {plan_snapshot[predicted]}, apply did "
                    f"{snapshot[actual]}\nplan {plan_snapshot}\napply {snapshot}\n{self.story()}"
                )
        if "prune" in planned:
            pruned = sorted(before - self.present_snapshots())
            assert sorted(planned["prune"]["snapshots"]) == pruned, (
                f"plan would prune {planned['prune']['snapshots']}, apply pruned {pruned}"
            )

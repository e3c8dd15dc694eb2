"""The model-based test's disturbances: applies killed or terminated at a
random moment, failing and hanging hooks, hand-made entries in the target,
a disk that fills up."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shlex
import shutil
import signal
import stat
import time

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    precondition,
    rule,
)

from hardsnap.providers.backup.target import PARTIAL_PREFIX, PRUNING_PREFIX
from tests.faults.model_checks import ModelChecks
from tests.faults.model_support import (
    FAR_FUTURE,
    LONG_AGO,
    ODD_NS,
    Entry,
    differences,
    entries_below,
    group_members,
    identity,
    iso,
    name_of,
    processes_with,
    run_finished,
    wait_until,
)
from tests.world.processes import Apply


class Faults(ModelChecks):
    """Rules that disturb a run: kills, terminations, hooks, hand-made entries, a full disk."""

    # -- steps: interrupted applies ----------------------------------------------------------

    @rule(
        minutes=st.integers(0, 3 * 24 * 60),
        how=st.sampled_from(["SIGKILL", "SIGKILL group", "SIGTERM", "SIGTERM group"]),
        trigger=st.sampled_from(["delay", "delay", "partial", "pruning"]),
        delays=st.lists(st.integers(0, 1500), min_size=1, max_size=3),
    )
    def interrupted_apply(self, minutes: int, how: str, trigger: str, delays: list[int]) -> None:
        """Applies stopped at a random moment: after `delay` thousandths of
        the time an apply takes (most of it is Python starting), or a few
        milliseconds after their work (or a prune) shows in the target."""
        self.clock += dt.timedelta(minutes=minutes)
        for delay in delays:
            self.interrupt_one(how, trigger, delay)

    def interrupt_one(self, how: str, trigger: str, delay: int) -> None:
        before = self.present_snapshots()
        listed = set(os.listdir(self.target)) if self.target.is_dir() else set()
        quiet = (identity(self.target), identity(self.state))
        apply = self.applies.start(["apply", "-c", str(self.config)], self.environment())
        prefix = PARTIAL_PREFIX if trigger == "partial" else PRUNING_PREFIX
        if trigger == "delay" or not wait_until(
            lambda: (
                any(
                    name.startswith(prefix) and name not in listed
                    for name in os.listdir(self.target)
                )
                if self.target.is_dir()
                else False
            ),
            apply,
        ):
            durations = sorted(self.apply_seconds[-20:]) or [0.4]
            apply.wait_at_most(durations[len(durations) // 2] * delay / 1000)
        else:
            apply.wait_at_most(delay / 500_000)
        number = signal.SIGKILL if how.startswith("SIGKILL") else signal.SIGTERM
        if how.endswith("group"):
            apply.send(number)
        else:
            apply.signal(number)
        code = apply.wait(timeout=60)
        self.note(f"apply {how} ({trigger}, {delay}) at {iso(self.clock)}: exit {code}")
        event(f"{how} ({trigger}): exit {code}")
        finished = {0, 1} if self.may_fail() else {0}
        if number == signal.SIGKILL:
            self.no_traceback(apply.stdout, apply.stderr, f"apply stopped by {how}")
            assert code in finished | {-signal.SIGKILL}, f"{apply}\n{self.story()}"
            deadline = time.monotonic() + 10
            while group_members(apply.pid):
                assert time.monotonic() < deadline, f"the killed apply's worker lives on: {apply}"
                time.sleep(0.01)
            self.end_hooks()
        else:
            self.check_terminated(apply, code, quiet)
        if code == 1:
            assert self.failure_explained(apply.stderr), f"{apply}\n{self.story()}"
        if PARTIAL_PREFIX in " ".join(self.leftovers()):
            event("work left for the next apply to resume")
        self.observe(before, f"apply stopped by {how}")

    def check_terminated(
        self, apply: Apply, code: int, quiet: tuple[dict[str, Entry], dict[str, Entry]]
    ) -> None:
        """An apply sent SIGTERM exits 143 (0, or 1 for a reason the model
        knows, when it finished first) after ending its hooks."""
        self.no_traceback(apply.stdout, apply.stderr, "apply stopped by SIGTERM")
        if code == -signal.SIGTERM:
            # Python dies of the signal (a shell reports 143) before
            # hardsnap's handler is set, and after the run, while it exits:
            # then nothing may have been done yet, or everything.
            if not run_finished(apply.stdout):
                target, state = quiet
                assert identity(self.target) == target, (
                    f"killed by SIGTERM after work began: {apply}\n"
                    f"{differences(identity(self.target), target)}\n{self.story()}"
                )
                assert identity(self.state) == state, (
                    f"killed by SIGTERM after the state was written: {apply}\n{self.story()}"
                )
            return
        finished = {0, 1} if self.may_fail() else {0}
        assert code in finished | {143}, f"{apply}\n{self.story()}"
        if code == 143:
            assert "SIGTERM" in apply.stderr, apply
        assert not processes_with(f"HARDSNAP_TARGET={self.target}".encode()), (
            f"a hook outlived the apply stopped by SIGTERM: {apply}"
        )

    # -- steps: hooks ------------------------------------------------------------------------

    @rule(kind=st.sampled_from(["pre_command", "post_command"]), steps=st.integers(1, 3))
    @precondition(lambda self: bool(self.values))
    def configure_a_failing_hook(self, kind: str, steps: int) -> None:
        """A hook that fails (exit 1), configured for the next `steps` steps."""
        self.failing_hooks[kind] = steps
        self.write_config()
        self.note(f"failing {kind} configured for {steps} steps")

    def failing_hooks_expire(self) -> None:
        for kind in sorted(self.failing_hooks):
            self.failing_hooks[kind] -= 1
            if self.failing_hooks[kind] <= 0:
                del self.failing_hooks[kind]
                self.write_config()
                self.note(f"failing {kind} removed")

    @rule(
        kind=st.sampled_from(["pre_command", "post_command"]),
        minutes=st.integers(0, 2 * 24 * 60),
        interrupt=st.booleans(),
    )
    @precondition(lambda self: bool(self.values))
    def apply_with_a_hanging_hook(self, kind: str, minutes: int, interrupt: bool) -> None:
        """A hook that hangs is ended by hook_timeout (or by a SIGTERM to
        hardsnap): the apply returns at once, the hook's processes gone."""
        self.clock += dt.timedelta(minutes=minutes)
        started = self.root / "hook-started"
        started.unlink(missing_ok=True)
        hook = f"touch {shlex.quote(str(started))}; sleep 30"
        self.write_config(**{kind: hook, "hook_timeout": 1})
        before = self.present_snapshots()
        quiet = (identity(self.target), identity(self.state))
        began = time.monotonic()
        apply = self.applies.start(["apply", "-c", str(self.config)], self.environment())
        if interrupt and wait_until(started.exists, apply):
            # Well after the hook started: hardsnap waits for it by now.
            # (A SIGTERM in the moment hardsnap starts a hook is a known bug.)
            apply.wait_at_most(0.1)
            apply.signal(signal.SIGTERM)
        code = apply.wait(timeout=60)
        elapsed = time.monotonic() - began
        self.note(f"apply with hanging {kind} (SIGTERM {interrupt}): exit {code}, {elapsed:.1f}s")
        event(f"hanging {kind}, SIGTERM {interrupt}: exit {code}")
        assert elapsed < 15, f"the hanging hook kept apply {elapsed:.1f} s: {apply}"
        if interrupt:
            self.check_terminated(apply, code, quiet)
        self.no_traceback(apply.stdout, apply.stderr, "apply with a hanging hook")
        assert not processes_with(f"HARDSNAP_TARGET={self.target}".encode()), (
            f"the hanging hook outlived its apply: {apply}"
        )
        if started.exists():
            assert code == (143 if interrupt else 1), f"{apply}\n{self.story()}"
            if code == 1:
                assert "timed out" in apply.stderr, apply
        else:
            assert code in ({0, 1} if self.may_fail() else {0}), f"{apply}\n{self.story()}"
        self.write_config()
        self.observe(before, f"apply with a hanging {kind}")

    # -- steps: the target -------------------------------------------------------------------

    @rule()
    @precondition(lambda self: bool(self.values) and "FOREIGN.txt" not in self.hand_made)
    def plant_a_foreign_file(self) -> None:
        path = self.target / "FOREIGN.txt"
        path.write_bytes(b"someone else's notes\n")
        os.utime(path, ns=(ODD_NS, ODD_NS))
        self.hand_made["FOREIGN.txt"] = identity(path)
        self.note("planted FOREIGN.txt")

    @rule(days=st.integers(0, 300))
    @precondition(lambda self: bool(self.values) and not self.disk_full())
    def plant_a_future_snapshot(self, days: int) -> None:
        """A snapshot-named directory dated after any clock of this machine,
        holding the source's files with other bytes but the same size,
        mtime, mode and owner: used as a reference, it would leak them."""
        name = name_of(FAR_FUTURE + dt.timedelta(days=days))
        if name in self.hand_made:
            return
        copy = self.target / name
        shutil.copytree(self.source, copy, symlinks=True)
        for relative, path, _ in entries_below(copy):
            original = os.lstat(self.source / relative)
            if stat.S_ISREG(original.st_mode) and original.st_size:
                with open(path, "r+b") as stream:
                    stream.write(b"X" * original.st_size)
            os.chown(path, original.st_uid, original.st_gid, follow_symlinks=False)
            if not stat.S_ISLNK(original.st_mode):
                os.chmod(path, stat.S_IMODE(original.st_mode))
            mtime = original.st_mtime_ns
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
        self.hand_made[name] = identity(copy)
        self.note(f"planted future {name}")

    @rule()
    @precondition(lambda self: bool(self.values) and name_of(LONG_AGO) not in self.hand_made)
    def plant_a_snapshot_named_symlink(self) -> None:
        """A symlink named like an old snapshot, pointing outside: not a
        snapshot, never pruned, never followed."""
        path = self.target / name_of(LONG_AGO)
        path.symlink_to(self.outside)
        self.hand_made[path.name] = identity(path)
        self.note(f"planted symlink {path.name}")

    @rule(leave_kib=st.integers(0, 96))
    @precondition(lambda self: self.mounted is not None and bool(self.values))
    def the_disk_fills_up(self, leave_kib: int) -> None:
        """Another writer fills the target's filesystem, leaving `leave_kib` KiB."""
        assert self.mounted is not None
        info = os.statvfs(self.mounted)
        free = info.f_bavail * info.f_frsize
        have = self.filler.stat().st_size if self.filler.exists() else 0
        size = max(0, have + free - leave_kib * 1024)
        with open(self.filler, "wb") as stream, contextlib.suppress(OSError):
            stream.write(b"\0" * size)
        self.note(f"disk filled, {leave_kib} KiB left")

    @rule()
    @precondition(lambda self: self.mounted is not None and self.filler.exists())
    def the_disk_is_freed(self) -> None:
        self.filler.unlink()
        self.note("disk freed")

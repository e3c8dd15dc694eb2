"""A model-based test: random sequences of steps drive the real CLI, as a
process, on real directories, and after every step a small model of what
must be on disk is checked.

Steps: `apply` and `plan` at the model's clock, the clock moving forward
(hours, days, now and then months) and back (skew), edits of the source
(new file, new content, chmod, chown, a user.* xattr, rename, delete, a
file replaced by a directory and back), applies killed with SIGKILL or
SIGTERM at a random moment, hand-made entries in the target, failing and
hanging hooks, and (on a small tmpfs) a disk that fills up.

After every step:
1. every snapshot-named directory is a complete snapshot: it equals the
   source as it was when that snapshot was taken (content, mode, mtime,
   owner, xattrs, symlinks when kept), its files are the inodes they were,
   a new one is named after the clock and fills an empty window, and one
   that is gone had expired (older than `retain` days, not among the
   `keep_min` newest, not dated after now, and not while a gap longer than
   `retain` plus one window suspends pruning: the clock sanity rule);
2. nothing outside the target and the state directory changed (a sentinel
   directory beside them, which symlinks in the source and the target point to);
3. no command printed a traceback, and every exit code is one the SPEC
   lists for what happened;
4. the hand-made entries of the target are untouched (same inodes, ctimes,
   contents): never linked to, used as a reference or pruned;
5. a plain apply then converges (exit 0 unless a failing hook is
   configured or the disk is full), says whether pruning is suspended as
   the model does, and a second one right after reports `settled`; a third
   is allowed only after keep_min 0 pruned the window's own snapshot.

The default run is short. A soak run needs no code change:
`HARDSNAP_SOAK_EXAMPLES=500 [HARDSNAP_SOAK_STEPS=40] .venv/bin/pytest tests/faults/test_model.py`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.faults.model_faults import Faults
from tests.faults.model_support import (
    DISK_FULL,
    ODD_NS,
    SNAPSHOT_NAME,
    SOAK_EXAMPLES,
    SOAK_STEPS,
    START,
    Entry,
    differences,
    identity,
    iso,
    name_of,
    processes_with,
    real_directory,
    state_files,
)
from tests.world.cli import Finished, run
from tests.world.processes import Applies
from tests.world.site import write_config

# -- the machine -----------------------------------------------------------------------------


class HardsnapMachine(Faults):
    """One resource "r": a tiny source, a target, a state directory and an
    outside sentinel beside them, driven by the real CLI."""

    def __init__(self, base: Path, on_tmpfs: bool) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="model-", dir=base))
        self.mounted: Path | None = None
        self.applies = Applies(self.root / "logs").__enter__()
        self.source = self.root / "src"
        self.outside = self.root / "outside"
        self.state = self.root / "state"
        self.config = self.root / "hardsnap.yaml"
        self.hook_log = self.root / "hooks.log"
        self.hook_log.touch()
        if on_tmpfs:
            self.mounted = self.root / "disk"
            self.mounted.mkdir()
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(self.mounted)], check=True
            )
            self.target = self.mounted / "dst"
            self.filler = self.mounted / "filler"
        else:
            self.target = self.root / "dst"
            self.filler = self.root / "no-filler"
        self.clock = START
        self.mtime_counter = 0
        self.values: dict[str, Any] = {}
        self.symlinks_kept = False
        # Snapshot name -> the source's contents when it was taken, and its inodes.
        self.snapshots: dict[str, dict[str, Entry]] = {}
        self.snapshot_inodes: dict[str, dict[str, int]] = {}
        # Hand-made target entries (name -> identity), never to be touched.
        self.hand_made: dict[str, dict[str, Entry]] = {}
        # A failing hook's kind -> how many more steps it stays configured.
        self.failing_hooks: dict[str, int] = {}
        self.last_plan: dict[str, Any] | None = None
        # The newest snapshot an apply left while pruning was not suspended,
        # as the state records it (the clock sanity rule).
        self.accepted: str | None = None
        # How long whole applies took: signals are sent at fractions of that.
        self.apply_seconds: list[float] = []
        self.history: list[str] = []
        self.make_outside()
        self.make_source()
        self.outside_before = identity(self.outside)

    # -- set-up ------------------------------------------------------------------------------

    def make_outside(self) -> None:
        """What an escaping walk or prune would read, link or remove."""
        self.outside.mkdir()
        (self.outside / "passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\n")
        decoy = self.outside / name_of(START - dt.timedelta(days=400))
        decoy.mkdir()
        (decoy / "a").write_bytes(b"not a snapshot")

    def fresh_mtime(self) -> int:
        """A new mtime for every write: hardsnap sees a change by size and mtime."""
        self.mtime_counter += 1
        return ODD_NS + self.mtime_counter * 1_000_000_007

    def write_file(self, path: Path, data: bytes, mode: int) -> None:
        path.write_bytes(data)
        os.chmod(path, mode)
        mtime = self.fresh_mtime()
        os.utime(path, ns=(mtime, mtime))

    def make_source(self) -> None:
        (self.source / "sub" / "deep").mkdir(parents=True)
        self.write_file(self.source / "a", b"alpha\n", 0o644)
        self.write_file(self.source / "c.txt", b"", 0o600)
        self.write_file(self.source / "sub" / "b", b"bravo" * 20, 0o640)
        self.write_file(self.source / "sub" / "deep" / "d.bin", bytes(range(256)), 0o755)
        if hasattr(os, "setxattr"):  # not in the masked platform run
            os.setxattr(self.source / "sub" / "b", "user.alpha", b"first")
        link = self.source / "out-link"
        link.symlink_to(self.outside)
        os.utime(link, ns=(ODD_NS, ODD_NS), follow_symlinks=False)

    @initialize(
        schedule=st.sampled_from(["daily", "hourly", "weekly"]),
        retain=st.integers(1, 5),
        keep_min=st.integers(0, 2),
        cross_fs=st.sampled_from(["copy", "link", "warn"]),
        min_free_space=st.sampled_from([0, "64K"]),
        symlinks=st.sampled_from(["skip", "keep"]),
    )
    def configure(
        self,
        schedule: str,
        retain: int,
        keep_min: int,
        cross_fs: str,
        min_free_space: int | str,
        symlinks: str,
    ) -> None:
        self.values = {
            "name": "r",
            "type": "backup",
            "source_dir": str(self.source),
            "target_path": str(self.target),
            "schedule": schedule,
            "retain": str(retain),
            "keep_min": keep_min,
            "min_free_space": min_free_space if self.mounted else 0,
            "symlinks": symlinks,
        }
        if self.mounted:
            self.values["cross_fs"] = cross_fs
        self.symlinks_kept = symlinks == "keep"
        self.write_config()
        # The target exists already, with a symlink out planted in it.
        self.target.mkdir(mode=0o700)
        (self.target / "escape").symlink_to(self.outside)
        self.hand_made["escape"] = identity(self.target / "escape")
        self.note(f"config {self.values}")

    def write_config(self, **extra: Any) -> None:
        values = dict(self.values)
        for kind in sorted(self.failing_hooks):
            values[kind] = f"echo {kind} >> {shlex.quote(str(self.hook_log))}; exit 1"
        values.update(extra)
        write_config(self.config, values)

    def teardown(self) -> None:
        self.applies.__exit__(None, None, None)
        self.end_hooks()
        if (
            self.mounted is not None
            and os.path.ismount(self.mounted)
            and subprocess.run(["umount", str(self.mounted)], capture_output=True).returncode
        ):
            subprocess.run(["umount", "-l", str(self.mounted)], check=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def end_hooks(self) -> None:
        """End hooks a SIGKILLed apply left running, as systemd ends a unit's cgroup."""
        variable = f"HARDSNAP_TARGET={self.target}".encode()
        for pid in processes_with(variable):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def note(self, line: str) -> None:
        self.history.append(line)

    # -- running the CLI ---------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        values = dict(os.environ, HARDSNAP_STATE_DIR=str(self.state), NO_COLOR="1")
        values["COLUMNS"] = "300"
        values["HARDSNAP_NOW"] = iso(self.clock)
        return values

    def command(self, *arguments: str) -> Finished:
        done = run([*arguments, "-c", str(self.config)], self.environment(), timeout=120)
        self.note(f"{' '.join(arguments)} at {iso(self.clock)}: exit {done.returncode}")
        self.no_traceback(done.stdout, done.stderr, " ".join(arguments))
        return done

    def no_traceback(self, stdout: str, stderr: str, what: str) -> None:
        assert "Traceback" not in stderr and "Traceback" not in stdout, (
            f"{what} printed a traceback:\n{stderr}\n{self.story()}"
        )

    def story(self) -> str:
        return "history:\n  " + "\n  ".join(self.history[-40:])

    def disk_full(self) -> bool:
        """Whether the target's small filesystem is (nearly) full."""
        if self.mounted is None:
            return False
        info = os.statvfs(self.mounted)
        return self.filler.exists() or info.f_bavail * info.f_frsize < 1 << 20

    def may_fail(self) -> bool:
        """Whether an apply may exit 1: a failing hook is configured or the disk is full."""
        return bool(self.failing_hooks) or self.disk_full()

    def failure_explained(self, stderr: str) -> bool:
        """A failed apply says a reason the model expects."""
        hooks = bool(self.failing_hooks) and any(
            f"{kind} failed" in stderr for kind in self.failing_hooks
        )
        return hooks or (self.disk_full() and DISK_FULL.search(stderr) is not None)

    def apply(self, *options: str) -> Finished:
        """One apply to its end, checked against the model."""
        before = self.present_snapshots()
        began = time.monotonic()
        done = self.command("apply", *options)
        self.apply_seconds.append(time.monotonic() - began)
        allowed = {0, 1} if self.may_fail() else {0}
        assert done.returncode in allowed, f"apply: {done}\n{self.story()}"
        if done.returncode == 1:
            assert self.failure_explained(done.stderr), f"apply failed: {done}\n{self.story()}"
        self.observe(before, "apply")
        return done

    def apply_json(self) -> tuple[Finished, dict[str, Any]]:
        done = self.apply("--json")
        document: dict[str, Any] = json.loads(done.stdout)
        resource: dict[str, Any] = document["resources"][0]
        return done, resource

    # -- steps: the clock --------------------------------------------------------------------

    @rule(minutes=st.integers(30, 3 * 24 * 60))
    def clock_forward(self, minutes: int) -> None:
        self.clock += dt.timedelta(minutes=minutes)
        self.note(f"clock +{minutes} min -> {iso(self.clock)}")

    @rule(days=st.integers(30, 240))
    def clock_jumps_months(self, days: int) -> None:
        self.clock += dt.timedelta(days=days)
        self.note(f"clock +{days} days -> {iso(self.clock)}")

    @rule(minutes=st.integers(1, 2 * 24 * 60))
    def clock_back(self, minutes: int) -> None:
        self.clock -= dt.timedelta(minutes=minutes)
        self.note(f"clock -{minutes} min -> {iso(self.clock)}")

    # -- steps: apply and plan ---------------------------------------------------------------

    @rule()
    def apply_a_day_later(self) -> None:
        """The daily timer. (With no arguments and first by name, this rule
        is also what the simplest example hypothesis tries runs at every step.)"""
        self.clock += dt.timedelta(days=1)
        self.apply()

    @rule(minutes=st.integers(0, 2 * 24 * 60), as_json=st.booleans())
    def apply_later(self, minutes: int, as_json: bool) -> None:
        self.clock += dt.timedelta(minutes=minutes)
        self.apply(*(["--json"] if as_json else []))

    @rule(
        minutes=st.integers(0, 3 * 24 * 60),
        variant=st.sampled_from(["--json", "--detailed-exitcode", ""]),
    )
    def plan(self, minutes: int, variant: str) -> None:
        """Plan changes nothing: no file in the target or the state
        directory, no hook run."""
        self.clock += dt.timedelta(minutes=minutes)
        before = [identity(self.target), identity(self.hook_log), identity(self.state)]
        done = self.command("plan", *([variant] if variant else []))
        allowed = {0, 1, 2} if variant == "--detailed-exitcode" else {0, 1}
        assert done.returncode in allowed, f"plan: {done}\n{self.story()}"
        if done.returncode == 1:
            assert self.disk_full(), f"plan: {done}\n{self.story()}"
        after = [identity(self.target), identity(self.hook_log), identity(self.state)]
        before[2], after[2] = state_files(before[2], after[2])
        for what, now, earlier in zip(("target", "hook log", "state"), after, before, strict=True):
            assert now == earlier, (
                f"plan changed the {what}: {differences(now, earlier)}\n{self.story()}"
            )
        if variant == "--json":
            document = json.loads(done.stdout)
            resource = document["resources"][0]
            if resource["refusal"] is None:
                self.last_plan = resource

    @rule()
    @precondition(lambda self: bool(self.values))
    def audit(self) -> None:
        """state show lists the snapshots on disk; verify finds them clean."""
        shown = self.command("state", "show", "--json")
        assert shown.returncode == 0, shown
        record = json.loads(shown.stdout)["resources"]["r"]
        listed = {entry["name"] for entry in record["snapshots"]}
        on_disk = self.present_snapshots() | {
            name
            for name in self.hand_made
            if SNAPSHOT_NAME.fullmatch(name) and real_directory(self.target / name)
        }
        assert listed == on_disk, f"state show lists {listed}, the target holds {on_disk}"
        names = sorted(self.present_snapshots())
        if names:
            checked = run(
                ["verify", "r", *names, "--content", "-c", str(self.config)],
                self.environment(),
            )
            self.no_traceback(checked.stdout, checked.stderr, "verify")
            assert checked.returncode == 0, f"verify: {checked}\n{self.story()}"


# -- the tests -------------------------------------------------------------------------------


def machine_settings(examples: int, steps: int) -> settings:
    return settings(
        max_examples=SOAK_EXAMPLES or examples,
        stateful_step_count=SOAK_STEPS or (25 if SOAK_EXAMPLES else steps),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        report_multiple_bugs=False,
    )


def machine(base: Path, on_tmpfs: bool) -> type[HardsnapMachine]:
    """The machine with its place (hypothesis makes one per example)."""

    class Machine(HardsnapMachine):
        def __init__(self) -> None:
            super().__init__(base, on_tmpfs)

    return Machine


def can_mount_tmpfs(base: Path) -> str | None:
    """None when a tmpfs can be mounted here, else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    point = Path(tempfile.mkdtemp(prefix="probe-", dir=base))
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        return "no mount command"
    if done.returncode != 0:
        return f"mount -t tmpfs refused: {done.stderr.strip() or done.returncode}"
    subprocess.run(["umount", str(point)], check=True)
    point.rmdir()
    return None


@pytest.mark.slow
def test_random_steps_keep_every_snapshot_complete_and_converge(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("model")
    run_state_machine_as_test(machine(base, on_tmpfs=False), settings=machine_settings(2, 12))


@pytest.mark.slow
def test_random_steps_on_a_small_tmpfs_that_fills_up_keep_every_snapshot_complete(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("model-tmpfs")
    reason = can_mount_tmpfs(base)
    if reason is not None:
        pytest.skip(reason)
    run_state_machine_as_test(machine(base, on_tmpfs=True), settings=machine_settings(2, 8))

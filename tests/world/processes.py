"""Real `hardsnap` processes for tests that signal, stop or race them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.world.cli import hardsnap_command


@dataclass
class Apply:
    """A `hardsnap` subprocess in a session of its own, output in files."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, number: signal.Signals) -> None:
        """Signal its whole process group (it and its hooks)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, number)

    def signal(self, number: signal.Signals) -> None:
        """Signal the hardsnap process alone, as systemd's KillMode=mixed or
        a Ctrl-C to a foreground job whose hooks run in groups of their own."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, number)

    def kill(self) -> None:
        self.send(signal.SIGKILL)

    def wait(self, timeout: float = 300) -> int:
        return self.process.wait(timeout=timeout)

    def wait_at_most(self, seconds: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=seconds)

    def stop(self) -> None:
        """SIGSTOP it and wait until the kernel reports it stopped."""
        self.send(signal.SIGSTOP)
        _, status = os.waitpid(self.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), f"apply {self.pid} ended instead of stopping"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def __str__(self) -> str:
        return f"pid {self.pid} exit {self.process.returncode}\n{self.stdout}\n{self.stderr}"


class Applies:
    """Starts hardsnap processes; every one still running at the end is killed."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Apply] = []

    def __enter__(self) -> Applies:
        self.logs.mkdir(exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        for apply in self.started:
            if apply.alive():
                apply.kill()
                apply.wait()

    def start(self, arguments: list[str], environment: dict[str, str]) -> Apply:
        number = len(self.started)
        stdout, stderr = self.logs / f"{number}.out", self.logs / f"{number}.err"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            process = subprocess.Popen(
                [*hardsnap_command(), *arguments],
                env=environment,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        apply = Apply(process, stdout, stderr)
        self.started.append(apply)
        return apply


def wait_for_entry(target: Path, wanted: Callable[[str], bool], apply: Apply) -> bool:
    """Poll `target` until an entry `wanted` appears; False if the apply ended first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if any(wanted(name) for name in os.listdir(target)):
                return True
        if not apply.alive():
            return False
        time.sleep(0.001)
    pytest.fail(f"no wanted entry appeared in {target} within 120 s")


def wait_for_file(path: Path, apply: Apply, timeout: float = 120) -> None:
    """Poll until `path` exists; fail if the process ended first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert apply.alive(), f"{path} never appeared: {apply}"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.005)


CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")


class SlowThreads:
    """A cgroup (version 1's cpu controller, where threads of one process
    may sit in different groups) whose threads share 1 % of one CPU: what a
    process's helper threads take long over stands in for a big file or a
    slow disk, while its main thread runs at full speed."""

    def __init__(self, group: Path) -> None:
        self.group = group
        self.moved: set[int] = set()

    def take_helpers(self, pid: int) -> int:
        """Move every thread of process `pid` but its main one into the
        group; return how many are in it."""
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(f"/proc/{pid}/task"):
                thread = int(name)
                if thread != pid and thread not in self.moved:
                    with contextlib.suppress(OSError):  # ended meanwhile
                        (self.group / "tasks").write_text(f"{thread}\n")
                        self.moved.add(thread)
        return len(self.moved)


@contextlib.contextmanager
def slow_threads(name: str) -> Iterator[SlowThreads]:
    """A SlowThreads group, removed at the end (once its threads ended);
    skip where cgroup v1's cpu controller cannot be used."""
    if os.geteuid() != 0 or not (CPU_CGROUPS / "cpu.cfs_quota_us").exists():
        pytest.skip("slowing threads needs root and cgroup v1's cpu controller")
    group = CPU_CGROUPS / f"hardsnap-test-{os.getpid()}-{name}"
    try:
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text("100000\n")
        (group / "cpu.cfs_quota_us").write_text("1000\n")
    except OSError as error:
        with contextlib.suppress(OSError):
            group.rmdir()
        pytest.skip(f"cannot make a cpu cgroup: {error.strerror}")
    try:
        yield SlowThreads(group)
    finally:
        deadline = time.monotonic() + 10
        while True:
            try:
                group.rmdir()
                break
            except OSError:  # busy until its last thread has ended
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process. A zombie (ended, not yet reaped by an
    init that may never reap it) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def wait_until_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True

"""Running one command for the benchmark: wall seconds, CPU seconds, and
peak memory as the sum of PSS over the command and all its descendants.

PSS (proportional set size, /proc/PID/smaps_rollup) counts a page shared
by N processes as 1/N in each, so the sum over a forking program is what
it really holds; summed RSS would count the pages its workers share with
it once per process.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# How often the process tree's memory is read while a command runs.
SAMPLE_SECONDS = 0.01


@dataclass(frozen=True)
class Run:
    """One run of a command."""

    wall: float
    # User + system seconds of the command and every descendant it waited for.
    cpu: float
    # Peak of the summed PSS over the process tree, in KiB.
    pss_kib: int


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(
                int(child)
                for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            )
        except OSError:
            continue
    return found


def tree_pss_kib(pid: int) -> int:
    """The summed PSS (KiB) of `pid` and all its descendants, now."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except (OSError, ValueError):
            continue
        pending.extend(_children(current))
    return total


def run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Run a command to its end; raise SystemExit if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = 0
    finished = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not finished.is_set():
            peak = max(peak, tree_pss_kib(process.pid))
            finished.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert process.stderr is not None
    errors = process.stderr.read()  # until the command (and its workers) closed it
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    finished.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} failed ({process.returncode}): {errors.decode()[-2000:]}")
    return Run(elapsed, usage.ru_utime + usage.ru_stime, peak)


def _first_line(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return f"{command[0]}: not installed"
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    return output.splitlines()[0] if output else f"{command[0]}: unknown version"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _mount_of(path: Path) -> str:
    """The filesystem type and options `path` is on, from mountinfo."""
    best = ("", "unknown filesystem")
    resolved = str(path.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return best[1]
    for line in lines:
        fields = line.split()
        mount_point = fields[4]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best[0]):
            after = fields[fields.index("-") + 1 :]
            best = (mount_point, f"{after[0]} ({after[1]}, {fields[5]})")
    return best[1]


def machine(where: Path, hardsnap: list[str]) -> list[str]:
    """Lines that say what the figures were measured on and with."""
    version = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent,
    ).stdout.strip()
    return [
        f"machine: {len(os.sched_getaffinity(0))} CPUs ({_cpu_model()}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB, "
        f"Linux {platform.release()}",
        f"filesystem: {_mount_of(where)}",
        f"tools: {_first_line(['cp', '--version'])}; {_first_line(['rsync', '--version'])}",
        f"hardsnap: {version or 'unknown'} on Python {platform.python_version()} "
        f"({' '.join(hardsnap[:1])})",
    ]

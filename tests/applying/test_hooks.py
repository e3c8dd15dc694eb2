"""The hook gateway with real /bin/sh hooks: exit codes, environment and
stdin kept; output kept as a bounded tail; a background child that holds the
output open does not keep it waiting; a timeout and an interrupt end the
hook's whole process group.

Time bounds are generous upper bounds only (a loaded 2-core machine must not
make them flake): each is far below the sleep it guards against.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardsnap.providers.backup.hooks import (
    OUTPUT_TAIL_BYTES,
    TIMED_OUT_EXIT_CODE,
    HookResult,
    hook_environment,
    run_hook,
)
from tests.world.processes import is_running, wait_until_gone

FIFTY_MIB = 50 * 1024**2


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids a test's hooks started; any still running at the end are killed,
    so a failing test leaves no `sleep 1000` behind."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if is_running(pid):
            os.kill(pid, signal.SIGKILL)


# -- exit codes, environment, stdin -------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_run_hook_keeps_the_exit_code(tmp_path: Path, code: int) -> None:
    result = run_hook(f"exit {code}", environment(), str(tmp_path))

    assert result.exit_code == code
    assert result.succeeded is (code == 0)
    assert result.timed_out is False


def test_run_hook_of_a_command_killed_by_a_signal_does_not_succeed(tmp_path: Path) -> None:
    result = run_hook("kill -9 $$", environment(), str(tmp_path))

    assert result.exit_code != 0
    assert not result.succeeded


def test_run_hook_keeps_stdout_and_stderr_interleaved_in_the_tail(tmp_path: Path) -> None:
    result = run_hook("echo one; echo two >&2; echo three", environment(), str(tmp_path))

    assert result.output_tail == "one\ntwo\nthree\n"


def test_run_hook_runs_in_the_given_folder(tmp_path: Path) -> None:
    result = run_hook("pwd", environment(), str(tmp_path))

    assert result.output_tail.strip() == str(tmp_path)


@pytest.mark.linux_only(reason="the hook reads /proc")
def test_run_hook_gives_the_hook_dev_null_as_stdin(tmp_path: Path) -> None:
    # `cat` would wait for ever on a terminal or an inherited pipe.
    result = run_hook(
        "cat; echo read-ended; readlink /proc/self/fd/0", environment(), str(tmp_path)
    )

    assert result.exit_code == 0
    assert result.output_tail.splitlines() == ["read-ended", "/dev/null"]


@pytest.mark.linux_only(reason="the hook reads /proc")
def test_run_hook_runs_the_hook_in_a_session_of_its_own(tmp_path: Path) -> None:
    # $$ is the shell; fields 5 and 6 of /proc/PID/stat are its group and session.
    result = run_hook("echo $$ $(cut -d' ' -f5,6 /proc/$$/stat)", environment(), str(tmp_path))

    shell, group, session = result.output_tail.split()
    assert shell == group == session
    assert int(session) != os.getsid(0)


def test_hook_environment_values_reach_the_hook_unexpanded(tmp_path: Path) -> None:
    odd = "$(touch pwned) `x` ; 'q' \"d\""
    values = hook_environment("r", odd, "/target", str(tmp_path / "snap"))

    result = run_hook(
        'printf "%s|%s|%s|%s" "$HARDSNAP_RESOURCE" "$HARDSNAP_SOURCE" '
        '"$HARDSNAP_TARGET" "$HARDSNAP_SNAPSHOT"',
        values,
        str(tmp_path),
    )

    assert result.output_tail == f"r|{odd}|/target|{tmp_path / 'snap'}"
    assert not (tmp_path / "pwned").exists()


def test_hook_environment_without_a_snapshot_drops_an_inherited_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HARDSNAP_SNAPSHOT", "/stale")

    values = hook_environment("r", "/source", "/target", None)

    assert "HARDSNAP_SNAPSHOT" not in values
    assert values["HARDSNAP_RESOURCE"] == "r"


def test_run_hook_in_a_missing_folder_fails_with_a_reason(tmp_path: Path) -> None:
    result = run_hook("true", environment(), str(tmp_path / "missing"))

    assert not result.succeeded
    assert "missing" in result.output_tail


def test_hook_result_that_timed_out_never_succeeded() -> None:
    assert not HookResult(0, "", 1.0, timed_out=True).succeeded


# -- output: a bounded tail ---------------------------------------------------------


def test_run_hook_keeps_only_the_last_bytes_of_a_large_output(tmp_path: Path) -> None:
    command = f"head -c {FIFTY_MIB} /dev/zero | tr '\\0' x; echo; echo last-line"

    result = run_hook(command, environment(), str(tmp_path))

    assert result.exit_code == 0
    assert len(result.output_tail.encode()) <= OUTPUT_TAIL_BYTES
    assert result.output_tail.endswith("x\nlast-line\n")


def test_run_hook_tail_cut_inside_a_character_starts_on_a_whole_one(tmp_path: Path) -> None:
    # 3-byte characters: a cut at OUTPUT_TAIL_BYTES falls inside one.
    command = "i=0; while [ $i -lt 2000 ]; do printf '\\342\\202\\254'; i=$((i+1)); done"

    result = run_hook(command, environment(), str(tmp_path))

    assert result.output_tail
    assert set(result.output_tail) == {"\u20ac"}


def test_run_hook_memory_stays_flat_while_a_hook_prints_50_mib(tmp_path: Path) -> None:
    # Measured in a fresh interpreter, whose peak RSS is small and not
    # already raised by earlier tests: holding the output would add 50 MiB.
    script = f"""
import os, resource
from hardsnap.providers.backup.hooks import run_hook
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = run_hook("head -c {FIFTY_MIB} /dev/zero; echo; echo last-line", dict(os.environ), ".")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result.exit_code, len(result.output_tail), (after - before) // 1024)
"""
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    exit_code, tail_length, growth_mib = map(int, completed.stdout.split())
    assert exit_code == 0
    assert tail_length <= OUTPUT_TAIL_BYTES
    assert growth_mib < 16, f"peak memory grew by {growth_mib} MiB"


# -- background children, timeout, interrupt: the whole group ends --------------------


def test_background_child_holding_the_output_open_does_not_keep_run_hook_waiting(
    tmp_path: Path, leftovers: list[int]
) -> None:
    pid_file = tmp_path / "pids"
    started = time.monotonic()

    result = run_hook(f"sleep 1000 & echo $! > {pid_file}; echo done", environment(), str(tmp_path))

    leftovers.extend(pids_in(pid_file))
    assert time.monotonic() - started < 30
    assert result.exit_code == 0
    assert result.output_tail == "done\n"
    assert wait_until_gone(leftovers[0]), "the background child outlived its hook"


def test_background_child_with_its_own_output_is_ended_with_its_hook(
    tmp_path: Path, leftovers: list[int]
) -> None:
    pid_file = tmp_path / "pids"

    result = run_hook(
        f"sleep 1000 >/dev/null 2>&1 & echo $! > {pid_file}", environment(), str(tmp_path)
    )

    leftovers.extend(pids_in(pid_file))
    assert result.succeeded
    assert wait_until_gone(leftovers[0]), "the background child outlived its hook"


def test_child_that_leaves_the_group_cannot_keep_run_hook_waiting(
    tmp_path: Path, leftovers: list[int]
) -> None:
    # setsid escapes the group, so it is not ended; the read still stops.
    pid_file = tmp_path / "pids"
    command = (
        f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 1000' & "
        f"while [ ! -s {pid_file} ]; do sleep 0.05; done; echo done"
    )
    started = time.monotonic()

    result = run_hook(command, environment(), str(tmp_path))

    if pid_file.exists():
        leftovers.extend(pids_in(pid_file))
    assert time.monotonic() - started < 30
    assert result.output_tail == "done\n"


def timed_out(command: str, tmp_path: Path, leftovers: list[int]) -> HookResult:
    """Run `command` as a hook with a timeout of a second, which it must
    reach and be ended at; the pids it wrote to tmp_path/pids are `leftovers`."""
    started = time.monotonic()
    result = run_hook(command, environment(), str(tmp_path), timeout=1)
    leftovers.extend(pids_in(tmp_path / "pids"))
    assert time.monotonic() - started < 30
    assert result.timed_out
    return result


def test_timeout_ends_the_hook_and_everything_it_started(
    tmp_path: Path, leftovers: list[int]
) -> None:
    pid_file = tmp_path / "pids"
    command = f"sleep 100 & echo $! > {pid_file}; echo $$ >> {pid_file}; echo started; sleep 100"

    result = timed_out(command, tmp_path, leftovers)

    assert result.exit_code == TIMED_OUT_EXIT_CODE
    assert not result.succeeded
    assert result.output_tail == "started\n"
    assert len(leftovers) == 2
    for pid in leftovers:
        assert wait_until_gone(pid), f"process {pid} outlived the timeout"


def test_timeout_kills_a_hook_that_ignores_sigterm(tmp_path: Path, leftovers: list[int]) -> None:
    pid_file = tmp_path / "pids"
    command = f"trap '' TERM; echo $$ > {pid_file}; while :; do sleep 1; done"

    timed_out(command, tmp_path, leftovers)

    assert wait_until_gone(leftovers[0])


def test_hook_within_its_timeout_is_not_timed_out(tmp_path: Path) -> None:
    result = run_hook("echo quick", environment(), str(tmp_path), timeout=60)

    assert result.succeeded
    assert not result.timed_out
    assert result.output_tail == "quick\n"


def test_interrupt_while_a_hook_runs_ends_its_group_and_is_raised_again(
    tmp_path: Path, leftovers: list[int]
) -> None:
    # The CLI turns SIGTERM and SIGHUP into KeyboardInterrupt; SIGINT is one already.
    pid_file = tmp_path / "pids"
    command = f"sleep 1000 & echo $! > {pid_file}; echo $$ >> {pid_file}; sleep 1000"

    def interrupt_when_started() -> None:
        deadline = time.monotonic() + 30
        while len(pid_file.read_text().split() if pid_file.exists() else []) < 2:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    # Python raises KeyboardInterrupt on SIGINT only where it was not
    # ignored when the interpreter started (it is, under a background job).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupter = threading.Thread(target=interrupt_when_started)
    interrupter.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_hook(command, environment(), str(tmp_path))
    finally:
        interrupter.join()
        signal.signal(signal.SIGINT, previous)

    leftovers.extend(pids_in(pid_file))
    assert time.monotonic() - started < 30
    for pid in leftovers:
        assert wait_until_gone(pid), f"process {pid} outlived the interrupt"

"""The macOS launchd job and the FreeBSD periodic script and cron line run
hardsnap as those systems would. Checked here without macOS or FreeBSD:
the plist is parsed with plistlib and its command run as launchd would
start it, the periodic script runs under sh against a stand-in for
/etc/defaults/periodic.conf, and the cron line's command runs in sh with
the cron file's own environment."""

from __future__ import annotations

import fcntl
import os
import plistlib
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.world.clock import T0
from tests.world.examples import unit
from tests.world.site import backup_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLIST = EXAMPLES / "launchd" / "org.hardsnap.apply.plist"
PERIODIC = EXAMPLES / "freebsd" / "periodic" / "daily" / "450.hardsnap"
FREEBSD_CRON = EXAMPLES / "freebsd" / "hardsnap.cron"
LINUX_CRON = EXAMPLES / "cron" / "hardsnap.cron"

# Where the examples expect things on both systems.
BINARY = "/usr/local/bin/hardsnap"
CONFIG = "/usr/local/etc/hardsnap/hardsnap.yaml"
STATE = "/var/db/hardsnap"
APPLY = ["apply", "-q", "-c", CONFIG, "--state-dir", STATE]

# The hardsnap of this checkout's environment stands in for BINARY.
INSTALLED = Path(sys.executable).parent / "hardsnap"
SNAPSHOT_AT_T0 = "2026.088.06.00"


def importable() -> dict[str, str]:
    """What lets INSTALLED import this checkout's hardsnap, for commands
    run in an example's own, otherwise clean, environment."""
    return {name: os.environ[name] for name in ("PYTHONPATH",) if name in os.environ}


def on_this_host(words: list[str], config: Path, state: Path) -> list[str]:
    """An example's command with this test's config and state directory
    (and binary) in place of the host's."""
    places = {BINARY: str(INSTALLED), CONFIG: str(config), STATE: str(state)}
    return [places.get(word, word) for word in words]


@pytest.fixture
def held_apply_lock(tmp_path: Path) -> Iterator[Path]:
    """A state directory whose apply lock a running apply holds (this
    process, as a hardsnap apply takes it: an flock, its pid in the file)."""
    state = tmp_path / "held-state"
    state.mkdir(mode=0o700)
    fd = os.open(state / "apply.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, str(os.getpid()).encode())
        yield state
    finally:
        os.close(fd)


# -- launchd (macOS) ---------------------------------------------------------------------

# The keys launchd.plist(5) documents: a misspelt key is ignored by launchd.
LAUNCHD_KEYS = {
    "AbandonProcessGroup",
    "AssociatedBundleIdentifiers",
    "Debug",
    "Disabled",
    "EnableGlobbing",
    "EnableTransactions",
    "EnvironmentVariables",
    "ExitTimeOut",
    "GroupName",
    "HardResourceLimits",
    "InitGroups",
    "KeepAlive",
    "Label",
    "LaunchOnlyOnce",
    "LimitLoadFromHosts",
    "LimitLoadToHosts",
    "LimitLoadToSessionType",
    "LowPriorityBackgroundIO",
    "LowPriorityIO",
    "MachServices",
    "MaterializeDatalessFiles",
    "Nice",
    "OnDemand",
    "ProcessType",
    "Program",
    "ProgramArguments",
    "QueueDirectories",
    "RootDirectory",
    "RunAtLoad",
    "SessionCreate",
    "Sockets",
    "SoftResourceLimits",
    "StandardErrorPath",
    "StandardInPath",
    "StandardOutPath",
    "StartCalendarInterval",
    "StartInterval",
    "StartOnMount",
    "ThrottleInterval",
    "TimeOut",
    "Umask",
    "UserName",
    "WaitForDebugger",
    "WatchPaths",
    "WorkingDirectory",
    "inetdCompatibility",
}
CALENDAR_KEYS = {"Minute", "Hour", "Day", "Weekday", "Month"}


def launchd_job() -> dict[str, Any]:
    with PLIST.open("rb") as stream:
        job = plistlib.load(stream)
    assert isinstance(job, dict)
    return job


def timer_minutes() -> set[int]:
    """The minutes of the hour at which the systemd timer fires
    (OnCalendar=*:START/STEP)."""
    calendar = unit("hardsnap.timer")["Timer"]["OnCalendar"]
    match = re.fullmatch(r"\*:(\d+)/(\d+)", calendar)
    assert match, f"the timer's OnCalendar={calendar} is not *:START/STEP any more"
    return set(range(int(match[1]), 60, int(match[2])))


def test_launchd_plist_is_a_valid_daemon_named_after_its_file() -> None:
    job = launchd_job()
    assert job["Label"] == PLIST.stem == "org.hardsnap.apply"
    assert set(job) <= LAUNCHD_KEYS, set(job) - LAUNCHD_KEYS
    # Runs as root (a LaunchDaemon without UserName), from its program's path.
    assert "UserName" not in job and "Program" not in job
    assert job["ProgramArguments"] == [BINARY, *APPLY]


def test_launchd_plist_starts_on_the_timers_schedule_and_only_then() -> None:
    job = launchd_job()
    # No restart when it exits, no run when it is loaded or at boot.
    for surprise in ("KeepAlive", "OnDemand", "RunAtLoad", "LaunchOnlyOnce", "WatchPaths"):
        assert job.get(surprise, False) is False, surprise
    # Calendar intervals, not StartInterval: launchd runs a calendar job
    # missed during sleep when the Mac wakes (like Persistent=true), and
    # skips a StartInterval firing missed during sleep.
    assert "StartInterval" not in job
    intervals = job["StartCalendarInterval"]
    assert isinstance(intervals, list)
    for interval in intervals:
        assert set(interval) <= CALENDAR_KEYS, interval
        assert set(interval) == {"Minute"}, "every hour of every day"
    assert {interval["Minute"] for interval in intervals} == timer_minutes() == {0, 15, 30, 45}


def test_launchd_plist_stays_out_of_the_way_and_logs() -> None:
    job = launchd_job()
    service = unit("hardsnap.service")["Service"]
    assert job["ProcessType"] == "Background"
    assert job["LowPriorityIO"] is True  # IOSchedulingClass=idle
    assert job["Nice"] == int(service["Nice"]) == 10
    assert job["Umask"] == int(service["UMask"], 8) == 0o077
    assert job["ExitTimeOut"] == int(service["TimeoutStopSec"])
    assert job["StandardOutPath"] == job["StandardErrorPath"] == "/var/log/hardsnap.log"
    path = job["EnvironmentVariables"]["PATH"].split(":")
    assert path[0] == "/usr/local/bin"
    assert {"/usr/bin", "/bin", "/usr/sbin", "/sbin"} <= set(path)
    # Root's hooks get no directory a user owns (Apple silicon Homebrew's).
    assert not any(entry.startswith("/opt/homebrew") for entry in path)


def test_launchd_plist_says_how_to_install_it_in_its_one_comment() -> None:
    comments = re.findall(r"<!--(.*?)-->", PLIST.read_text(), re.DOTALL)
    assert len(comments) == 1
    words = " ".join(comments[0].split())
    assert f"sudo cp {PLIST.name} /Library/LaunchDaemons/" in words
    assert f"sudo launchctl bootstrap system /Library/LaunchDaemons/{PLIST.name}" in words


def test_launchd_command_converges_quietly_as_launchd_starts_it(tmp_path: Path) -> None:
    """launchd's start: the job's argv, its EnvironmentVariables and no
    other, its Umask, stdin from /dev/null, stdout and stderr appended to
    the log. A run that converged writes nothing there."""
    job = launchd_job()
    config, state = backup_config(tmp_path), tmp_path / "db-hardsnap"
    log = tmp_path / "hardsnap.log"
    environment = dict(job["EnvironmentVariables"], HARDSNAP_NOW=T0, **importable())
    with log.open("a") as output:
        done = subprocess.run(
            on_this_host(job["ProgramArguments"], config, state),
            env=environment,
            umask=job["Umask"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
    assert done.returncode == 0, log.read_text()
    assert log.read_text() == ""
    assert (tmp_path / "dst" / SNAPSHOT_AT_T0).is_dir()
    # --state-dir: made by the first apply, 0700 (/var/db/hardsnap).
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


@pytest.mark.skipif(sys.platform != "darwin" or shutil.which("plutil") is None, reason="macOS")
def test_launchd_plist_passes_plutil_lint() -> None:
    done = subprocess.run(["plutil", "-lint", str(PLIST)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# -- periodic (FreeBSD) ------------------------------------------------------------------

DEFAULTS = "/etc/defaults/periodic.conf"
# /etc/crontab's environment on FreeBSD, which periodic passes on.
CRONTAB_ENVIRONMENT = {"SHELL": "/bin/sh", "PATH": "/etc:/bin:/sbin:/usr/bin:/usr/sbin"}

FAKE_HARDSNAP = """#!/bin/sh
printf '%s\\n' "$@" > "$FAKE_RECORD/arguments"
printf '%s\\n' "$PATH" > "$FAKE_RECORD/path"
nice > "$FAKE_RECORD/nice" 2>/dev/null
[ -n "$FAKE_SAYS" ] && printf '%s\\n' "$FAKE_SAYS" >&2
exit "$FAKE_EXIT"
"""


class Periodic:
    """The daily script run as periodic(8) runs it (stdin /dev/null,
    stdout and stderr together), on a stand-in for
    /etc/defaults/periodic.conf: the script's copy sources that instead;
    nothing else in it differs. The stand-in keeps FreeBSD's shape: it
    sets daily_show_* and periodic_conf_files, and source_periodic_confs
    sources the latter (here one periodic.conf)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        text = PERIODIC.read_text()
        assert text.count(DEFAULTS) == 2  # the -r test and the "."
        self.defaults = root / "defaults-periodic.conf"
        self.conf = root / "periodic.conf"
        self.script = root / PERIODIC.name
        self.script.write_text(text.replace(DEFAULTS, str(self.defaults)))
        self.script.chmod(0o555)
        self.defaults.write_text(
            f'periodic_conf_files="{self.conf}"\n'
            'daily_show_success="YES"\n'
            'daily_show_info="YES"\n'
            'daily_show_badconfig="NO"\n'
            "source_periodic_confs() {\n"
            '\tfor i in ${periodic_conf_files}; do [ -r "$i" ] && . "$i"; done\n'
            "}\n"
        )
        self.record = root / "record"
        self.record.mkdir()
        self.fake = root / "bin" / "hardsnap"
        self.fake.parent.mkdir()
        self.fake.write_text(FAKE_HARDSNAP)
        self.fake.chmod(0o755)

    def run(
        self, settings: str, exit_code: int = 0, says: str = "", **environment: str
    ) -> subprocess.CompletedProcess[str]:
        self.conf.write_text(settings)
        fake = {"FAKE_RECORD": str(self.record), "FAKE_EXIT": str(exit_code), "FAKE_SAYS": says}
        return subprocess.run(
            ["sh", str(self.script)],
            cwd=self.root,
            env={**CRONTAB_ENVIRONMENT, "HOME": "/var/log", **fake, **importable(), **environment},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def arguments(self) -> list[str] | None:
        """What the fake hardsnap was called with, or None if it was not."""
        recorded = self.record / "arguments"
        return recorded.read_text().splitlines() if recorded.exists() else None

    def enabled(self, *extra: str) -> str:
        return "\n".join(
            ['daily_hardsnap_enable="YES"', f'daily_hardsnap_program="{self.fake}"', *extra, ""]
        )


@pytest.fixture
def periodic(tmp_path: Path) -> Periodic:
    return Periodic(tmp_path / "periodic")


def test_periodic_script_is_sh_that_periodic_will_run() -> None:
    text = PERIODIC.read_text()
    assert text.startswith("#!/bin/sh\n")
    # periodic(8) silently skips a file without the executable bit.
    assert os.access(PERIODIC, os.X_OK)
    done = subprocess.run(["sh", "-n", str(PERIODIC)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("daily_hardsnap_enable", "daily_hardsnap_flags", "daily_hardsnap_program"):
        assert name in text
    assert "source_periodic_confs" in text


@pytest.mark.parametrize("settings", ["", 'daily_hardsnap_enable="NO"\n'])
def test_periodic_script_disabled_does_nothing_and_says_nothing(
    periodic: Periodic, settings: str
) -> None:
    done = periodic.run(settings)
    assert (done.returncode, done.stdout) == (0, "")
    assert periodic.arguments() is None


def test_periodic_script_without_periodic_conf_does_nothing(periodic: Periodic) -> None:
    periodic.defaults.unlink()
    done = periodic.run("")
    assert (done.returncode, done.stdout) == (0, "")
    assert periodic.arguments() is None


def test_periodic_script_enabled_runs_apply_with_the_default_flags_niced(
    periodic: Periodic,
) -> None:
    done = periodic.run(periodic.enabled())
    assert done.returncode == 0, done.stdout
    assert done.stdout == "\nhardsnap snapshots:\n"
    assert periodic.arguments() == APPLY
    # Hooks find what is installed in /usr/local, which /etc/crontab's PATH lacks.
    assert "/usr/local/bin" in (periodic.record / "path").read_text().strip().split(":")
    # GNU nice without a command prints the niceness (BSD's wants a command).
    niceness = (periodic.record / "nice").read_text().strip()
    if niceness.lstrip("-").isdigit():
        assert int(niceness) == min(19, os.nice(0) + 10)


def test_periodic_script_passes_its_flags_as_words_and_globs_none(periodic: Periodic) -> None:
    (periodic.root / "etc-backup").mkdir()  # what etc-* would match in the cwd
    flags = 'daily_hardsnap_flags="-c /usr/local/etc/hardsnap/other.yaml --resource etc-*"'
    done = periodic.run(periodic.enabled(flags))
    assert done.returncode == 0, done.stdout
    assert periodic.arguments() == [
        "apply",
        "-c",
        "/usr/local/etc/hardsnap/other.yaml",
        "--resource",
        "etc-*",
    ]


@pytest.mark.parametrize(
    ("exit_code", "says", "returns", "note"),
    [
        (0, "", 0, None),
        # -q: anything printed on success is a warning: notable (show_info).
        (0, "hardsnap: warning: r: a snapshot dated after now", 1, None),
        # Printed as it was: dash's echo would make a newline of this \n.
        (0, r"hardsnap: warning: r: cannot read C:\new", 1, None),
        # Another apply holds the lock: that run converges, nothing failed.
        (75, "hardsnap: another hardsnap apply (pid 4242) holds the lock", 0, "(exit 75)"),
        # Failures: 3, which periodic never masks (2 is masked by default).
        (1, "hardsnap: r: snapshot failed", 3, "hardsnap apply failed (exit 1)"),
        (2, "hardsnap.yaml:3:5: unknown key", 3, "hardsnap apply failed (exit 2)"),
        (143, "", 3, "hardsnap apply failed (exit 143)"),
        (130, "", 3, "hardsnap apply failed (exit 130)"),
    ],
)
def test_periodic_script_maps_hardsnaps_exit_to_periodics(
    periodic: Periodic, exit_code: int, says: str, returns: int, note: str | None
) -> None:
    done = periodic.run(periodic.enabled(), exit_code=exit_code, says=says)
    assert done.returncode == returns, done.stdout
    assert periodic.arguments() == APPLY
    lines = done.stdout.splitlines()
    assert lines[:2] == ["", "hardsnap snapshots:"]
    if says:
        assert says in lines
    if note is None:
        assert len(lines) == 2 + bool(says)
    else:
        assert note in lines[-1]


def test_periodic_script_enabled_without_hardsnap_is_a_bad_config(periodic: Periodic) -> None:
    settings = 'daily_hardsnap_enable="YES"\ndaily_hardsnap_program="/nonexistent/hardsnap"\n'
    done = periodic.run(settings)
    assert done.returncode == 2, done.stdout
    assert "/nonexistent/hardsnap is not an executable" in done.stdout
    assert periodic.arguments() is None


def test_periodic_script_runs_the_real_hardsnap(
    periodic: Periodic, tmp_path: Path, held_apply_lock: Path
) -> None:
    config = backup_config(tmp_path)

    def settings(state: Path) -> str:
        flags = shlex.join(on_this_host(APPLY[1:], config, state))
        return "\n".join(
            [
                'daily_hardsnap_enable="YES"',
                f'daily_hardsnap_program="{INSTALLED}"',
                f'daily_hardsnap_flags="{flags}"',
                "",
            ]
        )

    done = periodic.run(settings(tmp_path / "db-hardsnap"), HARDSNAP_NOW=T0)
    assert (done.returncode, done.stdout) == (0, "\nhardsnap snapshots:\n")
    assert (tmp_path / "dst" / SNAPSHOT_AT_T0).is_dir()
    # Another apply still running: it holds the lock, hardsnap exits 75,
    # periodic hears 0 and the report says why nothing was done.
    done = periodic.run(settings(held_apply_lock), HARDSNAP_NOW="2026-03-30T06:00:00Z")
    assert done.returncode == 0, done.stdout
    assert f"(pid {os.getpid()}) holds the lock" in done.stdout
    assert "(exit 75)" in done.stdout.splitlines()[-1]
    assert not (tmp_path / "dst" / "2026.089.06.00").exists()


# -- cron (FreeBSD) ----------------------------------------------------------------------

ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
TIME_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?)(/\d+)?)*$")


def crontab(path: Path) -> tuple[dict[str, str], list[str]]:
    """A crontab's environment settings and job lines."""
    environment: dict[str, str] = {}
    jobs: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        assignment = ASSIGNMENT.match(stripped)
        if assignment:
            environment[assignment[1]] = assignment[2]
        else:
            jobs.append(stripped)
    return environment, jobs


def test_freebsd_cron_file_is_a_system_crontab_with_a_user_column() -> None:
    environment, jobs = crontab(FREEBSD_CRON)
    assert jobs, "no job line"
    for job in jobs:
        fields = job.split(None, 6)
        assert len(fields) == 7, job
        for field in fields[:5]:
            assert TIME_FIELD.match(field), (field, job)
        assert fields[5] == "root"
    assert environment["SHELL"] == "/bin/sh"
    assert environment["MAILTO"] == "root"
    assert "/usr/local/bin" in environment["PATH"].split(":")


def test_freebsd_cron_line_runs_like_the_linux_one_without_ionice() -> None:
    _, jobs = crontab(FREEBSD_CRON)
    _, linux_jobs = crontab(LINUX_CRON)
    assert len(jobs) == len(linux_jobs) == 1
    fields, linux_fields = jobs[0].split(None, 6), linux_jobs[0].split(None, 6)
    assert fields[:5] == linux_fields[:5] == ["*/15", "*", "*", "*", "*"]
    words = shlex.split(fields[6])
    assert words[:3] == ["nice", "-n", "10"]
    assert "ionice" not in words  # Linux only
    assert "flock" not in words  # neither: hardsnap takes its own locks (exit 75)
    assert words[3:] == ["hardsnap", *APPLY]


def test_freebsd_cron_command_converges_silently_in_the_files_environment(
    tmp_path: Path,
) -> None:
    """The job's command run as cron runs it: by SHELL -c, with the cron
    file's PATH, where this environment's hardsnap stands in for
    /usr/local/bin. No output: cron mails nothing."""
    environment, jobs = crontab(FREEBSD_CRON)
    config, state = backup_config(tmp_path), tmp_path / "db-hardsnap"
    command = shlex.join(on_this_host(shlex.split(jobs[0].split(None, 6)[6]), config, state))
    path = environment["PATH"].replace("/usr/local/bin", str(INSTALLED.parent))
    done = subprocess.run(
        [environment["SHELL"], "-c", command],
        env={"PATH": path, "HOME": str(tmp_path), "HARDSNAP_NOW": T0, **importable()},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done
    assert done.stdout + done.stderr == ""
    assert (tmp_path / "dst" / SNAPSHOT_AT_T0).is_dir()


def test_every_new_platform_example_uses_the_same_config_and_state() -> None:
    for example in (PLIST, PERIODIC, FREEBSD_CRON):
        text = example.read_text()
        assert CONFIG in text and STATE in text, example
        # Not the Linux defaults, which these systems lack or keep elsewhere.
        assert "/var/lib/hardsnap" not in text, example
        assert " /etc/hardsnap/" not in text and ">/etc/hardsnap/" not in text, example

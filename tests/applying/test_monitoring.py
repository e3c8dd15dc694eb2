"""Monitoring as admins watch backups: healthchecks-style pings to a real
HTTP server on 127.0.0.1, the on_failure hook, and the metrics file read
back with Prometheus' own text-format parser."""

from __future__ import annotations

import http.server
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.world.cli import hardsnap_command
from tests.world.clock import at, name_of
from tests.world.files import make_file, read_metrics
from tests.world.site import Site, new_site, write_config
from tests.world.users import NOBODY


@dataclass
class Received:
    path: str
    body: str


@dataclass
class PingServer:
    url: str
    received: list[Received] = field(default_factory=list)
    # Status the server answers with.
    status: int = 200


@pytest.fixture
def pings() -> Iterator[PingServer]:
    server_state = PingServer("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            server_state.received.append(Received(self.path, body))
            self.send_response(server_state.status)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *arguments: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}/ping/abc"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return new_site(tmp_path)


def paths(server: PingServer) -> list[str]:
    return [ping.path.removeprefix("/ping/abc") or "/" for ping in server.received]


def test_a_changed_run_pings_start_then_success_and_a_settled_one_nothing(
    site: Site, pings: PingServer
) -> None:
    site.write(ping_url=pings.url)
    assert site.apply(at(0)).returncode == 0
    assert paths(pings) == ["/start", "/"]
    assert name_of(at(0)) in pings.received[1].body and "changed" in pings.received[1].body
    assert site.apply(at(0, hours=1)).returncode == 0  # same window: settled
    assert paths(pings) == ["/start", "/"]


def test_a_failed_hook_pings_fail_with_the_error_and_runs_on_failure(
    site: Site, pings: PingServer, tmp_path: Path
) -> None:
    marks = tmp_path / "on-failure.txt"
    site.write(
        ping_url=pings.url,
        pre_command="echo mount failed >&2; exit 3",
        on_failure=f'printf "%s|%s" "$HARDSNAP_RESOURCE" "$HARDSNAP_ERROR" > {marks}',
    )
    done = site.apply(at(0))
    assert done.returncode == 1, done
    assert paths(pings) == ["/start", "/fail"]
    assert "pre_command failed" in pings.received[1].body
    resource, error = marks.read_text().split("|", 1)
    assert resource == "r" and "pre_command failed: exit code 3" in error


def test_a_refused_resource_pings_fail_without_start_and_runs_on_failure(
    site: Site, pings: PingServer, tmp_path: Path
) -> None:
    marks = tmp_path / "on-failure.txt"
    site.write(ping_url=pings.url, on_failure=f'printf "%s" "$HARDSNAP_ERROR" > {marks}')
    assert site.apply(at(0)).returncode == 0
    for path in sorted(site.source.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    done = site.apply(at(1))
    assert done.returncode == 1, done
    assert paths(pings) == ["/start", "/", "/fail"]
    assert "is empty" in marks.read_text()


def test_the_fail_ping_names_the_kind_of_failure_not_source_paths_or_hook_output(
    site: Site, pings: PingServer, tmp_path: Path
) -> None:
    """Whoever runs the endpoint does not read the source: the body says
    which resource failed and how, and the host's log says the rest."""
    site.write(ping_url=pings.url, pre_command=f"echo cannot mount {site.source} >&2; exit 3")
    done = site.apply(at(0))
    assert done.returncode == 1 and str(site.source) in done.stderr, done
    assert pings.received[-1].path.endswith("/fail")
    assert pings.received[-1].body == "r: pre_command failed (exit code 3)"

    site.write(ping_url=pings.url, source_dir=str(tmp_path / "missing"))
    done = site.apply(at(1))
    assert done.returncode == 1 and "missing" in done.stderr, done
    assert pings.received[-1].path.endswith("/fail")
    assert pings.received[-1].body == "r: refused (hardsnap plan on the host says why)"


def test_a_ping_that_fails_is_a_warning_never_a_failed_backup(
    site: Site, pings: PingServer
) -> None:
    pings.status = 500
    site.write(ping_url=pings.url)
    done = site.apply(at(0))
    assert done.returncode == 0, done
    assert "ping" in done.stderr and "HTTP 500" in done.stderr
    # Tried twice each: /start, /start, then the success ping, twice.
    assert paths(pings) == ["/start", "/start", "/", "/"]
    assert site.snapshots() == [name_of(at(0))]

    # The URL is a secret: its credentials and path are never shown.
    site.write(ping_url="http://user:password@127.0.0.1:9/nothing-listens-here")
    done = site.apply(at(1))
    assert done.returncode == 0, done
    assert "ping http://127.0.0.1:9 (start) failed after 2 attempts" in done.stderr, done
    assert "password" not in done.stderr and "nothing-listens-here" not in done.stderr, done


def test_metrics_file_holds_every_gauge_per_resource_and_is_rewritten_each_apply(
    site: Site, tmp_path: Path
) -> None:
    metrics = tmp_path / "textfile" / "hardsnap.prom"
    metrics.parent.mkdir()
    broken = {
        "name": "never-ok",
        "type": "backup",
        "source_dir": str(tmp_path / "missing"),
        "target_path": str(tmp_path / "dst2"),
        "min_free_space": 0,
    }
    config = site.config
    make_file(site.source / "big.bin", b"b" * 5000)
    good = {**site.values}
    text = "metrics_file: " + str(metrics) + "\n"
    write_config(config, good, broken)
    config.write_text(text + config.read_text())
    done = site.apply(at(0))
    assert done.returncode == 1, done  # never-ok is refused: its source is missing
    values = read_metrics(metrics)
    moment = at(0).timestamp()
    assert values[("hardsnap_last_run_timestamp_seconds", "r")] == moment
    assert values[("hardsnap_last_success_timestamp_seconds", "r")] == moment
    assert values[("hardsnap_last_run_success", "r")] == 1
    assert values[("hardsnap_snapshots", "r")] == 1
    assert values[("hardsnap_last_snapshot_bytes_copied", "r")] == 5000 + 6 + 6
    assert ("hardsnap_last_run_duration_seconds", "r") in values
    assert values[("hardsnap_last_run_success", "never-ok")] == 0
    assert values[("hardsnap_snapshots", "never-ok")] == 0
    assert ("hardsnap_last_success_timestamp_seconds", "never-ok") not in values

    assert site.apply(at(1)).returncode == 1
    values = read_metrics(metrics)
    assert values[("hardsnap_last_run_timestamp_seconds", "r")] == at(1).timestamp()
    assert values[("hardsnap_snapshots", "r")] == 2
    assert values[("hardsnap_last_snapshot_bytes_copied", "r")] == 0  # all linked
    assert [path.name for path in metrics.parent.iterdir()] == ["hardsnap.prom"]


# Run as another user who can write the metrics directory: each time a
# temporary file of hardsnap's appears there (inotify), it is renamed away
# and a symlink to the victim put under its name.
SWAPPER = """
import ctypes, os, struct, sys
directory, victim = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
watch = libc.inotify_init1(0)
assert libc.inotify_add_watch(watch, directory.encode(), 0x100) >= 0  # IN_CREATE
print("watching", flush=True)
planted = set()
while True:
    events = os.read(watch, 65536)
    offset = 0
    while offset < len(events):
        length = struct.unpack_from("iIII", events, offset)[3]
        name = events[offset + 16 : offset + 16 + length].rstrip(b"\\0").decode()
        offset += 16 + length
        if name.startswith(".hardsnap-metrics.") and name not in planted:
            planted.add(name)
            try:
                os.rename(os.path.join(directory, name), os.path.join(directory, "moved" + name))
                os.symlink(victim, os.path.join(directory, name))
            except OSError:
                pass
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the attacker as nobody")
def test_metrics_file_swapped_for_a_symlink_while_written_never_chmods_its_target(
    site: Site, tmp_path: Path, nobody_dir: Path
) -> None:
    """The textfile directory belongs to the exporter's user: whoever that
    is swaps hardsnap's temporary file for a symlink to a root-only file
    between its creation and its chmod."""
    victim = make_file(tmp_path / "shadow", b"root:secret\n", 0o600)
    textfile = nobody_dir / "textfile"
    textfile.mkdir()
    os.chown(textfile, NOBODY, NOBODY)
    site.write()
    metrics = f"metrics_file: {textfile / 'hardsnap.prom'}\n"
    site.config.write_text(metrics + site.config.read_text())
    attacker = subprocess.Popen(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            sys.executable,
            "-c",
            SWAPPER,
            str(textfile),
            str(victim),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    modes, warned = [], []
    try:
        assert attacker.stdout is not None and attacker.stdout.readline() == "watching\n"
        # Applies until the attacker has won the race a few times (the
        # file lives a moment only: it may miss some), at most 30.
        for day in range(30):
            done = site.apply(at(day))
            assert done.returncode == 0, done
            modes.append(stat.S_IMODE(os.lstat(victim).st_mode))
            os.chmod(victim, 0o600)  # each apply gets its own chance
            warned.append("metrics_file" in done.stderr and "another user" in done.stderr)
            if len(swapped(textfile)) >= 3:
                break
    finally:
        attacker.kill()
        attacker.wait()
    assert [oct(mode) for mode in modes] == ["0o600"] * len(modes)
    assert all(warned), (warned, done)
    assert victim.read_bytes() == b"root:secret\n"
    assert swapped(textfile), "the attacker never swapped a file: the test proved nothing"


def swapped(textfile: Path) -> list[str]:
    """The metrics files the attacker moved away (and replaced by a link)."""
    return [name for name in os.listdir(textfile) if name.startswith("moved.hardsnap-metrics.")]


def test_under_systemd_stderr_lines_carry_journald_priorities(site: Site, tmp_path: Path) -> None:
    """JOURNAL_STREAM names the stream stderr is: errors are <3>, warnings <4>."""
    site.write(pre_command="exit 1", ping_url="http://127.0.0.1:9/nothing")
    stderr = tmp_path / "stderr"
    with open(stderr, "wb") as stream:
        info = os.fstat(stream.fileno())
        environment = site.environment(at(0))
        environment["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        done = subprocess.run(
            [*hardsnap_command(), "apply", "-c", str(site.config)],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stream,
            timeout=120,
        )
    assert done.returncode == 1
    lines = stderr.read_text().splitlines()
    assert any(line.startswith("<3>error: r: pre_command failed") for line in lines), lines
    assert any(line.startswith("<4>warning: r: ping ") for line in lines), lines
    assert all(line[:3] in ("<3>", "<4>", "<6>") for line in lines if line), lines

    # Anywhere else (JOURNAL_STREAM naming another stream) lines stay plain.
    environment["JOURNAL_STREAM"] = "1:2"
    plain = subprocess.run(
        [*hardsnap_command(), "apply", "-c", str(site.config)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.stderr.startswith(("error: ", "warning: ")), plain.stderr


@pytest.mark.parametrize(
    ("mode", "warned"), [(0o755, False), (0o1777, False), (0o775, True), (0o777, True)]
)
def test_a_metrics_directory_others_can_write_is_warned_about_unless_sticky(
    site: Site, tmp_path: Path, mode: int, warned: bool
) -> None:
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    os.chmod(textfile, mode)
    site.write()
    site.config.write_text(f"metrics_file: {textfile}/hardsnap.prom\n" + site.config.read_text())
    done = site.apply(at(0))
    assert done.returncode == 0, done
    assert ("another user can write" in done.stderr) is warned, done
    assert stat.S_IMODE((textfile / "hardsnap.prom").stat().st_mode) == 0o644
    assert os.listdir(textfile) == ["hardsnap.prom"]

"""The fixtures every test may ask for: an isolated state dir (for all), the
CLI in-process, tmpfs mounts, forks counted, a directory the nobody user
may use. What builds a test's world is in tests/world/."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.world.cli import Finished, invoke
from tests.world.clock import T0

# Set by tests/masked/sitecustomize.py: the Linux-only calls are taken away.
MASKED = os.environ.get("HARDSNAP_MASKED_PLATFORM") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In the masked platform run, skip the tests marked linux_only."""
    if not MASKED:
        return
    for item in items:
        marker = item.get_closest_marker("linux_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"Linux only: {reason}"))


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own state directory (never the real one)."""
    directory = tmp_path / "state"
    monkeypatch.setenv("HARDSNAP_STATE_DIR", str(directory))
    monkeypatch.delenv("HARDSNAP_NOW", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "300")
    return directory


@pytest.fixture
def cli() -> Iterator[Any]:
    """Run the CLI in-process (crashes fail the test): cli("plan", "-c", f, now=T0)."""

    def run(*args: str, now: str | None = T0, env: dict[str, str] | None = None) -> Finished:
        environment = dict(env or {})
        if now is not None:
            environment["HARDSNAP_NOW"] = now
        return invoke(list(args), environment)

    yield run


Mount = Callable[[str, str], Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """Mount tmpfs filesystems (`mount("name", "size=8m")`) under tmp_path;
    skip where mounting is refused. Unmounted at the end of the test."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        point = tmp_path / name
        point.mkdir()
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                capture_output=True,
                text=True,
            )
        except FileNotFoundError:
            pytest.skip("no mount command to mount a tmpfs")
        if done.returncode != 0:
            pytest.skip(f"mount -t tmpfs refused: {done.stderr.strip() or done.returncode}")
        mounted.append(point)
        return point

    try:
        yield mount
    finally:
        for point in reversed(mounted):
            if not os.path.ismount(point):
                continue  # the test unmounted it
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], check=True)


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the processes the code under test forks (as the list fills)."""
    forked: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting_fork)
    return forked


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory the nobody user may use (tmp_path's parents are root-only).
    As root, mode 000 is still readable: unreadable entries need another user."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run hardsnap as nobody")
    base = Path(tempfile.mkdtemp(prefix="hardsnap-nobody-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        yield base
    finally:
        for directory, directories, _ in os.walk(base):
            for name in directories:
                os.chmod(os.path.join(directory, name), 0o755)
        shutil.rmtree(base, ignore_errors=True)

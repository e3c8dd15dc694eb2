"""What people read: plan, apply and state show text (golden files, colour
off), the plan's predictions against what apply then does, and the live
progress bar under a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mount
from tests.world.cli import hardsnap_command
from tests.world.files import ODD_NS, make_file
from tests.world.site import empty_site, write_config

GOLDEN = Path(__file__).parent / "golden"
DAY = "2026-03-{:02d}T06:00:00Z"


def normalized(text: str, root: Path) -> str:
    """Output with what differs between runs replaced: paths, durations, free space."""
    text = text.replace(str(root), "<tmp>")
    text = re.sub(r"\d+\.\ds\b", "N.Ns", text)
    text = re.sub(r"[\d.]+ (B|KiB|MiB|GiB|TiB) free after", "N free after", text)
    text = re.sub(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+(changed|failed|settled|incomplete)", r"<time> \1", text
    )
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def assert_golden(name: str, text: str, root: Path) -> None:
    """Compare with tests/planning/golden/NAME.txt; HARDSNAP_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / f"{name}.txt"
    actual = normalized(text, root)
    if os.environ.get("HARDSNAP_UPDATE_GOLDEN"):
        path.write_text(actual)
    assert actual == path.read_text(), f"{name} differs from {path}:\n{actual}"


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory whose path has the same length on every machine: tables
    size their columns to the paths they show, so a golden file written under
    one temporary directory would not match under a longer one."""
    directory = Path(tempfile.mkdtemp(prefix="hardsnap-golden-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def world(root: Path) -> dict[str, Any]:
    source = root / "src"
    make_file(source / "etc" / "app.conf", b"listen 8080\n")
    make_file(source / "etc" / "users", b"alice\nbob\n")
    make_file(source / "notes.txt", b"x" * 3000)
    make_file(source / "cache" / "tmp.bin", b"skipped")
    os.symlink("notes.txt", source / "latest")
    config = write_config(
        root / "hardsnap.yaml",
        {
            "name": "etc",
            "type": "backup",
            "source_dir": "src",
            "target_path": "dst",
            "retain": "2",
            "exclude": "cache/*",
            "min_free_space": 0,
            "pre_command": "echo preparing",
            "post_command": 'echo "done: $HARDSNAP_SNAPSHOT"',
        },
    )
    return {"source": source, "config": str(config), "target": root / "dst"}


def test_plan_apply_and_state_show_text_match_the_golden_files(
    world: dict[str, Any], cli: Any, root: Path
) -> None:
    config = world["config"]
    assert_golden("plan_first", cli("plan", "-c", config, now=DAY.format(1)).stdout, root)
    assert_golden("apply_first", cli("apply", "-c", config, now=DAY.format(1)).stdout, root)
    assert cli("apply", "-c", config, now=DAY.format(2)).returncode == 0
    make_file(world["source"] / "etc" / "users", b"alice\nbob\ncarol\n")
    outcome = cli("plan", "-c", config, now=DAY.format(4))
    assert outcome.returncode == 0, outcome
    assert_golden("plan_prune", outcome.stdout, root)
    outcome = cli("apply", "-c", config, now=DAY.format(4))
    assert_golden("apply_prune", outcome.stdout, root)
    assert_golden("apply_settled", cli("apply", "-c", config, now=DAY.format(4)).stdout, root)
    outcome = cli("state", "show", "-c", config, now=DAY.format(4))
    assert_golden("state_show", outcome.stdout, root)


def test_quiet_and_verbose_apply_text_match_the_golden_files(
    world: dict[str, Any], cli: Any, root: Path
) -> None:
    config = world["config"]
    outcome = cli("apply", "-c", config, "-v", now=DAY.format(1))
    assert_golden("apply_verbose", outcome.stdout, root)
    outcome = cli("apply", "-c", config, "-q", now=DAY.format(2))
    assert_golden("apply_quiet", outcome.stdout, root)


def snapshot_action(document: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in document["resources"][0]["actions"] if a["kind"] == "snapshot")


@pytest.mark.parametrize(
    "change",
    [
        "nothing",
        "rewrite",
        "append",
        "touch",
        "chmod",
        "add",
        "delete",
        "add_dir",
        "rewrite_two_names",
        "add_two_names",
    ],
)
def test_plan_predicts_exactly_what_apply_then_copies_and_links(
    world: dict[str, Any], cli: Any, change: str
) -> None:
    config, source = world["config"], world["source"]
    assert cli("apply", "-c", config, now=DAY.format(1)).returncode == 0
    users = source / "etc" / "users"
    if change == "rewrite":
        make_file(users, b"carol\ndave\n", mtime_ns=ODD_NS + 5)
    elif change == "append":
        make_file(users, b"alice\nbob\ncarol\n")
    elif change == "touch":
        os.utime(users, ns=(ODD_NS + 1, ODD_NS + 1))
    elif change == "chmod":
        users.chmod(0o600)
    elif change == "add":
        make_file(source / "etc" / "new.conf", b"n" * 12345)
    elif change == "delete":
        users.unlink()
    elif change == "add_dir":
        make_file(source / "var" / "lib" / "db", b"d" * 777)
    elif change == "rewrite_two_names":
        # A new inode with two names: copied once, its second name linked to the copy.
        users.unlink()
        make_file(users, b"carol\ndave\n", mtime_ns=ODD_NS + 5)
        os.link(users, source / "etc" / "users.bak")
    elif change == "add_two_names":
        make_file(source / "new.bin", b"n" * 5000)
        os.link(source / "new.bin", source / "etc" / "new-alias.bin")
    planned = snapshot_action(cli("plan", "-c", config, "--json", now=DAY.format(2)).json())
    applied = snapshot_action(cli("apply", "-c", config, "--json", now=DAY.format(2)).json())
    assert (planned["files_to_copy"], planned["files_to_link"], planned["bytes_to_copy"]) == (
        applied["files_copied"],
        applied["files_linked"],
        applied["bytes_copied"],
    )
    assert planned["files_to_copy"] == (0 if change in ("nothing", "delete") else 1)
    if change == "rewrite_two_names":  # notes.txt, app.conf, and users.bak to the new copy
        assert planned["files_to_link"] == 3, planned
    if change == "add_two_names":  # notes.txt, app.conf, users, and the new alias
        assert planned["files_to_link"] == 4, planned


def test_plan_predicts_the_bytes_a_prune_then_frees(world: dict[str, Any], cli: Any) -> None:
    config, source = world["config"], world["source"]
    for day in (1, 2):
        make_file(source / "etc" / "users", b"day %d\n" % day * (100 * day), mtime_ns=ODD_NS + day)
        assert cli("apply", "-c", config, now=DAY.format(day)).returncode == 0
    # The day-1 copy of users is the only file no kept snapshot links to:
    # pruning frees the blocks it holds.
    alone = os.stat(world["target"] / "2026.060.06.00" / "etc" / "users").st_blocks * 512
    assert alone > 0
    planned = cli("plan", "-c", config, "--json", now=DAY.format(4)).json()
    prune = next(a for a in planned["resources"][0]["actions"] if a["kind"] == "prune")
    applied = cli("apply", "-c", config, "--json", now=DAY.format(4)).json()
    pruned = next(a for a in applied["resources"][0]["actions"] if a["kind"] == "prune")
    assert prune["snapshots"] == pruned["pruned"] == ["2026.060.06.00"]
    assert prune["bytes_freed"] == pruned["bytes_freed"] == alone


def test_plan_refuses_a_snapshot_that_would_leave_less_than_min_free_space(
    tmpfs: Mount, cli: Any
) -> None:
    root = tmpfs("small", "size=16m")
    make_file(root / "src" / "big.bin", os.urandom(6 * 1024 * 1024))
    config = write_config(
        root / "hardsnap.yaml",
        {
            "name": "r",
            "type": "backup",
            "source_dir": str(root / "src"),
            "target_path": str(root / "dst"),
            "min_free_space": "8M",
        },
    )
    outcome = cli("plan", "-c", config, "--json")
    assert outcome.returncode == 1, outcome
    refusal = outcome.json()["resources"][0]["refusal"]
    assert "would take 6.0 MiB on disk" in refusal and "min_free_space" in refusal
    assert not (root / "dst").exists()


def read_terminal(command: list[str], environment: dict[str, str], timeout: float = 60) -> str:
    """Run `command` with a pseudo-terminal as stdin, stdout and stderr; return all it wrote."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=terminal, env=environment
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1)
        if ready:
            try:
                data = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process is done
                break
            if not data:
                break
            output += data
        elif process.poll() is not None:
            break
    process.wait(timeout=timeout)
    os.close(controller)
    assert process.returncode == 0, output
    return output.decode("utf-8", "replace")


@pytest.mark.parametrize("columns", [80, 200])
def test_apply_on_a_terminal_shows_a_live_progress_bar(tmp_path: Path, columns: int) -> None:
    source = tmp_path / "src"
    for index in range(1500):
        make_file(source / f"d{index // 100:02d}" / f"f{index:04d}", b"x")
    config = write_config(
        tmp_path / "hardsnap.yaml",
        {"name": "r", "type": "backup", "source_dir": "src", "target_path": "dst"},
    )
    environment = dict(
        os.environ,
        HARDSNAP_STATE_DIR=str(tmp_path / "state"),
        TERM="xterm-256color",
        COLUMNS=str(columns),
    )
    environment.pop("NO_COLOR", None)
    command = [*hardsnap_command(), "apply", "-c", str(config)]
    first = read_terminal(command, dict(environment, HARDSNAP_NOW=DAY.format(1)))
    assert "1500 copied" in first
    # A first snapshot has a total too: counted before it starts.
    assert re.search(r"[\d,]+/1,500 files", first), first
    second = read_terminal(command, dict(environment, HARDSNAP_NOW=DAY.format(2)))
    # The bar knows the total from the reference snapshot, and ends at it.
    assert re.search(r"[\d,]+/1,500 files, [\d.]+ [KMG]?i?B, [\d,]+/s ETA", second), second
    assert "\x1b[" in second  # drawn in place, in colour
    assert "1500 linked" in second
    # Laid out for the terminal: nothing squeezed to "…", no line too long.
    for screen in (first, second):
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
        assert "…" not in plain, plain
        lines = re.split(r"[\r\n]+", plain)
        assert max(len(line) for line in lines) <= columns, plain


def test_apply_without_a_terminal_prints_plain_lines_only(
    world: dict[str, Any], tmp_path: Path
) -> None:
    environment = dict(
        os.environ, HARDSNAP_STATE_DIR=str(tmp_path / "state"), HARDSNAP_NOW=DAY.format(1)
    )
    environment.pop("NO_COLOR", None)
    done = subprocess.run(
        [*hardsnap_command(), "apply", "-c", world["config"]],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert done.returncode == 0, done
    assert "\x1b[" not in done.stdout and "files/s" not in done.stdout
    assert json.dumps(done.stdout)  # plain text


def test_plan_after_a_killed_run_counts_the_work_it_resumes_as_done(
    tmpfs: Mount, cli: Any, tmp_path: Path
) -> None:
    """The work a killed run left is resumed, not counted again as space
    the snapshot still needs: plan agrees with what apply then does."""
    root = tmpfs("small", "size=16m")
    site = empty_site(tmp_path)
    source = site.source
    make_file(source / "big.bin", os.urandom(6 * 1024 * 1024))
    make_file(source / "small.txt", b"small")
    config = site.write(target_path=str(root / "dst"), min_free_space="8M", cross_fs="link")
    # What a run killed after copying big.bin leaves behind.
    partial = root / "dst" / ".hardsnap-partial.2026.088.05.00"
    partial.mkdir(parents=True)
    subprocess.run(["cp", "-p", str(source / "big.bin"), str(partial)], check=True)
    kept_inode = (partial / "big.bin").stat().st_ino
    planned = cli("plan", "-c", config, "--json", now=DAY.format(29))
    assert planned.returncode == 0, planned
    snapshot = snapshot_action(planned.json())
    assert snapshot["resumes"] == partial.name
    # big.bin is kept (counted as kept, not as a copy): only small.txt costs space.
    assert (snapshot["files_kept"], snapshot["files_to_copy"]) == (1, 1), snapshot
    applied = cli("apply", "-c", config, "--json", now=DAY.format(29))
    assert applied.returncode == 0, applied
    done = snapshot_action(applied.json())
    assert (done["files_copied"], done["bytes_copied"]) == (
        snapshot["files_to_copy"],
        snapshot["bytes_to_copy"],
    )
    # The finished copy was kept, not made again.
    assert (root / "dst" / "2026.088.06.00" / "big.bin").stat().st_ino == kept_inode


@pytest.mark.parametrize("columns", [80, 200])
def test_state_show_fits_the_terminal_and_cuts_nothing(
    world: dict[str, Any], cli: Any, columns: int
) -> None:
    config = world["config"]
    for day in (1, 2, 3):
        assert cli("apply", "-c", config, now=DAY.format(day)).returncode == 0
    assert cli("verify", "etc", "-c", config, now=DAY.format(3)).returncode == 0
    shown = cli("state", "show", "-c", config, now=DAY.format(3), env={"COLUMNS": str(columns)})
    assert shown.returncode == 0, shown
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns, shown.stdout
    assert "…" not in shown.stdout
    for name in ("2026.061.06.00", "2026.062.06.00"):
        assert name in shown.stdout  # the snapshot names, whole
    text = " ".join(line.strip() for line in lines)  # wrapped, but all there
    assert f"done: {world['target']}/2026.062.06.00".replace(" ", "") in text.replace(" ", "")
    assert "clean (metadata)" in text and "retain" in text
    if columns >= 200:
        assert "snapshot         taken (UTC)" in shown.stdout  # the table

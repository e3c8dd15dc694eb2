"""A target_path that is no directory, or whose way there changes under a
run, is refused clearly: no traceback, other resources go on, and nothing
is made outside the target. The real CLI as a process, real directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.world.clock import START, name_of
from tests.world.files import make_file, tree_of
from tests.world.site import Site, new_site, write_config


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return new_site(tmp_path)


@pytest.mark.parametrize("below", ["", "dst"], ids=["a file", "below a file"])
def test_a_target_path_that_is_a_file_or_below_one_is_refused_and_the_other_resources_go_on(
    site: Site, tmp_path: Path, below: str
) -> None:
    blocker = tmp_path / "blocker"
    make_file(blocker, b"not a directory\n")
    target = blocker / below if below else blocker
    good = tmp_path / "good"
    base = {"type": "backup", "source_dir": str(site.source), "min_free_space": 0}
    write_config(
        site.config,
        {"name": "r", **base, "target_path": str(target)},
        {"name": "ok", **base, "target_path": str(good)},
    )

    planned = site.process("plan")
    applied = site.process("apply", "--allow-new-target")

    for done in (planned, applied):
        assert done.returncode == 1, done
        assert "Traceback" not in done.stderr, done
        assert f"{blocker} is not a directory" in done.stdout + done.stderr, done
    assert blocker.read_bytes() == b"not a directory\n"
    assert sorted(path.name for path in good.iterdir() if path.name[0].isdigit()) == [
        name_of(START)
    ], applied


def test_an_ancestor_of_a_new_target_swapped_for_a_symlink_before_it_is_made_makes_nothing_outside(
    site: Site, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    make_file(outside / "passwd", b"root:x:0:0::/root:/bin/sh\n")
    before = tree_of(outside)
    base = tmp_path / "base"
    base.mkdir()
    # The target is made after pre_command, which may mount it; meanwhile
    # someone who can write `base`'s parent swaps it for a symlink.
    site.write(
        target_path=str(base / "dst"),
        pre_command=f'mv "{base}" "{base}.real" && ln -s "{outside}" "{base}"',
    )

    applied = site.process("apply", "--allow-new-target")

    assert applied.returncode == 1, applied
    assert "Traceback" not in applied.stderr, applied
    assert sorted(path.name for path in outside.iterdir()) == ["passwd"], applied
    assert tree_of(outside) == before
    assert list((tmp_path / "base.real").iterdir()) == []


def test_a_plan_whose_only_resource_is_refused_does_not_call_it_converged(
    site: Site, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    make_file(blocker, b"not a directory\n")
    site.write(target_path=str(blocker))

    planned = site.process("plan")

    assert planned.returncode == 1, planned
    assert "converged" not in planned.stdout, planned
    assert planned.stdout.rstrip().endswith("No changes: 1 resource refused."), planned


@pytest.mark.parametrize("where", ["missing", "below a file"])
def test_audit_commands_on_a_target_with_no_snapshots_say_so_without_a_traceback(
    site: Site, tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "blocker"
    make_file(blocker, b"not a directory\n")
    target = tmp_path / "never-made" if where == "missing" else blocker / "dst"
    site.write(target_path=str(target))

    history = site.process("history", "r", "a.txt")
    history_json = site.process("history", "r", "a.txt", "--json")
    diff = site.process("diff", "r")
    verify = site.process("verify", "r")

    for done in (history, history_json, diff):
        assert done.returncode == 1, done
        assert "Traceback" not in done.stderr, done
        assert str(target) in done.stderr, done
    assert f'resource "r" has no snapshots in {target}' in history.stderr, history
    error = json.loads(history_json.stdout)["error"]
    assert error.startswith('resource "r" has no snapshots'), history_json
    assert verify.returncode == 0 and "no snapshots" in verify.stdout, verify

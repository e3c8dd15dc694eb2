"""The source guards: an empty, missing or shrunken source is refused or warned
of before it costs a snapshot, and audits still reach a resource removed
from the config.
"""

from __future__ import annotations

import json
import os
import shlex

import pytest

from hardsnap.providers.manifest.reader import ManifestReader
from tests.auditing.audits import (
    FIRST_TO_SECOND,
    apply_ok,
    diff,
    verify,
)
from tests.world.cli import Cli
from tests.world.clock import at, iso, name_of
from tests.world.documents import action_results, resource_of
from tests.world.files import make_file
from tests.world.site import Site, write_config

# -- 5. source guards --------------------------------------------------------------


@pytest.fixture
def filled_then_emptied(world: Site, cli: Cli) -> Site:
    """Snapshots of three files on days 0 and 2 (retain 2 keeps both), then
    the source emptied (as an unmounted disk looks) and retain 1, so on day 3
    the day-0 snapshot is expired and day 2's is not."""
    for index in range(3):
        make_file(world.source / f"f{index}.txt", b"data")
    world.write(retain="2")
    apply_ok(cli, world, 0)
    apply_ok(cli, world, 2)
    world.write(retain="1")
    for path in world.source.iterdir():
        path.unlink()
    return world


def test_plan_refuses_an_empty_source_when_the_newest_snapshot_has_files(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    world.write(retain="1", post_command=world.marker_command("post"))
    outcome = cli("plan", "-c", world.config, now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert "refused: source_dir" in outcome.stdout
    assert "is empty" in outcome.stdout
    assert "3 files" in outcome.stdout
    assert "--allow-empty-source" in outcome.stdout

    outcome = cli("plan", "-c", world.config, "--allow-empty-source", now=iso(at(3)))
    assert outcome.returncode == 0, outcome
    assert "refused" not in outcome.stdout


def test_apply_refuses_an_empty_source_with_no_snapshot_no_prune_and_no_hook(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    world.write(retain="1", post_command=world.marker_command("post"))
    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    document = outcome.json()
    assert resource_of(document)["result"] == "failed"
    assert "--allow-empty-source" in resource_of(document)["message"]
    assert action_results(document) == {
        "snapshot": "failed",
        "prune": "upstream_failed",
        "post_command": "upstream_failed",
    }
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]
    assert world.manifests() == [name_of(at(0)), name_of(at(2))]
    assert os.listdir(world.marks) == []

    text = cli("apply", "-c", world.config, now=iso(at(3)))
    assert text.returncode == 1, text
    assert "is empty" in text.stderr
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]


def test_apply_allow_empty_source_takes_the_empty_snapshot_and_prunes(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    document = apply_ok(cli, world, 3, "--allow-empty-source")
    assert action_results(document) == {"snapshot": "changed", "prune": "changed"}
    assert world.snapshots() == [name_of(at(2)), name_of(at(3))]
    assert os.listdir(world.snapshot(name_of(at(3)))) == []
    with ManifestReader(str(world.manifest(name_of(at(3))))) as reader:
        assert reader.files == 0


def test_missing_source_without_pre_command_is_refused_with_no_snapshot_and_no_prune(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    world.source.rmdir()
    outcome = cli("plan", "-c", world.config, now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert "does not exist" in outcome.stdout

    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert resource_of(outcome.json())["result"] == "failed"
    assert "does not exist" in resource_of(outcome.json())["message"]
    assert action_results(outcome.json()) == {"snapshot": "failed", "prune": "upstream_failed"}
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]
    # --allow-empty-source does not make a missing source acceptable.
    outcome = cli("apply", "-c", world.config, "--allow-empty-source", now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]


def test_pre_command_that_mounts_a_missing_source_lets_the_snapshot_run(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    world.source.rmdir()
    source = shlex.quote(str(world.source))
    world.write(
        retain="1",
        pre_command=f"mkdir -p {source} && printf mounted > {source}/disk.txt",
        post_command=world.marker_command("post"),
    )
    planned = cli("plan", "-c", world.config, now=iso(at(3)))
    assert planned.returncode == 0, planned
    assert "does not exist yet" in planned.stdout

    document = apply_ok(cli, world, 3)
    assert action_results(document) == {
        "pre_command": "changed",
        "snapshot": "changed",
        "prune": "changed",
        "post_command": "changed",
    }
    assert world.snapshots() == [name_of(at(2)), name_of(at(3))]
    assert (world.snapshot(name_of(at(3))) / "disk.txt").read_bytes() == b"mounted"
    assert world.mark("post").exists()


def test_pre_command_that_leaves_the_source_empty_fails_the_snapshot_and_skips_the_rest(
    filled_then_emptied: Site, cli: Cli
) -> None:
    world = filled_then_emptied
    world.write(
        retain="1",
        pre_command=world.marker_command("pre"),
        post_command=world.marker_command("post"),
    )
    planned = cli("plan", "-c", world.config, now=iso(at(3)))
    assert planned.returncode == 0, planned
    assert "is empty: the snapshot fails unless pre_command fills it" in planned.stdout

    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    document = outcome.json()
    assert action_results(document) == {
        "pre_command": "changed",
        "snapshot": "failed",
        "prune": "upstream_failed",
        "post_command": "upstream_failed",
    }
    snapshot = next(a for a in resource_of(document)["actions"] if a["kind"] == "snapshot")
    assert "is empty" in snapshot["message"] and "--allow-empty-source" in snapshot["message"]
    assert world.mark("pre").exists()
    assert not world.mark("post").exists()
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]
    assert world.manifests() == [name_of(at(0)), name_of(at(2))]


def test_empty_source_holding_only_the_target_inside_it_is_refused(world: Site, cli: Cli) -> None:
    target = world.source / "backups"
    make_file(world.source / "a.txt", b"alpha")
    world.target = target
    world.write()
    apply_ok(cli, world, 0)
    (world.source / "a.txt").unlink()
    outcome = cli("apply", "-c", world.config, now=iso(at(1)))
    assert outcome.returncode == 1, outcome
    assert "is empty" in outcome.stderr
    assert world.snapshots() == [name_of(at(0))]


def test_empty_source_is_refused_even_when_the_newest_snapshot_has_no_manifest(
    filled_then_emptied: Site, cli: Cli
) -> None:
    # A snapshot made before manifests existed, or whose manifest was lost,
    # still holds files: an empty source is still the sign of an unmounted disk.
    world = filled_then_emptied
    world.manifest(name_of(at(2))).unlink()
    assert os.listdir(world.snapshot(name_of(at(2))))
    outcome = cli("plan", "-c", world.config, now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert "--allow-empty-source" in outcome.stdout
    outcome = cli("apply", "-c", world.config, now=iso(at(3)))
    assert outcome.returncode == 1, outcome
    assert world.snapshots() == [name_of(at(0)), name_of(at(2))]


def shrunk(world: Site, cli: Cli, files: int, removed: int) -> None:
    """A snapshot of a source of `files` files, `removed` of them deleted since."""
    for index in range(files):
        make_file(world.source / f"f{index}.txt", b"data")
    world.write()
    apply_ok(cli, world, 0)
    for index in range(removed):
        (world.source / f"f{index}.txt").unlink()


def test_source_that_lost_more_than_half_its_files_warns_in_plan_and_apply_and_snapshots(
    world: Site, cli: Cli
) -> None:
    shrunk(world, cli, 5, 3)
    warning = "the source holds 2 files, the newest snapshot 5: more than half are gone since"

    planned = cli("plan", "-c", world.config, now=iso(at(1)))
    assert planned.returncode == 0, planned
    assert warning in planned.stdout

    outcome = cli("apply", "-c", world.config, now=iso(at(1)))
    assert outcome.returncode == 0, outcome
    assert f"warning: r: {warning}" in outcome.stderr
    assert warning not in outcome.stdout
    assert world.snapshots() == [name_of(at(0)), name_of(at(1))]
    assert sorted(os.listdir(world.snapshot(name_of(at(1))))) == ["f3.txt", "f4.txt"]


def test_source_that_lost_exactly_half_its_files_gives_no_warning(world: Site, cli: Cli) -> None:
    shrunk(world, cli, 4, 2)
    planned = cli("plan", "-c", world.config, now=iso(at(1)))
    assert planned.returncode == 0, planned
    assert "more than half" not in planned.stdout
    outcome = cli("apply", "-c", world.config, now=iso(at(1)))
    assert outcome.returncode == 0, outcome
    assert "more than half" not in outcome.stderr


def test_apply_json_warns_of_a_shrunken_source_in_its_document_and_on_stderr(
    world: Site, cli: Cli
) -> None:
    shrunk(world, cli, 5, 4)
    outcome = cli("apply", "-c", world.config, "--json", now=iso(at(1)))
    assert outcome.returncode == 0, outcome
    warnings = resource_of(outcome.json())["warnings"]
    assert any("more than half are gone" in warning for warning in warnings), warnings
    assert "more than half are gone" in outcome.stderr


def test_empty_first_snapshot_without_a_reference_is_taken(world: Site, cli: Cli) -> None:
    world.write()
    planned = cli("plan", "-c", world.config, "--json", now=iso(at(0)))
    assert planned.returncode == 0, planned
    assert resource_of(planned.json())["refusal"] is None
    apply_ok(cli, world, 0)
    assert world.snapshots() == [name_of(at(0))]
    assert os.listdir(world.snapshot(name_of(at(0)))) == []
    # An empty source after an empty snapshot is no alarm either.
    apply_ok(cli, world, 1)
    assert world.snapshots() == [name_of(at(0)), name_of(at(1))]
    assert json.loads(cli("verify", "r", "-c", world.config, "--json").stdout)["clean"] is True


def test_verify_and_diff_still_reach_a_resource_removed_from_the_config(
    three_snapshots: Site, cli: Cli
) -> None:
    world = three_snapshots
    write_config(
        world.config,
        {
            "name": "other",
            "type": "backup",
            "source_dir": str(world.source),
            "target_path": str(world.root / "elsewhere"),
        },
    )
    outcome = verify(cli, world, "--json")
    assert outcome.returncode == 0, outcome
    assert [s["name"] for s in outcome.json()["snapshots"]] == world.snapshots()
    outcome = diff(cli, world, name_of(at(0)), name_of(at(1)), "--json")
    assert outcome.returncode == 0, outcome
    assert outcome.json() == FIRST_TO_SECOND
    assert cli("verify", "never-existed", "-c", world.config).returncode == 2

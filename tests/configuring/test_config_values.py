"""Valid config files: every documented form and default of a resource's
values, paths resolved against the config's folder, YAML anchors and merge
keys, hook_timeout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hardsnap.providers.backup.resource import CrossFs, Resource, Schedule
from hardsnap.reconcile.config import load_config
from tests.configuring.configs import (
    BASE,
    FIRST_EXTRA_LINE,
    GIB,
    MERGED,
    assert_located,
    config,
    only_problem,
    only_resource,
    parsed,
    problems_of,
    value_column,
)

# -- valid forms and defaults -------------------------------------------------


def test_minimal_resource_gets_every_documented_default(config_path: Path) -> None:
    resource = only_resource(config(), config_path)

    assert resource == Resource(
        name="etc-backup",
        source_dir=str(config_path.parent / "src"),
        target_path=str(config_path.parent / "dst"),
        retain_days=30,
        schedule=Schedule.DAILY,
        exclude=(),
        cross_fs=CrossFs.FAIL,
        min_free_space=1 * GIB,
        pre_command=None,
        post_command=None,
        revert=False,
        on_revert=None,
        keep_min=1,
    )


def test_config_keeps_its_path_and_resources_in_file_order(config_path: Path) -> None:
    text = (
        "resources:\n"
        "  - name: zeta\n"
        "    type: backup\n"
        "    source_dir: src-z\n"
        "    target_path: dst-z\n"
        "  - name: alpha\n"
        "    type: backup\n"
        "    source_dir: src-a\n"
        "    target_path: dst-a\n"
    )
    loaded = parsed(text, config_path)

    assert loaded.path == str(config_path)
    assert [resource.name for resource in loaded.resources] == ["zeta", "alpha"]
    assert loaded.resource("alpha") is loaded.resources[1]
    assert loaded.resource("missing") is None


def test_empty_resources_list_is_a_valid_config_with_no_resources(config_path: Path) -> None:
    assert parsed("resources: []\n", config_path).resources == ()


@pytest.mark.parametrize(
    ("written", "days"),
    [("7", 7), ("1", 1), ("365", 365), ('"30"', 30), ('"7"', 7), ("'1'", 1), ('" 14 "', 14)],
    ids=["int-7", "int-1", "int-365", "string-30", "string-7", "string-1", "string-padded"],
)
def test_retain_as_int_or_numeric_string_is_days(
    config_path: Path, written: str, days: int
) -> None:
    assert only_resource(config(f"retain: {written}"), config_path).retain_days == days


@pytest.mark.parametrize("schedule", list(Schedule))
def test_each_schedule_value_is_accepted(config_path: Path, schedule: Schedule) -> None:
    resource = only_resource(config(f"schedule: {schedule.value}"), config_path)

    assert resource.schedule is schedule


def test_exclude_comma_string_is_split_and_trimmed(config_path: Path) -> None:
    resource = only_resource(config('exclude: "*.swp, cache/* ,,*.log"'), config_path)

    assert resource.exclude == ("*.swp", "cache/*", "*.log")


def test_exclude_flow_list_is_kept_in_order(config_path: Path) -> None:
    resource = only_resource(config('exclude: ["*.swp", "cache/*"]'), config_path)

    assert resource.exclude == ("*.swp", "cache/*")


def test_exclude_block_list_is_kept_in_order(config_path: Path) -> None:
    text = config("exclude:", '  - "*.log"', "  - tmp/*")

    assert only_resource(text, config_path).exclude == ("*.log", "tmp/*")


def test_exclude_pattern_with_a_comma_inside_a_list_is_not_split(config_path: Path) -> None:
    resource = only_resource(config('exclude: ["a,b"]'), config_path)

    assert resource.exclude == ("a,b",)


@pytest.mark.parametrize("cross_fs", list(CrossFs))
def test_each_cross_fs_value_is_accepted(config_path: Path, cross_fs: CrossFs) -> None:
    resource = only_resource(config(f"cross_fs: {cross_fs.value}"), config_path)

    assert resource.cross_fs is cross_fs


@pytest.mark.parametrize(
    ("key", "written", "value"),
    [
        pytest.param("min_free_space", "0", 0, id="min_free_space-int-0"),
        pytest.param("min_free_space", '"0"', 0, id="min_free_space-string-0"),
        pytest.param("min_free_space", "4096", 4096, id="min_free_space-int-bytes"),
        pytest.param("min_free_space", '"512"', 512, id="min_free_space-string-bytes"),
        pytest.param("min_free_space", "1K", 1024, id="min_free_space-K"),
        pytest.param("min_free_space", "512M", 512 * 1024**2, id="min_free_space-M"),
        pytest.param("min_free_space", "1G", GIB, id="min_free_space-G"),
        pytest.param("min_free_space", "10G", 10 * GIB, id="min_free_space-10G"),
        pytest.param("min_free_space", "2T", 2 * 1024**4, id="min_free_space-T"),
        pytest.param("hook_timeout", "0", 0, id="hook_timeout-int-0"),
        pytest.param("hook_timeout", "30", 30, id="hook_timeout-int"),
        pytest.param("hook_timeout", '"30"', 30, id="hook_timeout-string"),
        pytest.param("hook_timeout", '"0"', 0, id="hook_timeout-string-0"),
        pytest.param("hook_timeout", "30s", 30, id="hook_timeout-s"),
        pytest.param("hook_timeout", "10m", 600, id="hook_timeout-m"),
        pytest.param("hook_timeout", "2h", 7200, id="hook_timeout-h"),
        pytest.param("hook_timeout", '"5S"', 5, id="hook_timeout-upper-case"),
        pytest.param("hook_timeout", '" 90 s "', 90, id="hook_timeout-spaces"),
    ],
)
def test_sizes_and_durations_are_read_with_their_units(
    config_path: Path, key: str, written: str, value: int
) -> None:
    """min_free_space: bytes with 1024-based suffixes; hook_timeout: seconds
    with an optional unit."""
    resource = only_resource(config(f"{key}: {written}"), config_path)

    assert getattr(resource, key) == value


@pytest.mark.parametrize(("written", "count"), [("1", 1), ("5", 5), ('"3"', 3)])
def test_keep_min_is_accepted_as_a_whole_number(
    config_path: Path, written: str, count: int
) -> None:
    assert only_resource(config(f"keep_min: {written}"), config_path).keep_min == count


def test_hooks_are_kept_verbatim(config_path: Path) -> None:
    text = config('pre_command: "echo pre > marker"', "post_command: 'echo \"$HARDSNAP_SNAPSHOT\"'")
    resource = only_resource(text, config_path)

    assert resource.pre_command == "echo pre > marker"
    assert resource.post_command == 'echo "$HARDSNAP_SNAPSHOT"'


def test_revert_false_is_accepted_without_on_revert(config_path: Path) -> None:
    resource = only_resource(config("revert: false"), config_path)

    assert resource.revert is False
    assert resource.on_revert is None


def test_revert_true_with_on_revert_is_accepted(config_path: Path) -> None:
    resource = only_resource(config("revert: true", 'on_revert: "rm -rf dst"'), config_path)

    assert resource.revert is True
    assert resource.on_revert == "rm -rf dst"


@pytest.mark.parametrize("name", ["etc-backup", "a", "A_b.c-9", "...", "2026"])
def test_name_made_of_allowed_characters_is_accepted(config_path: Path, name: str) -> None:
    text = BASE.replace("name: etc-backup", f'name: "{name}"')

    assert only_resource(text, config_path).name == name


def test_the_documented_full_example_is_valid(config_path: Path) -> None:
    text = (
        "resources:\n"
        "  - name: etc-backup          # required, unique, [A-Za-z0-9_.-]+\n"
        "    type: backup              # required; the only type\n"
        "    source_dir: /etc          # required\n"
        "    target_path: /var/backups/etc   # required\n"
        '    retain: "30"\n'
        "    schedule: daily\n"
        '    exclude: "*.swp,cache/*"\n'
        "    cross_fs: fail\n"
        "    min_free_space: 1G\n"
        '    pre_command: "true"\n'
        '    post_command: "true"\n'
        "    revert: false\n"
        '    on_revert: "true"\n'
        "    keep_min: 1\n"
    )
    resource = only_resource(text, config_path)

    assert resource.source_dir == "/etc"
    assert resource.target_path == "/var/backups/etc"
    assert resource.retain_days == 30
    assert resource.exclude == ("*.swp", "cache/*")
    assert resource.min_free_space == GIB
    assert resource.on_revert == "true"


@pytest.mark.parametrize(
    "example",
    [
        "etc-backup.yaml",
        "etc-full.yaml",
        "app-config.yaml",
        "remote-backup.yaml",
        "demo.yaml",
        "home-frozen.yaml",
    ],
)
def test_shipped_example_is_valid(example: str) -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / example

    assert load_config(str(path)).resources


# -- paths --------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = BASE.replace("source_dir: src", "source_dir: data/./src").replace(
        "target_path: dst", "target_path: ../backups/dst"
    )

    resource = only_resource(text, folder / "hardsnap.yaml")

    assert resource.source_dir == str(folder / "data" / "src")
    assert resource.target_path == str(tmp_path / "backups" / "dst")


def test_relative_config_path_resolves_paths_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "hardsnap.yaml").write_text(config())
    monkeypatch.chdir(tmp_path)

    resource = load_config("conf/hardsnap.yaml").resources[0]

    assert resource.source_dir == str(folder / "src")
    assert resource.target_path == str(folder / "dst")


def test_absolute_paths_are_kept(config_path: Path, tmp_path: Path) -> None:
    text = BASE.replace("source_dir: src", f"source_dir: {tmp_path}/a/").replace(
        "target_path: dst", "target_path: /var/backups/etc"
    )
    resource = only_resource(text, config_path)

    assert resource.source_dir == str(tmp_path / "a")
    assert resource.target_path == "/var/backups/etc"


def test_target_path_inside_source_dir_is_allowed(config_path: Path) -> None:
    text = BASE.replace("target_path: dst", "target_path: src/.snapshots")
    resource = only_resource(text, config_path)

    assert resource.target_path == str(config_path.parent / "src" / ".snapshots")


def test_source_dir_sharing_a_name_prefix_with_a_target_path_is_allowed(
    config_path: Path,
) -> None:
    # "dst2" is not inside "dst": the containment check is by path component.
    text = BASE.replace("source_dir: src", "source_dir: dst2")

    assert only_resource(text, config_path).source_dir == str(config_path.parent / "dst2")


def test_two_resources_may_share_a_source_dir(config_path: Path) -> None:
    text = BASE + (
        "  - name: second\n    type: backup\n    source_dir: src\n    target_path: dst-2\n"
    )

    assert len(parsed(text, config_path).resources) == 2


# -- YAML anchors and merge keys ----------------------------------------------


def test_resource_merging_an_anchored_resource_inherits_its_values(config_path: Path) -> None:
    first, second = parsed(MERGED, config_path).resources

    assert first.retain_days == 7
    assert second.name == "second"
    assert second.retain_days == 7
    assert second.source_dir == str(config_path.parent / "src")
    assert second.target_path == str(config_path.parent / "dst-2")


def test_bad_value_shared_through_a_merge_key_is_a_located_problem_not_a_crash(
    config_path: Path,
) -> None:
    found = problems_of(MERGED.replace("retain: 7", "retain: 0"), config_path)

    assert (7, value_column("retain")) in {(problem.line, problem.column) for problem in found}
    assert all(1 <= problem.line <= 10 for problem in found), found


# -- hook_timeout -------------------------------------------------------------


def test_hook_timeout_defaults_to_no_limit(config_path: Path) -> None:
    assert only_resource(config(), config_path).hook_timeout == 0


@pytest.mark.parametrize(
    "written",
    [
        "-1",
        '"-5s"',
        "1.5",
        '"1.5m"',
        "10d",
        "5ms",
        "abc",
        "true",
        '""',
        "[30]",
        "{a: 1}",
        "99999999999999999999h",
        "m",
    ],
)
def test_hook_timeout_that_is_not_a_duration_is_rejected_at_its_value(
    config_path: Path, written: str
) -> None:
    problem = only_problem(config(f"hook_timeout: {written}"), config_path)

    assert_located(problem, FIRST_EXTRA_LINE, value_column("hook_timeout"), '"hook_timeout"', "30s")

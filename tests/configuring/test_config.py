"""Config validation: every valid form and default, every rejection located.

Configs are written as literal text so line and column numbers can be read off
the source. `config(...)` builds a one-resource file whose required keys sit on
lines 2-5; each extra key it is given lands on line 6 onwards, at column 5,
with its value at column `5 + len(key) + 2`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers.backup.resource import CrossFs, Resource, Schedule
from hardsnap.reconcile.config import ConfigError, Problem, load_config, parse_config
from hardsnap.reconcile.model import Config

BASE = (
    "resources:\n"
    "  - name: etc-backup\n"
    "    type: backup\n"
    "    source_dir: src\n"
    "    target_path: dst\n"
)
FIRST_EXTRA_LINE = 6
KEY_COLUMN = 5  # the column of every key of a resource written as "  - k: v" / "    k: v"
GIB = 1024**3


def config(*extra: str) -> str:
    """BASE plus `extra` lines (unindented `key: value`) for its one resource."""
    return BASE + "".join(f"    {line}\n" for line in extra)


def value_column(key: str) -> int:
    """The 1-based column of the value in `    key: value`."""
    return KEY_COLUMN + len(key) + 2


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """Where the config file under test (nominally) lives; paths resolve against its folder."""
    return tmp_path / "hardsnap.yaml"


def parsed(text: str, path: Path) -> Config:
    return parse_config(text, str(path))


def only_resource(text: str, path: Path) -> Resource:
    loaded = parsed(text, path)
    assert len(loaded.resources) == 1
    return loaded.resources[0]


def problems_of(text: str, path: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, str(path))
    assert caught.value.problems, "ConfigError raised without any problem"
    return caught.value.problems


def only_problem(text: str, path: Path) -> Problem:
    found = problems_of(text, path)
    assert len(found) == 1, "\n".join(str(problem) for problem in found)
    assert found[0].file == str(path)
    return found[0]


def assert_located(problem: Problem, line: int, column: int, *fragments: str) -> None:
    """The problem sits at line:column and its message holds every fragment."""
    assert (problem.line, problem.column) == (line, column), str(problem)
    for fragment in fragments:
        assert fragment in problem.message, str(problem)


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
    ("written", "size"),
    [
        ("0", 0),
        ('"0"', 0),
        ("4096", 4096),
        ('"512"', 512),
        ("1K", 1024),
        ("512M", 512 * 1024**2),
        ("1G", GIB),
        ("10G", 10 * GIB),
        ("2T", 2 * 1024**4),
    ],
    ids=["int-0", "string-0", "int-bytes", "string-bytes", "K", "M", "G", "10G", "T"],
)
def test_min_free_space_is_bytes_with_1024_based_suffixes(
    config_path: Path, written: str, size: int
) -> None:
    resource = only_resource(config(f"min_free_space: {written}"), config_path)

    assert resource.min_free_space == size


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
    ["etc-backup.yaml", "etc-full.yaml", "app-config.yaml", "remote-backup.yaml", "demo.yaml"],
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


# -- rejections: unknown keys -------------------------------------------------


def test_misspelt_key_is_rejected_at_the_key_with_the_closest_key_suggested(
    config_path: Path,
) -> None:
    problem = only_problem(config("retian: 7"), config_path)

    assert_located(
        problem, FIRST_EXTRA_LINE, KEY_COLUMN, 'unknown key "retian"', 'did you mean "retain"'
    )


@pytest.mark.parametrize(
    ("misspelt", "meant"),
    [
        ("shedule", "schedule"),
        ("crossfs", "cross_fs"),
        ("excludes", "exclude"),
        ("on_rever", "on_revert"),
        ("keepmin", "keep_min"),
        ("min_free", "min_free_space"),
        ("target", "target_path"),
    ],
)
def test_misspelt_key_suggests_the_valid_key(config_path: Path, misspelt: str, meant: str) -> None:
    problem = only_problem(config(f"{misspelt}: x"), config_path)

    assert_located(problem, FIRST_EXTRA_LINE, KEY_COLUMN, f'unknown key "{misspelt}"', f'"{meant}"')


def test_unknown_key_without_a_close_match_is_rejected_without_a_suggestion(
    config_path: Path,
) -> None:
    problem = only_problem(config("zzz: 1"), config_path)

    assert_located(problem, FIRST_EXTRA_LINE, KEY_COLUMN, 'unknown key "zzz"')
    assert "did you mean" not in problem.message


def test_misspelt_resources_key_is_rejected_with_a_suggestion_and_reported_missing(
    config_path: Path,
) -> None:
    found = problems_of("resorces:\n  - name: a\n", config_path)

    assert len(found) == 2, found
    unknown = next(problem for problem in found if "unknown key" in problem.message)
    assert_located(unknown, 1, 1, 'unknown key "resorces"', 'did you mean "resources"')
    missing = next(problem for problem in found if "missing" in problem.message)
    assert_located(missing, 1, 1, '"resources"')


# -- rejections: missing required keys ----------------------------------------


@pytest.mark.parametrize(
    ("key", "line"),
    [("name", 2), ("type", 3), ("source_dir", 4), ("target_path", 5)],
)
def test_missing_required_key_is_rejected_at_the_resource(
    config_path: Path, key: str, line: int
) -> None:
    lines = BASE.splitlines(keepends=True)
    del lines[line - 1]
    if key == "name":
        lines[1] = lines[1].replace("    type", "  - type")

    problem = only_problem("".join(lines), config_path)

    # The resource starts on line 2 (its first key, at column 5).
    assert_located(problem, 2, KEY_COLUMN, f'missing required key "{key}"')


@pytest.mark.parametrize(("key", "line"), [("source_dir", 4), ("target_path", 5)])
def test_required_key_with_a_null_value_is_rejected_at_its_key(
    config_path: Path, key: str, line: int
) -> None:
    lines = BASE.splitlines(keepends=True)
    lines[line - 1] = f"    {key}:\n"

    problem = only_problem("".join(lines), config_path)

    assert_located(problem, line, KEY_COLUMN, f'missing required key "{key}"')


def test_resource_missing_every_required_key_reports_each(config_path: Path) -> None:
    found = problems_of("resources:\n  - retain: 3\n", config_path)

    assert sorted(problem.message for problem in found) == sorted(
        f'missing required key "{key}"' for key in ("name", "type", "source_dir", "target_path")
    )
    assert {(problem.line, problem.column) for problem in found} == {(2, KEY_COLUMN)}


# -- rejections: wrong values -------------------------------------------------


@pytest.mark.parametrize("written", ["rsync", "1", "[backup]"])
def test_type_other_than_backup_is_rejected_at_its_value(config_path: Path, written: str) -> None:
    problem = only_problem(BASE.replace("type: backup", f"type: {written}"), config_path)

    assert_located(problem, 3, value_column("type"), '"type"', '"backup"')


@pytest.mark.parametrize(("misspelt", "meant"), [("dayly", "daily"), ("hourli", "hourly")])
def test_misspelt_schedule_is_rejected_at_its_value_with_a_suggestion(
    config_path: Path, misspelt: str, meant: str
) -> None:
    problem = only_problem(config(f"schedule: {misspelt}"), config_path)

    assert_located(
        problem,
        FIRST_EXTRA_LINE,
        value_column("schedule"),
        '"schedule"',
        f'"{misspelt}"',
        f'did you mean "{meant}"',
    )


@pytest.mark.parametrize("written", ["Daily", "1", "[daily]"])
def test_schedule_of_wrong_case_or_type_is_rejected(config_path: Path, written: str) -> None:
    problem = only_problem(config(f"schedule: {written}"), config_path)

    assert_located(problem, FIRST_EXTRA_LINE, value_column("schedule"), '"schedule"')


@pytest.mark.parametrize(("misspelt", "meant"), [("coppy", "copy"), ("fial", "fail")])
def test_misspelt_cross_fs_is_rejected_at_its_value_with_a_suggestion(
    config_path: Path, misspelt: str, meant: str
) -> None:
    problem = only_problem(config(f"cross_fs: {misspelt}"), config_path)

    assert_located(
        problem,
        FIRST_EXTRA_LINE,
        value_column("cross_fs"),
        '"cross_fs"',
        f'"{misspelt}"',
        f'did you mean "{meant}"',
    )


@pytest.mark.parametrize(
    "written",
    ["0", "-1", '"0"', '"-1"', '"abc"', "abc", "1.5", '"1.5"', "true", "false", '""', "[30]"],
    ids=[
        "zero",
        "negative",
        "string-zero",
        "string-negative",
        "quoted-word",
        "word",
        "float",
        "string-float",
        "true",
        "false",
        "empty-string",
        "list",
    ],
)
def test_retain_that_is_not_a_whole_number_of_days_is_rejected_at_its_value(
    config_path: Path, written: str
) -> None:
    problem = only_problem(config(f"retain: {written}"), config_path)

    assert_located(problem, FIRST_EXTRA_LINE, value_column("retain"), '"retain"')


@pytest.mark.parametrize("written", ["-1", '"-1"', '"abc"', "1.5", "true"])
def test_keep_min_that_is_not_a_whole_number_is_rejected_at_its_value(
    config_path: Path, written: str
) -> None:
    problem = only_problem(config(f"keep_min: {written}"), config_path)

    assert_located(problem, FIRST_EXTRA_LINE, value_column("keep_min"), '"keep_min"')


@pytest.mark.parametrize(
    "written", ["-1", '"-1G"', "1.5", '"1.5G"', "1X", "G", "abc", "true", '""', "[1G]"]
)
def test_min_free_space_that_is_not_a_size_is_rejected_at_its_value(
    config_path: Path, written: str
) -> None:
    problem = only_problem(config(f"min_free_space: {written}"), config_path)

    assert_located(problem, FIRST_EXTRA_LINE, value_column("min_free_space"), '"min_free_space"')


@pytest.mark.parametrize(
    "name",
    ['"etc backup"', '"a/b"', '"a:b"', '"caf\u00e9"', '""', '"a*"', "[a]"],
    ids=["space", "slash", "colon", "non-ascii", "empty", "star", "list"],
)
def test_name_outside_the_allowed_characters_is_rejected_at_its_value(
    config_path: Path, name: str
) -> None:
    problem = only_problem(BASE.replace("name: etc-backup", f"name: {name}"), config_path)

    assert_located(problem, 2, value_column("name"), '"name"', "[A-Za-z0-9_.-]+")


@pytest.mark.parametrize(("key", "line"), [("source_dir", 4), ("target_path", 5)])
@pytest.mark.parametrize("written", ['""', '"  "', "[a, b]", "{a: b}", "5"])
def test_path_that_is_not_a_non_empty_string_is_rejected_at_its_value(
    config_path: Path, key: str, line: int, written: str
) -> None:
    lines = BASE.splitlines(keepends=True)
    lines[line - 1] = f"    {key}: {written}\n"

    problem = only_problem("".join(lines), config_path)

    assert_located(problem, line, value_column(key), "path")


@pytest.mark.parametrize("written", ["5", "{a: b}", "true"])
def test_exclude_that_is_neither_string_nor_list_is_rejected_at_its_value(
    config_path: Path, written: str
) -> None:
    problem = only_problem(config(f"exclude: {written}"), config_path)

    assert_located(problem, FIRST_EXTRA_LINE, value_column("exclude"), '"exclude"')


@pytest.mark.parametrize("key", ["pre_command", "post_command", "on_revert"])
def test_command_that_is_not_a_string_is_rejected_at_its_value(config_path: Path, key: str) -> None:
    problem = only_problem(config(f"{key}: [echo, hi]"), config_path)

    assert_located(problem, FIRST_EXTRA_LINE, value_column(key), "command")


@pytest.mark.parametrize("written", ['"true"', '"false"', "yes", "1", "0"])
def test_revert_that_is_not_a_boolean_is_rejected_at_its_value(
    config_path: Path, written: str
) -> None:
    problem = only_problem(config(f"revert: {written}", 'on_revert: "x"'), config_path)

    assert_located(problem, FIRST_EXTRA_LINE, value_column("revert"), '"revert"')


# -- rejections: rules across resources ---------------------------------------


def second_resource(name: str = "second", source: str = "src-2", target: str = "dst-2") -> str:
    """A second resource for BASE, on lines 6-9 (name 6, source 8, target 9)."""
    return (
        f"  - name: {name}\n    type: backup\n    source_dir: {source}\n    target_path: {target}\n"
    )


def test_duplicate_name_is_rejected_at_the_second_name(config_path: Path) -> None:
    problem = only_problem(BASE + second_resource(name="etc-backup"), config_path)

    assert_located(
        problem, 6, value_column("name"), 'duplicate resource name "etc-backup"', "line 2"
    )


@pytest.mark.parametrize(
    "spelling",
    ["dst", "dst/", "./dst", "a/../dst", "dst//", "{folder}/dst"],
    ids=["same", "trailing-slash", "dot-slash", "dot-dot", "double-slash", "absolute"],
)
def test_target_path_shared_by_two_resources_is_rejected_at_the_second(
    config_path: Path, spelling: str
) -> None:
    target = spelling.format(folder=config_path.parent)
    problem = only_problem(BASE + second_resource(target=target), config_path)

    assert_located(problem, 9, value_column("target_path"), "target_path", '"etc-backup"')


def test_target_path_shared_through_a_symlink_is_rejected(config_path: Path) -> None:
    (config_path.parent / "dst").mkdir()
    (config_path.parent / "alias").symlink_to("dst")

    problem = only_problem(BASE + second_resource(target="alias"), config_path)

    assert_located(problem, 9, value_column("target_path"), '"etc-backup"')


def test_source_dir_inside_its_own_target_path_is_rejected_at_the_source(
    config_path: Path,
) -> None:
    text = BASE.replace("source_dir: src", "source_dir: dst/live")

    problem = only_problem(text, config_path)

    assert_located(problem, 4, value_column("source_dir"), "source_dir", "inside")


# -- rejections: the document -------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file_is_rejected_at_its_start(config_path: Path, text: str) -> None:
    problem = only_problem(text, config_path)

    assert_located(problem, 1, 1, "empty")


@pytest.mark.parametrize("text", ["hello\n", "- a\n- b\n", "42\n"])
def test_document_that_is_not_a_mapping_is_rejected(config_path: Path, text: str) -> None:
    problem = only_problem(text, config_path)

    assert_located(problem, 1, 1, '"resources"')


def test_file_without_resources_key_is_rejected(config_path: Path) -> None:
    found = problems_of("{}\n", config_path)

    assert len(found) == 1
    assert_located(found[0], 1, 1, 'missing required key "resources"')


def test_load_config_of_a_missing_file_is_a_located_problem(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(str(path))

    assert caught.value.problems == [Problem(str(path), 1, 1, caught.value.problems[0].message)]
    assert "cannot read" in caught.value.problems[0].message


def test_load_config_reads_and_validates_the_file(config_path: Path) -> None:
    config_path.write_text(config("retain: 0"))

    with pytest.raises(ConfigError) as caught:
        load_config(str(config_path))

    assert [(p.file, p.line, p.column) for p in caught.value.problems] == [
        (str(config_path), FIRST_EXTRA_LINE, value_column("retain"))
    ]


def test_load_config_of_a_file_that_is_not_utf8_is_a_located_problem(config_path: Path) -> None:
    config_path.write_bytes(b"resources:\n  - name: \xff\xfe\n")

    with pytest.raises(ConfigError) as caught:
        load_config(str(config_path))

    assert [(p.file, p.line, p.column) for p in caught.value.problems] == [(str(config_path), 1, 1)]


# -- YAML anchors and merge keys ----------------------------------------------

MERGED = (
    "resources:\n"
    "  - &base\n"
    "    name: first\n"
    "    type: backup\n"
    "    source_dir: src\n"
    "    target_path: dst\n"
    "    retain: 7\n"  # line 7, value at column 13
    "  - <<: *base\n"
    "    name: second\n"
    "    target_path: dst-2\n"
)


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


# -- many problems at once ----------------------------------------------------


def test_every_problem_in_a_file_is_reported_in_one_run(config_path: Path) -> None:
    text = (
        "resources:\n"
        "  - name: bad name\n"  # 2: name (col 11)
        "    type: bakup\n"  # 3: type (col 11)
        "    source_dir: src\n"
        "    target_path: dst\n"
        "    retian: 7\n"  # 6: unknown key (col 5)
        "  - name: second\n"
        "    type: backup\n"
        "    source_dir: src2\n"
        "    target_path: dst2\n"
        "    schedule: dayly\n"  # 11: schedule (col 15)
        "    revert: true\n"  # 12: on_revert missing (col 5)
        "    min_free_space: lots\n"  # 13: size (col 21)
        "  - type: backup\n"  # 14: name missing (col 5)
        "    source_dir: src3\n"
        "    target_path: dst3\n"
        "extra: 1\n"  # 17: unknown top-level key (col 1)
    )
    found = problems_of(text, config_path)

    expected = {
        (2, 11): '"name"',
        (3, 11): 'did you mean "backup"',
        (6, 5): 'did you mean "retain"',
        (11, 15): 'did you mean "daily"',
        (12, 5): '"on_revert"',
        (13, 21): '"min_free_space"',
        (14, 5): 'missing required key "name"',
        (17, 1): 'unknown key "extra"',
    }
    located = {(problem.line, problem.column): problem.message for problem in found}
    assert len(found) == len(expected), "\n".join(map(str, found))
    assert set(located) == set(expected), "\n".join(map(str, found))
    for position, fragment in expected.items():
        assert fragment in located[position], located[position]
    assert {problem.file for problem in found} == {str(config_path)}


def test_cross_resource_problems_are_reported_alongside_per_resource_ones(
    config_path: Path,
) -> None:
    # The second resource repeats the first's name and target_path and also has
    # a bad retain: all three problems must be reported by the same run.
    text = BASE + second_resource(name="etc-backup", target="dst") + "    retain: 0\n"
    found = problems_of(text, config_path)

    located = {(problem.line, problem.column): problem.message for problem in found}
    assert set(located) == {
        (6, value_column("name")),
        (9, value_column("target_path")),
        (10, value_column("retain")),
    }, "\n".join(map(str, found))
    assert "duplicate" in located[(6, value_column("name"))]


def test_problem_renders_as_file_line_column_message() -> None:
    problem = Problem("conf/hardsnap.yaml", 6, 5, 'unknown key "retian"')

    assert str(problem) == 'conf/hardsnap.yaml:6:5: unknown key "retian"'


def test_config_error_message_lists_every_problem(config_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parsed(config("retain: 0", "schedule: dayly"), config_path)

    assert str(caught.value).splitlines() == [str(p) for p in caught.value.problems]
    assert len(caught.value.problems) == 2


# -- the CLI ------------------------------------------------------------------


def test_validate_valid_config_exits_0(cli: Any, config_path: Path) -> None:
    config_path.write_text(BASE + second_resource())

    outcome = cli("validate", "-c", config_path)

    assert outcome.returncode == 0, outcome
    assert "valid, 2 resources" in outcome.stdout
    assert outcome.stderr == ""


def test_validate_defaults_to_hardsnap_yaml_in_the_cwd(
    cli: Any, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path.write_text(config())
    monkeypatch.chdir(config_path.parent)

    outcome = cli("validate")

    assert outcome.returncode == 0, outcome


def test_validate_misspelt_key_exits_2_with_a_located_message_on_stderr(
    cli: Any, config_path: Path
) -> None:
    config_path.write_text(config("retian: 7"))

    outcome = cli("validate", "-c", config_path)

    assert outcome.returncode == 2, outcome
    assert (
        f'{config_path}:{FIRST_EXTRA_LINE}:{KEY_COLUMN}: unknown key "retian" '
        '(did you mean "retain"?)'
    ) in outcome.stderr.splitlines()


def test_validate_reports_every_problem_on_its_own_stderr_line(cli: Any, config_path: Path) -> None:
    config_path.write_text(
        BASE.replace("type: backup", "type: bakup") + "    retain: -1\n    cross_fs: coppy\n"
    )

    outcome = cli("validate", "-c", config_path)

    assert outcome.returncode == 2, outcome
    lines = outcome.stderr.splitlines()
    for line, column in [
        (3, value_column("type")),
        (6, value_column("retain")),
        (7, value_column("cross_fs")),
    ]:
        prefix = f"{config_path}:{line}:{column}: "
        assert any(text.startswith(prefix) for text in lines), (prefix, outcome.stderr)


def test_validate_missing_config_file_exits_2(cli: Any, tmp_path: Path) -> None:
    outcome = cli("validate", "-c", tmp_path / "absent.yaml")

    assert outcome.returncode == 2, outcome
    assert f"{tmp_path / 'absent.yaml'}:1:1: " in outcome.stderr


def test_validate_yaml_syntax_error_exits_2_located(cli: Any, config_path: Path) -> None:
    config_path.write_text("resources:\n  - name: a: b\n")

    outcome = cli("validate", "-c", config_path)

    assert outcome.returncode == 2, outcome
    assert f"{config_path}:2:12: " in outcome.stderr


def test_plan_of_an_invalid_config_exits_2_or_1_with_detailed_exitcode(
    cli: Any, config_path: Path, state_dir: Path
) -> None:
    config_path.write_text(config("retain: 0"))

    assert cli("plan", "-c", config_path).returncode == 2
    assert cli("plan", "-c", config_path, "--detailed-exitcode").returncode == 1
    assert not state_dir.exists()


def hook_config(tmp_path: Path, marker: Path, *, invalid: bool) -> Path:
    """A config with a valid hooked resource and, when `invalid`, a bad second one."""
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "file.txt").write_text("hello\n")
    text = (
        "resources:\n"
        "  - name: good\n"
        "    type: backup\n"
        "    source_dir: src\n"
        "    target_path: dst\n"
        "    min_free_space: 0\n"
        f'    pre_command: "touch {marker}"\n'
    )
    if invalid:
        text += (
            "  - name: bad\n"
            "    type: backup\n"
            "    source_dir: src\n"
            "    target_path: dst-bad\n"
            "    retain: 0\n"
        )
    path = tmp_path / "hardsnap.yaml"
    path.write_text(text)
    return path


def test_apply_with_one_invalid_resource_exits_2_and_changes_nothing(
    cli: Any, tmp_path: Path, state_dir: Path
) -> None:
    marker = tmp_path / "pre-ran"
    path = hook_config(tmp_path, marker, invalid=True)

    outcome = cli("apply", "-c", path)

    assert outcome.returncode == 2, outcome
    assert f"{path}:12:{value_column('retain')}: " in outcome.stderr
    assert not marker.exists()
    assert not (tmp_path / "dst").exists()
    assert not (tmp_path / "dst-bad").exists()
    assert not state_dir.exists()


def test_apply_of_the_same_config_without_the_invalid_resource_runs_the_hook(
    cli: Any, tmp_path: Path
) -> None:
    # The control for the test above: the marker and target do appear when valid.
    marker = tmp_path / "pre-ran"
    path = hook_config(tmp_path, marker, invalid=False)

    outcome = cli("apply", "-c", path)

    assert outcome.returncode == 0, outcome
    assert marker.exists()
    assert (tmp_path / "dst").is_dir()


def test_apply_resolves_relative_paths_against_the_config_folder(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "src").mkdir()
    (folder / "src" / "file.txt").write_text("hello\n")
    (folder / "hardsnap.yaml").write_text(config("min_free_space: 0"))
    monkeypatch.chdir(elsewhere)

    outcome = cli("apply", "-c", "../conf/hardsnap.yaml")

    assert outcome.returncode == 0, outcome
    assert (folder / "dst").is_dir()
    assert list((folder / "dst").iterdir()), "no snapshot in the config folder's dst"
    assert list(elsewhere.iterdir()) == []


def test_validate_of_a_config_using_a_merge_key_does_not_crash(cli: Any, config_path: Path) -> None:
    config_path.write_text(MERGED)

    outcome = cli("validate", "-c", config_path)

    assert outcome.returncode == 0, outcome


def test_retain_accepted_by_validate_does_not_crash_plan(
    cli: Any, tmp_path: Path, config_path: Path
) -> None:
    # A retain too large for a timedelta must be rejected up front, not crash plan.
    (tmp_path / "src").mkdir()
    config_path.write_text(config("retain: 1000000000", "min_free_space: 0"))

    validated = cli("validate", "-c", config_path)
    if validated.returncode == 0:
        planned = cli("plan", "-c", config_path)
        assert planned.returncode == 0, planned
    else:
        assert validated.returncode == 2, validated
        assert f"{config_path}:{FIRST_EXTRA_LINE}:{value_column('retain')}: " in (validated.stderr)


# -- hook_timeout -------------------------------------------------------------


def test_hook_timeout_defaults_to_no_limit(config_path: Path) -> None:
    assert only_resource(config(), config_path).hook_timeout == 0


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("0", 0),
        ("30", 30),
        ('"30"', 30),
        ('"0"', 0),
        ("30s", 30),
        ("10m", 600),
        ("2h", 7200),
        ('"5S"', 5),
        ('" 90 s "', 90),
    ],
    ids=["int-0", "int", "string", "string-0", "s", "m", "h", "upper-case", "spaces"],
)
def test_hook_timeout_is_seconds_with_an_optional_unit(
    config_path: Path, written: str, seconds: int
) -> None:
    resource = only_resource(config(f"hook_timeout: {written}"), config_path)

    assert resource.hook_timeout == seconds


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


# -- target_path inside another resource's target_path ------------------------


@pytest.mark.parametrize("inner", ["dst/inner", "dst/a/b/c", "./dst/inner/", "{folder}/dst/x"])
def test_target_path_inside_another_resources_target_path_is_rejected_at_the_inner(
    config_path: Path, inner: str
) -> None:
    target = inner.format(folder=config_path.parent)
    problem = only_problem(BASE + second_resource(target=target), config_path)

    assert_located(
        problem,
        9,
        value_column("target_path"),
        "inside",
        '"etc-backup"',
        str(config_path.parent / "dst"),
    )


def test_target_path_of_an_earlier_resource_inside_a_later_target_is_rejected_at_the_earlier(
    config_path: Path,
) -> None:
    text = BASE.replace("target_path: dst", "target_path: dst-2/inner")

    problem = only_problem(text + second_resource(), config_path)

    assert_located(
        problem, 5, value_column("target_path"), '"second"', str(config_path.parent / "dst-2")
    )


def test_target_path_inside_another_through_a_symlink_is_rejected(config_path: Path) -> None:
    (config_path.parent / "dst").mkdir()
    (config_path.parent / "alias").symlink_to("dst")

    problem = only_problem(BASE + second_resource(target="alias/inner"), config_path)

    assert_located(problem, 9, value_column("target_path"), '"etc-backup"')


def test_target_path_inside_two_others_is_rejected_once_for_each(config_path: Path) -> None:
    text = (
        BASE.replace("target_path: dst", "target_path: outer")
        + second_resource(target="outer/middle")
        + second_resource(name="third", source="src-3", target="outer/middle/inner")
    )

    found = problems_of(text, config_path)

    assert [(problem.line, problem.column) for problem in found] == [
        (9, value_column("target_path")),
        (13, value_column("target_path")),
        (13, value_column("target_path")),
    ]
    assert '"etc-backup"' in found[1].message
    assert '"second"' in found[2].message


@pytest.mark.parametrize(
    ("first", "second"),
    [("backups/b", "backups/bc"), ("backups/bc", "backups/b"), ("dst", "dst-2"), ("a/b", "a/c")],
)
def test_sibling_target_paths_sharing_a_name_prefix_are_not_nested(
    config_path: Path, first: str, second: str
) -> None:
    text = BASE.replace("target_path: dst", f"target_path: {first}") + second_resource(
        target=second
    )

    assert len(parsed(text, config_path).resources) == 2


# -- each problem where it is ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            config() + "version: 2\n",
            (FIRST_EXTRA_LINE, 1, 'unknown key "version"'),
            id="unknown_top_level_key_is_rejected_at_its_key",
        ),
        pytest.param(
            BASE.replace("    target_path: dst\n", ""),
            (2, KEY_COLUMN, '"target_path"', '"etc-backup"'),
            id="missing_required_key_names_its_resource",
        ),
        pytest.param(
            BASE.replace("type: backup", "type: bakup"),
            (3, value_column("type"), '"bakup"', 'did you mean "backup"'),
            id="misspelt_type_is_rejected_at_its_value_with_backup_suggested",
        ),
        pytest.param(
            config("retain: 0"),
            (FIRST_EXTRA_LINE, value_column("retain"), '"retain"', ">= 1"),
            id="retain_zero_is_rejected_at_its_value",
        ),
        # "      - 3": the item's value starts at column 9.
        pytest.param(
            config("exclude:", '  - "*.log"', "  - 3"),
            (FIRST_EXTRA_LINE + 2, 9, "exclude pattern"),
            id="exclude_list_item_that_is_not_a_string_is_rejected_at_that_item",
        ),
        pytest.param(
            config("revert: true"),
            (FIRST_EXTRA_LINE, KEY_COLUMN, '"on_revert"', '"revert"'),
            id="revert_true_without_on_revert_is_rejected_at_revert",
        ),
        pytest.param(
            config("revert: true", 'on_revert: ""'),
            (FIRST_EXTRA_LINE, KEY_COLUMN, '"on_revert"'),
            id="revert_true_with_empty_on_revert_is_rejected",
        ),
        pytest.param(
            BASE.replace("source_dir: src", "source_dir: dst"),
            (4, value_column("source_dir"), "source_dir", "target_path"),
            id="source_dir_equal_to_its_own_target_path_is_rejected_at_the_source",
        ),
        pytest.param(
            BASE + second_resource(source="dst/sub"),
            (8, value_column("source_dir"), "inside", '"etc-backup"'),
            id="source_dir_inside_another_resources_target_path_is_rejected_at_the_source",
        ),
        pytest.param(
            BASE + second_resource(source="./dst/"),
            (8, value_column("source_dir"), '"etc-backup"'),
            id="source_dir_equal_to_another_resources_target_path_is_rejected",
        ),
        pytest.param(
            BASE + second_resource(target="src"),
            (4, value_column("source_dir"), '"second"'),
            id="source_dir_of_an_earlier_resource_inside_a_later_target_is_rejected",
        ),
        # The second ":" on line 2 is column 12.
        pytest.param(
            "resources:\n  - name: a: b\n",
            (2, 12, "YAML"),
            id="yaml_syntax_error_is_located_where_the_parser_failed",
        ),
        pytest.param(
            "resources:\n\t- name: a\n",
            (2, 1, "YAML"),
            id="tab_indentation_is_a_located_yaml_error",
        ),
        pytest.param(
            config("retain: 3", "retain: 4"),
            (FIRST_EXTRA_LINE + 1, KEY_COLUMN, "duplicate key", '"retain"'),
            id="duplicate_yaml_key_is_rejected_at_the_second_occurrence",
        ),
        pytest.param(
            config() + "resources: []\n",
            (FIRST_EXTRA_LINE, 1, "duplicate key", '"resources"'),
            id="duplicate_top_level_key_is_rejected_at_the_second_occurrence",
        ),
        pytest.param(
            "resources: foo\n",
            (1, 12, '"resources" must be a list'),
            id="resources_as_a_string_is_rejected_at_its_value",
        ),
        pytest.param(
            "resources:\n  name: a\n  type: backup\n",
            (2, 3, '"resources" must be a list'),
            id="resources_as_a_mapping_is_rejected_at_its_value",
        ),
        pytest.param(
            BASE + "  - just-a-string\n",
            (6, 5, "resource must be a mapping"),
            id="resource_that_is_not_a_mapping_is_rejected_at_its_item",
        ),
    ],
)
def test_a_problem_is_reported_where_it_is(
    config_path: Path, text: str, expected: tuple[Any, ...]
) -> None:
    line, column, *words = expected
    assert_located(only_problem(text, config_path), line, column, *words)

"""Invalid config files: each problem reported with its file, line and column,
every problem of a file in one run, and the rules across resources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hardsnap.reconcile.config import ConfigError, Problem, load_config
from tests.configuring.configs import (
    BASE,
    FIRST_EXTRA_LINE,
    KEY_COLUMN,
    assert_located,
    config,
    only_problem,
    parsed,
    problems_of,
    second_resource,
    value_column,
)

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

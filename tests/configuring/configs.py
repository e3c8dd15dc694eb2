"""Config files written and parsed for the configuring tests: a base resource,
the positions its keys stand at, and the problems found in a text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hardsnap.providers.backup.resource import Resource
from hardsnap.reconcile.config import ConfigError, Problem, parse_config
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


def second_resource(name: str = "second", source: str = "src-2", target: str = "dst-2") -> str:
    """A second resource for BASE, on lines 6-9 (name 6, source 8, target 9)."""
    return (
        f"  - name: {name}\n    type: backup\n    source_dir: {source}\n    target_path: {target}\n"
    )


# A file whose second resource merges the first (YAML anchors and merge keys).
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

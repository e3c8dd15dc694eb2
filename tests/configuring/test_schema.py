"""The JSON Schema printed by `hardsnap schema` agrees with the validator."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from hardsnap.reconcile.config import ConfigError, parse_config
from hardsnap.reconcile.schema import config_schema

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").rglob("*.yaml"))
BASE = (
    "resources:\n  - name: r\n    type: backup\n"
    "    source_dir: /srv/src\n    target_path: /srv/dst\n"
)

# (extra line for the resource, whether the validator accepts it)
CASES = [
    ("retain: 7", True),
    ('retain: "30"', True),
    ("retain: 0", False),
    ('retain: "0"', False),
    ("retain: -1", False),
    ("retain: 1.5", False),
    ("retain: true", False),
    ('retain: "abc"', False),
    ("schedule: hourly", True),
    ("schedule: weekly", True),
    ("schedule: dialy", False),
    ("schedule: Daily", False),
    ('exclude: "*.swp,cache/*"', True),
    ("exclude: ['*.log', 'tmp/*']", True),
    ("exclude: 5", False),
    ("exclude: [1]", False),
    ("cross_fs: link", True),
    ("cross_fs: coppy", False),
    ("min_free_space: 0", True),
    ("min_free_space: 1G", True),
    ("min_free_space: 512M", True),
    ('min_free_space: "10 KiB"', True),
    ("min_free_space: -1", False),
    ("min_free_space: 1.5G", False),
    ("min_free_space: 1X", False),
    ("keep_min: 0", True),
    ('keep_min: "2"', True),
    ("keep_min: -1", False),
    ("keep_weekly: 4", True),
    ('keep_monthly: "12"', True),
    ("keep_yearly: 0", True),
    ("keep_yearly: -1", False),
    ("keep_monthly: 1.5", False),
    ("symlinks: keep", True),
    ("symlinks: follow", False),
    ("special_files: skip", True),
    ("one_file_system: true", True),
    ('one_file_system: "yes"', False),
    ("hook_timeout: 0", True),
    ("hook_timeout: 30", True),
    ('hook_timeout: "30"', True),
    ("hook_timeout: 30s", True),
    ("hook_timeout: 10m", True),
    ("hook_timeout: 2h", True),
    ('hook_timeout: " 90 S "', True),
    ("hook_timeout: -1", False),
    ("hook_timeout: 1.5", False),
    ("hook_timeout: 10d", False),
    ("hook_timeout: true", False),
    ('hook_timeout: ""', False),
    ("revert: false", True),
    ('revert: "true"', False),
    ("revert: true", False),
    ("revert: true\n    on_revert: restore.sh", True),
    ("pre_command: 5", False),
    ("post_command: echo done", True),
    ("pre_command: null", True),
    ("retian: 7", False),
    ("name2: x", False),
]


def load_yaml(text: str) -> Any:
    """YAML to plain JSON-like data, the way an editor's language server sees it."""
    return json.loads(json.dumps(YAML(typ="safe").load(io.StringIO(text)), default=str))


def schema_accepts(document: Any) -> bool:
    validator = jsonschema.Draft202012Validator(config_schema())
    return not list(validator.iter_errors(document))


def validator_accepts(text: str) -> bool:
    try:
        parse_config(text, "/etc/hardsnap.yaml")
    except ConfigError:
        return False
    return True


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(config_schema())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_schema_accepts_every_shipped_example(example: Path) -> None:
    assert schema_accepts(load_yaml(example.read_text()))


@pytest.mark.parametrize(("line", "valid"), CASES)
def test_schema_and_validator_agree_on_each_value(line: str, valid: bool) -> None:
    text = BASE + f"    {line}\n"
    assert validator_accepts(text) is valid
    assert schema_accepts(load_yaml(text)) is valid


@pytest.mark.parametrize(
    "text",
    [
        "resources:\n  - name: r\n    type: backup\n    source_dir: /a\n",
        "resources:\n  - type: backup\n    source_dir: /a\n    target_path: /b\n",
        "resources:\n  - name: 'bad name'\n    type: backup\n"
        "    source_dir: /a\n    target_path: /b\n",
        "resources:\n  - name: r\n    type: bakup\n    source_dir: /a\n    target_path: /b\n",
        "resource:\n  - name: r\n",
        "resources: {}\n",
        "resources: [5]\n",
    ],
)
def test_schema_rejects_what_the_validator_rejects_in_shape(text: str) -> None:
    assert not validator_accepts(text)
    assert not schema_accepts(load_yaml(text))


def test_schema_command_prints_the_schema(cli: Any) -> None:
    outcome = cli("schema")
    assert outcome.returncode == 0, outcome
    assert json.loads(outcome.stdout) == config_schema()

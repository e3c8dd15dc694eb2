"""validate, plan and apply on an invalid config, through the real CLI: exit
codes, located messages on stderr, nothing changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.configuring.configs import (
    BASE,
    FIRST_EXTRA_LINE,
    KEY_COLUMN,
    MERGED,
    config,
    second_resource,
    value_column,
)

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

"""The shipped service, timer, cron line and playbook run hardsnap correctly."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.conftest import write_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(EXAMPLES / "systemd" / name)
    return parser


def run_hardsnap_line(line: str, cli: Any, config: Path) -> Any:
    """Run a `hardsnap ...` command line from an example against our config."""
    words = shlex.split(line)
    start = next(i for i, word in enumerate(words) if word.endswith("hardsnap"))
    arguments = words[start + 1 :]
    arguments = [str(config) if word.endswith("hardsnap.yaml") else word for word in arguments]
    return cli(*arguments)


def small_world(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "f.txt").write_text("x")
    return write_config(
        tmp_path / "hardsnap.yaml",
        {
            "name": "r",
            "type": "backup",
            "source_dir": str(source),
            "target_path": str(tmp_path / "dst"),
        },
    )


def test_service_is_hardened_and_idle(tmp_path: Path) -> None:
    service = unit("hardsnap.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["ProtectSystem"] == "strict"
    assert service["IOSchedulingClass"] == "idle"
    assert int(service["Nice"]) > 0
    assert service["NoNewPrivileges"] == "true"


def test_service_command_converges(tmp_path: Path, cli: Any) -> None:
    config = small_world(tmp_path)
    outcome = run_hardsnap_line(unit("hardsnap.service")["Service"]["ExecStart"], cli, config)
    assert outcome.exit_code == 0, outcome
    assert (tmp_path / "dst" / "2026.088.06.00").is_dir()


def test_timer_is_frequent_and_persistent() -> None:
    timer = unit("hardsnap.timer")["Timer"]
    assert timer["OnCalendar"] == "*:0/15"
    assert timer["Persistent"] == "true"


def test_cron_line_converges(tmp_path: Path, cli: Any) -> None:
    lines = (EXAMPLES / "cron" / "hardsnap.cron").read_text().splitlines()
    jobs = [line for line in lines if re.match(r"^[*0-9]", line)]
    assert len(jobs) == 1
    command = jobs[0].split(None, 6)[6].split(">>")[0]
    outcome = run_hardsnap_line(command, cli, small_world(tmp_path))
    assert outcome.exit_code == 0, outcome


def test_playbook_commands_are_valid_hardsnap_invocations(tmp_path: Path, cli: Any) -> None:
    plays = YAML(typ="safe").load((EXAMPLES / "ansible" / "site.yml").read_text())
    tasks = plays[0]["tasks"]
    variables = plays[0]["vars"]
    commands = [
        task["ansible.builtin.command"] for task in tasks if "ansible.builtin.command" in task
    ]
    lines = [
        command.replace("{{ hardsnap_bin }}", "hardsnap").replace(
            "{{ hardsnap_config }}", variables["hardsnap_config"]
        )
        for command in commands
    ]
    assert [shlex.split(line)[1] for line in lines] == ["plan", "apply", "state"]
    config = small_world(tmp_path)
    expected_exit = {"plan": 2, "apply": 0, "state": 0}
    for line in lines:
        outcome = run_hardsnap_line(line, cli, config)
        assert outcome.exit_code == expected_exit[shlex.split(line)[1]], (line, outcome)
    validate = next(t for t in tasks if "validate" in t.get("ansible.builtin.copy", {}))
    line = validate["ansible.builtin.copy"]["validate"].replace("{{ hardsnap_bin }}", "hardsnap")
    assert run_hardsnap_line(line.replace("%s", str(config)), cli, config).exit_code == 0

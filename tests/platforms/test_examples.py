"""The shipped service, timer, cron line and Ansible role run hardsnap correctly."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.world.examples import EXAMPLES, unit
from tests.world.site import backup_config, write_config
from tests.world.trees import rsync_changes


def run_hardsnap_line(line: str, cli: Any, config: Path) -> Any:
    """Run a `hardsnap ...` command line from an example against our config."""
    words = shlex.split(line)
    start = next(i for i, word in enumerate(words) if word.endswith("hardsnap"))
    arguments = words[start + 1 :]
    arguments = [str(config) if word.endswith("hardsnap.yaml") else word for word in arguments]
    return cli(*arguments)


def test_service_is_hardened_and_idle(tmp_path: Path) -> None:
    service = unit("hardsnap.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["ProtectSystem"] == "strict"
    assert service["IOSchedulingClass"] == "idle"
    assert int(service["Nice"]) > 0
    assert service["NoNewPrivileges"] == "true"


def test_service_command_converges(tmp_path: Path, cli: Any) -> None:
    config = backup_config(tmp_path)
    outcome = run_hardsnap_line(unit("hardsnap.service")["Service"]["ExecStart"], cli, config)
    assert outcome.returncode == 0, outcome
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
    outcome = run_hardsnap_line(command, cli, backup_config(tmp_path))
    assert outcome.returncode == 0, outcome


# -- the Ansible role (run for real by .ci/run; these need no Ansible) -------------------

ROLE = EXAMPLES / "ansible" / "roles" / "hardsnap"


def role_yaml(relative: str) -> Any:
    return YAML(typ="safe").load((ROLE / relative).read_text())


def role_tasks() -> list[dict[str, Any]]:
    """The role's tasks and handlers, blocks flattened."""
    tasks: list[dict[str, Any]] = []
    pending = [*role_yaml("tasks/main.yml"), *role_yaml("handlers/main.yml")]
    while pending:
        task = pending.pop(0)
        if "block" in task:
            pending[:0] = [
                dict(inner, delegate_to=task.get("delegate_to")) for inner in task["block"]
            ]
        else:
            tasks.append(task)
    return tasks


def module_arguments(task: dict[str, Any], module: str) -> dict[str, Any] | None:
    return task.get(f"ansible.builtin.{module}")


def test_role_writes_every_path_of_the_host_below_its_prefix() -> None:
    written = 0
    for task in role_tasks():
        if task.get("delegate_to") == "localhost":
            continue  # the control machine's scratch folder for the wheel
        for module in ("file", "copy", "template", "pip", "tempfile"):
            arguments = module_arguments(task, module) or {}
            for key in ("path", "dest", "virtualenv"):
                if key in arguments:
                    written += 1
                    assert arguments[key].startswith("{{ hardsnap_prefix }}"), (task["name"], key)
    assert written >= 8


def test_role_default_config_is_valid_and_its_commands_are_real_invocations(
    tmp_path: Path, cli: Any
) -> None:
    defaults = role_yaml("defaults/main.yml")
    assert defaults["hardsnap_prefix"] == ""
    config = tmp_path / "hardsnap.yaml"
    YAML(typ="safe").dump({"resources": defaults["hardsnap_resources"]}, config)
    tasks = role_tasks()
    template = next(t for t in tasks if (module_arguments(t, "template") or {}).get("validate"))
    assert template["ansible.builtin.template"]["src"] == "hardsnap.yaml.j2"
    validate = template["ansible.builtin.template"]["validate"]
    command, arguments = validate.split(" }} ")
    assert command == "{{ __hardsnap_command"
    words = [str(config) if word == "%s" else word for word in shlex.split(arguments)]
    assert cli(*words).returncode == 0
    # The report task runs plan only; nothing in the role applies.
    commands = [module_arguments(t, "command") for t in tasks if module_arguments(t, "command")]
    argvs = [command["argv"] for command in commands if command is not None]
    assert not any("apply" in argv for argv in argvs)
    plan = next(argv for argv in argvs if "plan" in argv)
    assert plan[0] == "{{ __hardsnap_command }}"
    (tmp_path / "world").mkdir()
    world = backup_config(tmp_path / "world")
    values = {
        "{{ __hardsnap_config }}": str(world),
        "{{ hardsnap_prefix }}{{ hardsnap_state_dir }}": str(tmp_path / "state"),
    }
    outcome = cli(*[values.get(word, word) for word in plan[1:]])
    assert outcome.returncode == 2, outcome  # --detailed-exitcode: a snapshot to take
    assert not (tmp_path / "world" / "dst").exists()


def test_role_touches_systemd_only_where_it_runs_and_without_a_prefix() -> None:
    systemd_tasks = [t for t in role_tasks() if module_arguments(t, "systemd_service")]
    assert len(systemd_tasks) == 2  # enable + start, and the handler's restart
    for task in systemd_tasks:
        assert "__hardsnap_systemd" in task["when"], task["name"]
    condition = role_yaml("vars/main.yml")["__hardsnap_systemd"]
    assert "hardsnap_prefix == ''" in condition
    assert "hardsnap_run_systemd.stat.isdir" in condition
    stat = next(t for t in role_tasks() if t.get("register") == "hardsnap_run_systemd")
    assert stat["ansible.builtin.stat"]["path"] == "/run/systemd/system"


def test_role_installs_the_units_of_examples_systemd_and_finds_what_it_rewrites() -> None:
    defaults = role_yaml("defaults/main.yml")
    role_path = str(ROLE)
    units = Path(defaults["hardsnap_units_source"].replace("{{ role_path }}", role_path))
    assert units.resolve() == (EXAMPLES / "systemd").resolve()
    package = Path(defaults["hardsnap_package"].replace("{{ role_path }}", role_path))
    assert (package / "pyproject.toml").is_file()
    template = (ROLE / "templates" / "unit.j2").read_text()
    service = (EXAMPLES / "systemd" / "hardsnap.service").read_text().splitlines()
    # Each line the template rewrites is in the example unit, once.
    for start in ("RequiresMountsFor=", "ExecStartPre=+/bin/mkdir -p ", "ReadWritePaths="):
        assert f"line.startswith('{start}')" in template
        assert len([line for line in service if line.startswith(start)]) == 1, start
    for path in ("/usr/local/bin/hardsnap", "/etc/hardsnap/hardsnap.yaml"):
        assert f"replace('{path}'" in template
        assert any(line.startswith("ExecStart=") and path in line for line in service)


# -- the systemd unit, as systemd would run it -------------------------------------------

NEEDED_CAPABILITIES = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_MKNOD",
    "CAP_SETFCAP",
}


def test_service_treats_a_held_lock_and_a_stop_as_success_and_creates_its_targets() -> None:
    service = unit("hardsnap.service")["Service"]
    assert {"75", "143"} <= set(service["SuccessExitStatus"].split())
    assert service["KillMode"] == "mixed"
    # Setting setuid/setgid bits is part of a faithful snapshot of /usr.
    assert service.get("RestrictSUIDSGID", "false") == "false"
    assert set(service["CapabilityBoundingSet"].split()) == NEEDED_CAPABILITIES
    created = shlex.split(service["ExecStartPre"])
    assert created[0] == "+/bin/mkdir" and "-p" in created
    for path in service["ReadWritePaths"].split():
        assert path in created, f"{path} is not created before the sandbox needs it"


def start_commands() -> dict[str, str]:
    """The command that makes the targets before the sandbox starts, as
    the example unit and the Ansible role's template give it; the
    template's list of targets is left as TARGETS."""
    template = (ROLE / "templates" / "unit.j2").read_text().splitlines()
    rendered = next(line for line in template if line.startswith("ExecStartPre="))
    rendered = rendered.replace("{{ __hardsnap_targets | join(' ') }}", "TARGETS")
    return {
        "unit": unit("hardsnap.service")["Service"]["ExecStartPre"],
        "role": rendered.removeprefix("ExecStartPre="),
    }


@pytest.mark.parametrize("shipped", ["unit", "role"])
def test_the_units_start_makes_missing_targets_0700_and_leaves_existing_directories_alone(
    tmp_path: Path, shipped: str
) -> None:
    """Debian's /var/backups is dpkg's, 0755: making a target inside it
    must not chmod it on every start."""
    existing = tmp_path / "backups"
    existing.mkdir()
    os.chmod(existing, 0o755)
    missing = existing / "etc"
    words = shlex.split(start_commands()[shipped])
    assert words[0].startswith("+/"), words  # run outside the sandbox, as root
    options = [word for word in words[1:] if not word.startswith("/") and word != "TARGETS"]
    # The unit's own targets, or the role's, stand for these two.
    command = [words[0].removeprefix("+"), *options, str(existing), str(missing)]
    done = subprocess.run(command, capture_output=True, text=True, umask=0o077)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755
    assert stat.S_IMODE(missing.stat().st_mode) == 0o700
    again = subprocess.run(command, capture_output=True, text=True, umask=0o077)
    assert again.returncode == 0, again.stderr
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    hardsnap = Path(sys.executable).parent / "hardsnap"
    for name in ("hardsnap.service", "hardsnap.timer"):
        text = (EXAMPLES / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/usr/local/bin/hardsnap", str(hardsnap)))
    done = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            str(tmp_path / "hardsnap.service"),
            str(tmp_path / "hardsnap.timer"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr


def sandboxed(
    command: list[str], writable: list[Path], bounding_set: str | None = None
) -> list[str]:
    """`command` as the unit runs it, as far as this machine allows: the
    unit's capability bounding set (or `bounding_set`) and no new
    privileges (setpriv), in a mount namespace where everything is
    read-only but `writable` and the unit's RuntimeDirectory
    (ProtectSystem=strict with ReadWritePaths)."""
    service = unit("hardsnap.service")["Service"]
    # RuntimeDirectory: systemd makes it, writable inside the sandbox.
    runtime = Path("/run") / service["RuntimeDirectory"]
    runtime.mkdir(mode=int(service["RuntimeDirectoryMode"], 8), exist_ok=True)
    writable = [*writable, runtime]
    names = bounding_set if bounding_set is not None else service["CapabilityBoundingSet"]
    capabilities = ",".join("+" + name.removeprefix("CAP_").lower() for name in names.split())
    binds = " && ".join(
        f"mount --bind {shlex.quote(str(path))} {shlex.quote(str(path))}" for path in writable
    )
    script = (
        f"mount --make-rprivate / && {binds} && mount -o remount,bind,ro / && "
        f"exec setpriv --bounding-set=-all,{capabilities} --no-new-privs -- "
        + " ".join(shlex.quote(word) for word in command)
    )
    return ["unshare", "--mount", "sh", "-c", script]


def run_sandboxed(
    command: list[str],
    writable: list[Path],
    environment: dict[str, str],
    bounding_set: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `command` sandboxed (skipped where no mount namespace may be made)."""
    done = subprocess.run(
        sandboxed(command, writable, bounding_set), env=environment, capture_output=True, text=True
    )
    if (
        done.returncode != 0
        and "unshare" in done.stderr
        and "Operation not permitted" in done.stderr
    ):
        pytest.skip(f"no mount namespace here: {done.stderr.strip()}")
    return done


@pytest.mark.linux_only(reason="xattr calls")
@pytest.mark.skipif(os.geteuid() != 0, reason="the unit runs as root")
@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_service_command_under_the_units_sandbox_keeps_setuid_owners_links_and_xattrs(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    (source / "bin").mkdir(parents=True)
    tool = source / "bin" / "tool"
    tool.write_bytes(b"#!/bin/sh\n")
    os.chmod(tool, 0o4755)
    shared = source / "bin" / "shared"
    shared.write_bytes(b"group tool\n")
    os.chown(shared, 0, 65534)
    os.chmod(shared, 0o2750)
    os.link(tool, source / "bin" / "tool-alias")
    private = source / "home" / "nobody.txt"
    private.parent.mkdir()
    private.write_bytes(b"someone else's")
    os.chown(private, 65534, 65534)
    os.chmod(private, 0o600)
    os.chmod(private.parent, 0o700)
    os.setxattr(shared, "user.origin", b"test")
    if shutil.which("setcap"):
        subprocess.run(["setcap", "cap_net_raw+ep", str(tool)], check=True)
        os.chmod(tool, 0o4755)  # setcap kept it, but make sure
    mknod = source / "dev-null"
    os.mknod(mknod, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    target, state = tmp_path / "dst", tmp_path / "state"
    target.mkdir()
    state.mkdir(mode=0o700)
    config = write_config(
        tmp_path / "hardsnap.yaml",
        {
            "name": "r",
            "type": "backup",
            "source_dir": str(source),
            "target_path": str(target),
            "special_files": "keep",
            "min_free_space": 0,
        },
    )
    service = unit("hardsnap.service")["Service"]
    words = shlex.split(service["ExecStart"])
    command = [str(Path(sys.executable).parent / "hardsnap"), *words[1:]]
    command = [str(config) if word.endswith("hardsnap.yaml") else word for word in command]
    environment = dict(
        os.environ, HARDSNAP_STATE_DIR=str(state), HARDSNAP_NOW="2026-03-29T06:00:00Z"
    )
    done = run_sandboxed(command, [target, state], environment)
    assert done.returncode == 0, done
    assert done.stdout == "", done.stdout  # -q: nothing when all went well
    snapshot = target / "2026.088.06.00"
    differences = rsync_changes(source, snapshot)
    assert [line for line in differences if not line.startswith(".d..t")] == []
    assert stat.S_IMODE(os.stat(snapshot / "bin" / "tool").st_mode) == 0o4755
    assert (
        os.stat(snapshot / "bin" / "tool").st_ino == os.stat(snapshot / "bin" / "tool-alias").st_ino
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="the unit runs as root")
def test_a_sandbox_too_tight_fails_the_snapshot_naming_the_file(tmp_path: Path) -> None:
    """Without CAP_CHOWN a foreign owner cannot be kept: the error says
    which file, not only "Operation not permitted"."""
    source = tmp_path / "src"
    source.mkdir()
    owned = source / "owned-by-nobody"
    owned.write_bytes(b"x")
    os.chown(owned, 65534, 65534)
    target, state = tmp_path / "dst", tmp_path / "state"
    target.mkdir()
    state.mkdir(mode=0o700)
    config = write_config(
        tmp_path / "hardsnap.yaml",
        {"name": "r", "type": "backup", "source_dir": str(source), "target_path": str(target)},
    )
    command = [str(Path(sys.executable).parent / "hardsnap"), "apply", "-q", "-c", str(config)]
    environment = dict(os.environ, HARDSNAP_STATE_DIR=str(state))
    bounding_set = "CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER"
    done = run_sandboxed(command, [target, state], environment, bounding_set)
    assert done.returncode == 1, done
    assert "Operation not permitted (owned-by-nobody)" in done.stderr, done.stderr
    assert "snapshot failed: snapshot failed" not in done.stderr

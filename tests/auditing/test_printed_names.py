"""Names and hook output as hardsnap prints them: another user chooses the
names of the files root backs up and what a hook prints, so neither may
forge a line, reach root's terminal as a control sequence, or be read as
rich markup; in JSON, a name that is not UTF-8 keeps its bytes.

Every test drives the real CLI off a terminal (a pipe) and scans all it
printed for raw control characters.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.world.clock import at, iso, name_of
from tests.world.site import Site, new_site
from tests.world.users import hand_to_nobody, run_as_nobody

NEWLINE = b"x\n+ forged"
OSC = b"\x1b]0;pwned\x07"
CSI = b"\x1b[2J"
C1 = "\u009b31m".encode()
NOT_UTF8 = b"\xff\xfe.bin"
HOSTILE = (NEWLINE, OSC, CSI, C1, NOT_UTF8)
# Each hostile name as hardsnap prints it: as in the manifests, a backslash
# and the name's JSON string.
SHOWN = {
    NEWLINE: r'\"x\n+ forged"',
    OSC: r'\"\u001b]0;pwned\u0007"',
    CSI: r'\"\u001b[2J"',
    C1: r'\"\u009b31m"',
    NOT_UTF8: r'\"\udcff\udcfe.bin"',
}
# A hook printing markup and control sequences, "[/]" last (the line
# `state show` shows).
HOOK = r"printf '\033]0;hook\007\033[2J\302\233\n[bold red]x[/]\n[/]\n'"
HOOK_LINES = (r"\u001b]0;hook\u0007\u001b[2J\u009b", "[bold red]x[/]", "[/]")


def raw_controls(text: str) -> list[str]:
    """The characters of `text` a terminal acts on (C0 but newline and tab,
    DEL, C1) and lone surrogates (bytes that were not UTF-8)."""
    return [
        character
        for character in text
        if (ord(character) < 0x20 and character not in "\n\t")
        or 0x7F <= ord(character) <= 0x9F
        or 0xD800 <= ord(character) <= 0xDFFF
    ]


def assert_printable(*outputs: object) -> None:
    for output in outputs:
        text = str(output)
        assert raw_controls(text) == [], text


def write_named(directory: Path, name: bytes, data: bytes) -> None:
    with open(os.path.join(os.fsencode(directory), name), "wb") as handle:
        handle.write(data)


def surrogates_in(document: Any) -> list[str]:
    """Strings of a decoded JSON document holding lone surrogates (which jq
    turns into U+FFFD, losing the name)."""
    if isinstance(document, dict):
        return [text for key, value in document.items() for text in surrogates_in([key, value])]
    if isinstance(document, list):
        return [text for item in document for text in surrogates_in(item)]
    if isinstance(document, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in document):
        return [document]
    return []


def loaded(stdout: str) -> Any:
    document = json.loads(stdout)
    assert surrogates_in(document) == [], stdout
    return document


def recovered(entry: dict[str, Any], key: str) -> bytes:
    """A name's bytes from a JSON entry: KEY when it is UTF-8, else KEY_base64."""
    if f"{key}_base64" in entry:
        assert "\ufffd" in entry[key], entry
        return base64.b64decode(entry[f"{key}_base64"])
    return os.fsencode(entry[key])


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """Two snapshots of a source holding a file of each hostile name, every
    one changed in the second; a pre_command printing markup and escapes."""
    site = new_site(tmp_path)
    for name in HOSTILE:
        write_named(site.source, name, b"1")
    site.write(pre_command=HOOK)
    first = site.cli("apply")
    assert first.returncode == 0, first
    for name in HOSTILE:
        write_named(site.source, name, b"22")
    second = site.cli("apply", now=at(1))
    assert second.returncode == 0, second
    return site


def test_diff_prints_each_change_on_one_line_with_hostile_names_escaped(site: Site) -> None:
    done = site.process("diff", "r")
    assert done.returncode == 0, done
    assert_printable(done)
    lines = done.stdout.splitlines()
    assert lines[0] == f'diff "r": {name_of(at(0))} -> {name_of(at(1))}', done
    assert sorted(lines[1:-1]) == sorted(f"~ {SHOWN[name]} (1 B -> 2 B)" for name in HOSTILE)
    assert lines[-1].startswith("5 changes: 0 added, 0 removed, 5 changed"), done


def rot(site: Site) -> str:
    """Append to each hostile file of the newest snapshot; return its name."""
    snapshot = name_of(at(1))
    for name in HOSTILE:
        with open(os.path.join(os.fsencode(site.target / snapshot), name), "ab") as handle:
            handle.write(b"rot")
    return snapshot


def test_verify_names_the_files_it_finds_changed_escaped(site: Site) -> None:
    done = site.process("verify", "r", rot(site))
    assert done.returncode == 1, done
    assert_printable(done)
    findings = [line for line in done.stdout.splitlines() if line.startswith("  changed ")]
    assert sorted(line.split(": size 2 -> 5, mtime ")[0] for line in findings) == sorted(
        f"  changed    {SHOWN[name]}" for name in HOSTILE
    ), done


@pytest.mark.parametrize("name", [NEWLINE, NOT_UTF8], ids=["newline", "not-utf8"])
def test_history_of_a_hostile_name_shows_it_escaped(site: Site, name: bytes) -> None:
    done = site.process("history", "r", os.fsdecode(name))
    assert done.returncode == 0, done
    assert_printable(done)
    assert done.stdout.splitlines()[0] == f'history of {SHOWN[name]} in "r": 2 versions', done


def test_history_of_a_name_in_no_snapshot_names_it_escaped_on_one_line(site: Site) -> None:
    done = site.process("history", "r", "gone\n+ forged")
    assert done.returncode == 1, done
    assert_printable(done)
    assert done.stderr.splitlines() == [
        rf'hardsnap: \"gone\n+ forged" is in no snapshot of resource "r" in {site.target}'
    ], done


def test_plan_and_apply_print_hook_output_escaped(site: Site) -> None:
    plan = site.process("plan", now=at(2))
    assert plan.returncode == 0, plan
    assert_printable(plan, site.process("plan", "--json", now=at(2)))
    done = site.process("apply", "-v", now=at(2))
    assert done.returncode == 0, done
    assert_printable(done)
    for line in HOOK_LINES:
        assert f"      | {line}" in done.stdout.splitlines(), done


@pytest.mark.parametrize("columns", ["300", "40"])
def test_state_show_prints_hook_output_literally_never_as_markup(
    site: Site, columns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 300 columns: the runs' table; 40: a few lines per run.
    monkeypatch.setenv("COLUMNS", columns)
    done = site.cli("state", "show", now=None)
    assert done.returncode == 0, done
    assert_printable(done)
    assert "pre_command: [/]" in done.stdout, done


def test_a_failing_hooks_last_line_is_escaped_in_its_error_and_in_state_show(
    tmp_path: Path,
) -> None:
    site = new_site(tmp_path)
    site.write(pre_command=r"printf '[/]\033]0;pwned\007\n'; exit 3")
    done = site.process("apply")
    assert done.returncode == 1, done
    assert_printable(done)
    shown = r"exit code 3: [/]\u001b]0;pwned\u0007"
    assert f"error: r: pre_command failed: {shown}" in done.stderr.splitlines(), done
    state = site.cli("state", "show", now=None)
    assert state.returncode == 0, state
    assert_printable(state)
    assert shown in state.stdout, state


def test_warnings_naming_hostile_files_are_one_line_each_and_escaped(
    nobody_dir: Path,
) -> None:
    site = new_site(nobody_dir)
    for name in HOSTILE:
        write_named(site.source, name, b"unreadable")
        os.chmod(os.path.join(os.fsencode(site.source), name), 0o000)
    site.target.mkdir()
    site.state.mkdir()
    hand_to_nobody(nobody_dir)
    done = run_as_nobody(["apply", "-c", str(site.config)], nobody_dir, site.state, iso(at(0)))
    stdout = done.stdout.decode("utf-8", "surrogateescape")
    stderr = done.stderr.decode("utf-8", "surrogateescape")
    assert done.returncode == 0, (stdout, stderr)
    assert_printable(stdout, stderr)
    for name in HOSTILE:
        line = f"warning: r: skipped {SHOWN[name]}: unreadable: Permission denied"
        assert line in stderr.splitlines(), stderr
    assert site.snapshots() == [name_of(at(0))]


# -- JSON: names that are not UTF-8 keep their bytes ---------------------------------


def test_diff_json_gives_a_name_that_is_not_utf8_with_its_bytes_in_base64(site: Site) -> None:
    done = site.process("diff", "r", "--json")
    assert done.returncode == 0, done
    changed = loaded(done.stdout)["changed"]
    assert sorted(recovered(entry, "path") for entry in changed) == sorted(HOSTILE)
    (entry,) = [entry for entry in changed if "path_base64" in entry]
    assert entry["path"] == "\ufffd\ufffd.bin"
    assert base64.b64decode(entry["path_base64"]) == NOT_UTF8
    # Names that are UTF-8 stay as they were, control characters and all.
    assert {entry["path"] for entry in changed if "path_base64" not in entry} == {
        os.fsdecode(name) for name in HOSTILE if name != NOT_UTF8
    }


def test_verify_json_names_findings_recoverably(site: Site) -> None:
    done = site.process("verify", "r", rot(site), "--json")
    assert done.returncode == 1, done
    problems = loaded(done.stdout)["snapshots"][0]["problems"]
    assert sorted(recovered(problem, "path") for problem in problems) == sorted(HOSTILE)


def test_history_json_gives_a_path_that_is_not_utf8_recoverably(site: Site) -> None:
    done = site.process("history", "r", os.fsdecode(NOT_UTF8), "--json")
    assert done.returncode == 0, done
    assert recovered(loaded(done.stdout), "path") == NOT_UTF8


def test_apply_json_and_state_show_json_give_skipped_names_recoverably(site: Site) -> None:
    os.symlink("a.txt", os.path.join(os.fsencode(site.source), NOT_UTF8 + b".lnk"))
    done = site.process("apply", "--json", now=at(2))
    assert done.returncode == 0, done
    assert_printable(done)
    actions = loaded(done.stdout)["resources"][0]["actions"]
    (snapshot,) = [action for action in actions if action["kind"] == "snapshot"]
    (skipped,) = snapshot["skipped"]
    assert recovered(skipped, "path") == NOT_UTF8 + b".lnk"
    state = site.process("state", "show", "--json", now=None)
    assert state.returncode == 0, state
    run = loaded(state.stdout)["resources"]["r"]["runs"][-1]
    (recorded,) = [action for action in run["actions"] if action["kind"] == "snapshot"]
    assert recovered(recorded["skipped"][0], "path") == NOT_UTF8 + b".lnk"
    # Hook output stays as printed in JSON.
    assert run["actions"][0]["output_tail"].endswith("[bold red]x[/]\n[/]\n")

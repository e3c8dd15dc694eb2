"""Bad input never gives a traceback (issue 3, promise 8).

Hypothesis feeds random config files (rendered structures, raw YAML-ish text,
deep nesting, non-UTF-8 bytes) and random values for every resource key to
the real CLI, in-process through the `cli` fixture, so a crash fails the test.
Each example lives in its own temporary directory and removes it afterwards,
which is why the function-scoped `cli` fixture may be shared across examples.

A corrupt, truncated or unreadable state store stops plan, apply and state
show with a message naming the store and the way out; the snapshots on disk
stay the truth and are found again once the store is moved aside.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from hardsnap.providers.backup.schema import RESOURCE_KEYS
from hardsnap.reconcile.config import ConfigError, load_config
from hardsnap.reconcile.model import Config
from tests.world.cli import Cli, Finished, hardsnap_command
from tests.world.clock import T0
from tests.world.site import backup_config

SNAPSHOT_NAME = re.compile(r"\d{4}\.\d{3}\.\d{2}\.\d{2}")
# Line breaks as YAML 1.2 counts them in positions (NEL, LS and PS are not).
YAML_LINE_BREAK = re.compile("\r\n|[\r\n]")
# A message says how to recover when it points at one of these ways out.
RECOVERY_HINTS = ("move it aside", "--state-dir", "permission", "remove it")
EXAMPLES = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- helpers -------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """One `FILE:LINE:COL: message` line printed on stderr."""

    line: int
    column: int
    message: str


@contextmanager
def example_root() -> Iterator[Path]:
    """A fresh directory for one hypothesis example, removed when it ends."""
    with tempfile.TemporaryDirectory(prefix="hardsnap-bad-input-") as directory:
        yield Path(directory)


def tree(root: Path) -> set[str]:
    """Every path below `root`, relative to it."""
    return {
        os.path.relpath(os.path.join(directory, name), root)
        for directory, subdirectories, files in os.walk(root)
        for name in subdirectories + files
    }


def located_lines(outcome: Finished, config: Path) -> list[Located]:
    pattern = re.compile(rf"{re.escape(str(config))}:(\d+):(\d+): (\S.*)")
    found: list[Located] = []
    for text in outcome.stderr.split("\n"):
        match = pattern.fullmatch(text)
        if match:
            found.append(Located(int(match.group(1)), int(match.group(2)), match.group(3)))
    return found


def assert_located_within(outcome: Finished, config: Path, data: bytes) -> list[Located]:
    """A rejection prints at least one `FILE:LINE:COL: message` line whose
    1-based position lies inside the file (or just after its last line)."""
    found = located_lines(outcome, config)
    assert found, f"no FILE:LINE:COL: message line\n{outcome}"
    lines = YAML_LINE_BREAK.split(data.decode("utf-8", errors="replace"))
    widest = max(len(line) for line in lines)
    for problem in found:
        assert 1 <= problem.line <= len(lines) + 1, f"{problem} outside {len(lines)} lines"
        assert 1 <= problem.column <= widest + 1, f"{problem} outside {widest} columns"
    return found


def confined(config: Path, root: Path) -> Config | None:
    """The loaded config when every path of it lies below `root` (so plan and
    apply touch nothing else), else None."""
    try:
        loaded = load_config(str(config))
        paths = [
            os.path.realpath(path)
            for resource in loaded.resources
            for path in (resource.source_dir, resource.target_path)
        ]
    except (ConfigError, ValueError):  # ValueError: NUL or a lone surrogate in a path
        return None
    if all(path == str(root) or path.startswith(str(root) + os.sep) for path in paths):
        return loaded
    return None


def runs_no_command(loaded: Config) -> bool:
    return all(
        resource.pre_command is None and resource.post_command is None and not resource.revert
        for resource in loaded.resources
    )


def says_how_to_recover(outcome: Finished, state: Path) -> None:
    assert outcome.returncode == 1, str(outcome)
    assert str(state) in outcome.stderr, str(outcome)
    assert any(hint in outcome.stderr for hint in RECOVERY_HINTS), str(outcome)
    assert "Traceback" not in outcome.stderr + outcome.stdout, str(outcome)


# -- strategies: one-line YAML values and whole config files ------------------

REQUIRED = ("name", "type", "source_dir", "target_path")

UNKNOWN = object()  # a raw YAML form whose meaning the oracle does not judge


@dataclass(frozen=True)
class Value:
    """A one-line YAML value and the Python value it stands for."""

    yaml: str
    meaning: Any


def as_json(value: Any) -> Value:
    return Value(json.dumps(value), value)


RAW_VALUES = (
    Value("~", None),
    Value("", None),
    Value(".inf", math.inf),
    Value("-.inf", -math.inf),
    Value(".nan", math.nan),
    Value("1e400", math.inf),
    Value("2026-03-29T06:00:00Z", dt.datetime(2026, 3, 29, 6, tzinfo=dt.UTC)),
    Value("!!binary aGVsbG8=", b"hello"),
    Value("[]", []),
    Value("{}", {}),
    Value("9" * 400, int("9" * 400)),
    Value("-" + "9" * 400, -int("9" * 400)),
    Value("'" + "9" * 5000 + "'", "9" * 5000),  # beyond int(str)'s 4300-digit limit
    Value("9" * 5000, UNKNOWN),
    Value("0x1F", UNKNOWN),
    Value("0o17", UNKNOWN),
    Value("1_000", UNKNOWN),
    Value("yes", UNKNOWN),
    Value("!custom x", UNKNOWN),
    Value("!custom [1, 2]", UNKNOWN),
    Value("!custom {a: 1}", UNKNOWN),
    Value("!!python/object:os.system {a: 1}", UNKNOWN),
    Value("!!set {a, b}", UNKNOWN),
    Value("!!str backup", UNKNOWN),
    Value("[!custom x]", UNKNOWN),
    Value("'" + "x" * 100_000 + "'", "x" * 100_000),
)


MEANINGFUL_WORDS = (
    "backup",
    "Backup",
    "daily",
    "Daily",
    "hourly",
    "weekly",
    "fail",
    "copy",
    "warn",
    "link",
    "30",
    " 7 ",
    "0",
    "-1",
    "1G",
    "512M",
    "1 T",
    "1GiB",
    "",
    " ",
    "etc-backup",
    "a b",
    "*.swp,cache/*",
    "true",
    "src",
    "dst",
    "src/inner",
    ".",
    "..",
    "~",
    "/",
    "a\x00b",
    "\ud800",
    "\t",
)
KEYS = st.one_of(
    st.sampled_from((*RESOURCE_KEYS, "resources", "<<")),
    st.text(max_size=8),
    st.integers(),
    st.booleans(),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(),
    st.text(max_size=30),
    st.text(max_size=3000, alphabet="x9 :-\t"),
    st.dates(),
    st.sampled_from(MEANINGFUL_WORDS),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=20,
)
NEAR_RESOURCE = st.fixed_dictionaries(
    {
        "name": st.sampled_from(("r", "etc-backup", "a b", "")) | VALUES,
        "type": st.just("backup") | VALUES,
        "source_dir": st.sampled_from(("src", ".", "src/sub", "dst")) | VALUES,
        "target_path": st.sampled_from(("dst", "snapshots", "src/inner", ".")) | VALUES,
    },
    optional={key: VALUES for key in RESOURCE_KEYS if key not in REQUIRED} | {"colour": VALUES},
)
DOCUMENTS = st.one_of(
    VALUES,
    st.dictionaries(KEYS, VALUES, max_size=4),
    st.fixed_dictionaries(
        {"resources": st.lists(NEAR_RESOURCE | VALUES, max_size=3) | VALUES},
        optional={"extra": VALUES},
    ),
)


def render(document: Any, style: str) -> bytes:
    if style == "json":
        return json.dumps(document, default=str).encode()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = style == "flow"
    stream = StringIO()
    yaml.dump(document, stream)
    return stream.getvalue().encode("utf-8", errors="surrogatepass")


FRAGMENTS = (
    "resources:",
    "\n",
    "  ",
    "    ",
    "- ",
    "\t",
    ":",
    ": ",
    "&a ",
    "*a",
    "&b {type: backup}",
    "<<: ",
    "<<: *a",
    "<<: [*a, *b]",
    "!!binary aGVsbG8=",
    "!!python/object:os.system ",
    "!!python/object/apply:os.system [true]",
    "!custom ",
    "!!str ",
    "!!set ",
    "!!omap ",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "? ",
    "'",
    '"',
    "\\",
    "# c",
    "|",
    ">",
    "---",
    "...",
    "%YAML 1.2\n---\n",
    "%TAG ! tag:x,2000:\n---\n",
    "name: r",
    "type: backup",
    "source_dir: src",
    "target_path: dst",
    "retain: ",
    "exclude: ",
    "revert: true",
    "x" * 5000,
    "9" * 5000,
    "\x00",
    "\ufeff",
    "\u2028",
    "\r",
    "\x85",
    "~",
    "null",
    "2026-03-29",
    ".inf",
)
# Prefixes that change what a value means: tags (standard, custom, unsafe
# Python ones) and anchors.
VALUE_PREFIXES = (
    "",
    "!custom ",
    "!!str ",
    "!!binary ",
    "!!python/object:os.system ",
    "!!python/name:os.system ",
    "!!set ",
    "!!omap ",
    "!!map ",
    "!!seq ",
    "&a ",
    "&b !custom ",
)
SNIPPETS = (
    *(value.yaml for value in RAW_VALUES if len(value.yaml) < 1000),
    "r",
    "backup",
    "src",
    "dst",
    "'/'",
    "'~'",
    '"a\\0b"',
    '"\\ud800"',
    '"\\t"',
    "[1, [2, [3]]]",
    "{a: {b: 1}}",
    "[*.swp, cache/*]",
    "*a",
    "*b",
    "[*a]",
    "{<<: *a}",
    "{<<: [*a, *b]}",
)
# Top-level entries that define the anchors the snippets refer to.
ANCHORS = (
    "base: &a {type: backup, source_dir: src}",
    "base: &a 1",
    "base: &a [1, 2]",
    "base: &a !custom {x: 1}",
    "base: &a\n  <<: *a",
    "base: &b [&a {retain: 3}]",
)
KEYS_AND_OTHERS = (*RESOURCE_KEYS, "<<", "colour", "Name")


@st.composite
def templated(draw: st.DrawFn) -> bytes:
    """A config shaped like a real one, with tags, anchors, aliases and merge
    keys where values, resources and the resources list go."""
    value = st.sampled_from(SNIPPETS) | st.builds(
        lambda prefix, snippet: prefix + snippet,
        st.sampled_from(VALUE_PREFIXES),
        st.sampled_from(SNIPPETS),
    )
    if draw(st.integers(0, 9)) == 0:
        return (draw(value) + "\n").encode()
    lines = draw(st.lists(st.sampled_from(ANCHORS), max_size=2))
    prefix = draw(st.sampled_from(VALUE_PREFIXES))
    if draw(st.booleans()):
        items = draw(st.lists(value, max_size=3))
        lines.append(f"resources: {prefix}[{', '.join(items)}]")
    else:
        lines.append(f"resources: {prefix}".rstrip())
        for _ in range(draw(st.integers(0, 2))):
            item_prefix = draw(st.sampled_from(VALUE_PREFIXES))
            keys = draw(st.lists(st.sampled_from(KEYS_AND_OTHERS), max_size=6, unique=True))
            if not keys:
                lines.append(f"  - {item_prefix}{draw(value)}")
            for index, key in enumerate(keys):
                lead = f"  - {item_prefix}" if index == 0 else "    "
                lines.append(f"{lead}{key}: {draw(value)}")
    return ("\n".join(lines) + "\n").encode()


RAW_TEXT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=10)), max_size=40).map(
    lambda parts: "".join(parts).encode()
)
# Nesting from shallow to past the recursion limit (ruamel gives up near 300
# levels); kept below 600, beyond which ruamel's scanner alone needs seconds.
DEEP_NESTING = (
    st.integers(1, 600)
    .flatmap(
        lambda depth: st.sampled_from(
            (
                "resources: " + "[" * depth + "]" * depth,
                "resources:\n  - " + "- " * depth + "x\n",
                "{a: " * depth + "1" + "}" * depth,
            )
        )
    )
    .map(str.encode)
)


@st.composite
def non_utf8(draw: st.DrawFn) -> bytes:
    """A rendered document with bytes that are not UTF-8 spliced in."""
    text = draw(DOCUMENTS.map(lambda document: render(document, "block")))
    at = draw(st.integers(0, len(text)))
    junk = draw(st.sampled_from((b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc")))
    return text[:at] + junk + text[at:]


CONFIG_FILES = st.one_of(
    st.builds(render, DOCUMENTS, st.sampled_from(("block", "flow", "json"))),
    templated(),
    RAW_TEXT,
    DEEP_NESTING,
    non_utf8(),
    st.binary(max_size=200),
)


# -- 1. random config files ----------------------------------------------------


# Minimal inputs that crashed hardsnap when this test was written: every run
# tries them first, whatever hypothesis draws.
HUGE_DIGITS = "9" * 5000  # more than Python's 4300-digit limit for int(str)


@EXAMPLES
@given(data=CONFIG_FILES)
@example(data=b"resources: " + b"[" * 500 + b"]" * 500 + b"\n")
@example(data=b"resources: !custom [1]\n")
@example(data=b"!custom x\n")
@example(data=b"base: &a\n  <<: *a\nresources:\n")
@example(data=b"resources: !!set\n")
@example(data=b'resources:\n  - source_dir: "a\\0b"\n')
@example(data=b'resources:\n  - target_path: "\\ud800"\n')
@example(data=f"resources:\n  - retain: '{HUGE_DIGITS}'\n".encode())
@example(data=f"resources:\n  - retain: {HUGE_DIGITS}\n".encode())
@example(data=f"resources:\n  - min_free_space: '{HUGE_DIGITS}'\n".encode())
@example(data=b"resources:\n  - exclude: !custom [1]\n")
def test_random_config_file_exits_0_or_2_with_located_messages_and_creates_nothing_when_invalid(
    cli: Cli, data: bytes
) -> None:
    with example_root() as root:
        folder = root / "config"
        folder.mkdir()
        config = folder / "hardsnap.yaml"
        config.write_bytes(data)
        state = root / "state"
        env = {"HARDSNAP_STATE_DIR": str(state)}
        before = tree(root)

        validated = cli("validate", "-c", config, env=env)

        assert validated.returncode in (0, 2), str(validated)
        assert tree(root) == before
        if validated.returncode == 2:
            problems = assert_located_within(validated, config, data)
            for command in ("plan", "apply"):
                outcome = cli(command, "-c", config, env=env)
                assert outcome.returncode == 2, f"{command}: {outcome}"
                assert located_lines(outcome, config) == problems, f"{command}: {outcome}"
                assert tree(root) == before, f"{command} created files for an invalid config"
                assert not state.exists()
            return

        # A valid config: plan and apply only where nothing outside `root` is read
        # or written and no hook would run.
        loaded = confined(config, folder)
        if loaded is None:
            return
        planned = cli("plan", "-c", config, env=env)
        assert planned.returncode in (0, 1), str(planned)
        assert tree(root) == before, "plan created files"
        if runs_no_command(loaded):
            applied = cli("apply", "-c", config, env=env)
            assert applied.returncode in (0, 1), str(applied)


# -- 2. random values for every key of a resource ------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(MEANINGFUL_WORDS),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
VALUE = st.one_of(
    JSON_VALUES.map(as_json),
    st.dates().map(lambda day: Value(day.isoformat(), day)),
    st.sampled_from(RAW_VALUES),
)
RESOURCE_VALUES = st.dictionaries(st.sampled_from(RESOURCE_KEYS), VALUE, min_size=1)
LARGEST_PLAIN_NUMBER = 10**18
CHOICES = {
    "schedule": ("hourly", "daily", "weekly"),
    "cross_fs": ("fail", "copy", "warn", "link"),
    "symlinks": ("skip", "keep"),
    "special_files": ("skip", "keep"),
}


def number_verdict(number: int, least: int) -> bool | None:
    """Valid when >= least; a number too large for any real use may be accepted
    (clamped) or rejected, as long as it is not a crash."""
    if number > LARGEST_PLAIN_NUMBER:
        return None
    return number >= least


def whole_number_verdict(value: Any, least: int) -> bool | None:
    """int or numeric string >= least is valid; other types are not."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return number_verdict(value, least)
    if isinstance(value, str):
        if re.fullmatch(r"[0-9]+", value):
            significant = value.lstrip("0") or "0"
            return None if len(significant) > 18 else number_verdict(int(significant), least)
        return None if value.strip() and value.strip().isdigit() else False
    return False


def amount_verdict(value: Any, pattern: str, digits: int) -> bool | None:
    """A size or a duration: a whole number >= 0, or digits (at most
    `digits` of them, else unsure) and a suffix `pattern` allows."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return number_verdict(value, 0)
    if isinstance(value, str):
        amount = re.fullmatch(pattern, value)
        if amount:
            return None if len(amount.group(1)) > digits else True
        return None if re.search(r"[0-9]", value) else False
    return False


def verdict(key: str, value: Any, values: dict[str, Any]) -> bool | None:
    """Whether the documented rules accept `value` for `key`: True, False, or
    None where the spec leaves it open (or the value is a raw YAML form)."""
    if value is UNKNOWN:
        return None
    if value is None:
        return False if key in REQUIRED else None
    is_text = isinstance(value, str)
    if key == "name":
        return is_text and re.fullmatch(r"[A-Za-z0-9_.-]+", value) is not None
    if key == "type":
        return value == "backup"
    if key in ("source_dir", "target_path"):
        return None if is_text and value.strip() else False
    if key == "retain":
        return whole_number_verdict(value, 1)
    if key in ("keep_min", "keep_weekly", "keep_monthly", "keep_yearly"):
        return whole_number_verdict(value, 0)
    if key in CHOICES:
        return is_text and value in CHOICES[key]
    if key == "exclude":
        if is_text:
            return True
        if isinstance(value, list):
            if all(isinstance(item, str) and item.strip() for item in value):
                return True
            return False if any(not isinstance(item, str) for item in value) else None
        return False
    if key == "min_free_space":
        return amount_verdict(value, r"([0-9]+)[KMGT]?", 18)
    if key == "hook_timeout":
        return amount_verdict(value, r"([0-9]+)[smhSMH]?", 15)
    if key in ("pre_command", "post_command", "on_revert", "on_failure"):
        return is_text
    if key == "ping_url":
        return is_text and re.fullmatch(r"(?i)https?://\S+", value.strip()) is not None
    if key == "one_file_system":
        return isinstance(value, bool)
    if key == "revert":
        if not isinstance(value, bool):
            return False
        if not value:
            return True
        on_revert = values.get("on_revert")
        if on_revert is None:
            return False
        if isinstance(on_revert, str) and on_revert:
            return True
        return None
    raise AssertionError(f"no rule for {key}")


def resource_text(
    source: Path, target: Path, drawn: dict[str, Value]
) -> tuple[str, dict[str, int]]:
    """A one-resource config: each key on its own line (drawn values replace the
    base ones). Return the text and the 1-based line of every key."""
    base = {
        "name": Value("r", "r"),
        "type": Value("backup", "backup"),
        "source_dir": as_json(str(source)),
        "target_path": as_json(str(target)),
    }
    entries = base | drawn
    order = list(REQUIRED) + [key for key in RESOURCE_KEYS if key in drawn and key not in REQUIRED]
    lines = ["resources:"]
    key_lines: dict[str, int] = {}
    for index, key in enumerate(order):
        lead = "  - " if index == 0 else "    "
        lines.append(f"{lead}{key}: {entries[key].yaml}")
        key_lines[key] = len(lines)
    return "\n".join(lines) + "\n", key_lines


@EXAMPLES
@given(drawn=RESOURCE_VALUES)
@example(drawn={"retain": Value(f"'{HUGE_DIGITS}'", HUGE_DIGITS)})
@example(drawn={"keep_min": Value(f"'{HUGE_DIGITS}'", HUGE_DIGITS)})
@example(drawn={"min_free_space": Value(f"'{HUGE_DIGITS}'", HUGE_DIGITS)})
@example(drawn={"source_dir": as_json("a\x00b")})
@example(drawn={"target_path": as_json("\ud800")})
@example(drawn={"exclude": Value("!custom [1, 2]", UNKNOWN)})
@example(drawn={"min_free_space": Value("9" * 400, int("9" * 400))})
def test_random_value_for_any_key_exits_0_or_2_and_a_rejection_names_the_offending_line(
    cli: Cli, drawn: dict[str, Value]
) -> None:
    with example_root() as root:
        source = root / "src"
        source.mkdir()
        (source / "file").write_text("data\n")
        folder = root / "config"
        folder.mkdir()
        config = folder / "hardsnap.yaml"
        text, key_lines = resource_text(source, root / "dst", drawn)
        config.write_text(text)
        env = {"HARDSNAP_STATE_DIR": str(root / "state")}
        before = tree(root)
        meanings = {key: value.meaning for key, value in drawn.items()}
        verdicts = {key: verdict(key, meaning, meanings) for key, meaning in meanings.items()}

        validated = cli("validate", "-c", config, env=env)

        assert validated.returncode in (0, 2), str(validated)
        assert tree(root) == before
        if all(verdicts.values()):
            assert validated.returncode == 0, f"{verdicts}\n{text[:2000]}\n{validated}"
        if validated.returncode == 2:
            problems = assert_located_within(validated, config, text.encode())
            problem_lines = {problem.line for problem in problems}
            for key, accepted in verdicts.items():
                if accepted is False:
                    assert key_lines[key] in problem_lines, f"{key} not named\n{validated}"
            allowed = {key_lines[key] for key in drawn}
            if "target_path" in drawn:  # a source inside the new target is reported at the source
                allowed.add(key_lines["source_dir"])
            assert problem_lines <= allowed, f"{verdicts}\n{validated}"
            return

        assert not any(accepted is False for accepted in verdicts.values()), str(validated)
        if confined(config, root) is not None:
            planned = cli("plan", "-c", config, env=env)
            assert planned.returncode in (0, 1), str(planned)
            assert tree(root) == before, "plan created files"


def test_explicit_str_tag_on_a_valid_value_is_accepted(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "hardsnap.yaml"
    config.write_text(
        "resources:\n"
        "  - name: !!str r\n"
        "    type: !!str backup\n"
        "    source_dir: !!str src\n"
        "    target_path: !!str dst\n"
        "    schedule: !!str daily\n"
    )

    validated = cli("validate", "-c", config)

    assert validated.returncode == 0, str(validated)


# -- 3. a corrupt or unreadable state store ------------------------------------


def backed_up(cli: Cli, root: Path, state: Path) -> Path:
    """A config whose one resource "r" has its snapshot of T0 on disk and in
    `state`; return the config path."""
    config = backup_config(root)
    applied = cli("apply", "-c", config, "--state-dir", state)
    assert applied.returncode == 0, str(applied)
    assert (state / "cache.db").is_file()
    return config


def snapshots_of(target: Path) -> dict[str, bytes]:
    return {
        entry.name: (entry / "file").read_bytes()
        for entry in target.iterdir()
        if SNAPSHOT_NAME.fullmatch(entry.name)
    }


def remove_sqlite_companions(state: Path) -> None:
    for companion in state.glob("cache.db-*"):
        companion.unlink()


def garbage(state: Path) -> None:
    remove_sqlite_companions(state)
    (state / "cache.db").write_bytes(b"this is not a database\x00\xff" * 500)


def truncated_to_its_header(state: Path) -> None:
    remove_sqlite_companions(state)
    os.truncate(state / "cache.db", 50)


def truncated_to_half(state: Path) -> None:
    remove_sqlite_companions(state)
    database = state / "cache.db"
    os.truncate(database, database.stat().st_size // 2)


def cache_db_is_a_directory(state: Path) -> None:
    remove_sqlite_companions(state)
    (state / "cache.db").unlink()
    (state / "cache.db").mkdir()


def state_dir_is_a_file(state: Path) -> None:
    shutil.rmtree(state)
    state.write_text("not a directory\n")


# Ways a state store is found broken.
CORRUPTIONS = [
    garbage,
    truncated_to_its_header,
    truncated_to_half,
    cache_db_is_a_directory,
    state_dir_is_a_file,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
@pytest.mark.parametrize("command", [["plan"], ["apply"], ["state", "show"]])
def test_corrupt_state_store_exits_1_naming_the_store_and_the_way_out(
    cli: Cli, tmp_path: Path, corrupt: Callable[[Path], None], command: list[str]
) -> None:
    state = tmp_path / "state"
    config = backed_up(cli, tmp_path, state)
    before = snapshots_of(tmp_path / "dst")
    corrupt(state)

    outcome = cli(*command, "-c", config, "--state-dir", state)

    says_how_to_recover(outcome, state)
    assert snapshots_of(tmp_path / "dst") == before


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
def test_snapshots_are_found_again_after_a_corrupt_state_store_is_moved_aside(
    cli: Cli, tmp_path: Path, corrupt: Callable[[Path], None]
) -> None:
    state = tmp_path / "state"
    config = backed_up(cli, tmp_path, state)
    before = snapshots_of(tmp_path / "dst")
    corrupt(state)
    state.rename(tmp_path / "state.corrupt")

    planned = cli("plan", "-c", config, "--json", "--state-dir", state)
    detailed = cli("plan", "-c", config, "--detailed-exitcode", "--state-dir", state)
    shown = cli("state", "show", "-c", config, "--json", "--state-dir", state)
    applied = cli("apply", "-c", config, "--json", "--state-dir", state)

    assert planned.returncode == 0, str(planned)
    [resource] = planned.json()["resources"]
    assert resource["actions"] == [], "the window already has its snapshot"
    assert detailed.returncode == 0, str(detailed)
    assert shown.returncode == 0, str(shown)
    listed = [snapshot["name"] for snapshot in shown.json()["resources"]["r"]["snapshots"]]
    assert listed == sorted(before)
    assert applied.returncode == 0, str(applied)
    assert applied.json()["resources"][0]["result"] == "settled"
    assert snapshots_of(tmp_path / "dst") == before


@pytest.mark.parametrize("command", [["plan"], ["state", "show"]])
def test_read_only_command_on_an_empty_cache_db_writes_nothing_to_the_state_dir(
    cli: Cli, tmp_path: Path, command: list[str]
) -> None:
    state = tmp_path / "state"
    config = backed_up(cli, tmp_path, state)
    remove_sqlite_companions(state)
    os.truncate(state / "cache.db", 0)
    before = {path.name: path.read_bytes() for path in state.iterdir()}

    outcome = cli(*command, "-c", config, "--state-dir", state)

    assert outcome.returncode in (0, 1), str(outcome)
    assert {path.name: path.read_bytes() for path in state.iterdir()} == before


@pytest.fixture
def world_readable_root() -> Iterator[Path]:
    """A directory another user can traverse (tmp_path's parents are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="hardsnap-nobody-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a command as nobody")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
@pytest.mark.parametrize("command", [["plan"], ["apply"], ["state", "show"]])
def test_state_dir_unreadable_to_the_user_exits_1_naming_it_and_the_way_out(
    cli: Cli, world_readable_root: Path, command: list[str]
) -> None:
    root = world_readable_root
    state = root / "state"
    config = backed_up(cli, root, state)
    assert state.stat().st_mode & 0o777 == 0o700
    os.chmod(root / "dst", 0o755)  # only the state is out of reach, not the snapshots
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HARDSNAP_STATE_DIR": str(state),
        "HARDSNAP_NOW": T0,
        "NO_COLOR": "1",
        "HOME": str(root),
    }
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    finished = subprocess.run(
        [*as_nobody, *hardsnap_command(), *command, "-c", str(config)],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    says_how_to_recover(Finished(finished.returncode, finished.stdout, finished.stderr), state)
    assert sorted(snapshots_of(root / "dst")) == ["2026.088.06.00"]

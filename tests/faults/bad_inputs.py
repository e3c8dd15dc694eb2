"""Bad input for the faults tests: hypothesis strategies for config files and
values, the oracle that judges a value, and where a message must point.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from hardsnap.providers.backup.schema import RESOURCE_KEYS
from hardsnap.reconcile.config import ConfigError, load_config
from hardsnap.reconcile.model import Config
from tests.world.cli import Finished

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

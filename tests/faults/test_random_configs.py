"""Random config files and random values for every key: exit 0 or 2, each
rejection located at the offending line, nothing created and no command run
for an invalid file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from hardsnap.providers.backup.schema import RESOURCE_KEYS
from tests.faults.bad_inputs import (
    CONFIG_FILES,
    EXAMPLES,
    MEANINGFUL_WORDS,
    RAW_VALUES,
    REQUIRED,
    UNKNOWN,
    Value,
    as_json,
    assert_located_within,
    confined,
    example_root,
    located_lines,
    runs_no_command,
    tree,
)
from tests.world.cli import Cli

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
    "source_snapshot": ("none", "btrfs"),
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
    if key == "exclude_if_present":
        # Names of entries, listed as exclude is: "/", "." and ".." refused.
        if is_text:
            names = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, list):
            if any(not isinstance(name, str) or not name.strip() for name in value):
                return False
            names = [name.strip() for name in value]
        else:
            return False
        return not any("/" in name or "\0" in name or name in (".", "..") for name in names)
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

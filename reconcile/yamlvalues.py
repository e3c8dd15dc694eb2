"""Reading values and their positions out of ruamel.yaml's round-trip
documents, and the located problems a config check reports.

Positions are 0-based (line, column) pairs, as ruamel.yaml keeps them;
a Problem shows them 1-based, as editors do.
"""

from __future__ import annotations

import difflib
import sys
import warnings
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

# The largest number any setting takes (retain days, keep_min, free bytes).
MAX_NUMBER = 2**63 - 1


@dataclass(frozen=True)
class Problem:
    """One located config error; line and column are 1-based."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(Exception):
    """The config file is invalid; `problems` holds every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


def closest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """Given a misspelt word, return ' (did you mean "x"?)' or ''."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{matches[0]}"?)' if matches else ""


def parse_yaml(text: str, path: str) -> Any:
    yaml = YAML(typ="rt")
    # Read integers of any length, so that an absurd one is reported at its
    # key like any other bad value; the limit only guards str <-> int.
    digits_limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with warnings.catch_warnings():
            # A reused anchor is legal YAML (the later one wins): no warning.
            warnings.simplefilter("ignore")
            return yaml.load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(part for part in (error.context, error.problem) if part)
        raise ConfigError([Problem(path, line, column, f"YAML syntax: {message}")]) from None
    except YAMLError as error:
        raise ConfigError([Problem(path, 1, 1, f"YAML syntax: {error}")]) from None
    except RecursionError:
        raise ConfigError([Problem(path, 1, 1, "YAML nesting is too deep")]) from None
    except (AttributeError, TypeError, ValueError, KeyError) as error:
        # ruamel.yaml fails this way on some odd documents (recursive merge
        # keys, !!set of a scalar).
        raise ConfigError([Problem(path, 1, 1, f"YAML cannot be read: {error}")]) from None
    finally:
        sys.set_int_max_str_digits(digits_limit)


def is_text(value: Any) -> bool:
    return isinstance(value, str)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def whole_number(value: Any) -> int | None:
    """Return an int, or a string of ASCII digits, as an int; else None.
    Numbers beyond MAX_NUMBER count as not numbers: no setting needs them."""
    number = None
    if is_integer(value):
        number = int(value)
    elif is_text(value):
        text = value.strip()
        if text.isdigit() and text.isascii() and len(text) <= len(str(MAX_NUMBER)):
            number = int(text)
    if number is None or number > MAX_NUMBER:
        return None
    return number


def untagged(value: Any) -> Any:
    """An explicit `!!str` tag changes nothing: give back the plain string.
    Other tagged scalars stay as they are, and fail their key's type check."""
    if isinstance(value, TaggedScalar) and str(value.tag.value) == "tag:yaml.org,2002:str":
        return str(value.value)
    return value


def encodable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def key_at(mapping: CommentedMap, key: str) -> tuple[int, int]:
    """Position of a key; a key merged in (`<<: *base`) has none of its own,
    so the mapping's position stands for it."""
    try:
        line, column = mapping.lc.key(key)[:2]
        return line, column
    except (KeyError, TypeError):
        return node_position(mapping)


def value_at(mapping: CommentedMap, key: str) -> tuple[int, int]:
    try:
        line, column = mapping.lc.value(key)[:2]
        return line, column
    except (KeyError, TypeError):
        return node_position(mapping)


def node_position(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return (0, 0)
    return (lc.line, lc.col or 0)


def item_at(sequence: CommentedSeq, index: int) -> tuple[int, int]:
    try:
        line, column = sequence.lc.item(index)[:2]
        return line, column
    except (KeyError, TypeError, IndexError):
        return node_position(sequence)


def show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (CommentedMap, dict)):
        return "a mapping"
    if isinstance(value, (CommentedSeq, list)):
        return "a list"
    if is_integer(value) and value.bit_length() > 128:
        return "a number far too large"
    if isinstance(value, TaggedScalar):
        return f"{value.tag.value} {value.value}"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)

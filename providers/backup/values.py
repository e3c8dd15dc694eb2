"""Values of a config file as ruamel.yaml reads them: their types, their
positions (0-based line and column, as ruamel.yaml keeps them) and how a
message shows them. The schema's checks and the config loader share them.
"""

from __future__ import annotations

import difflib
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

# Where a value stands in the file: 0-based line and column, either unknown.
Position = tuple[int | None, int | None]

# The largest number any setting takes (retain days, keep_min, free bytes).
MAX_NUMBER = 2**63 - 1


def closest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """Given a misspelt word, return ' (did you mean "x"?)' or ''."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{matches[0]}"?)' if matches else ""


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

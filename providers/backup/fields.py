"""Check one value of a `backup` resource.

Each key of a resource has a check: given the YAML value and its position,
it returns the typed value, or None after reporting a located problem.
The rules that span a resource's keys are in schema.py; those that span
resources in reconcile/config.py, which asks schema.py to check each one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from ruamel.yaml.comments import CommentedSeq

from hardsnap.providers.backup.resource import CrossFs, Keep, Schedule, SourceSnapshot
from hardsnap.providers.backup.values import (
    MAX_NUMBER,
    Position,
    closest,
    is_integer,
    is_text,
    item_at,
    show,
    whole_number,
)
from hardsnap.providers.files.escaping import is_utf8

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
SIZE_PATTERN = re.compile(r"([0-9]+)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
DURATION_PATTERN = re.compile(r"([0-9]+)\s*([smh]?)", re.IGNORECASE)
DURATION_UNITS = {"": 1, "S": 1, "M": 60, "H": 3600}
RESOURCE_TYPES = ("backup",)
ChoiceT = TypeVar("ChoiceT", Schedule, CrossFs, Keep, SourceSnapshot)


class FieldChecks:
    """The checks of single values; one instance per config file, whose
    folder relative paths start from, reporting each problem where it is."""

    def __init__(self, path: str, report: Callable[[Position, str], None]) -> None:
        self.base = os.path.dirname(os.path.abspath(path))
        self.report = report

    # -- one check per key: given the YAML value and its position, return the
    # -- typed value, or None after reporting a problem.

    def check_name(self, value: Any, position: tuple[int, int]) -> str | None:
        if not is_text(value) or not NAME_PATTERN.fullmatch(value):
            self.report(position, f'"name" must match [A-Za-z0-9_.-]+, got {show(value)}')
            return None
        return str(value)

    def check_type(self, value: Any, position: tuple[int, int]) -> str | None:
        if value not in RESOURCE_TYPES:
            hint = closest(str(value), RESOURCE_TYPES) if is_text(value) else ""
            self.report(position, f'"type" must be "backup", got {show(value)}{hint}')
            return None
        return str(value)

    def check_path(self, value: Any, position: tuple[int, int]) -> str | None:
        if not is_text(value) or not value.strip():
            self.report(position, f"a path must be a non-empty string, got {show(value)}")
            return None
        if "\0" in value or not is_utf8(value):
            self.report(position, "a path must not hold NUL bytes or unpaired surrogates")
            return None
        expanded = os.path.expanduser(str(value))
        return os.path.normpath(os.path.join(self.base, expanded))

    def check_retain(self, value: Any, position: tuple[int, int]) -> int | None:
        number = whole_number(value)
        if number is None or number < 1:
            self.report(
                position, f'"retain" must be a whole number of days >= 1, got {show(value)}'
            )
            return None
        return number

    def check_keep_min(self, value: Any, position: tuple[int, int]) -> int | None:
        return self._count("keep_min", value, position)

    def check_keep_weekly(self, value: Any, position: tuple[int, int]) -> int | None:
        return self._count("keep_weekly", value, position)

    def check_keep_monthly(self, value: Any, position: tuple[int, int]) -> int | None:
        return self._count("keep_monthly", value, position)

    def check_keep_yearly(self, value: Any, position: tuple[int, int]) -> int | None:
        return self._count("keep_yearly", value, position)

    def _count(self, key: str, value: Any, position: tuple[int, int]) -> int | None:
        number = whole_number(value)
        if number is None or number < 0:
            self.report(position, f'"{key}" must be a whole number >= 0, got {show(value)}')
            return None
        return number

    def check_schedule(self, value: Any, position: tuple[int, int]) -> Schedule | None:
        return self._choice("schedule", Schedule, value, position)

    def check_cross_fs(self, value: Any, position: tuple[int, int]) -> CrossFs | None:
        return self._choice("cross_fs", CrossFs, value, position)

    def check_symlinks(self, value: Any, position: tuple[int, int]) -> Keep | None:
        return self._choice("symlinks", Keep, value, position)

    def check_special_files(self, value: Any, position: tuple[int, int]) -> Keep | None:
        return self._choice("special_files", Keep, value, position)

    def check_source_snapshot(self, value: Any, position: tuple[int, int]) -> SourceSnapshot | None:
        return self._choice("source_snapshot", SourceSnapshot, value, position)

    def _choice(
        self, key: str, enum: type[ChoiceT], value: Any, position: tuple[int, int]
    ) -> ChoiceT | None:
        choices = tuple(member.value for member in enum)
        if is_text(value) and value in choices:
            return enum(value)
        hint = closest(str(value), choices) if is_text(value) else ""
        allowed = " | ".join(choices)
        self.report(position, f'"{key}" must be one of {allowed}, got {show(value)}{hint}')
        return None

    def check_exclude(self, value: Any, position: tuple[int, int]) -> tuple[str, ...] | None:
        return self._texts("exclude", "an exclude pattern", value, position)

    def check_exclude_if_present(
        self, value: Any, position: tuple[int, int]
    ) -> tuple[str, ...] | None:
        names = self._texts("exclude_if_present", "a marker name", value, position)
        for name in names or ():
            if "/" in name or name in (".", "..") or "\0" in name or not is_utf8(name):
                self.report(
                    position,
                    f'"exclude_if_present" holds names of entries (like CACHEDIR.TAG), '
                    f"got {show(name)}",
                )
                return None
        return names

    def _texts(
        self, key: str, what: str, value: Any, position: tuple[int, int]
    ) -> tuple[str, ...] | None:
        """A comma-separated string, or a list of non-empty strings."""
        if is_text(value):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, CommentedSeq):
            texts: list[str] = []
            for index, text in enumerate(value):
                if not is_text(text) or not text.strip():
                    self.report(
                        item_at(value, index),
                        f"{what} must be a non-empty string, got {show(text)}",
                    )
                    continue
                texts.append(text.strip())
            return tuple(texts)
        self.report(
            position, f'"{key}" must be a comma-separated string or a list, got {show(value)}'
        )
        return None

    def check_min_free_space(self, value: Any, position: tuple[int, int]) -> int | None:
        size = "bytes with an optional K/M/G/T suffix (e.g. 1G, 512M, 0)"
        return self._measure("min_free_space", value, position, SIZE_PATTERN, SIZE_UNITS, size)

    def check_hook_timeout(self, value: Any, position: tuple[int, int]) -> int | None:
        duration = (
            "whole seconds with an optional s/m/h suffix (e.g. 30, 30s, 10m, 2h; 0 = no limit)"
        )
        return self._measure(
            "hook_timeout", value, position, DURATION_PATTERN, DURATION_UNITS, duration
        )

    def _measure(
        self,
        key: str,
        value: Any,
        position: tuple[int, int],
        pattern: re.Pattern[str],
        units: dict[str, int],
        wanted: str,
    ) -> int | None:
        amount = _amount(value, pattern, units)
        if amount is None:
            self.report(position, f'"{key}" must be {wanted}, got {show(value)}')
        return amount

    def check_command(self, value: Any, position: tuple[int, int]) -> str | None:
        if not is_text(value):
            self.report(position, f"a command must be a string, got {show(value)}")
            return None
        return str(value)

    def check_ping_url(self, value: Any, position: tuple[int, int]) -> str | None:
        text = str(value).strip() if is_text(value) else ""
        scheme, _, rest = text.partition("://")
        if scheme.lower() not in ("http", "https") or not rest or any(c.isspace() for c in text):
            # The URL is a secret (whoever knows it can ping the check):
            # said without its path, as every message says it.
            if is_text(value) and rest:
                host = rest.split("/", 1)[0].rpartition("@")[2]
                shown = f'"{scheme}://{host}/..." (its path not shown)'
            else:
                shown = show(value) if not is_text(value) else "a text that is no URL"
            self.report(position, f'"ping_url" must be an http:// or https:// URL, got {shown}')
            return None
        return text.rstrip("/")

    def check_revert(self, value: Any, position: tuple[int, int]) -> bool | None:
        return self._flag("revert", value, position)

    def check_one_file_system(self, value: Any, position: tuple[int, int]) -> bool | None:
        return self._flag("one_file_system", value, position)

    def _flag(self, key: str, value: Any, position: tuple[int, int]) -> bool | None:
        if not isinstance(value, bool):
            self.report(position, f'"{key}" must be true or false, got {show(value)}')
            return None
        return value

    checks: ClassVar[dict[str, Callable[[FieldChecks, Any, tuple[int, int]], Any]]] = {
        "name": check_name,
        "type": check_type,
        "source_dir": check_path,
        "target_path": check_path,
        "retain": check_retain,
        "schedule": check_schedule,
        "exclude": check_exclude,
        "exclude_if_present": check_exclude_if_present,
        "source_snapshot": check_source_snapshot,
        "cross_fs": check_cross_fs,
        "min_free_space": check_min_free_space,
        "pre_command": check_command,
        "post_command": check_command,
        "revert": check_revert,
        "on_revert": check_command,
        "keep_min": check_keep_min,
        "keep_weekly": check_keep_weekly,
        "keep_monthly": check_keep_monthly,
        "keep_yearly": check_keep_yearly,
        "symlinks": check_symlinks,
        "special_files": check_special_files,
        "one_file_system": check_one_file_system,
        "hook_timeout": check_hook_timeout,
        "on_failure": check_command,
        "ping_url": check_ping_url,
    }


def _amount(value: Any, pattern: re.Pattern[str], units: dict[str, int]) -> int | None:
    """A whole number >= 0, or a text of digits and one of `units`' suffixes
    (matched by `pattern`), as a number of the base unit; None if it is
    neither or larger than MAX_NUMBER."""
    amount = None
    if is_integer(value) and value >= 0:
        amount = int(value)
    elif is_text(value):
        match = pattern.fullmatch(value.strip())
        if match and len(match.group(1)) <= len(str(MAX_NUMBER)):
            amount = int(match.group(1)) * units[match.group(2).upper()]
    if amount is not None and amount <= MAX_NUMBER:
        return amount
    return None

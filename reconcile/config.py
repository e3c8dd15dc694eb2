"""Load and validate a hardsnap config file.

Validation runs in layers, the way an operator reads the file: YAML syntax,
then each resource's keys and value types, then the rules that span fields
and resources. Every problem found is collected with its position and
reported together, so one run of `hardsnap validate` shows them all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from hardsnap.reconcile.model import Config, CrossFs, Keep, Resource, Schedule
from hardsnap.reconcile.yamlvalues import (
    MAX_NUMBER,
    ConfigError,
    Problem,
    closest,
    encodable,
    is_integer,
    is_text,
    item_at,
    key_at,
    node_position,
    parse_yaml,
    show,
    untagged,
    value_at,
    whole_number,
)

__all__ = ["ConfigError", "Problem", "closest", "load_config", "parse_config"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
SIZE_PATTERN = re.compile(r"([0-9]+)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
DURATION_PATTERN = re.compile(r"([0-9]+)\s*([smh]?)", re.IGNORECASE)
DURATION_UNITS = {"": 1, "S": 1, "M": 60, "H": 3600}
TOP_LEVEL_KEYS = ("resources", "metrics_file")
RESOURCE_KEYS = (
    "name",
    "type",
    "source_dir",
    "target_path",
    "retain",
    "schedule",
    "exclude",
    "cross_fs",
    "min_free_space",
    "pre_command",
    "post_command",
    "revert",
    "on_revert",
    "keep_min",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "symlinks",
    "special_files",
    "one_file_system",
    "hook_timeout",
    "on_failure",
    "ping_url",
)
REQUIRED_KEYS = ("name", "type", "source_dir", "target_path")
RESOURCE_TYPES = ("backup",)
ChoiceT = TypeVar("ChoiceT", Schedule, CrossFs, Keep)


def load_config(path: str) -> Config:
    """Given the path of a config file, return its validated Config.

    Raise ConfigError listing every problem found, each located.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError([Problem(path, 1, 1, f"cannot read config file: {reason}")]) from None
    return parse_config(text, path)


def parse_config(text: str, path: str) -> Config:
    """Given a config file's text and its path, return its validated Config."""
    document = parse_yaml(text, path)
    checker = _Checker(path)
    resources = checker.document(document)
    if checker.problems:
        raise ConfigError(checker.problems)
    return Config(path=path, resources=tuple(resources), metrics_file=checker.metrics_file)


class _Checker:
    """Walks the parsed YAML and gathers problems; one instance per file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        self.problems: list[Problem] = []
        self.metrics_file: str | None = None

    def report(self, position: tuple[int | None, int | None], message: str) -> None:
        line, column = position
        self.problems.append(Problem(self.path, (line or 0) + 1, (column or 0) + 1, message))

    def document(self, document: Any) -> list[Resource]:
        if document is None:
            self.report((0, 0), 'config is empty: expected a mapping with "resources"')
            return []
        if not isinstance(document, CommentedMap):
            self.report(node_position(document), 'expected a mapping with key "resources"')
            return []
        for key in document:
            if key not in TOP_LEVEL_KEYS:
                self.report(
                    document.lc.key(key), f'unknown key "{key}"{closest(str(key), TOP_LEVEL_KEYS)}'
                )
        if document.get("metrics_file") is not None:
            self.metrics_file = self.check_path(
                untagged(document["metrics_file"]), value_at(document, "metrics_file")
            )
        if "resources" not in document:
            self.report((document.lc.line, document.lc.col), 'missing required key "resources"')
            return []
        items = document["resources"]
        if items is None:
            return []
        if not isinstance(items, CommentedSeq):
            self.report(document.lc.value("resources"), '"resources" must be a list')
            return []
        checked: list[tuple[dict[str, Any], CommentedMap]] = []
        resources: list[Resource] = []
        for index, item in enumerate(items):
            if not isinstance(item, CommentedMap):
                self.report(item_at(items, index), "each resource must be a mapping")
                continue
            before = len(self.problems)
            values = self.values(item)
            checked.append((values, item))
            if len(self.problems) == before:
                resources.append(self.resource(values))
        self.across(checked)
        return resources

    def values(self, item: CommentedMap) -> dict[str, Any]:
        """Check one resource's keys and values; return the values that are valid."""
        for key in item:
            if key not in RESOURCE_KEYS:
                self.report(
                    key_at(item, key), f'unknown key "{key}"{closest(str(key), RESOURCE_KEYS)}'
                )
        for key in REQUIRED_KEYS:
            if item.get(key) is None:
                where = key_at(item, key) if key in item else node_position(item)
                label = f' in resource "{item["name"]}"' if is_text(item.get("name")) else ""
                self.report(where, f'missing required key "{key}"{label}')

        values: dict[str, Any] = {}
        for key, check in self.checks.items():
            if item.get(key) is None:
                continue
            value = check(self, untagged(item[key]), value_at(item, key))
            if value is not None:
                values[key] = value

        if values.get("revert") and not values.get("on_revert"):
            self.report(key_at(item, "revert"), '"on_revert" is required when "revert" is true')
        return values

    @staticmethod
    def resource(values: dict[str, Any]) -> Resource:
        return Resource(
            name=values["name"],
            source_dir=values["source_dir"],
            target_path=values["target_path"],
            retain_days=values.get("retain", 30),
            schedule=values.get("schedule", Schedule.DAILY),
            exclude=values.get("exclude", ()),
            cross_fs=values.get("cross_fs", CrossFs.FAIL),
            min_free_space=values.get("min_free_space", 1024**3),
            pre_command=values.get("pre_command") or None,
            post_command=values.get("post_command") or None,
            revert=values.get("revert", False),
            on_revert=values.get("on_revert") or None,
            keep_min=values.get("keep_min", 1),
            keep_weekly=values.get("keep_weekly", 0),
            keep_monthly=values.get("keep_monthly", 0),
            keep_yearly=values.get("keep_yearly", 0),
            symlinks=values.get("symlinks", Keep.SKIP),
            special_files=values.get("special_files", Keep.SKIP),
            one_file_system=values.get("one_file_system", False),
            hook_timeout=values.get("hook_timeout", 0),
            on_failure=values.get("on_failure") or None,
            ping_url=values.get("ping_url"),
        )

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
        if "\0" in value or not encodable(value):
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
        if is_text(value):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, CommentedSeq):
            patterns: list[str] = []
            for index, pattern in enumerate(value):
                if not is_text(pattern) or not pattern.strip():
                    self.report(
                        item_at(value, index),
                        f"an exclude pattern must be a non-empty string, got {show(pattern)}",
                    )
                    continue
                patterns.append(pattern.strip())
            return tuple(patterns)
        self.report(
            position,
            f'"exclude" must be a comma-separated string or a list, got {show(value)}',
        )
        return None

    def check_min_free_space(self, value: Any, position: tuple[int, int]) -> int | None:
        size = None
        if is_integer(value) and value >= 0:
            size = int(value)
        elif is_text(value):
            match = SIZE_PATTERN.fullmatch(value.strip())
            if match and len(match.group(1)) <= len(str(MAX_NUMBER)):
                size = int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]
        if size is not None and size <= MAX_NUMBER:
            return size
        self.report(
            position,
            f'"min_free_space" must be bytes with an optional K/M/G/T suffix '
            f"(e.g. 1G, 512M, 0), got {show(value)}",
        )
        return None

    def check_hook_timeout(self, value: Any, position: tuple[int, int]) -> int | None:
        seconds = None
        if is_integer(value) and value >= 0:
            seconds = int(value)
        elif is_text(value):
            match = DURATION_PATTERN.fullmatch(value.strip())
            if match and len(match.group(1)) <= len(str(MAX_NUMBER)):
                seconds = int(match.group(1)) * DURATION_UNITS[match.group(2).upper()]
        if seconds is not None and seconds <= MAX_NUMBER:
            return seconds
        self.report(
            position,
            f'"hook_timeout" must be whole seconds with an optional s/m/h suffix '
            f"(e.g. 30, 30s, 10m, 2h; 0 = no limit), got {show(value)}",
        )
        return None

    def check_command(self, value: Any, position: tuple[int, int]) -> str | None:
        if not is_text(value):
            self.report(position, f"a command must be a string, got {show(value)}")
            return None
        return str(value)

    def check_ping_url(self, value: Any, position: tuple[int, int]) -> str | None:
        text = str(value).strip() if is_text(value) else ""
        scheme, _, rest = text.partition("://")
        if scheme.lower() not in ("http", "https") or not rest or any(c.isspace() for c in text):
            self.report(
                position, f'"ping_url" must be an http:// or https:// URL, got {show(value)}'
            )
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

    checks: ClassVar[dict[str, Callable[[_Checker, Any, tuple[int, int]], Any]]] = {
        "name": check_name,
        "type": check_type,
        "source_dir": check_path,
        "target_path": check_path,
        "retain": check_retain,
        "schedule": check_schedule,
        "exclude": check_exclude,
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

    def across(self, checked: list[tuple[dict[str, Any], CommentedMap]]) -> None:
        """Rules that span resources: unique names and targets, no target inside
        another, sources outside targets. Checked on every valid value, also of
        resources with other problems."""
        seen_names: dict[str, int] = {}
        seen_targets: dict[str, str] = {}
        # (canonical target, target_path as given, resource name, resource)
        targets: list[tuple[str, str, str | None, CommentedMap]] = []
        for values, item in checked:
            name = values.get("name")
            if name is not None and name in seen_names:
                self.report(
                    value_at(item, "name"),
                    f'duplicate resource name "{name}" (first defined on line {seen_names[name]})',
                )
            elif name is not None:
                seen_names[name] = value_at(item, "name")[0] + 1
            if "target_path" not in values:
                continue
            target = _canonical(values["target_path"])
            targets.append((target, values["target_path"], name, item))
            if target in seen_targets:
                self.report(
                    value_at(item, "target_path"),
                    f"target_path {values['target_path']} is already used by resource "
                    f'"{seen_targets[target]}"',
                )
            else:
                seen_targets[target] = name or "?"
        for target, target_path, _, item in targets:
            # The outer resource would treat the inner one's snapshots as its own.
            for outer, outer_path, outer_name, _ in targets:
                if _is_inside(target, outer):
                    self.report(
                        value_at(item, "target_path"),
                        f'target_path {target_path} is inside "{outer_name or "?"}"\'s '
                        f"target_path {outer_path}: each resource needs a target_path "
                        "of its own",
                    )
        for values, item in checked:
            if "source_dir" not in values:
                continue
            source = _canonical(values["source_dir"])
            for target, target_path, owner_name, _ in targets:
                if source == target or _is_inside(source, target):
                    owner = (
                        "its own"
                        if owner_name is not None and owner_name == values.get("name")
                        else f'"{owner_name}"\'s'
                    )
                    self.report(
                        value_at(item, "source_dir"),
                        f"source_dir {values['source_dir']} is inside {owner} target_path "
                        f"{target_path}: snapshots would back themselves up",
                    )


def _canonical(path: str) -> str:
    return os.path.realpath(path)


def _is_inside(path: str, directory: str) -> bool:
    """Whether canonical `path` lies below canonical `directory` (not equal to it)."""
    return path != directory and path.startswith(directory.rstrip("/") + "/")

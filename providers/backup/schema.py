"""The `backup` resource's schema: its keys, the checks of a resource's
values (each value's own in fields.py), its defaults, and its JSON Schema.

reconcile/config.py asks `check` of each resource in a config file and
`build` of those without problems; it keeps the rules across resources.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.comments import CommentedMap

from hardsnap.providers.backup.fields import NAME_PATTERN, RESOURCE_TYPES, FieldChecks
from hardsnap.providers.backup.resource import CrossFs, Keep, Resource, Schedule, SourceSnapshot
from hardsnap.providers.backup.values import (
    closest,
    is_text,
    key_at,
    node_position,
    untagged,
    value_at,
)

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
    "exclude_if_present",
    "source_snapshot",
)
REQUIRED_KEYS = ("name", "type", "source_dir", "target_path")


def check(item: CommentedMap, fields: FieldChecks) -> dict[str, Any]:
    """Check one resource's keys and values, reporting each problem through
    `fields`; return the values that are valid."""
    for key in item:
        if key not in RESOURCE_KEYS:
            fields.report(
                key_at(item, key), f'unknown key "{key}"{closest(str(key), RESOURCE_KEYS)}'
            )
    for key in REQUIRED_KEYS:
        if item.get(key) is None:
            where = key_at(item, key) if key in item else node_position(item)
            label = f' in resource "{item["name"]}"' if is_text(item.get("name")) else ""
            fields.report(where, f'missing required key "{key}"{label}')

    values: dict[str, Any] = {}
    for key, check in fields.checks.items():
        if item.get(key) is None:
            continue
        value = check(fields, untagged(item[key]), value_at(item, key))
        if value is not None:
            values[key] = value

    if values.get("revert") and not values.get("on_revert"):
        fields.report(key_at(item, "revert"), '"on_revert" is required when "revert" is true')
    return values


def build(values: dict[str, Any]) -> Resource:
    """The Resource of valid values, defaults filled in."""
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
        exclude_if_present=values.get("exclude_if_present", ()),
        source_snapshot=values.get("source_snapshot", SourceSnapshot.NONE),
    )


WHOLE_NUMBER_TEXT = r"^\s*[0-9]+\s*$"
POSITIVE_NUMBER_TEXT = r"^\s*0*[1-9][0-9]*\s*$"
SIZE_TEXT = r"^\s*[0-9]+\s*[KMGTkmgt]?([Ii]?[Bb])?\s*$"
DURATION_TEXT = r"^\s*[0-9]+\s*[SMHsmh]?\s*$"


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional key may also be null, which means "not set"."""
    return {"anyOf": [schema, {"type": "null"}]}


def _number(minimum: int, text: str, description: str) -> dict[str, Any]:
    """An optional whole number from `minimum` up, or a text matching `text`."""
    number = {"type": "integer", "minimum": minimum}
    return _optional(
        {"anyOf": [number, {"type": "string", "pattern": text}], "description": description}
    )


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": description}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one resource, for editors."""
    properties: dict[str, Any] = {
        "name": {
            "type": "string",
            "pattern": f"^{NAME_PATTERN.pattern}$",
            "description": "Unique name of the resource.",
        },
        "type": {"enum": list(RESOURCE_TYPES), "description": "The only type: backup."},
        "source_dir": _text("Directory to snapshot; relative to the config file's folder."),
        "target_path": _text("Directory holding the snapshots; created 0700 when missing."),
        "retain": _number(1, POSITIVE_NUMBER_TEXT, "Days a snapshot is kept (default 30)."),
        "schedule": _optional(
            {
                "enum": [member.value for member in Schedule],
                "description": "One snapshot per UTC hour, date or ISO week (default daily).",
            }
        ),
        "exclude": _optional(
            {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string", "minLength": 1}},
                ],
                "description": "fnmatch patterns: a comma-separated string or a list.",
            }
        ),
        "exclude_if_present": _optional(
            {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string", "minLength": 1}},
                ],
                "description": "Names (e.g. .nobackup, CACHEDIR.TAG) whose presence keeps a "
                "directory empty but for them.",
            }
        ),
        "source_snapshot": _optional(
            {
                "enum": [member.value for member in SourceSnapshot],
                "description": "btrfs: walk a read-only snapshot of the source's subvolume, "
                "made for the run (default none).",
            }
        ),
        "cross_fs": _optional(
            {
                "enum": [member.value for member in CrossFs],
                "description": "When source and target are on different filesystems "
                "(default fail).",
            }
        ),
        "min_free_space": _number(
            0, SIZE_TEXT, "Free space the target keeps, e.g. 1G (default); 0 disables."
        ),
        "pre_command": _optional(
            {"type": "string", "description": "Runs before the snapshot (/bin/sh -c)."}
        ),
        "post_command": _optional(
            {"type": "string", "description": "Runs after a successful snapshot and prune."}
        ),
        "revert": _optional(
            {"type": "boolean", "description": "true: run on_revert once instead of applying."}
        ),
        "on_revert": _optional({"type": "string", "description": "Runs once when revert is true."}),
        "keep_min": _number(
            0, WHOLE_NUMBER_TEXT, "Newest snapshots always kept, whatever their age (default 1)."
        ),
        **{
            f"keep_{period}ly": _number(
                0,
                WHOLE_NUMBER_TEXT,
                f"Also keep the newest snapshot of each of the last N "
                f"{label} that have one (default 0).",
            )
            for period, label in (
                ("week", "ISO weeks"),
                ("month", "calendar months (UTC)"),
                ("year", "years (UTC)"),
            )
        },
        "symlinks": _optional(
            {
                "enum": ["skip", "keep"],
                "description": "keep: recreate symlinks (never followed); skip (default).",
            }
        ),
        "special_files": _optional(
            {
                "enum": ["skip", "keep"],
                "description": "keep: recreate FIFOs and device nodes; sockets never.",
            }
        ),
        "one_file_system": _optional(
            {
                "type": "boolean",
                "description": "true: keep mount points below source_dir as empty directories.",
            }
        ),
        "on_failure": _optional(
            {"type": "string", "description": "Runs after the resource failed or was refused."}
        ),
        "ping_url": _optional(
            {
                "type": "string",
                "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://\\S+$",
                "description": "healthchecks-style URL: URL/start, then URL or URL/fail.",
            }
        ),
        "hook_timeout": _number(
            0, DURATION_TEXT, "Seconds (or 30s, 10m, 2h) a hook may run; 0 = no limit (default)."
        ),
    }
    assert set(properties) == set(RESOURCE_KEYS)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(REQUIRED_KEYS),
        "properties": properties,
        "if": {"properties": {"revert": {"const": True}}, "required": ["revert"]},
        "then": {
            "required": ["on_revert"],
            "properties": {"on_revert": {"type": "string", "minLength": 1}},
        },
    }

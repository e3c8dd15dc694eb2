"""The JSON Schema of the config file, for editors (YAML language server).

Built from the same names the validator uses, so the two cannot drift apart
on keys or allowed values. The validator stays the authority: it also checks
what a schema cannot say (unique names and targets, paths inside targets).
"""

from __future__ import annotations

from typing import Any

from hardsnap.reconcile.config import REQUIRED_KEYS, RESOURCE_KEYS
from hardsnap.reconcile.fields import NAME_PATTERN, RESOURCE_TYPES
from hardsnap.reconcile.model import CrossFs, Schedule

SCHEMA_ID = "https://hardsnap.invalid/schema/config.json"
WHOLE_NUMBER_TEXT = r"^\s*[0-9]+\s*$"
POSITIVE_NUMBER_TEXT = r"^\s*0*[1-9][0-9]*\s*$"
SIZE_TEXT = r"^\s*[0-9]+\s*[KMGTkmgt]?([Ii]?[Bb])?\s*$"
DURATION_TEXT = r"^\s*[0-9]+\s*[SMHsmh]?\s*$"


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional key may also be null, which means "not set"."""
    return {"anyOf": [schema, {"type": "null"}]}


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": description}


def _resource_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {
        "name": {
            "type": "string",
            "pattern": f"^{NAME_PATTERN.pattern}$",
            "description": "Unique name of the resource.",
        },
        "type": {"enum": list(RESOURCE_TYPES), "description": "The only type: backup."},
        "source_dir": _text("Directory to snapshot; relative to the config file's folder."),
        "target_path": _text("Directory holding the snapshots; created 0700 when missing."),
        "retain": _optional(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 1},
                    {"type": "string", "pattern": POSITIVE_NUMBER_TEXT},
                ],
                "description": "Days a snapshot is kept (default 30).",
            }
        ),
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
        "cross_fs": _optional(
            {
                "enum": [member.value for member in CrossFs],
                "description": "When source and target are on different filesystems "
                "(default fail).",
            }
        ),
        "min_free_space": _optional(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "pattern": SIZE_TEXT},
                ],
                "description": "Free space the target keeps, e.g. 1G (default); 0 disables.",
            }
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
        "keep_min": _optional(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "pattern": WHOLE_NUMBER_TEXT},
                ],
                "description": "Newest snapshots always kept, whatever their age (default 1).",
            }
        ),
        **{
            f"keep_{period}ly": _optional(
                {
                    "anyOf": [
                        {"type": "integer", "minimum": 0},
                        {"type": "string", "pattern": WHOLE_NUMBER_TEXT},
                    ],
                    "description": f"Also keep the newest snapshot of each of the last N "
                    f"{label} that have one (default 0).",
                }
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
        "hook_timeout": _optional(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "pattern": DURATION_TEXT},
                ],
                "description": "Seconds (or 30s, 10m, 2h) a hook may run; 0 = no limit (default).",
            }
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


def config_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a hardsnap config file."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "hardsnap config",
        "description": "Declared hardlink snapshot resources for hardsnap.",
        "type": "object",
        "additionalProperties": False,
        "required": ["resources"],
        "properties": {
            "resources": {
                "anyOf": [
                    {"type": "array", "items": {"$ref": "#/$defs/backup"}},
                    {"type": "null"},
                ]
            },
            "metrics_file": {
                "type": ["string", "null"],
                "minLength": 1,
                "description": "Prometheus text-format metrics, rewritten after every apply.",
            },
        },
        "$defs": {"backup": _resource_schema()},
    }

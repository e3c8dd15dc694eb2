"""The JSON Schema of the config file, for editors (YAML language server).

A resource's part is its provider's (providers/backup/schema.py), built
from the same names the validator uses, so the two cannot drift apart
on keys or allowed values. The validator stays the authority: it also checks
what a schema cannot say (unique names and targets, paths inside targets).
"""

from __future__ import annotations

from typing import Any

from hardsnap.providers.backup import schema

SCHEMA_ID = "https://hardsnap.invalid/schema/config.json"


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
        "$defs": {"backup": schema.json_schema()},
    }

"""Reading hardsnap's JSON documents (plan, apply, state show) in tests."""

from __future__ import annotations

import base64
import os
from typing import Any


def resource_of(document: dict[str, Any], name: str = "r") -> dict[str, Any]:
    for resource in document["resources"]:
        if resource["name"] == name:
            found: dict[str, Any] = resource
            return found
    raise AssertionError(f"no resource {name!r} in {document}")


def actions_of(document: dict[str, Any], name: str = "r") -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = resource_of(document, name)["actions"]
    return actions


def result_of(document: dict[str, Any], name: str = "r") -> str:
    result: str = resource_of(document, name)["result"]
    return result


def kinds(actions: list[dict[str, Any]]) -> list[str]:
    return [action["kind"] for action in actions]


def action_results(document: dict[str, Any]) -> dict[str, str]:
    return {action["kind"]: action["result"] for action in actions_of(document)}


def snapshot_action(document: dict[str, Any]) -> dict[str, Any]:
    """The snapshot action of the document's first resource."""
    for action in document["resources"][0]["actions"]:
        if action["kind"] == "snapshot":
            found: dict[str, Any] = action
            return found
    raise AssertionError(f"no snapshot action in {document}")


def path_of(entry: dict[str, Any]) -> str:
    """An entry's path, one that is not UTF-8 read back from `path_base64`."""
    if "path_base64" in entry:
        return os.fsdecode(base64.b64decode(entry["path_base64"]))
    return str(entry["path"])


def skipped_paths(document: dict[str, Any]) -> dict[str, str]:
    """What the snapshot skipped: each path and why."""
    return {path_of(skip): skip["reason"] for skip in snapshot_action(document)["skipped"]}

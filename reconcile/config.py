"""Load and validate a hardsnap config file.

Validation runs in layers, the way an operator reads the file: YAML syntax,
then each resource's keys and value types, then the rules that span fields
and resources. Every problem found is collected with its position and
reported together, so one run of `hardsnap validate` shows them all.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from hardsnap.providers import platform
from hardsnap.providers.backup import schema
from hardsnap.providers.backup.fields import FieldChecks
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.backup.values import (
    Position,
    closest,
    item_at,
    node_position,
    untagged,
    value_at,
)
from hardsnap.providers.files import trust
from hardsnap.reconcile.model import Config
from hardsnap.reconcile.yamlvalues import ConfigError, Problem, parse_yaml

__all__ = ["ConfigError", "Problem", "closest", "load_config", "parse_config"]

TOP_LEVEL_KEYS = ("resources", "metrics_file")


def load_config(path: str) -> Config:
    """Given the path of a config file, return its validated Config.

    Raise ConfigError listing every problem found, each located.
    """
    refusal = untrusted_config(path)
    if refusal is not None:
        raise ConfigError([Problem(path, 1, 1, refusal)])
    try:
        text = _read_checked(path)
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError([Problem(path, 1, 1, f"cannot read config file: {reason}")]) from None
    except _Untrusted as error:
        raise ConfigError([Problem(path, 1, 1, str(error))]) from None
    return parse_config(text, path)


class _Untrusted(Exception):
    """The config file is not one whose commands may run as this user."""


def untrusted_config(path: str) -> str | None:
    """Why the config file at `path` must not be used, or None. Its hooks
    run as this user (root from the shipped timer): a file another user
    owns or may write, or one reached through a directory another user may
    write, would let them choose those commands."""
    weak = trust.weak_directory(path)
    if weak is not None:
        directory, why = weak
        return (
            f"config file {path} is reached through {directory}, which {why}: another user "
            f"could put their own commands in it; keep the config in a directory only root "
            f"can change (like /etc/hardsnap), or fix {directory}"
        )
    try:
        info = os.stat(path)
    except OSError:
        return None  # reading it says why
    return _file_refusal(path, info)


def _file_refusal(path: str, info: os.stat_result) -> str | None:
    why = trust.file_weakness(info)
    if why is None:
        return None
    fix = f"chmod go-w {path}" if trust.trusted_owner(info.st_uid) else f"chown root {path}"
    return (
        f"config file {path} {why}, and its commands would run as "
        f"{trust.describe_user(platform.effective_uid())}: {fix} if you trust its contents"
    )


def _read_checked(path: str) -> str:
    """Read the config file, checking what was opened: a regular file of
    ours (it cannot have been swapped since: every directory on the way
    is ours)."""
    fd = platform.open_read(os.path.realpath(path))
    with open(fd, "rb") as stream:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        refusal = _file_refusal(path, info)
        if refusal is not None:
            raise _Untrusted(refusal)
        return stream.read().decode("utf-8")


def parse_config(text: str, path: str) -> Config:
    """Given a config file's text and its path, return its validated Config."""
    document = parse_yaml(text, path)
    checker = _Checker(path)
    resources = checker.document(document)
    if checker.problems:
        raise ConfigError(checker.problems)
    return Config(path=path, resources=tuple(resources), metrics_file=checker.metrics_file)


class _Checker:
    """Walks the parsed YAML and gathers problems; one instance per file.
    Each resource is checked by its provider's schema."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self.fields = FieldChecks(path, self.report)
        self.metrics_file: str | None = None

    def report(self, position: Position, message: str) -> None:
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
            self.metrics_file = self.fields.check_path(
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
            values = schema.check(item, self.fields)
            checked.append((values, item))
            if len(self.problems) == before:
                resources.append(schema.build(values))
        self.across(checked)
        return resources

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

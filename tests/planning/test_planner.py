"""The planner, table-driven: each `tests/planning/planner_cases/*.yaml` is one test.

A case holds a config-like `resource`, its observed `facts`, the recorded
`state`, the time `now`, and what the plan must be under `expect`:

    expect:
      actions:             # in execution order
        - kind: snapshot   # pre_command | snapshot | prune | post_command | revert
          snapshot: 2026.088.06.00      # optional: only the fields given are compared
          reference: null
          depends_on: [pre_command]     # always compared; absent means []
      notes: [substring, ...]           # each is in some note; [] means no notes
      refusal: null                     # null, a substring, or a list of substrings
      warning: null                     # likewise
      warnings: [substring, ...]        # each is in some warning (the settings' warnings
                                        # included); absent or [] means none
      kept: {snapshot: [rule, ...]}     # optional: the rules keeping each existing snapshot
      pruning: active                   # optional: or {since: NAME, before: NAME,
                                        # resumes_at: TIME}, why pruning is suspended

`allow_empty_source`, `allow_new_target` and `resume_pruning` at the top
level are the command line's overrides.

The planner is pure: the test gives it dummy absolute paths and makes any
filesystem access during planning fail.
"""

from __future__ import annotations

import builtins
import datetime as dt
import importlib
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from hardsnap.providers.backup.actions import Action, ActionKind
from hardsnap.providers.backup.facts import Facts, Prediction
from hardsnap.providers.backup.plan import Overrides
from hardsnap.providers.backup.recorded import RecordedState
from hardsnap.providers.backup.resource import CrossFs, Resource, Schedule
from hardsnap.providers.backup.target import Owner
from hardsnap.reconcile.plan import Plan, ResourcePlan
from hardsnap.reconcile.planner import plan

CASES_DIR = Path(__file__).parent / "planner_cases"
CASES = sorted(CASES_DIR.glob("*.yaml"))

CASE_KEYS = {
    "description",
    "resource",
    "facts",
    "state",
    "now",
    "expect",
    "allow_empty_source",
    "allow_new_target",
    "resume_pruning",
}
RESOURCE_KEYS = {
    "name",
    "schedule",
    "retain",
    "keep_min",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "pre_command",
    "post_command",
    "revert",
    "on_revert",
    "cross_fs",
    "min_free_space",
    "exclude",
}
FACTS_KEYS = {
    "snapshots",
    "same_filesystem",
    "free_bytes",
    "source_exists",
    "target_exists",
    "prediction",
    "source_filesystem",
    "target_filesystem",
    "source_empty",
    "reference_files",
    "reference_empty",
    "interrupted_prunes",
    "target_error",
    "future_snapshots",
    "partial",
    "owner",
    "owner_resolved",
    "source_resolved",
    "target_open_to_others",
    "target_readable_by_others",
}
STATE_KEYS = {
    "revert_spent",
    "pending_post_snapshot",
    "cross_fs_warned",
    "target",
    "snapshots",
    "corrupted",
    "gaps_accepted_before",
}
EXPECT_KEYS = {"actions", "notes", "refusal", "warning", "warnings", "kept", "pruning"}
ACTION_FIELDS = {
    "allow_new_target",
    "bytes_to_copy",
    "command",
    "corrupted",
    "expected",
    "files_kept",
    "files_to_copy",
    "files_to_link",
    "link_unchanged",
    "prune",
    "reference",
    "resumes",
    "retry",
    "snapshot",
}
SIZE = re.compile(r"(\d+)([KMGT]?)")
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
SOURCE_FILESYSTEM = "/dev/sda1 (ext4)"
TARGET_FILESYSTEM = "/dev/sdb1 (xfs)"


def load_case(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = YAML(typ="safe", pure=True).load(path.read_text())
    unknown = set(case) - CASE_KEYS
    assert not unknown, f"{path.name}: unknown top-level keys {unknown}"
    for section, allowed in (
        ("resource", RESOURCE_KEYS),
        ("facts", FACTS_KEYS),
        ("state", STATE_KEYS),
        ("expect", EXPECT_KEYS),
    ):
        unknown = set(case.get(section) or {}) - allowed
        assert not unknown, f"{path.name}: unknown keys in {section}: {unknown}"
    for action in case["expect"]["actions"]:
        unknown = set(action) - ACTION_FIELDS - {"kind", "depends_on"}
        assert not unknown, f"{path.name}: unknown action fields {unknown}"
    return case


def size(value: int | str) -> int:
    """Given a config-style size (bytes, or digits with K/M/G/T), return bytes."""
    if isinstance(value, int):
        return value
    match = SIZE.fullmatch(value.strip().upper())
    assert match, f"bad size {value!r}"
    return int(match.group(1)) * SIZE_UNITS[match.group(2)]


def build_resource(spec: dict[str, Any]) -> Resource:
    name = spec.get("name", "data")
    return Resource(
        name=name,
        source_dir=f"/nonexistent/hardsnap-test/source/{name}",
        target_path=f"/nonexistent/hardsnap-test/target/{name}",
        retain_days=int(spec.get("retain", 30)),
        schedule=Schedule(spec.get("schedule", "daily")),
        exclude=tuple(spec.get("exclude", ())),
        cross_fs=CrossFs(spec.get("cross_fs", "fail")),
        min_free_space=size(spec.get("min_free_space", "1G")),
        pre_command=spec.get("pre_command"),
        post_command=spec.get("post_command"),
        revert=bool(spec.get("revert", False)),
        on_revert=spec.get("on_revert"),
        keep_min=int(spec.get("keep_min", 1)),
        keep_weekly=int(spec.get("keep_weekly", 0)),
        keep_monthly=int(spec.get("keep_monthly", 0)),
        keep_yearly=int(spec.get("keep_yearly", 0)),
    )


def build_facts(resource: Resource, spec: dict[str, Any]) -> Facts:
    snapshots = tuple(spec.get("snapshots", ()))
    source_exists = bool(spec.get("source_exists", True))
    prediction = spec.get("prediction")
    free_bytes = spec.get("free_bytes", "1T")
    # The target's marker names this host and `owner` (default: this source).
    # The source resolves to `source_resolved`, the marker recorded `owner_resolved`.
    source = spec.get("source_resolved", resource.source_dir)
    this_source = Owner(resource.source_dir, "host", "machine", source)
    owner = replace(this_source, source=spec["owner"]) if "owner" in spec else None
    if "owner_resolved" in spec:
        owner = replace(owner or this_source, resolved=spec["owner_resolved"])
    return Facts(
        target=resource.target_path,
        target_exists=bool(spec.get("target_exists", bool(snapshots))),
        snapshots=snapshots,
        source=source,
        source_exists=source_exists,
        same_filesystem=spec.get("same_filesystem", True if source_exists else None),
        source_filesystem=spec.get("source_filesystem", SOURCE_FILESYSTEM if source_exists else ""),
        target_filesystem=spec.get("target_filesystem", TARGET_FILESYSTEM),
        free_bytes=None if free_bytes is None else size(free_bytes),
        prediction=Prediction(**prediction) if prediction else None,
        source_empty=bool(spec.get("source_empty", False)),
        reference_files=spec.get("reference_files"),
        reference_empty=spec.get(
            "reference_empty",
            None if spec.get("reference_files") is None else spec["reference_files"] == 0,
        ),
        interrupted_prunes=tuple(spec.get("interrupted_prunes", ())),
        target_error=spec.get("target_error"),
        future_snapshots=tuple(spec.get("future_snapshots", ())),
        partial=spec.get("partial"),
        owner=owner,
        owner_marked=owner is not None,
        this_source=this_source,
        target_open_to_others=bool(spec.get("target_open_to_others", False)),
        target_readable_by_others=bool(spec.get("target_readable_by_others", False)),
    )


def build_state(resource: Resource, spec: dict[str, Any] | None) -> RecordedState:
    """The recorded state of a case; `snapshots` are recorded in the case's
    target unless `target` names another."""
    spec = dict(spec or {})
    if "snapshots" in spec:
        spec["snapshots"] = tuple(spec["snapshots"])
        spec.setdefault("target", resource.target_path)
    if "corrupted" in spec:
        spec["corrupted"] = frozenset(spec["corrupted"])
    return RecordedState(**spec)


def parse_now(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    assert moment.tzinfo is not None, f"now {text!r} must carry a time zone"
    return moment


def forbid_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the usual ways of touching the filesystem raise."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the planner touched the filesystem: {args!r}")

    for name in ("stat", "lstat", "scandir", "listdir", "statvfs", "open", "mkdir", "rename"):
        monkeypatch.setattr(os, name, refuse)
    monkeypatch.setattr(builtins, "open", refuse)


def plan_case(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> ResourcePlan:
    resource = build_resource(case["resource"])
    facts = build_facts(resource, case.get("facts") or {})
    state = build_state(resource, case.get("state"))
    overrides = Overrides(
        allow_empty_source=bool(case.get("allow_empty_source", False)),
        allow_new_target=bool(case.get("allow_new_target", False)),
        resume_pruning=bool(case.get("resume_pruning", False)),
    )
    now = parse_now(str(case["now"]))
    # The action graph imports networkx on first use, and an import reads
    # files: load it before the guard, so only the planner itself is watched.
    importlib.import_module("networkx")
    with monkeypatch.context() as guard:
        forbid_filesystem(guard)
        result = plan(
            [resource],
            {resource.name: facts},
            {resource.name: state},
            now,
            overrides,
        )
    assert result.unmanaged == ()
    assert len(result.resources) == 1
    resource_plan = result.resources[0]
    assert resource_plan.resource == resource
    assert resource_plan.target == facts.target
    return resource_plan


def actual_action(resource_plan: ResourcePlan, action: Action, fields: set[str]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": action.kind.value,
        "depends_on": [kind.value for kind in resource_plan.depends_on(action.kind)],
    }
    for field in fields:
        value = getattr(action, field)
        document[field] = list(value) if isinstance(value, tuple) else value
    return document


def expected_action(spec: dict[str, Any]) -> dict[str, Any]:
    document = {key: value for key, value in spec.items() if key in ACTION_FIELDS}
    document["kind"] = spec["kind"]
    document["depends_on"] = list(spec.get("depends_on") or [])
    return document


def assert_substrings(what: str, actual: str | None, expected: str | list[str] | None) -> None:
    if expected is None:
        assert actual is None, f"expected no {what}, got {actual!r}"
        return
    assert actual is not None, f"expected a {what} containing {expected!r}, got none"
    for part in [expected] if isinstance(expected, str) else expected:
        assert part in actual, f"{what} {actual!r} lacks {part!r}"


@pytest.mark.parametrize("case_path", CASES, ids=[path.stem for path in CASES])
def test_planner_case(case_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = load_case(case_path)
    expect = case["expect"]
    resource_plan = plan_case(case, monkeypatch)

    expected = [expected_action(spec) for spec in expect["actions"]]
    assert [action.kind.value for action in resource_plan.actions] == [
        spec["kind"] for spec in expected
    ]
    actual = [
        actual_action(resource_plan, action, set(spec) - {"kind", "depends_on"})
        for action, spec in zip(resource_plan.actions, expected, strict=True)
    ]
    assert actual == expected
    assert resource_plan.has_changes == bool(expected)

    notes = list(resource_plan.notes)
    if not expect["notes"]:
        assert notes == [], f"expected no notes, got {notes}"
    for part in expect["notes"]:
        assert any(part in note for note in notes), f"no note contains {part!r}: {notes}"

    assert_substrings("refusal", resource_plan.refusal, expect["refusal"])
    assert_substrings("warning", resource_plan.warning, expect["warning"])
    warnings = [*resource_plan.warnings, *resource_plan.config_warnings]
    if not expect.get("warnings"):
        assert warnings == [], f"expected no warnings, got {warnings}"
    for part in expect.get("warnings") or []:
        assert any(part in text for text in warnings), f"no warning contains {part!r}: {warnings}"
    if "kept" in expect:
        kept = {
            name: [f"{r.rule} {r.period}" if r.period else r.rule for r in rules]
            for name, rules in resource_plan.kept
        }
        assert kept == expect["kept"]
    if "pruning" in expect:
        assert actual_pruning(resource_plan) == expect["pruning"]


def actual_pruning(resource_plan: ResourcePlan) -> str | dict[str, str | None]:
    suspended = resource_plan.pruning.suspended
    if suspended is None:
        return "active"
    resumes_at = suspended.resumes_at
    return {
        "since": suspended.since,
        "before": suspended.before,
        "resumes_at": resumes_at.strftime("%Y-%m-%dT%H:%M:%SZ") if resumes_at else None,
    }


def test_planner_cases_are_many_and_each_has_a_description() -> None:
    assert len(CASES) >= 20
    for path in CASES:
        assert load_case(path).get("description"), f"{path.name} has no description"


# --- the whole plan ----------------------------------------------------------

NOW = dt.datetime(2026, 3, 29, 6, 0, tzinfo=dt.UTC)


def resource_named(name: str, **fields: Any) -> Resource:
    return build_resource({"name": name, **fields})


def facts_for(resource: Resource, *snapshots: str) -> Facts:
    return build_facts(resource, {"snapshots": list(snapshots)})


def test_plan_lists_recorded_state_absent_from_config_as_unmanaged_sorted() -> None:
    kept = resource_named("kept")
    result = plan(
        [kept],
        {"kept": facts_for(kept)},
        {
            "zeta": RecordedState(),
            "kept": RecordedState(),
            "alpha": RecordedState(revert_spent=True),
        },
        NOW,
    )
    assert result.unmanaged == ("alpha", "zeta")
    assert [resource_plan.resource.name for resource_plan in result.resources] == ["kept"]


def test_plan_without_recorded_state_has_no_unmanaged_and_plans_a_first_snapshot() -> None:
    fresh = resource_named("fresh")
    result = plan([fresh], {"fresh": facts_for(fresh)}, {}, NOW)
    assert result.unmanaged == ()
    assert [action.kind for action in result.resources[0].actions] == [ActionKind.SNAPSHOT]
    assert result.has_changes
    assert not result.refused


def test_plan_with_only_unmanaged_state_plans_nothing_else() -> None:
    result = plan([], {}, {"gone": RecordedState(pending_post_snapshot="2026.087.06.00")}, NOW)
    assert result.resources == ()
    assert result.unmanaged == ("gone",)
    assert not result.has_changes


def test_plan_keeps_config_order_of_resources() -> None:
    resources = [resource_named(name) for name in ("zulu", "alpha", "mike")]
    facts = {resource.name: facts_for(resource) for resource in resources}
    result = plan(resources, facts, {}, NOW)
    assert [resource_plan.resource.name for resource_plan in result.resources] == [
        "zulu",
        "alpha",
        "mike",
    ]


def test_plan_refused_when_any_resource_is_refused() -> None:
    settled = resource_named("settled")
    starved = resource_named("starved", min_free_space="1G")
    facts = {
        "settled": facts_for(settled, "2026.088.01.00"),
        "starved": build_facts(starved, {"free_bytes": 1024}),
    }
    result = plan([settled, starved], facts, {}, NOW)
    assert result.refused
    assert result.resources[0].refusal is None
    assert result.resources[1].refusal is not None


def plan_document(result: Plan) -> list[dict[str, Any]]:
    return [
        {
            "name": resource_plan.resource.name,
            "actions": [action.to_json() for action in resource_plan.actions],
            "edges": sorted(resource_plan.graph.edges),
            "notes": resource_plan.notes,
            "refusal": resource_plan.refusal,
            "warning": resource_plan.warning,
            "warnings": resource_plan.warnings,
            "pruning": resource_plan.pruning,
        }
        for resource_plan in result.resources
    ]


def test_plan_of_same_inputs_is_identical_every_time() -> None:
    busy = resource_named("busy", retain=7, pre_command="pre", post_command="post", cross_fs="copy")
    settled = resource_named("settled", post_command="post")
    resources = [busy, settled]
    facts = {
        "busy": build_facts(
            busy,
            {"snapshots": ["2026.001.06.00", "2026.087.06.00"], "same_filesystem": False},
        ),
        "settled": facts_for(settled, "2026.088.01.00"),
    }
    state = {
        # An earlier apply pruned past the gap between the two snapshots.
        "busy": RecordedState(gaps_accepted_before="2026.087.06.00"),
        "settled": RecordedState(pending_post_snapshot="2026.088.01.00"),
        "gone": RecordedState(),
    }
    first = plan(resources, facts, state, NOW)
    documents = [plan_document(plan(resources, facts, state, NOW)) for _ in range(5)]
    assert all(document == plan_document(first) for document in documents)
    assert first == plan(resources, facts, state, NOW)
    assert [action.kind for action in first.resources[0].actions] == [
        ActionKind.PRE_COMMAND,
        ActionKind.SNAPSHOT,
        ActionKind.PRUNE,
        ActionKind.POST_COMMAND,
    ]


def test_plan_does_not_depend_on_recorded_state_order() -> None:
    resource = resource_named("data")
    facts = {"data": facts_for(resource)}
    forward = {"a": RecordedState(), "b": RecordedState(), "data": RecordedState()}
    backward = dict(reversed(list(forward.items())))
    assert plan([resource], facts, forward, NOW).unmanaged == ("a", "b")
    assert plan([resource], facts, backward, NOW).unmanaged == ("a", "b")


def test_plan_is_the_same_for_the_same_instant_in_any_time_zone() -> None:
    resource = resource_named("data", retain=7, post_command="post")
    facts = {"data": facts_for(resource, "2026.001.06.00", "2026.087.06.00")}
    elsewhere = NOW.astimezone(dt.timezone(dt.timedelta(hours=-9, minutes=-30)))
    for state in ({}, {"data": RecordedState(gaps_accepted_before="2026.087.06.00")}):
        assert plan_document(plan([resource], facts, state, NOW)) == plan_document(
            plan([resource], facts, state, elsewhere)
        )

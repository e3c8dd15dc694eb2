"""Rendering: plans, apply reports and state, as text for people or JSON.

Nothing here decides anything; it only shows values it is given.
"""

from __future__ import annotations

import io
from typing import Any

from providers.audit import Difference, Verification
from providers.backup import format_bytes
from reconcile.applier import ActionOutcome, ApplyReport, ResourceOutcome, Result
from reconcile.plan import Action, ActionKind, Plan, ResourcePlan
from reconcile.planner import policy as retention_policy

_COLORS = {
    ActionKind.PRE_COMMAND: "33",
    ActionKind.POST_COMMAND: "33",
    ActionKind.REVERT: "35",
    ActionKind.SNAPSHOT: "32",
    ActionKind.PRUNE: "31",
    Result.CHANGED: "32",
    Result.SETTLED: "2",
    Result.FAILED: "31",
    Result.UPSTREAM_FAILED: "31",
}


class Painter:
    """Wraps text in ANSI colours, or leaves it plain."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, key: object = None, code: str | None = None) -> str:
        code = code or _COLORS.get(key)  # type: ignore[call-overload]
        if not self.color or not code:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"

    def bold(self, text: str) -> str:
        return self(text, code="1")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _action_headline(action: Action) -> str:
    if action.kind is ActionKind.SNAPSHOT:
        reference = action.reference or "none, first snapshot"
        return f"{action.snapshot} (reference: {reference})"
    if action.kind is ActionKind.PRUNE:
        freed = "" if action.bytes_freed is None else f" (frees {format_bytes(action.bytes_freed)})"
        return ", ".join(action.prune) + freed
    return action.command or ""


def _prediction(action: Action) -> str | None:
    if action.files_to_copy is None:
        return None
    assert action.files_to_link is not None and action.bytes_to_copy is not None
    text = (
        f"{action.files_to_copy} to copy ({format_bytes(action.bytes_to_copy)}), "
        f"{action.files_to_link} to link"
    )
    if not action.link_unchanged:
        text += " (different filesystems: every file is copied)"
    text += _other_entries(
        action.symlinks or 0,
        action.special_files or 0,
        action.symlinks_skipped or 0,
        action.special_files_skipped or 0,
        "to skip",
    )
    if action.free_bytes_after is not None:
        text += f"; {format_bytes(max(action.free_bytes_after, 0))} free after"
    return text


def _other_entries(
    symlinks: int, special: int, symlinks_skipped: int, special_skipped: int, verb: str
) -> str:
    """ ", 759 symlinks, 3 special files to skip": what is kept and left out
    besides files (nothing when there is none)."""
    parts = []
    if symlinks:
        parts.append(_plural(symlinks, "symlink"))
    if special:
        parts.append(_plural(special, "special file"))
    skipped = []
    if symlinks_skipped:
        skipped.append(_plural(symlinks_skipped, "symlink"))
    if special_skipped:
        skipped.append(_plural(special_skipped, "special file"))
    if skipped:
        parts.append(f"{' and '.join(skipped)} {verb}")
    return "".join(f", {part}" for part in parts)


# -- plan ---------------------------------------------------------------------


def plan_text(plan: Plan, config_path: str, color: bool = False) -> str:
    paint = Painter(color)
    lines = [f"hardsnap plan for {config_path} at {_iso(plan)}", ""]
    for resource_plan in plan.resources:
        lines.extend(_resource_plan_lines(resource_plan, paint))
        lines.append("")
    if plan.unmanaged:
        lines.append(
            "No longer in the config (recorded state kept, nothing undone): "
            + ", ".join(plan.unmanaged)
        )
        lines.append("")
    lines.append(plan_summary(plan))
    return "\n".join(lines)


def _iso(plan: Plan) -> str:
    return plan.now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _resource_plan_lines(resource_plan: ResourcePlan, paint: Painter) -> list[str]:
    resource = resource_plan.resource
    target = resource.target_path
    if resource_plan.target != target:
        target += f" (-> {resource_plan.target})"
    heading = f'resource "{resource.name}": {resource.source_dir} -> {target}'
    lines = [paint.bold(heading)]
    if resource_plan.refusal:
        lines.append("  " + paint("refused: " + resource_plan.refusal, code="31"))
    for warning in (resource_plan.warning, *resource_plan.warnings):
        if warning:
            lines.append("  " + paint("warning: " + warning, code="33"))
    # A refused resource runs nothing: its actions are not shown.
    actions = [] if resource_plan.refusal else resource_plan.actions
    if not actions and not resource_plan.refusal:
        lines.append("  no changes")
    for action in actions:
        symbol = paint(action.kind.symbol, action.kind)
        lines.append(f"  {symbol} {action.kind.value:<13} {_action_headline(action)}")
        prediction = _prediction(action)
        if prediction:
            lines.append(f"      {prediction}")
        lines.append(f"      {action.reason}")
    for note in resource_plan.notes:
        lines.append(f"  {note}")
    policy = retention_policy(resource)
    for name, rules in resource_plan.kept:
        if all(reason.rule != "retain" for reason in rules):
            described = ", ".join(reason.describe(policy) for reason in rules)
            lines.append(f"  keeps {name}: {described}")
    return lines


def plan_summary(plan: Plan) -> str:
    if not plan.has_changes:
        return "No changes. Every resource is converged."
    counts = {kind: 0 for kind in ActionKind}
    pruned = 0
    freed: int | None = 0
    for resource_plan in plan.resources:
        if resource_plan.refusal:
            continue  # nothing of it runs
        for action in resource_plan.actions:
            counts[action.kind] += 1
            pruned += len(action.prune)
            if action.kind is ActionKind.PRUNE:
                freed = (
                    None
                    if freed is None or action.bytes_freed is None
                    else (freed + action.bytes_freed)
                )
    parts = []
    if counts[ActionKind.SNAPSHOT]:
        parts.append(_plural(counts[ActionKind.SNAPSHOT], "snapshot"))
    if pruned:
        freeing = f" (freeing {format_bytes(freed)})" if freed is not None else ""
        parts.append(f"{_plural(pruned, 'prune')}{freeing}")
    hooks = counts[ActionKind.PRE_COMMAND] + counts[ActionKind.POST_COMMAND]
    if hooks:
        parts.append(_plural(hooks, "hook"))
    if counts[ActionKind.REVERT]:
        parts.append(_plural(counts[ActionKind.REVERT], "revert"))
    refused = sum(1 for resource_plan in plan.resources if resource_plan.refusal)
    if refused:
        parts.append(f"{_plural(refused, 'resource')} refused")
    return "Plan: " + ", ".join(parts) + "."


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "now": _iso(plan),
        "resources": [
            {
                "name": resource_plan.resource.name,
                "target": resource_plan.target,
                "changes": resource_plan.has_changes and not resource_plan.refusal,
                "refusal": resource_plan.refusal,
                "warning": resource_plan.warning,
                "warnings": list(resource_plan.warnings),
                "notes": list(resource_plan.notes),
                "actions": []
                if resource_plan.refusal
                else [action.to_json() for action in resource_plan.actions],
                "kept": [
                    {"snapshot": name, "rules": [reason.to_json() for reason in rules]}
                    for name, rules in resource_plan.kept
                ],
            }
            for resource_plan in plan.resources
        ],
        "unmanaged": list(plan.unmanaged),
    }


# -- apply --------------------------------------------------------------------


def action_outcome_line(outcome: ActionOutcome, color: bool = False) -> str:
    paint = Painter(color)
    action = outcome.action
    symbol = paint(action.kind.symbol, action.kind)
    result = paint(outcome.result.value, outcome.result)
    if outcome.result is Result.CHANGED and action.kind is ActionKind.SNAPSHOT:
        details = outcome.details
        detail = (
            f"{action.snapshot}: {details['files_copied']} copied "
            f"({format_bytes(details['bytes_copied'])}), {details['files_linked']} linked"
        )
        detail += _other_entries(details["symlinks"], details["special_files"], 0, 0, "skipped")
        if details["skipped"]:
            detail += f", {len(details['skipped'])} skipped"
    elif outcome.result is Result.CHANGED and action.kind is ActionKind.PRUNE:
        detail = "removed " + (", ".join(outcome.details["pruned"]) or "nothing")
        detail += f", freed {format_bytes(outcome.details['bytes_freed'])}"
    elif outcome.result is Result.CHANGED:
        detail = "ok"
    else:
        detail = outcome.message or ""
    return f"  {symbol} {action.kind.value:<13} {result}: {detail} ({outcome.duration:.1f}s)"


def resource_heading(name: str, color: bool = False) -> str:
    return Painter(color).bold(f'resource "{name}":')


HOOK_OUTPUT_LINES = 10


def hook_output_lines(outcome: ActionOutcome, all_lines: bool = False) -> list[str]:
    """Return the last lines a hook printed (all it kept, with `all_lines`),
    indented under its action line."""
    tail = outcome.details.get("output_tail") or ""
    lines = tail.rstrip("\n").splitlines()
    if not all_lines:
        lines = lines[-HOOK_OUTPUT_LINES:]
    return [f"      | {line}" for line in lines]


def resource_outcome_line(outcome: ResourceOutcome, color: bool = False) -> str:
    """The final report of a resource: result, duration, and what it changed."""
    paint = Painter(color)
    line = f"=> {paint.bold(outcome.name)}: {paint(outcome.result.value, outcome.result)}"
    if outcome.result is not Result.SETTLED:
        line += f" in {outcome.duration:.1f}s"
    if outcome.message:
        return line + f": {outcome.message}"
    if outcome.result is Result.SETTLED:
        return line + (f" ({'; '.join(outcome.notes)})" if outcome.notes else "")
    done = []
    for action in outcome.actions:
        details = action.details
        if action.result is not Result.CHANGED:
            continue
        if action.action.kind is ActionKind.SNAPSHOT:
            done.append(
                f"snapshot {action.action.snapshot}: {details['files_copied']} copied "
                f"({format_bytes(details['bytes_copied'])} added), "
                f"{details['files_linked']} linked"
            )
        elif action.action.kind is ActionKind.PRUNE:
            done.append(
                f"pruned {_plural(len(details['pruned']), 'snapshot')} "
                f"(freed {format_bytes(details['bytes_freed'])})"
            )
        elif action.action.kind is ActionKind.REVERT:
            done.append("reverted")
        elif action.action.retry:
            done.append("post_command retried")
    return line + (": " + "; ".join(done) if done else "")


def apply_summary(report: ApplyReport) -> str:
    counts = {result: 0 for result in Result}
    for outcome in report.resources:
        counts[outcome.result] += 1
    lines = []
    if report.unmanaged:
        lines.append(
            "No longer in the config (recorded state kept, nothing undone): "
            + ", ".join(report.unmanaged)
        )
    if report.resources and counts[Result.SETTLED] == len(report.resources):
        lines.append("No changes. Every resource is converged.")
    else:
        lines.append(
            f"Apply complete: {counts[Result.CHANGED]} changed, "
            f"{counts[Result.SETTLED]} settled, {counts[Result.FAILED]} failed."
        )
    return "\n".join(lines)


def apply_json(report: ApplyReport, plan_now: str) -> dict[str, Any]:
    return {
        "now": plan_now,
        "resources": [outcome.to_json() for outcome in report.resources],
        "unmanaged": list(report.unmanaged),
    }


# -- state show ---------------------------------------------------------------


RUNS_SHOWN = 5
FINDINGS_SHOWN = 50


def verify_text(resource: str, results: list[Verification]) -> str:
    lines = []
    for result in results:
        kind = "contents and metadata" if result.content else "metadata"
        if result.clean:
            lines.append(f"{result.snapshot}: clean ({result.files} files, {kind})")
            continue
        lines.append(
            f"{result.snapshot}: {_plural(len(result.findings), 'problem')} "
            f"({result.files} files, {kind})"
        )
        for finding in result.findings[:FINDINGS_SHOWN]:
            detail = f": {finding.detail}" if finding.detail else ""
            lines.append(f"  {finding.problem:<10} {finding.path or '-'}{detail}")
        if len(result.findings) > FINDINGS_SHOWN:
            lines.append(f"  ... and {len(result.findings) - FINDINGS_SHOWN} more (see --json)")
    damaged = sum(1 for result in results if not result.clean)
    if not results:
        lines.append(f'resource "{resource}" has no snapshots to verify')
    elif damaged:
        lines.append(f"{_plural(damaged, 'snapshot')} of {len(results)} with problems.")
    else:
        lines.append(f"All {_plural(len(results), 'snapshot')} clean.")
    return "\n".join(lines)


def verify_json(resource: str, results: list[Verification]) -> dict[str, Any]:
    return {
        "resource": resource,
        "clean": all(result.clean for result in results),
        "snapshots": [
            {
                "name": result.snapshot,
                "result": "clean" if result.clean else "damaged",
                "content": result.content,
                "files": result.files,
                "problems": [
                    {"path": f.path, "problem": f.problem, "detail": f.detail}
                    for f in result.findings
                ],
            }
            for result in results
        ],
    }


_CHANGE_SYMBOLS = {"added": "+", "removed": "-", "changed": "~"}


def diff_text(resource: str, difference: Difference, color: bool = False) -> str:
    paint = Painter(color)
    colors = {"added": "32", "removed": "31", "changed": "33"}
    lines = [f'diff "{resource}": {difference.before} -> {difference.after}']
    for change in difference.changes:
        symbol = paint(_CHANGE_SYMBOLS[change.change], code=colors[change.change])
        if change.change == "changed":
            assert change.size_before is not None and change.size_after is not None
            sizes = f"{format_bytes(change.size_before)} -> {format_bytes(change.size_after)}"
        else:
            size = change.size_after if change.change == "added" else change.size_before
            assert size is not None
            sizes = format_bytes(size)
        lines.append(f"{symbol} {change.path} ({sizes})")
    lines.append(
        f"{_plural(len(difference.changes), 'change')}: {difference.count('added')} added, "
        f"{difference.count('removed')} removed, {difference.count('changed')} changed; "
        f"{difference.unchanged} unchanged"
    )
    return "\n".join(lines)


def diff_json(resource: str, difference: Difference) -> dict[str, Any]:
    def items(change: str) -> list[dict[str, Any]]:
        return [
            {"path": c.path, "size_before": c.size_before, "size_after": c.size_after}
            for c in difference.changes
            if c.change == change
        ]

    return {
        "resource": resource,
        "from": difference.before,
        "to": difference.after,
        "added": items("added"),
        "removed": items("removed"),
        "changed": items("changed"),
        "unchanged": difference.unchanged,
    }


def state_text(view: dict[str, Any], width: int = 100, color: bool = False) -> str:
    """Render `state show`: per resource a heading, its snapshots and its
    last runs as tables."""
    if not view:
        return "No recorded state and no resources."
    from rich import box
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, no_color=not color, force_terminal=color, highlight=False
    )
    for name, entry in view.items():
        managed = "" if entry["managed"] else " (no longer in the config: nothing is undone)"
        console.print(f'resource "{name}"{managed}', style="bold", markup=False)
        console.print(f"  target: {entry['target_path']}", markup=False)
        console.print(f"  revert: {entry['revert']}", markup=False)
        pending = entry["post_command_pending"]
        if pending:
            console.print(
                f"  post_command pending: failed at {pending['failed_at']} after snapshot "
                f"{pending['snapshot']}; the next apply retries it",
                markup=False,
            )
        snapshots = Table(box=box.SIMPLE_HEAD, title_justify="left", padding=(0, 1))
        snapshots.title = f"  snapshots: {len(entry['snapshots'])}"
        for column, justify in (
            ("snapshot", "left"),
            ("taken (UTC)", "left"),
            ("files", "right"),
            ("copied", "right"),
            ("linked", "right"),
            ("added", "right"),
            ("exclusive", "right"),
        ):
            snapshots.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        snapshots.add_column("last verified", overflow="fold")
        snapshots.add_column("kept by", overflow="fold")
        for snapshot in entry["snapshots"]:
            known = "files_copied" in snapshot
            copied = snapshot.get("files_copied", 0)
            linked = snapshot.get("files_linked", 0)
            snapshots.add_row(
                snapshot["name"],
                _taken(snapshot["name"]),
                str(copied + linked) if known else "?",
                str(copied) if known else "?",
                str(linked) if known else "?",
                format_bytes(snapshot["bytes_copied"]) if known else "?",
                "?"
                if snapshot.get("bytes_exclusive") is None
                else format_bytes(snapshot["bytes_exclusive"]),
                _verified(snapshot.get("verified")),
                _kept_by(snapshot.get("kept_by")),
            )
        if entry["snapshots"]:
            console.print(snapshots)
        else:
            console.print("  snapshots: none")
        runs = entry["runs"][-RUNS_SHOWN:]
        if runs:
            table = Table(box=box.SIMPLE_HEAD, title_justify="left", padding=(0, 1))
            table.title = f"  last runs: {len(runs)} of {len(entry['runs'])}"
            table.add_column("at (UTC)")
            table.add_column("result")
            table.add_column("took", justify="right")
            table.add_column("actions")
            table.add_column("message / hook output", overflow="fold")
            for run in reversed(runs):
                actions = ", ".join(
                    a["kind"] if a["result"] == "changed" else f"{a['kind']} {a['result']}"
                    for a in run["actions"]
                )
                took = "" if run.get("duration") is None else f"{run['duration']:.1f}s"
                table.add_row(run["at"], run["result"], took, actions or "-", _run_message(run))
            console.print(table)
        console.print()
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip().splitlines())


def _verified(verified: dict[str, Any] | None) -> str:
    if not verified:
        return "never"
    how = "content" if verified["content"] else "metadata"
    result = "clean" if verified["clean"] else f"{verified['problems']} problems"
    return f"{verified['at'][:10]}: {result} ({how})"


def _kept_by(rules: list[dict[str, Any]] | None) -> str:
    """The rules keeping a snapshot, shortly: `retain, keep_monthly 2026-01`."""
    if rules is None:
        return "-"
    if not rules:
        return "nothing: the next apply prunes it"
    return ", ".join(f"{r['rule']} {r['period']}" if r["period"] else r["rule"] for r in rules)


def _taken(name: str) -> str:
    from providers.naming import snapshot_time

    moment = snapshot_time(name)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "?"


def _run_message(run: dict[str, Any]) -> str:
    """A run's message, else the last line its hooks printed."""
    if run.get("message"):
        return str(run["message"])
    for action in reversed(run["actions"]):
        tail = (action.get("output_tail") or "").strip()
        if tail:
            return f"{action['kind']}: {tail.splitlines()[-1]}"
    return ""

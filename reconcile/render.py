"""Rendering: plans, apply reports and state, as text for people or JSON.

Nothing here decides anything; it only shows values it is given.
"""

from __future__ import annotations

from typing import Any

from hardsnap.providers.backup.actions import Action, ActionKind
from hardsnap.providers.backup.pruning import policy as retention_policy
from hardsnap.providers.backup.suspension import pruning_json
from hardsnap.providers.files.escaping import escape_text, format_bytes
from hardsnap.reconcile.outcomes import ActionOutcome, ApplyReport, ResourceOutcome, Result
from hardsnap.reconcile.plan import Plan, ResourcePlan

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


def plural(count: int, word: str) -> str:
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
    if action.files_kept:
        text += f", {action.files_kept} kept"
    if not action.link_unchanged:
        text += " (different filesystems: every file is copied)"
    text += _other_entries(
        action.symlinks or 0,
        action.special_files or 0,
        action.symlinks_skipped or 0,
        action.special_files_skipped or 0,
        "to skip",
    )
    text += _excluded(action.directories_excluded or 0)
    if action.free_bytes_after is not None:
        text += f"; {format_bytes(max(action.free_bytes_after, 0))} free after"
    return text


def _resumed(details: dict[str, Any]) -> str:
    """What a snapshot that resumed an interrupted run's work kept of it."""
    if not details.get("resumed"):
        return ""
    return f", {details['files_kept']} kept (resumed the work an interrupted run left)"


def _excluded(directories: int) -> str:
    """ ", 2 directories excluded (exclude_if_present)", or nothing."""
    if not directories:
        return ""
    word = "directory" if directories == 1 else "directories"
    return f", {directories} {word} excluded (exclude_if_present)"


def _other_entries(
    symlinks: int, special: int, symlinks_skipped: int, special_skipped: int, verb: str
) -> str:
    """ ", 759 symlinks, 3 special files to skip": what is kept and left out
    besides files (nothing when there is none)."""
    parts = []
    if symlinks:
        parts.append(plural(symlinks, "symlink"))
    if special:
        parts.append(plural(special, "special file"))
    skipped = []
    if symlinks_skipped:
        skipped.append(plural(symlinks_skipped, "symlink"))
    if special_skipped:
        skipped.append(plural(special_skipped, "special file"))
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
        lines.append("  " + paint("refused: " + escape_text(resource_plan.refusal), code="31"))
    for warning in (
        resource_plan.warning,
        *resource_plan.warnings,
        *resource_plan.config_warnings,
    ):
        if warning:
            lines.append("  " + paint("warning: " + escape_text(warning), code="33"))
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
        lines.append(f"  {escape_text(note)}")
    policy = retention_policy(resource)
    for name, rules in resource_plan.kept:
        if all(reason.rule != "retain" for reason in rules):
            described = ", ".join(reason.describe(policy) for reason in rules)
            lines.append(f"  keeps {name}: {described}")
    return lines


def plan_summary(plan: Plan) -> str:
    refused = sum(1 for resource_plan in plan.resources if resource_plan.refusal)
    if not plan.has_changes:
        if refused:
            return f"No changes: {plural(refused, 'resource')} refused."
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
        parts.append(plural(counts[ActionKind.SNAPSHOT], "snapshot"))
    if pruned:
        freeing = f" (freeing {format_bytes(freed)})" if freed is not None else ""
        parts.append(f"{plural(pruned, 'prune')}{freeing}")
    hooks = counts[ActionKind.PRE_COMMAND] + counts[ActionKind.POST_COMMAND]
    if hooks:
        parts.append(plural(hooks, "hook"))
    if counts[ActionKind.REVERT]:
        parts.append(plural(counts[ActionKind.REVERT], "revert"))
    if refused:
        parts.append(f"{plural(refused, 'resource')} refused")
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
                "warnings": [*resource_plan.warnings, *resource_plan.config_warnings],
                "notes": list(resource_plan.notes),
                **pruning_json(resource_plan.pruning.suspended),
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
        detail += _resumed(details)
        detail += _other_entries(details["symlinks"], details["special_files"], 0, 0, "skipped")
        detail += _excluded(details.get("directories_excluded", 0))
        skipped = details.get("skipped_total", len(details["skipped"]))
        if skipped:
            detail += f", {skipped} skipped"
    elif outcome.result is Result.CHANGED and action.kind is ActionKind.PRUNE:
        detail = "removed " + (", ".join(outcome.details["pruned"]) or "nothing")
        detail += f", freed {format_bytes(outcome.details['bytes_freed'])}"
    elif outcome.result is Result.CHANGED:
        detail = "ok"
    else:
        detail = escape_text(outcome.message or "")
    return f"  {symbol} {action.kind.value:<13} {result}: {detail} ({outcome.duration:.1f}s)"


def resource_heading(name: str, color: bool = False) -> str:
    return Painter(color).bold(f'resource "{name}":')


HOOK_OUTPUT_LINES = 10


def hook_output_lines(outcome: ActionOutcome, all_lines: bool = False) -> list[str]:
    """Return the last lines a hook printed (all it kept, with `all_lines`),
    indented under its action line, escaped: another user's text."""
    tail = outcome.details.get("output_tail") or ""
    lines = tail.rstrip("\n").splitlines()
    if not all_lines:
        lines = lines[-HOOK_OUTPUT_LINES:]
    return [f"      | {escape_text(line)}" for line in lines]


def resource_outcome_line(outcome: ResourceOutcome, color: bool = False) -> str:
    """The final report of a resource: result, duration, and what it changed."""
    paint = Painter(color)
    line = f"=> {paint.bold(outcome.name)}: {paint(outcome.result.value, outcome.result)}"
    if outcome.result is not Result.SETTLED:
        line += f" in {outcome.duration:.1f}s"
    if outcome.message:
        return line + f": {escape_text(outcome.message)}"
    if outcome.result is Result.SETTLED:
        return line + (f" ({escape_text('; '.join(outcome.notes))})" if outcome.notes else "")
    done = []
    for action in outcome.actions:
        details = action.details
        if action.result is not Result.CHANGED:
            continue
        if action.action.kind is ActionKind.SNAPSHOT:
            done.append(
                f"snapshot {action.action.snapshot}: {details['files_copied']} copied "
                f"({format_bytes(details['bytes_copied'])} added), "
                f"{details['files_linked']} linked{_resumed(details)}"
            )
        elif action.action.kind is ActionKind.PRUNE:
            done.append(
                f"pruned {plural(len(details['pruned']), 'snapshot')} "
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
        "warnings": list(report.warnings),
    }

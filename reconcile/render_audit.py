"""What the auditing commands print: verify, diff, history and state
show, as text for people and as JSON documents."""

from __future__ import annotations

import io
from typing import Any

from hardsnap.providers.audit.history import History
from hardsnap.providers.audit.metadata import moment
from hardsnap.providers.audit.verify import Difference, Verification
from hardsnap.providers.files.escaping import escape_name, escape_text, format_bytes
from hardsnap.reconcile.render import Painter, plural

# -- verify, diff, history, state show -----------------------------------------


RUNS_SHOWN = 5
FINDINGS_SHOWN = 50


def verify_text(resource: str, results: list[Verification]) -> str:
    lines = []
    for result in results:
        kind = "contents and metadata" if result.content else "metadata"
        if result.clean and result.not_kept_total:
            lines.append(
                f"{result.snapshot}: clean as far as the target filesystem keeps metadata "
                f"({result.files} files, {kind}); {plural(result.not_kept_total, 'file')} "
                f"kept less than the source had:"
            )
            for finding in result.not_kept[:FINDINGS_SHOWN]:
                lines.append(f"  not kept   {escape_name(finding.path)}: {finding.detail}")
            continue
        if result.clean:
            lines.append(f"{result.snapshot}: clean ({result.files} files, {kind})")
            continue
        lines.append(
            f"{result.snapshot}: {plural(len(result.findings), 'problem')} "
            f"({result.files} files, {kind})"
        )
        for finding in result.findings[:FINDINGS_SHOWN]:
            detail = f": {escape_text(finding.detail)}" if finding.detail else ""
            path = escape_name(finding.path) if finding.path else "-"
            lines.append(f"  {finding.problem:<10} {path}{detail}")
        if len(result.findings) > FINDINGS_SHOWN:
            lines.append(f"  ... and {len(result.findings) - FINDINGS_SHOWN} more (see --json)")
    damaged = sum(1 for result in results if not result.clean)
    if not results:
        lines.append(f'resource "{resource}" has no snapshots to verify')
    elif damaged:
        lines.append(f"{plural(damaged, 'snapshot')} of {len(results)} with problems.")
    elif any(result.not_kept_total for result in results):
        lines.append(
            f"All {plural(len(results), 'snapshot')} clean as far as the target filesystem "
            f"keeps metadata."
        )
    else:
        lines.append(f"All {plural(len(results), 'snapshot')} clean.")
    return "\n".join(lines)


def verify_json(resource: str, results: list[Verification]) -> dict[str, Any]:
    return {
        "resource": resource,
        "clean": all(result.clean for result in results),
        "snapshots": [_verified_json(result) for result in results],
    }


def _verified_json(result: Verification) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": result.snapshot,
        "result": "clean" if result.clean else "damaged",
        "content": result.content,
        "files": result.files,
        "problems": [
            {"path": f.path, "problem": f.problem, "detail": f.detail} for f in result.findings
        ],
    }
    if result.not_kept_total:
        # What the target's filesystem did not keep of the source (only
        # where there is some: NTFS, exFAT).
        document["not_kept"] = [{"path": f.path, "detail": f.detail} for f in result.not_kept]
        document["not_kept_total"] = result.not_kept_total
    return document


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
        lines.append(f"{symbol} {escape_name(change.path)} ({sizes})")
    lines.append(
        f"{plural(len(difference.changes), 'change')}: {difference.count('added')} added, "
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

    document: dict[str, Any] = {
        "resource": resource,
        "from": difference.before,
        "to": difference.after,
        "added": items("added"),
        "removed": items("removed"),
        "changed": items("changed"),
        "unchanged": difference.unchanged,
    }
    if difference.warnings:
        document["warnings"] = list(difference.warnings)
    return document


def history_text(resource: str, found: History) -> str:
    path = escape_name(found.path) if found.path else "."
    lines = [f'history of {path} in "{resource}": {plural(len(found.versions), "version")}']
    for version in found.versions:
        span = (
            version.first if version.first == version.last else f"{version.first} .. {version.last}"
        )
        size = format_bytes(version.info.st_size) if version.kind == "file" else version.kind
        lines.append(f"  {span:<32} {size:>10}  modified {moment(version.info.st_mtime_ns)}")
    return "\n".join(lines)


def history_json(found: History) -> dict[str, Any]:
    document: dict[str, Any] = {
        "path": found.path,
        "versions": [
            {
                "first": version.first,
                "last": version.last,
                "size": version.info.st_size,
                "mtime": moment(version.info.st_mtime_ns),
                "kind": version.kind,
            }
            for version in found.versions
        ],
    }
    if found.warnings:
        document["warnings"] = list(found.warnings)
    return document


def state_text(view: dict[str, Any], width: int = 100, color: bool = False) -> str:
    """Render `state show`: per resource a heading, its snapshots and its
    last runs, as tables where they fit in `width` columns, else stacked
    (a few lines per snapshot or run, wrapped, nothing cut). Nothing of
    it is read as markup: hook output is another user's text."""
    if not view:
        return "No recorded state and no resources."
    from rich import box
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        no_color=not color,
        force_terminal=color,
        highlight=False,
        markup=False,
        emoji=False,
    )
    for name, entry in view.items():
        managed = "" if entry["managed"] else " (no longer in the config: nothing is undone)"
        console.print(f'resource "{name}"{managed}', style="bold")
        _wrapped(console, f"target: {escape_text(entry['target_path'])}", "  ")
        console.print(f"  revert: {entry['revert']}")
        if entry["pruning"] == "suspended":
            resumes = entry["pruning_resumes_at"]
            _wrapped(
                console,
                f"pruning: suspended since {entry['pruning_suspended_since']} (no snapshot "
                f"for longer than retain before it; plan says more): "
                + (f"prunes again from {resumes}, " if resumes else "")
                + "or at once with hardsnap apply --resume-pruning",
                "  ",
            )
        pending = entry["post_command_pending"]
        if pending:
            _wrapped(
                console,
                f"post_command pending: failed at {pending['failed_at']} after snapshot "
                f"{pending['snapshot']}; the next apply retries it",
                "  ",
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
                _kept_by(snapshot.get("kept_by"), entry["pruning"]),
            )
        if not entry["snapshots"]:
            console.print("  snapshots: none")
        elif _fits(console, snapshots):
            console.print(snapshots)
        else:
            _stacked_snapshots(console, entry["snapshots"], entry["pruning"])
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
            if _fits(console, table, folded=_run_message_width(runs)):
                console.print(table)
            else:
                _stacked_runs(console, runs, len(entry["runs"]))
        console.print()
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip().splitlines())


def _fits(console: Any, table: Any, folded: int = 0) -> bool:
    """Whether a table shows whole in the console's width: every column at
    its widest (`folded` is the longest text a folding column must show on
    one line to stay readable)."""
    from rich.measure import Measurement

    unbounded = console.options.update(width=1 << 16, max_width=1 << 16)
    needed = Measurement.get(console, unbounded, table).maximum
    return bool(needed <= console.width and folded <= console.width // 2)


def _run_message_width(runs: list[dict[str, Any]]) -> int:
    return max((len(_run_message(run)) for run in runs), default=0)


def _stacked_snapshots(console: Any, snapshots: list[dict[str, Any]], pruning: str | None) -> None:
    console.print(f"  snapshots: {len(snapshots)}")
    for snapshot in snapshots:
        console.print(f"  {snapshot['name']}  taken {_taken(snapshot['name'])} UTC")
        if "files_copied" in snapshot:
            copied, linked = snapshot["files_copied"], snapshot["files_linked"]
            counts = (
                f"{copied + linked} files: {copied} copied "
                f"({format_bytes(snapshot['bytes_copied'])} added), {linked} linked"
            )
        else:
            counts = "files: ?"
        exclusive = snapshot.get("bytes_exclusive")
        shown = "?" if exclusive is None else format_bytes(exclusive)
        _wrapped(console, f"{counts}; {shown} exclusive", "      ")
        _wrapped(
            console,
            f"last verified: {_verified(snapshot.get('verified'))}; "
            f"kept by: {_kept_by(snapshot.get('kept_by'), pruning)}",
            "      ",
        )
    console.print()


def _stacked_runs(console: Any, runs: list[dict[str, Any]], total: int) -> None:
    console.print(f"  last runs: {len(runs)} of {total}")
    for run in reversed(runs):
        took = "" if run.get("duration") is None else f" in {run['duration']:.1f}s"
        console.print(f"  {run['at']}  {run['result']}{took}")
        actions = ", ".join(
            a["kind"] if a["result"] == "changed" else f"{a['kind']} {a['result']}"
            for a in run["actions"]
        )
        if actions:
            _wrapped(console, actions, "      ")
        message = _run_message(run)
        if message:
            _wrapped(console, message, "      ")


def _wrapped(console: Any, text: str, indent: str) -> None:
    """Print `text` wrapped at spaces to the console's width, each line
    indented; a word longer than a line (a path) is broken, never cut."""
    import textwrap

    for line in textwrap.wrap(
        text, console.width, initial_indent=indent, subsequent_indent=indent + "  "
    ):
        console.print(line, soft_wrap=True)


def _verified(verified: dict[str, Any] | None) -> str:
    if not verified:
        return "never"
    how = "content" if verified["content"] else "metadata"
    result = "clean" if verified["clean"] else f"{verified['problems']} problems"
    return f"{verified['at'][:10]}: {result} ({how})"


def _kept_by(rules: list[dict[str, Any]] | None, pruning: str | None) -> str:
    """The rules keeping a snapshot, shortly: `retain, keep_monthly 2026-01`."""
    if rules is None:
        return "-"
    if not rules and pruning == "suspended":
        return "nothing, but pruning is suspended"
    if not rules:
        return "nothing: the next apply prunes it"
    return ", ".join(f"{r['rule']} {r['period']}" if r["period"] else r["rule"] for r in rules)


def _taken(name: str) -> str:
    from hardsnap.providers.backup.naming import snapshot_time

    moment = snapshot_time(name)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "?"


def _run_message(run: dict[str, Any]) -> str:
    """A run's message, else the last line its hooks printed (escaped)."""
    if run.get("message"):
        return escape_text(str(run["message"]))
    for action in reversed(run["actions"]):
        tail = (action.get("output_tail") or "").strip()
        if tail:
            return f"{action['kind']}: {escape_text(tail.splitlines()[-1])}"
    return ""

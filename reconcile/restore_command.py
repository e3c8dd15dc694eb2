"""hardsnap restore: bring a path back from a snapshot, shown as a plan
first (each entry created, replaced and why, or already equal), carried
out with --apply. From a resource of the config, or from a bare target
(--target) when the config and state went down with the disk."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from hardsnap.reconcile import common
from hardsnap.reconcile.common import ConfigOption, JsonOption, StateDirOption, app
from hardsnap.reconcile.exitcodes import ExitCode

ARGUMENTS_HELP = (
    "NAME PATH (PATH relative to source_dir, or absolute below it; . for all); "
    "PATH alone with --target"
)


FromOption = Annotated[
    str | None,
    typer.Option("--from", help="The snapshot to restore from (default: the newest holding PATH)."),
]
ToOption = Annotated[
    str | None,
    typer.Option("--to", help="Restore PATH as this path (default: where it came from)."),
]
ApplyOption = Annotated[bool, typer.Option("--apply", help="Carry it out (else show the plan).")]
DeleteOption = Annotated[
    bool, typer.Option("--delete", help="Remove what the destination holds and the snapshot lacks.")
]
OverwriteOption = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace without keeping NAME.hardsnap-replaced-SNAPSHOT."),
]
TargetOption = Annotated[
    str | None,
    typer.Option("--target", help="Restore from this target alone (no config or state needed)."),
]


@app.command()
def restore(
    arguments: Annotated[list[str], typer.Argument(help=ARGUMENTS_HELP, metavar="[NAME] PATH")],
    snapshot: FromOption = None,
    to: ToOption = None,
    apply: ApplyOption = False,
    delete: DeleteOption = False,
    overwrite: OverwriteOption = False,
    target: TargetOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Bring PATH back from a snapshot: shows what it would do, and does it with --apply."""
    from hardsnap.providers.restore.restore import restore as restore_path

    name, target_path, source, path = _where(arguments, target, config, as_json)
    snapshot = _snapshot(target_path, path, snapshot, as_json)
    destination = os.path.abspath(to) if to else (os.path.join(source, path) if source else None)
    if destination is None:
        common.fail(
            "the target records no source to restore to: say where with --to",
            ExitCode.FAILED,
            as_json,
        )
    try:
        with common.exit_codes(as_json):
            result = restore_path(
                target_path, snapshot, path, destination, apply, delete, overwrite
            )
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        common.fail(f"restore stopped: {error.strerror}{where}", ExitCode.FAILED, as_json)
    common.show(as_json, lambda: _document(name, result), lambda: _text(name, result))
    if result.damaged:
        raise typer.Exit(int(ExitCode.FAILED))
    if not apply and result.pending:
        raise typer.Exit(int(ExitCode.CHANGES))


def _where(
    arguments: list[str], target: str | None, config: str | None, as_json: bool
) -> tuple[str | None, str, str | None, str]:
    """(resource name, target, source directory, PATH relative to it)."""
    from hardsnap.providers.backup import target as targets

    if target is not None:
        if len(arguments) != 1:
            common.fail("with --target give PATH alone", ExitCode.FAILED, as_json)
        resolved = os.path.realpath(target)
        source = None
        try:
            fd = targets.open_target(resolved)
            try:
                owner = targets.read_owner(fd)
            finally:
                os.close(fd)
            source = owner.source if owner is not None else None
        except (OSError, ValueError) as error:
            common.fail(f"cannot read target {resolved}: {error}", ExitCode.FAILED, as_json)
        return None, resolved, source, _relative(arguments[0], source, as_json)
    if len(arguments) != 2:
        common.fail("give NAME and PATH (or --target TARGET and PATH)", ExitCode.FAILED, as_json)
    name, path = arguments
    loaded = common.load(config, as_json)
    resource = loaded.resource(name)
    if resource is None:
        common.fail(f'no resource named "{name}" in {loaded.path}', ExitCode.FAILED, as_json)
    source = os.path.realpath(resource.source_dir)
    return name, os.path.realpath(resource.target_path), source, _relative(path, source, as_json)


def _relative(path: str, source: str | None, as_json: bool) -> str:
    """PATH relative to the source ("" for all of it)."""
    if os.path.isabs(path):
        if source is None or not (path == source or path.startswith(source.rstrip("/") + "/")):
            common.fail(f"{path} is not below source_dir {source}", ExitCode.FAILED, as_json)
        path = os.path.relpath(path, source)
    normal = os.path.normpath(path)
    if normal == ".":
        return ""
    if normal.startswith("../") or normal == "..":
        common.fail(f"{path} is not below source_dir {source}", ExitCode.FAILED, as_json)
    return normal


def _snapshot(target: str, path: str, wanted: str | None, as_json: bool) -> str:
    from hardsnap.providers.backup.target import list_snapshots
    from hardsnap.providers.restore.restore import first_holding

    snapshots = list_snapshots(target)
    if wanted is not None:
        if wanted not in snapshots:
            common.fail(f"no snapshot {wanted} in {target}", ExitCode.FAILED, as_json)
        if first_holding(target, path, [wanted]) is None:
            common.fail(f"snapshot {wanted} holds no {path or '.'}", ExitCode.FAILED, as_json)
        return wanted
    found = first_holding(target, path, reversed(snapshots))
    if found is None:
        common.fail(f"no snapshot in {target} holds {path or '.'}", ExitCode.FAILED, as_json)
    return found


def _document(name: str | None, result: Any) -> dict[str, Any]:
    return {
        "resource": name,
        "snapshot": result.snapshot,
        "path": result.path,
        "destination": result.destination,
        "applied": result.applied,
        "entries": [
            {"path": step.path, "action": step.action, "why": list(step.why)}
            for step in result.steps
        ],
        "created": result.count("create"),
        "replaced": result.count("replace"),
        "equal": result.count("equal"),
        "deleted": result.count("delete"),
        "damaged": result.damaged,
        "kept_beside": result.kept_beside,
    }


_SYMBOLS = {"create": "+", "replace": "~", "equal": "=", "delete": "-", "damaged": "!"}


def _text(name: str | None, result: Any) -> str:
    from hardsnap.providers.files.escaping import escape_name

    whence = f'resource "{name}"' if name else "target"
    lines = [
        f"restore from {whence}, snapshot {result.snapshot}: {escape_name(result.path)} -> "
        f"{escape_name(result.destination)}"
    ]
    for step in result.steps:
        why = f" ({', '.join(step.why)})" if step.why else ""
        lines.append(f"  {_SYMBOLS[step.action]} {escape_name(step.path)}{why}")
    counts = [
        f"{result.count('create')} {'created' if result.applied else 'to create'}",
        f"{result.count('replace')} {'replaced' if result.applied else 'to replace'}",
        f"{result.count('equal')} equal",
    ]
    if result.count("delete"):
        counts.append(f"{result.count('delete')} {'deleted' if result.applied else 'to delete'}")
    if result.damaged:
        counts.append(f"{len(result.damaged)} damaged in the snapshot, not restored")
    lines.append(("Restored: " if result.applied else "Plan: ") + ", ".join(counts) + ".")
    if result.kept_beside:
        lines.append("Kept beside what was replaced: " + ", ".join(result.kept_beside))
    if not result.applied and result.pending:
        lines.append("Nothing changed: run with --apply to restore.")
    return "\n".join(lines)

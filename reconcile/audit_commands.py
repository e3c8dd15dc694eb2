"""The auditing commands: verify, diff, history, state show and forget. They read
snapshots and state; none of them changes a snapshot."""

from __future__ import annotations

import shutil
from typing import Annotated

import typer

from hardsnap.reconcile import common, journal, render_audit
from hardsnap.reconcile.common import ConfigOption, JsonOption, StateDirOption, app, state_app
from hardsnap.reconcile.exitcodes import ExitCode


@app.command()
def verify(
    name: Annotated[str, typer.Argument(help="The resource whose snapshots to check.")],
    snapshots: Annotated[
        list[str] | None, typer.Argument(help="Snapshots to check (default: all).")
    ] = None,
    content: Annotated[
        bool, typer.Option("--content", help="Also hash every file and compare contents.")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Check snapshots against their manifests; exit 1 when any drifted or rotted."""
    from hardsnap.reconcile.operations import verify_resource

    results = common.run(
        config,
        as_json,
        state_dir,
        lambda loaded, state: verify_resource(
            loaded, state, name, snapshots or [], content, common.now()
        ),
    )
    common.show(
        as_json,
        lambda: render_audit.verify_json(name, results),
        lambda: render_audit.verify_text(name, results),
    )
    if not all(result.clean for result in results):
        raise typer.Exit(int(ExitCode.FAILED))


@app.command()
def diff(
    name: Annotated[str, typer.Argument(help="The resource whose snapshots to compare.")],
    before: Annotated[
        str | None, typer.Argument(help="The older snapshot (default: the second newest).")
    ] = None,
    after: Annotated[
        str | None, typer.Argument(help="The newer snapshot (default: the one after BEFORE).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Files added, removed and changed between two snapshots."""
    from hardsnap.reconcile.operations import diff_resource

    difference = common.run(
        config,
        as_json,
        state_dir,
        lambda loaded, state: diff_resource(loaded, state, name, before, after),
    )
    common.warn(difference.warnings)
    common.show(
        as_json,
        lambda: render_audit.diff_json(name, difference),
        lambda: render_audit.diff_text(name, difference, common.color()),
    )


@state_app.command("show")
def state_show(
    name: Annotated[str | None, typer.Argument(help="Show only this resource.")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Show recorded state: snapshots, last runs, reverts, pending hooks."""
    from hardsnap.reconcile.config import ConfigError, load_config
    from hardsnap.reconcile.operations import state_view

    try:
        loaded = load_config(common.config_path(config))
    except ConfigError as error:
        loaded = None
        journal.say(
            f"warning: {error.problems[0]}; resources cannot be matched to a config",
            journal.WARNING,
        )
    with common.exit_codes(as_json):
        view = state_view(loaded, common.state_dir(state_dir), name, common.now())
    if name is not None and name not in view:
        journal.say(f"warning: no recorded state or resource named {name!r}", journal.WARNING)
    if as_json:
        common.print_json({"resources": view})
    else:
        width = shutil.get_terminal_size((100, 24)).columns
        typer.echo(render_audit.state_text(view, width, common.color()))


@state_app.command("forget")
def state_forget(
    name: Annotated[str, typer.Argument(help="The resource no longer in the config.")],
    config: ConfigOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Drop the recorded state of a resource removed from the config.
    Touches no snapshot."""
    from hardsnap.reconcile.operations import forget_resource

    loaded = common.load(config)
    with common.exit_codes():
        forget_resource(loaded, common.state_dir(state_dir), name)
    typer.echo(f'forgot the recorded state of "{name}"; its snapshots are left where they are')


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="The resource whose snapshots to search.")],
    path: Annotated[
        str, typer.Argument(help="A path relative to source_dir, or absolute below it.")
    ],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """The versions of one file or directory across the snapshots."""
    from hardsnap.reconcile.operations import history_of_path

    found = common.run(
        config, as_json, state_dir, lambda loaded, state: history_of_path(loaded, state, name, path)
    )
    common.warn(found.warnings)
    common.show(
        as_json,
        lambda: render_audit.history_json(found),
        lambda: render_audit.history_text(name, found),
    )

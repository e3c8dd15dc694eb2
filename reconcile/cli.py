"""The hardsnap command line: parse options, call one operation, render, exit.

The converging commands live here; the auditing ones (verify, diff,
history, state) in reconcile/audit_commands.py; what they share in
reconcile/common.py.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn

import typer

from hardsnap.providers.files.escaping import escape_text
from hardsnap.reconcile import audit_commands, common, journal, render, restore_command
from hardsnap.reconcile.common import (
    AllowEmptyOption,
    AllowNewTargetOption,
    ConfigOption,
    JsonOption,
    ResumePruningOption,
    StateDirOption,
    app,
)
from hardsnap.reconcile.exitcodes import ExitCode

__all__ = ["app", "audit_commands", "main", "restore_command"]


@app.command()
def validate(
    config: ConfigOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Check the config file; exit 0 when valid, 2 when not."""
    from hardsnap.providers.backup.pruning import short_retain_warning

    loaded = common.load(config)
    for checked in loaded.resources:
        warning = short_retain_warning(checked)
        if warning:
            journal.say(f"warning: {checked.name}: {warning}", journal.WARNING)
    count = len(loaded.resources)
    typer.echo(f"{loaded.path}: valid, {count} resource{'s' if count != 1 else ''}")


@app.command()
def plan(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode", help="Exit 0 when no changes, 2 with changes, 1 on error."
        ),
    ] = False,
    allow_empty_source: AllowEmptyOption = False,
    allow_new_target: AllowNewTargetOption = False,
    resume_pruning: ResumePruningOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Show what apply would do. Changes nothing."""
    from hardsnap.providers.backup.plan import Overrides
    from hardsnap.reconcile.operations import plan_config

    try:
        loaded = common.load(config, as_json)
    except typer.Exit:
        if detailed_exitcode:
            raise typer.Exit(int(ExitCode.FAILED)) from None
        raise
    overrides = Overrides(allow_empty_source, allow_new_target, resume_pruning)
    with common.exit_codes(as_json):
        result = plan_config(loaded, common.state_dir(state_dir), common.now(), overrides)
    if as_json:
        common.print_json(render.plan_json(result))
    else:
        typer.echo(render.plan_text(result, loaded.path, common.color()))
    if result.refused:
        raise typer.Exit(int(ExitCode.FAILED))
    if detailed_exitcode and result.has_changes:
        raise typer.Exit(int(ExitCode.CHANGES))


@app.command()
def apply(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    resource: Annotated[
        list[str] | None,
        typer.Option("--resource", help="Apply only this resource (repeatable)."),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print nothing but problems (failures, warnings)."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print reasons and whole hook output.")
    ] = False,
    allow_empty_source: AllowEmptyOption = False,
    allow_new_target: AllowNewTargetOption = False,
    resume_pruning: ResumePruningOption = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Processes that share a snapshot's walk (default: the CPUs it may use).",
        ),
    ] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Converge: snapshot, prune, run hooks and reverts. No prompt."""
    from hardsnap.providers.backup.plan import Overrides
    from hardsnap.reconcile.operations import apply_config
    from hardsnap.reconcile.reporters import TextReporter, WarningsReporter

    loaded = common.load(config, as_json)
    now = common.now()
    verbosity = -1 if quiet else (1 if verbose else 0)
    reporter = (
        WarningsReporter()
        if as_json
        else TextReporter(verbosity, common.color(), live=sys.stdout.isatty())
    )
    overrides = Overrides(allow_empty_source, allow_new_target, resume_pruning)

    common.stop_on_signals()
    with common.exit_codes(as_json):
        try:
            report = apply_config(
                loaded,
                common.state_dir(state_dir),
                now,
                resource or [],
                reporter,
                overrides,
                jobs,
            )
        finally:
            reporter.close()
    # The work is done and recorded: a signal now would only cut the report.
    common.ignore_stopping_signals()
    for warning in report.warnings:
        journal.say(f"warning: {escape_text(warning)}", journal.WARNING)
    if as_json:
        common.print_json(render.apply_json(report, now.strftime("%Y-%m-%dT%H:%M:%SZ")))
    elif not quiet:
        typer.echo(render.apply_summary(report))
    if report.failed:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command()
def schema(state_dir: StateDirOption = None) -> None:
    """Print the JSON Schema of the config file (for editors)."""
    from hardsnap.reconcile.schema import config_schema

    common.print_json(config_schema())


def _show_version(value: bool) -> None:
    if value:
        from hardsnap.reconcile import __version__

        typer.echo(f"hardsnap {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Declarative hardlink snapshots: validate, plan, apply, audit."""


def main() -> NoReturn:
    """Run the command line and exit with its code, skipping the teardown
    of the interpreter (freeing every object took the last 40 ms of a run):
    the work is done, its state saved and closed, and output is flushed
    here first."""
    try:
        app()
        code: object = 0
    except SystemExit as done:
        code = done.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1
    os._exit(code or 0)

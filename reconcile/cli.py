"""The hardsnap command line: parse options, call one operation, render, exit."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from typing import Annotated, Any, NoReturn

import typer

from reconcile import clock, exitcodes, render
from reconcile.exitcodes import ExitCode

app = typer.Typer(
    name="hardsnap",
    help="Declarative hardlink snapshots: validate, plan, apply, audit.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
state_app = typer.Typer(help="Show recorded state.", no_args_is_help=True)
app.add_typer(state_app, name="state")

ConfigOption = Annotated[
    str, typer.Option("--config", "-c", help="Config file.", show_default=True)
]
StateDirOption = Annotated[
    str | None,
    typer.Option(
        "--state-dir",
        help="State directory (default: $HARDSNAP_STATE_DIR, $XDG_STATE_HOME/hardsnap, "
        "/var/lib/hardsnap as root, else ~/.local/state/hardsnap).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
AllowEmptyOption = Annotated[
    bool,
    typer.Option(
        "--allow-empty-source",
        help="Snapshot a source that is empty although the newest snapshot is not "
        "(refused by default: the signature of an unmounted disk).",
    ),
]
AllowNewTargetOption = Annotated[
    bool,
    typer.Option(
        "--allow-new-target",
        help="Start a new chain in a target_path that holds none of the snapshots the state "
        "records there (refused by default: the signature of an unmounted backup disk).",
    ),
]


class Stopped(KeyboardInterrupt):
    """A signal (SIGINT, SIGTERM, SIGHUP) stopped the command."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop_on_signals() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP (Ctrl-C, systemd stopping us, a closed
    terminal) into Stopped, so an apply stops by unwinding: hooks' process
    groups ended, a snapshot's work kept for the next apply to resume,
    state saved, locks released. Signals that come while it unwinds are
    ignored: the first one already asked for all of that."""

    def stop(signum: int, frame: object) -> None:
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)
        raise Stopped(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


@contextlib.contextmanager
def _exit_codes(as_json: bool = False) -> Iterator[None]:
    """The one place where an operation's errors become exit codes: an
    unknown resource name is bad input (2); an unusable state store or a
    missing snapshot fail the command (1); a lock held by another apply
    exits 75; a signal exits 128 + its number (130 for SIGINT, 143 for
    SIGTERM). With `as_json`, the error is also the JSON document on stdout."""
    from providers.target import TargetBusy
    from reconcile.operations import NoSuchSnapshot, UnknownResource
    from state.lock import LockHeld
    from state.store import StateError

    try:
        yield
    except KeyboardInterrupt as error:
        signum = error.signum if isinstance(error, Stopped) else signal.SIGINT
        name = signal.Signals(signum).name
        _fail(
            f"interrupted by {name}: work done so far is kept for the next apply to resume; "
            f"earlier snapshots are untouched",
            exitcodes.of_signal(signum),
            as_json,
            own_line=True,
        )
    except UnknownResource as error:
        _fail(str(error), ExitCode.INVALID, as_json)
    except (LockHeld, TargetBusy) as error:
        _fail(str(error), ExitCode.LOCKED, as_json)
    except (StateError, NoSuchSnapshot) as error:
        _fail(str(error), ExitCode.FAILED, as_json)


def _fail(
    message: str, code: int = ExitCode.FAILED, as_json: bool = False, own_line: bool = False
) -> NoReturn:
    """Say what stopped the command and exit with `code`. A message after
    an interrupt starts on a line of its own (the terminal echoed ^C)."""
    if as_json:
        _print_json({"error": message})
    lead = "\n" if own_line and sys.stderr.isatty() else ""
    typer.echo(f"{lead}hardsnap: {message}", err=True)
    raise typer.Exit(int(code))


def _state_dir(option: str | None) -> str:
    from state.store import default_state_dir

    return option or default_state_dir()


def _color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, sort_keys=False))


def _load(config: str) -> Any:
    """Load the config or exit 2 with every located problem on stderr."""
    from reconcile.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as error:
        for problem in error.problems:
            typer.echo(str(problem), err=True)
        count = len(error.problems)
        typer.echo(f"{config}: invalid, {count} problem{'s' if count != 1 else ''}", err=True)
        raise typer.Exit(int(ExitCode.INVALID)) from None


def _now() -> Any:
    try:
        return clock.now()
    except clock.ClockError as error:
        _fail(str(error))


@app.command()
def validate(
    config: ConfigOption = "hardsnap.yaml",
    state_dir: StateDirOption = None,
) -> None:
    """Check the config file; exit 0 when valid, 2 when not."""
    loaded = _load(config)
    count = len(loaded.resources)
    typer.echo(f"{config}: valid, {count} resource{'s' if count != 1 else ''}")


@app.command()
def plan(
    config: ConfigOption = "hardsnap.yaml",
    as_json: JsonOption = False,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode", help="Exit 0 when no changes, 2 with changes, 1 on error."
        ),
    ] = False,
    allow_empty_source: AllowEmptyOption = False,
    allow_new_target: AllowNewTargetOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Show what apply would do. Changes nothing."""
    from reconcile.operations import plan_config
    from reconcile.planner import Overrides

    try:
        loaded = _load(config)
    except typer.Exit:
        if detailed_exitcode:
            raise typer.Exit(int(ExitCode.FAILED)) from None
        raise
    overrides = Overrides(allow_empty_source, allow_new_target)
    with _exit_codes(as_json):
        result = plan_config(loaded, _state_dir(state_dir), _now(), overrides)
    if as_json:
        _print_json(render.plan_json(result))
    else:
        typer.echo(render.plan_text(result, config, _color()))
    if result.refused:
        raise typer.Exit(int(ExitCode.FAILED))
    if detailed_exitcode and result.has_changes:
        raise typer.Exit(int(ExitCode.CHANGES))


@app.command()
def apply(
    config: ConfigOption = "hardsnap.yaml",
    as_json: JsonOption = False,
    resource: Annotated[
        list[str] | None,
        typer.Option("--resource", help="Apply only this resource (repeatable)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only each resource's result.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print reasons and whole hook output.")
    ] = False,
    allow_empty_source: AllowEmptyOption = False,
    allow_new_target: AllowNewTargetOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Converge: snapshot, prune, run hooks and reverts. No prompt."""
    from reconcile.operations import apply_config
    from reconcile.planner import Overrides
    from reconcile.reporters import TextReporter, WarningsReporter

    loaded = _load(config)
    now = _now()
    verbosity = -1 if quiet else (1 if verbose else 0)
    reporter = (
        WarningsReporter()
        if as_json
        else TextReporter(verbosity, _color(), live=sys.stdout.isatty())
    )
    overrides = Overrides(allow_empty_source, allow_new_target)

    _stop_on_signals()
    with _exit_codes(as_json):
        try:
            report = apply_config(
                loaded, _state_dir(state_dir), now, resource or [], reporter, overrides
            )
        finally:
            reporter.close()
    if as_json:
        _print_json(render.apply_json(report, now.strftime("%Y-%m-%dT%H:%M:%SZ")))
    else:
        typer.echo(render.apply_summary(report))
    if report.failed:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command()
def verify(
    name: Annotated[str, typer.Argument(help="The resource whose snapshots to check.")],
    snapshots: Annotated[
        list[str] | None, typer.Argument(help="Snapshots to check (default: all).")
    ] = None,
    content: Annotated[
        bool, typer.Option("--content", help="Also hash every file and compare contents.")
    ] = False,
    config: ConfigOption = "hardsnap.yaml",
    as_json: JsonOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Check snapshots against their manifests; exit 1 when any drifted or rotted."""
    from reconcile.operations import verify_resource

    loaded = _load(config)
    with _exit_codes():
        results = verify_resource(
            loaded, _state_dir(state_dir), name, snapshots or [], content, _now()
        )
    if as_json:
        _print_json(render.verify_json(name, results))
    else:
        typer.echo(render.verify_text(name, results))
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
    config: ConfigOption = "hardsnap.yaml",
    as_json: JsonOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Files added, removed and changed between two snapshots."""
    from reconcile.operations import diff_resource

    loaded = _load(config)
    with _exit_codes():
        difference = diff_resource(loaded, _state_dir(state_dir), name, before, after)
    if as_json:
        _print_json(render.diff_json(name, difference))
    else:
        typer.echo(render.diff_text(name, difference, _color()))


@app.command()
def schema(state_dir: StateDirOption = None) -> None:
    """Print the JSON Schema of the config file (for editors)."""
    from reconcile.schema import config_schema

    _print_json(config_schema())


def _show_version(value: bool) -> None:
    if value:
        from reconcile import __version__

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


@state_app.command("show")
def state_show(
    name: Annotated[str | None, typer.Argument(help="Show only this resource.")] = None,
    config: ConfigOption = "hardsnap.yaml",
    as_json: JsonOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Show recorded state: snapshots, last runs, reverts, pending hooks."""
    from reconcile.config import ConfigError, load_config
    from reconcile.operations import state_view

    try:
        loaded = load_config(config)
    except ConfigError as error:
        loaded = None
        typer.echo(
            f"warning: {error.problems[0]}; resources cannot be matched to a config",
            err=True,
        )
    with _exit_codes():
        view = state_view(loaded, _state_dir(state_dir), name, _now())
    if name is not None and name not in view:
        typer.echo(f"warning: no recorded state or resource named {name!r}", err=True)
    if as_json:
        _print_json({"resources": view})
    else:
        width = shutil.get_terminal_size((100, 24)).columns
        typer.echo(render.state_text(view, width, _color()))


def main() -> None:
    app()

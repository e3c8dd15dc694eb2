"""What every hardsnap command shares: the typer app, common options, and
the one place where errors, signals and results become exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from hardsnap.providers import platform
from hardsnap.reconcile import clock, exitcodes, journal
from hardsnap.reconcile.exitcodes import ExitCode

if TYPE_CHECKING:
    from hardsnap.reconcile.model import Config

Answer = TypeVar("Answer")

app = typer.Typer(
    name="hardsnap",
    help="Declarative hardlink snapshots: validate, plan, apply, audit.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
state_app = typer.Typer(help="Show or forget recorded state.", no_args_is_help=True)
app.add_typer(state_app, name="state")

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $HARDSNAP_CONFIG, else ./hardsnap.yaml when it exists, "
        "else /etc/hardsnap/hardsnap.yaml).",
    ),
]
LOCAL_CONFIG = "hardsnap.yaml"
SYSTEM_CONFIG = "/etc/hardsnap/hardsnap.yaml"
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
ResumePruningOption = Annotated[
    bool,
    typer.Option(
        "--resume-pruning",
        help="Prune what expired although pruning is suspended (a gap longer than retain in "
        "the snapshots: a clock that jumped ahead, or runs that stopped): say the clock is right.",
    ),
]


class Stopped(KeyboardInterrupt):
    """A signal (SIGINT, SIGTERM, SIGHUP) stopped the command."""

    def __init__(self, signum: int) -> None:
        super().__init__(platform.signal_name(signum))
        self.signum = signum


def stop_on_signals() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP (Ctrl-C, systemd stopping us, a closed
    terminal) into Stopped, so an apply stops by unwinding: hooks' process
    groups ended, a snapshot's work kept for the next apply to resume,
    state saved, locks released. Signals that come while it unwinds are
    ignored: the first one already asked for all of that."""

    def stop(signum: int) -> None:
        platform.ignore_stopping_signals()
        raise Stopped(signum)

    platform.on_stopping_signals(stop)


def ignore_stopping_signals() -> None:
    """Ignore SIGINT, SIGTERM and SIGHUP from now on (the run has ended)."""
    platform.ignore_stopping_signals()


@contextlib.contextmanager
def exit_codes(as_json: bool = False) -> Iterator[None]:
    """The one place where an operation's errors become exit codes: an
    unknown resource name is bad input (2); an unusable state store or a
    missing snapshot fail the command (1); a lock held by another apply
    exits 75 (held by anything else: 1); a signal exits 128 + its number (130 for SIGINT, 143 for
    SIGTERM). With `as_json`, the error is also the JSON document on stdout."""
    from hardsnap.providers.files.locking import Busy, HeldByOther, LockUnusable
    from hardsnap.reconcile.operations import CannotForget, NoSuchSnapshot, UnknownResource
    from hardsnap.state.store import StateError

    try:
        yield
    except KeyboardInterrupt as error:
        signum = error.signum if isinstance(error, Stopped) else platform.INTERRUPT
        name = platform.signal_name(signum)
        fail(
            f"interrupted by {name}: work done so far is kept for the next apply to resume; "
            f"earlier snapshots are untouched",
            exitcodes.of_signal(signum),
            as_json,
            own_line=True,
        )
    except UnknownResource as error:
        fail(str(error), ExitCode.INVALID, as_json)
    except Busy as error:
        fail(str(error), ExitCode.LOCKED, as_json)
    except (HeldByOther, LockUnusable, StateError, NoSuchSnapshot, CannotForget) as error:
        fail(str(error), ExitCode.FAILED, as_json)


def fail(
    message: str, code: int = ExitCode.FAILED, as_json: bool = False, own_line: bool = False
) -> NoReturn:
    """Say what stopped the command and exit with `code`. A message after
    an interrupt starts on a line of its own (the terminal echoed ^C)."""
    if as_json:
        print_json({"error": message})
    if own_line and sys.stderr.isatty():
        journal.say("")  # the terminal echoed ^C on the line we would write on
    journal.say(f"hardsnap: {message}", journal.ERROR)
    raise typer.Exit(int(code))


def state_dir(option: str | None) -> str:
    from hardsnap.state.store import default_state_dir

    return option or default_state_dir()


def color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def print_json(document: Any) -> None:
    """Print a JSON document; a string in it that is not UTF-8 (a name) is
    given with U+FFFD and its bytes in base64 beside it (KEY_base64)."""
    from hardsnap.providers.files.escaping import lossless_json

    typer.echo(json.dumps(lossless_json(document), indent=2, sort_keys=False))


def run(
    config: str | None,
    as_json: bool,
    state_option: str | None,
    operation: Callable[[Config, str], Answer],
) -> Answer:
    """Load the config and carry out `operation` on it and the state
    directory; a failure exits with its code, said as JSON with `as_json`."""
    loaded = load(config, as_json)
    with exit_codes(as_json):
        return operation(loaded, state_dir(state_option))


def show(as_json: bool, document: Callable[[], Any], text: Callable[[], str]) -> None:
    """Print a command's answer: its JSON document, or its text."""
    if as_json:
        print_json(document())
    else:
        typer.echo(text())


def warn(warnings: Iterable[str]) -> None:
    """Say each warning on stderr (and to the journal)."""
    for warning in warnings:
        journal.say(f"warning: {warning}", journal.WARNING)


def config_path(option: str | None) -> str:
    """The config file a command reads: -c, else $HARDSNAP_CONFIG, else
    ./hardsnap.yaml when it exists and no other user could have put it
    there, else the system-wide one (where the shipped unit and the
    Ansible role put it)."""
    if option:
        return option
    if os.environ.get("HARDSNAP_CONFIG"):
        return os.environ["HARDSNAP_CONFIG"]
    if not os.path.exists(LOCAL_CONFIG):
        return SYSTEM_CONFIG
    from hardsnap.reconcile.config import untrusted_config

    # Another user's file in the folder root happens to run from must not
    # choose root's commands: it is passed over, said once.
    refusal = untrusted_config(os.path.abspath(LOCAL_CONFIG))
    if refusal is None:
        return LOCAL_CONFIG
    journal.say(
        f"warning: ignoring ./{LOCAL_CONFIG}: {refusal}; reading {SYSTEM_CONFIG} instead "
        f"(give -c to choose a config)",
        journal.WARNING,
    )
    return SYSTEM_CONFIG


def load(option: str | None, as_json: bool = False) -> Any:
    """Load the config or exit 2 with every located problem on stderr (and,
    with `as_json`, as the {"errors": [...]} document on stdout)."""
    from hardsnap.reconcile.config import ConfigError, load_config

    config = config_path(option)
    try:
        return load_config(config)
    except ConfigError as error:
        if as_json:
            print_json(
                {
                    "errors": [
                        {
                            "file": problem.file,
                            "line": problem.line,
                            "column": problem.column,
                            "message": problem.message,
                        }
                        for problem in error.problems
                    ]
                }
            )
        for problem in error.problems:
            journal.say(str(problem), journal.ERROR)
        count = len(error.problems)
        journal.say(f"{config}: invalid, {count} problem{'s' if count != 1 else ''}", journal.ERROR)
        raise typer.Exit(int(ExitCode.INVALID)) from None


def now() -> Any:
    try:
        return clock.now()
    except clock.ClockError as error:
        fail(str(error))

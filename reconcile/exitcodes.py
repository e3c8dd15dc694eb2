"""Exit codes of every command, in one place."""

from __future__ import annotations

import enum

from hardsnap.providers import platform


class ExitCode(enum.IntEnum):
    OK = 0
    # A resource failed, or an error stopped the command.
    FAILED = 1
    # The config is invalid (validate, plan, apply).
    INVALID = 2
    # plan --detailed-exitcode: the plan has changes.
    CHANGES = 2
    # Another apply holds the state directory's or a target's lock: the
    # previous run is still going (sysexits' EX_TEMPFAIL: try again later).
    LOCKED = 75
    # Stopped by a signal: 128 + its number, as shells report it.
    INTERRUPTED = 128 + platform.INTERRUPT
    TERMINATED = 128 + platform.TERMINATE


def of_signal(signum: int) -> int:
    """The exit code of a command stopped by signal `signum`."""
    return 128 + signum

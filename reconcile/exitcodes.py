"""Exit codes of every command, in one place."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    # A resource failed, the lock is held, or an error stopped the command.
    FAILED = 1
    # The config is invalid (validate, plan, apply).
    INVALID = 2
    # plan --detailed-exitcode: the plan has changes.
    CHANGES = 2

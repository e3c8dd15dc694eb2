"""The one gateway that runs shell hooks.

A hook is the operator's own command, run with `/bin/sh -c`. Values reach it
only through environment variables, never spliced into the command string.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

OUTPUT_TAIL_BYTES = 4096


@dataclass(frozen=True)
class HookResult:
    exit_code: int
    # The last few KiB of stdout and stderr, interleaved as written.
    output_tail: str
    duration: float

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def hook_environment(
    resource: str, source: str, target: str, snapshot: str | None
) -> dict[str, str]:
    """Return the environment a hook runs in: ours plus the HARDSNAP_* values."""
    environment = dict(os.environ)
    environment.pop("HARDSNAP_SNAPSHOT", None)
    environment.update(
        HARDSNAP_RESOURCE=resource,
        HARDSNAP_SOURCE=source,
        HARDSNAP_TARGET=target,
    )
    if snapshot is not None:
        environment["HARDSNAP_SNAPSHOT"] = snapshot
    return environment


def run_hook(command: str, environment: dict[str, str], cwd: str) -> HookResult:
    """Run `command` with /bin/sh -c; return its exit code and output tail."""
    started = time.monotonic()
    try:
        completed = subprocess.run(
            ["/bin/sh", "-c", command],
            env=environment,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
    except OSError as error:
        return HookResult(127, f"cannot run /bin/sh: {error.strerror}", 0.0)
    tail = completed.stdout[-OUTPUT_TAIL_BYTES:].decode("utf-8", "replace")
    return HookResult(completed.returncode, tail, time.monotonic() - started)

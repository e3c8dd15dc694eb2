"""Lines on stderr, with a journald priority when stderr is the journal.

Under systemd, JOURNAL_STREAM names the journal stream (device:inode) that
stdout and stderr are connected to; a line starting with `<N>` is then
logged at priority N, so `journalctl -p err -u hardsnap` finds failures.
Anywhere else the lines are left as they are. Control characters in a
line are escaped: messages name other users' files.
"""

from __future__ import annotations

import os
import sys

from hardsnap.providers.files.escaping import escape_text

ERROR = 3
WARNING = 4
INFO = 6


def to_journal() -> bool:
    """Whether stderr is the journal stream systemd gave us."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def say(text: str, priority: int = INFO) -> None:
    """Write `text` to stderr, each line with `<priority>` in the journal."""
    prefix = f"<{priority}>" if to_journal() else ""
    for line in text.splitlines() or [""]:
        line = escape_text(line)
        sys.stderr.write(f"{prefix}{line}\n" if line or not prefix else "\n")
    sys.stderr.flush()

"""Who besides us could change what a path names.

hardsnap runs as root. A file it reads commands from, or a directory it
backs up, is only as safe as every directory on the way to it: whoever can
write one of them can swap what comes after for something of their own.
The rule is cron's, logrotate's and git's `safe.directory`: a directory on
the way must belong to root or to this user and be writable by nobody
else, except a sticky directory owned by root (like /tmp), where nobody
can replace an entry they do not own.
"""

from __future__ import annotations

import os
import stat

from hardsnap.providers import platform

# Symlinks followed while walking a path before giving up (the kernel's own limit).
MAX_SYMLINKS = 40


def trusted_owner(uid: int) -> bool:
    """Whether files of `uid` may choose what this process does: root's
    and its own."""
    return uid in (0, platform.effective_uid())


def describe_user(uid: int) -> str:
    """A user as messages name it: uid and, when known, name."""
    name = platform.user_name(uid)
    return f"uid {uid}" if name is None else f"uid {uid} ({name})"


def directory_weakness(info: os.stat_result) -> str | None:
    """Given the stat of a directory, say who else could replace its
    entries, or None when nobody but root and this user can."""
    if not trusted_owner(info.st_uid):
        return f"is owned by {describe_user(info.st_uid)}"
    if not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    if info.st_mode & stat.S_ISVTX and info.st_uid == 0:
        return None  # /tmp: nobody can replace what they do not own there
    return "is writable by group or others"


def file_weakness(info: os.stat_result) -> str | None:
    """Given the stat of a file, say who else could change it, or None."""
    if not trusted_owner(info.st_uid):
        return f"is owned by {describe_user(info.st_uid)}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is writable by group or others"
    return None


def weak_directory(path: str) -> tuple[str, str] | None:
    """Given a path, return (directory, why) for the first directory on
    the way to it, symlinks followed as the kernel would, that another user
    could write; None when every one is safe. What `path` itself names is
    not judged (a file: see file_weakness). A path that cannot be walked
    (missing, unreadable) is judged as far as it goes."""
    pending = [part for part in os.path.abspath(path).split("/") if part]
    current = "/"
    hops = 0
    while pending:
        try:
            info = os.stat(current)
        except OSError:
            return None
        why = directory_weakness(info)
        if why is not None:
            return current, why
        part = pending.pop(0)
        if part == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        try:
            entry = os.lstat(candidate)
        except OSError:
            return None
        if stat.S_ISLNK(entry.st_mode):
            hops += 1
            if hops > MAX_SYMLINKS:
                return None
            try:
                text = os.readlink(candidate)
            except OSError:
                return None
            if text.startswith("/"):
                current = "/"
            pending[:0] = [piece for piece in text.split("/") if piece and piece != "."]
            continue
        if not pending:
            return None
        current = candidate
    return None

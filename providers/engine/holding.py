"""Entries a target filesystem cannot hold (SPEC "Snapshots"): a name it
refuses (not UTF-8, a character it forbids, too long), two names that
differ only in case where it folds case, a symlink or FIFO where it can
make none. Each is skipped and reported by its source path, like an
unreadable entry; it never fails the snapshot."""

from __future__ import annotations

import errno
import os
import stat

from hardsnap.providers.files.capabilities import Keeps
from hardsnap.providers.files.kinds import kind_of

# What NTFS and exFAT refuse in a name (exFAT says ENOENT for them).
FORBIDDEN = frozenset('\\:*?"<>|') | frozenset(chr(code) for code in range(32))
REFUSED_NAME = (errno.EILSEQ, errno.EINVAL, errno.ENAMETOOLONG)


def refusal(name: str, mode: int, keeps: Keeps, folded: set[str] | None) -> str | None:
    """Why the entry `name` (of kind `mode`) cannot go to this target, or
    None. `folded` holds the case-folded names placed so far in its
    directory, where the target folds case."""
    if keeps.utf8_names:
        try:
            os.fsencode(name).decode("utf-8")
        except UnicodeDecodeError:
            return "name not UTF-8, which the target filesystem requires"
    if stat.S_ISLNK(mode) and not keeps.symlinks:
        return "symlink: the target filesystem cannot hold symlinks"
    special = stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
    if special and not keeps.special_files:
        return f"{kind_of(mode)}: the target filesystem cannot hold it"
    if folded is not None:
        key = name.casefold()
        if key in folded:
            return (
                "differs only in case from another name, which the target filesystem "
                "cannot tell apart"
            )
        folded.add(key)
    return None


def creation_refusal(error: OSError, name: str) -> str | None:
    """Why making `name` on the target failed with `error` because the
    target cannot hold that name, or None (the error is the target's)."""
    refused = error.errno in REFUSED_NAME or (
        error.errno == errno.ENOENT and any(character in FORBIDDEN for character in name)
    )
    if not refused:
        return None
    return f"the target filesystem cannot hold this name ({error.strerror})"

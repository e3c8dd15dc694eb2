"""What decides how one snapshot places the source's files: when a copy
in the reference can stand for a file (is_unchanged), and the rules every
walker of the snapshot shares (Rules)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from hardsnap.providers import platform
from hardsnap.providers.files.capabilities import ALL, Keeps
from hardsnap.providers.files.kinds import Kinds


def is_unchanged(source: os.stat_result, reference: os.stat_result, keeps: Keeps = ALL) -> bool:
    """Given the stats of a source file and of the reference snapshot's copy,
    return whether the copy can stand for it: a regular file of the same
    size, mtime (ns), permission bits and, as root, owner and group, as far
    as the target filesystem keeps them (`keeps`: mtimes to its step, bits
    and owners only where it keeps them)."""
    if keeps is ALL:
        return (
            stat.S_ISREG(reference.st_mode)
            and source.st_size == reference.st_size
            and source.st_mtime_ns == reference.st_mtime_ns
            and stat.S_IMODE(source.st_mode) == stat.S_IMODE(reference.st_mode)
            and (
                not platform.IS_ROOT
                or (source.st_uid, source.st_gid) == (reference.st_uid, reference.st_gid)
            )
        )
    return (
        stat.S_ISREG(reference.st_mode)
        and source.st_size == reference.st_size
        and keeps.same_mtime(source.st_mtime_ns, reference.st_mtime_ns)
        and (not keeps.modes or stat.S_IMODE(source.st_mode) == stat.S_IMODE(reference.st_mode))
        and (
            not platform.IS_ROOT
            or not keeps.owners
            or (source.st_uid, source.st_gid) == (reference.st_uid, reference.st_gid)
        )
    )


@dataclass(frozen=True)
class Rules:
    """What every walker of one snapshot places, and how."""

    link_unchanged: bool
    # What besides files and directories goes in.
    kinds: Kinds = field(default_factory=Kinds)
    # Inodes of the reference that `verify --content` found corrupted:
    # their files are copied from the source, never linked.
    corrupted: frozenset[int] = frozenset()
    # When the reference's walk began (its manifest says; 0 when unknown):
    # a source file whose inode changed since is compared on xattrs too,
    # the walk having possibly passed it before the change.
    reference_started_ns: int = 0
    # Inodes with several names in the reference: each is given to at most
    # one source inode, so names split in the source are split here too.
    joined: frozenset[int] = frozenset()
    # What the target filesystem keeps (capabilities.probe).
    keeps: Keeps = ALL

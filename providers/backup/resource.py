"""A `backup` resource as the config declares it: typed, validated, paths
absolute (providers/backup/schema.py builds it from the config's values)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Schedule(enum.StrEnum):
    """How often a resource wants a snapshot: one per window of this length."""

    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"


class CrossFs(enum.StrEnum):
    """What to do when source and target sit on different filesystems."""

    FAIL = "fail"
    COPY = "copy"
    WARN = "warn"
    LINK = "link"


class Keep(enum.StrEnum):
    """Whether a kind of entry (symlinks, special files) goes into snapshots."""

    SKIP = "skip"
    KEEP = "keep"


class SourceSnapshot(enum.StrEnum):
    """What the walk reads: the live source, or a read-only snapshot of its
    filesystem made for the run (every file from one instant)."""

    NONE = "none"
    BTRFS = "btrfs"


@dataclass(frozen=True)
class Resource:
    """One validated `backup` resource; paths are absolute."""

    name: str
    source_dir: str
    target_path: str
    retain_days: int = 30
    schedule: Schedule = Schedule.DAILY
    exclude: tuple[str, ...] = ()
    cross_fs: CrossFs = CrossFs.FAIL
    # Bytes; 0 disables the check.
    min_free_space: int = 1024**3
    pre_command: str | None = None
    post_command: str | None = None
    revert: bool = False
    # Always set when `revert` is true (validation guarantees it).
    on_revert: str | None = None
    keep_min: int = 1
    # Also keep the newest snapshot of each of the N most recent ISO weeks,
    # calendar months and years that have one (providers/backup/retention.py).
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    # Symlinks: recreated (never followed), or left out as the original
    # resource does. Special files: FIFOs and device nodes; sockets never.
    symlinks: Keep = Keep.SKIP
    special_files: Keep = Keep.SKIP
    # Do not descend into other filesystems mounted below source_dir (their
    # mount points are kept as empty directories). Kernel pseudo-filesystems
    # are never descended, whatever this says.
    one_file_system: bool = False
    # Seconds a hook may run before its process group is ended; 0: no limit.
    hook_timeout: int = 0
    # Run (/bin/sh -c) after the resource failed or was refused.
    on_failure: str | None = None
    # A healthchecks-style URL: URL/start, then URL or URL/fail.
    ping_url: str | None = None
    # A directory holding an entry of one of these names is kept empty but
    # for it (CACHEDIR.TAG only with the Cache Directory Tagging signature).
    exclude_if_present: tuple[str, ...] = ()
    # Walk a read-only snapshot of the source's btrfs subvolume, made for
    # the run and removed after it (providers/backup/frozen.py).
    source_snapshot: SourceSnapshot = SourceSnapshot.NONE

"""What a snapshot walk did (or, dry, would do): counts, skips, warnings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hardsnap.providers.files.escaping import error_text
from hardsnap.providers.files.fs import OutOfSpace


@dataclass(frozen=True)
class Skip:
    """An entry of the source left out of the snapshot, and why."""

    path: str
    reason: str


# Paths a report keeps of what it skipped (and of files that kept
# changing): an attacker makes a million symlinks for nothing, and each
# would be kept in memory and in every recorded run.
PATHS_KEPT = 100


@dataclass
class SnapshotReport:
    """What a snapshot walk did (or, dry, would do)."""

    files_copied: int = 0
    files_linked: int = 0
    bytes_copied: int = 0
    # The first PATHS_KEPT entries left out, and how many by reason.
    skipped: list[Skip] = field(default_factory=list)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    # Files that kept changing while they were copied: kept, but reported
    # (the first PATHS_KEPT, and how many).
    unstable: list[str] = field(default_factory=list)
    unstable_total: int = 0
    # Files in the reference snapshot, when its manifest tells.
    reference_files: int | None = None
    # Files a killed or interrupted run had finished, kept as they are (not
    # counted in the copies and links above).
    files_kept: int = 0
    # The snapshot resumed the work an interrupted or killed run left.
    resumed: bool = False
    # Space the copies take on disk: allocated blocks, not apparent sizes
    # (a sparse file costs what it occupies, a small file a whole block).
    space_needed: int = 0
    # Files the reference had unchanged but that could not be linked to it
    # (an immutable inode, too many links...), copied instead: how many,
    # and the first one with its reason.
    link_failures: int = 0
    link_failure: str | None = None
    # Warnings about leftovers of earlier runs that could not be removed.
    leftovers: list[str] = field(default_factory=list)
    # Symlinks and special files (FIFOs, devices) kept, and those left out
    # by the resource's settings (sockets are always left out).
    symlinks: int = 0
    special_files: int = 0
    symlinks_skipped: int = 0
    special_files_skipped: int = 0
    # Directories kept empty but for their marker (exclude_if_present).
    directories_excluded: int = 0
    # What the target filesystem does not keep (capabilities.Keeps.dropped).
    not_kept: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped_by_reason.values())

    def skip(self, path: str, reason: str) -> None:
        """Count an entry left out, keeping its path while few are."""
        self.skipped_by_reason[reason] = self.skipped_by_reason.get(reason, 0) + 1
        if len(self.skipped) < PATHS_KEPT:
            self.skipped.append(Skip(path, reason))

    def changed_while_copied(self, path: str) -> None:
        self.unstable_total += 1
        if len(self.unstable) < PATHS_KEPT:
            self.unstable.append(path)

    def add(self, other: SnapshotReport) -> None:
        """Count in what another walker of the same snapshot did."""
        self.files_copied += other.files_copied
        self.files_linked += other.files_linked
        self.bytes_copied += other.bytes_copied
        self.skipped.extend(other.skipped[: PATHS_KEPT - len(self.skipped)])
        for reason, count in other.skipped_by_reason.items():
            self.skipped_by_reason[reason] = self.skipped_by_reason.get(reason, 0) + count
        self.unstable.extend(other.unstable[: PATHS_KEPT - len(self.unstable)])
        self.unstable_total += other.unstable_total
        self.files_kept += other.files_kept
        self.resumed = self.resumed or other.resumed
        self.space_needed += other.space_needed
        self.link_failures += other.link_failures
        self.link_failure = self.link_failure or other.link_failure
        self.symlinks += other.symlinks
        self.special_files += other.special_files
        self.symlinks_skipped += other.symlinks_skipped
        self.special_files_skipped += other.special_files_skipped
        self.directories_excluded += other.directories_excluded

    def files_done(self) -> int:
        """Files of the source in the snapshot: copied, linked or kept."""
        return self.files_copied + self.files_linked + self.files_kept

    def to_json(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["skipped"] = [[skip.path, skip.reason] for skip in self.skipped]
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> SnapshotReport:
        skipped = [Skip(path, reason) for path, reason in document.pop("skipped")]
        return cls(skipped=skipped, **document)

    def link_failure_warning(self) -> str | None:
        """One warning for every file that could not be linked to the reference."""
        if not self.link_failures:
            return None
        return (
            f"{self.link_failures} unchanged file(s) could not be hard-linked to the "
            f"reference snapshot and were copied instead (first: {self.link_failure})"
        )

    def not_kept_warning(self) -> str | None:
        """One warning naming what the target filesystem does not keep."""
        if not self.not_kept:
            return None
        return (
            f"the target filesystem keeps no {', no '.join(self.not_kept)}: files are compared "
            f"on what it keeps, and verify names what it dropped"
        )

    def shrink_warning(self) -> str | None:
        """A warning when the source lost more than half its files."""
        files = self.files_done()
        if self.reference_files and files * 2 < self.reference_files:
            return (
                f"the source holds {files} files, the newest snapshot {self.reference_files}: "
                f"more than half are gone since"
            )
        return None


class SnapshotFailed(Exception):
    """The snapshot could not be completed; its partial work has been removed."""


def failure_of(error: BaseException) -> BaseException:
    """What a failed snapshot raises: its cause, said plainly."""
    if isinstance(error, OutOfSpace):
        return SnapshotFailed(f"{error}; partial snapshot removed")
    if isinstance(error, OSError):
        return SnapshotFailed(f"{error_text(error)}; partial snapshot removed")
    return error

"""Why a snapshot must not start, said so that an admin knows what to do:
an unmounted disk (missing or empty source, missing target), another
source's target, too little space, filesystems hard links cannot cross.
Pure functions of a resource and its facts, checked by the plan and again
when the snapshot starts."""

from __future__ import annotations

from hardsnap.providers.backup.facts import Facts
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.backup.target import MARKER
from hardsnap.providers.files.capabilities import Keeps
from hardsnap.providers.files.escaping import format_bytes


def empty_source_refusal(resource: Resource, facts: Facts) -> str | None:
    """Why an empty source must not be snapshotted, or None: the newest
    snapshot has files, so the source is most likely an unmounted disk."""
    if not facts.source_empty or facts.reference_empty is not False:
        return None
    held = f"{facts.reference_files} files" if facts.reference_files else "files"
    return (
        f"source_dir {resource.source_dir} is empty but the newest snapshot holds "
        f"{held}: is its filesystem mounted? Nothing was snapshotted or "
        f"pruned; apply --allow-empty-source takes the empty snapshot deliberately"
    )


def missing_source_refusal(resource: Resource, facts: Facts) -> str:
    if facts.source_not_directory:
        return f"source_dir {resource.source_dir} is not a directory"
    return (
        f"source_dir {resource.source_dir} does not exist: is its filesystem mounted? "
        f"Nothing was snapshotted or pruned"
    )


def ownership_refusal(resource: Resource, facts: Facts) -> str | None:
    """Why the target must not be used, being another source's, or None."""
    if facts.owner_error:
        return (
            f"{facts.owner_error}: it names the source target_path {facts.target} serves; "
            f"fix or remove it (hardsnap then claims the target for {resource.source_dir})"
        )
    mine = facts.this_source
    if facts.owner is None or mine is None:
        return None
    if facts.owner_marked and facts.owner.same_as(mine) and mine.moved_from(facts.owner):
        marker = f"{facts.target}/{MARKER}"
        return (
            f"source_dir {resource.source_dir} now leads to {mine.resolved}, but target_path "
            f"{facts.target} holds the snapshots of it as it led to {facts.owner.resolved}: "
            f"a symlink on its path changed (another user who can write a directory on the "
            f"way could swap the source this way). Nothing was snapshotted or pruned; if you "
            f"moved the source yourself, remove {marker}: the next run records where it is now"
        )
    if facts.owner_marked and facts.owner.same_as(mine):
        return None
    if not facts.owner_marked and facts.owner.source == mine.source:
        return None
    theirs = str(facts.owner) if facts.owner_marked else f"{facts.owner.source} (its manifests say)"
    return (
        f"target_path {facts.target} holds the snapshots of {theirs}, not of "
        f"{mine}: two sources must not share a target (one would link against and prune "
        f"the other's history). Give this resource its own target_path"
    )


def missing_target_refusal(
    resource: Resource, facts: Facts, expected: tuple[str, ...], allowed: bool
) -> str | None:
    """Why a target that lost every snapshot the state records there must
    not get a new chain, or None: it is most likely an unmounted disk."""
    if allowed or not expected:
        return None
    present = set(facts.snapshots) | set(facts.future_snapshots)
    if present & set(expected):
        return None
    where = "does not exist" if not facts.target_exists else "holds none of them"
    return (
        f"the state records {len(expected)} snapshot(s) in target_path {facts.target} "
        f"(newest {max(expected)}) but it {where}: is its filesystem mounted? Nothing was "
        f"snapshotted or pruned; apply --allow-new-target starts a new chain there"
    )


def free_space_refusal(resource: Resource, facts: Facts) -> str | None:
    """Return why the target lacks room to start a snapshot, or None."""
    if resource.min_free_space <= 0 or facts.free_bytes is None:
        return None
    if facts.free_bytes < resource.min_free_space:
        return (
            f"only {format_bytes(facts.free_bytes)} free on {facts.target_filesystem}, "
            f"below min_free_space {format_bytes(resource.min_free_space)}"
        )
    after = free_after_snapshot(facts)
    if after is not None and after < resource.min_free_space:
        assert facts.prediction is not None
        return (
            f"the snapshot would take {format_bytes(facts.prediction.space_needed)} on disk, "
            f"leaving {format_bytes(max(after, 0))} free on {facts.target_filesystem}, below "
            f"min_free_space {format_bytes(resource.min_free_space)}"
        )
    return None


def free_after_snapshot(facts: Facts) -> int | None:
    """Return the free bytes the target would keep after the predicted copy."""
    if facts.free_bytes is None or facts.prediction is None:
        return None
    return facts.free_bytes - facts.prediction.space_needed


def cross_fs_refusal(resource: Resource, facts: Facts) -> str:
    return (
        f"source_dir {resource.source_dir} is on {facts.source_filesystem} but target_path "
        f"{resource.target_path} is on {facts.target_filesystem}: hard links cannot cross "
        f"filesystems to the source. Set cross_fs: link (the usual choice for a backup "
        f"disk or NAS: unchanged files are linked to the previous snapshot, on the target's "
        f"own filesystem), or copy (every file copied on every run), or warn (the same, "
        f"warning once)"
    )


def keeps_refusal(resource: Resource, links: bool, keeps: Keeps, target_mode: int) -> str | None:
    """Why a snapshot must not go to a target whose filesystem keeps so
    little (`keeps`), or None: one without hard links when unchanged files
    are to be linked (`links`), one that keeps no permission bits and lets
    every user write (`target_mode`, the target directory's)."""
    if links and not keeps.hard_links:
        return (
            f"target_path {resource.target_path} is on a filesystem that cannot hold hard "
            f"links (exFAT, FAT): every snapshot there would be a whole copy. Set "
            f"cross_fs: copy to take whole copies knowingly, or use a filesystem with hard "
            f"links (ext4, XFS, btrfs, NTFS)"
        )
    if not keeps.modes and target_mode & 0o002:
        return (
            f"target_path {resource.target_path} is on a filesystem that keeps no permission "
            f"bits and lets every user write it (mode {target_mode & 0o7777:04o}): mount it "
            f"with umask=077 (ntfs-3g, exfat-fuse) or with permissions (ntfs-3g), so that "
            f"only its owner can"
        )
    return None

"""Audits checked by hand: an independent walk of a snapshot, its manifest read
back, a site with files of every size, and reading verify's JSON.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from hardsnap.providers.manifest.reader import ManifestReader
from tests.world.cli import Cli, Finished
from tests.world.clock import at, iso, name_of
from tests.world.documents import resource_of
from tests.world.files import ODD_NS, make_file
from tests.world.site import Site

UNKNOWN_SNAPSHOT = "2020.001.00.00"


# Names that a text-only manifest could get wrong.
NEWLINE_NAME = b"new\nline.txt"


INVALID_UTF8_NAME = b"bad\xff\xfename.bin"


# What a manifest says of a file, keyed elsewhere by its relative path's bytes:
# (size, mtime_ns, mode, uid, gid, inode, sha256).
FileRecord = tuple[int, int, int, int, int, int, str | None]


def sha256_of(path: Path | bytes) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def walk_snapshot(root: Path) -> tuple[dict[bytes, FileRecord], set[bytes]]:
    """Every regular file below `root` (relative path bytes -> what a
    manifest should say of it) and every directory, found by os.walk on
    bytes paths: independent of hardsnap's own walkers."""
    base = os.fsencode(root)
    files: dict[bytes, FileRecord] = {}
    directories: set[bytes] = set()
    for directory, _, names in os.walk(base):
        relative_directory = os.path.relpath(directory, base)
        directories.add(b"" if relative_directory == b"." else relative_directory)
        for name in names:
            full = os.path.join(directory, name)
            info = os.lstat(full)
            if not stat.S_ISREG(info.st_mode):
                continue
            files[os.path.relpath(full, base)] = (
                info.st_size,
                info.st_mtime_ns,
                stat.S_IMODE(info.st_mode),
                info.st_uid,
                info.st_gid,
                info.st_ino,
                sha256_of(full),
            )
    return files, directories


def read_manifest(path: Path) -> tuple[dict[bytes, FileRecord], set[bytes], ManifestReader]:
    """A manifest's files (relative path bytes -> record) and directories."""
    files: dict[bytes, FileRecord] = {}
    with ManifestReader(str(path)) as reader:
        directories = {os.fsencode(directory) for directory in reader.directories()}
        for _, block in reader.entries():
            for entry in block.values():
                key = os.fsencode(entry.path)
                assert key not in files, f"{entry.path!r} listed twice"
                files[key] = (
                    entry.size,
                    entry.mtime_ns,
                    entry.mode,
                    entry.uid,
                    entry.gid,
                    entry.inode,
                    entry.sha256,
                )
    return files, directories, reader


def problems_of(document: dict[str, Any], snapshot: str) -> list[tuple[str, str]]:
    for entry in document["snapshots"]:
        if entry["name"] == snapshot:
            return sorted((problem["path"], problem["problem"]) for problem in entry["problems"])
    raise AssertionError(f"no snapshot {snapshot} in {document}")


def apply_ok(cli: Cli, world: Site, days: float, *extra: str) -> dict[str, Any]:
    outcome = cli("apply", "-c", world.config, "--json", *extra, now=iso(at(days)))
    assert outcome.returncode == 0, outcome
    document: dict[str, Any] = outcome.json()
    assert resource_of(document)["result"] == "changed", outcome
    return document


def blocks(directory: Path, *names: str) -> int:
    """The bytes allocated to these files of a directory."""
    return sum(os.stat(directory / name).st_blocks * 512 for name in names)


def state_snapshots(cli: Cli, world: Site) -> dict[str, dict[str, Any]]:
    outcome = cli("state", "show", "-c", world.config, "--json")
    assert outcome.returncode == 0, outcome
    return {entry["name"]: entry for entry in outcome.json()["resources"]["r"]["snapshots"]}


def build_varied_source(source: Path) -> None:
    """Files that will be linked, changed, hard-linked in the source, with a
    newline and invalid UTF-8 in their names, and an empty directory."""
    make_file(source / "keep.txt", b"kept across snapshots\n")
    make_file(source / "edit.txt", b"first version\n", 0o600)
    make_file(source / "run.sh", b"#!/bin/sh\necho hi\n", 0o755)
    make_file(source / "sub" / "deeper" / "x.txt", b"deep")
    make_file(source / "pair_a", b"two names, one inode")
    os.link(source / "pair_a", source / "sub" / "pair_b")
    (source / "empty").mkdir()
    odd = os.fsencode(source)
    for name in (NEWLINE_NAME, os.path.join(b"sub", INVALID_UTF8_NAME)):
        with open(os.path.join(odd, name), "wb") as handle:
            handle.write(b"odd name " + name)
        os.utime(os.path.join(odd, name), ns=(ODD_NS, ODD_NS))


def assert_manifest_matches_tree(world: Site, name: str) -> dict[bytes, FileRecord]:
    manifest_files, manifest_directories, reader = read_manifest(world.manifest(name))
    tree_files, tree_directories = walk_snapshot(world.snapshot(name))
    assert set(manifest_files) == set(tree_files)
    for path, record in tree_files.items():
        assert manifest_files[path] == record, path
    assert manifest_directories == tree_directories
    assert reader.files == len(tree_files)
    assert reader.bytes == sum(record[0] for record in tree_files.values())
    return manifest_files


def verify(cli: Cli, world: Site, *args: str, days: float = 2) -> Finished:
    return cli("verify", "r", *args, "-c", world.config, now=iso(at(days)))


def diff(cli: Cli, world: Site, *args: str) -> Finished:
    return cli("diff", "r", *args, "-c", world.config)


FIRST_TO_SECOND = {
    "resource": "r",
    "from": name_of(at(0)),
    "to": name_of(at(1)),
    "added": [
        {"path": "c.txt", "size_before": None, "size_after": 2},
        {"path": "fresh/deep/two.txt", "size_before": None, "size_after": 2},
        {"path": "fresh/one.txt", "size_before": None, "size_after": 1},
        {"path": "morph/inner.txt", "size_before": None, "size_after": 5},
    ],
    "removed": [
        {"path": "gone/x.txt", "size_before": 2, "size_after": None},
        {"path": "gone/y/z.txt", "size_before": 3, "size_after": None},
        {"path": "morph", "size_before": 4, "size_after": None},
    ],
    "changed": [{"path": "b.txt", "size_before": 5, "size_after": 7}],
    "unchanged": 1,
}

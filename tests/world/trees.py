"""A tree read back whole, as a restore would have to reproduce it: every
entry's kind, mode, mtime, owner, content digest or link text and
extended attributes. Walks with directory descriptors and O_NOFOLLOW, so
it works beyond PATH_MAX and never follows a symlink."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Node:
    """One entry of a tree, as a restore would have to reproduce it."""

    kind: str
    mode: int
    mtime_ns: int
    uid: int
    gid: int
    # sha256 of a file's content, the target of a symlink, None for a directory.
    data: bytes | None
    xattrs: tuple[tuple[str, bytes], ...]
    inode: int = field(compare=False)
    links: int = field(compare=False)


def _xattrs(fd: int) -> tuple[tuple[str, bytes], ...]:
    if not hasattr(os, "listxattr"):  # the masked platform run
        return ()
    try:
        names = os.listxattr(fd)
    except OSError:
        return ()
    return tuple(sorted((name, os.getxattr(fd, name)) for name in names))


def _node(kind: str, info: os.stat_result, data: bytes | None, fd: int | None) -> Node:
    return Node(
        kind,
        stat.S_IMODE(info.st_mode),
        info.st_mtime_ns,
        info.st_uid,
        info.st_gid,
        data,
        _xattrs(fd) if fd is not None else (),
        info.st_ino,
        info.st_nlink,
    )


def _digest(fd: int) -> bytes:
    hasher = hashlib.sha256()
    while block := os.read(fd, 1 << 20):
        hasher.update(block)
    return hasher.digest()


def tree(root: Path) -> dict[bytes, Node]:
    """Every entry below `root` (and `root` itself as b"."), keyed by its
    relative path as bytes. Walks with directory descriptors and O_NOFOLLOW,
    so it works beyond PATH_MAX and never follows a symlink."""
    found: dict[bytes, Node] = {}
    top = os.open(root, DIRECTORY_FLAGS)
    try:
        found[b"."] = _node("dir", os.fstat(top), None, top)
        _tree_below(top, b"", found)
    finally:
        os.close(top)
    return found


def _tree_below(directory_fd: int, prefix: bytes, found: dict[bytes, Node]) -> None:
    with os.scandir(directory_fd) as entries:
        names = sorted(os.fsencode(entry.name) for entry in entries)
    for name in names:
        relative = prefix + name
        info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            child = os.open(name, DIRECTORY_FLAGS, dir_fd=directory_fd)
            try:
                found[relative] = _node("dir", info, None, child)
                _tree_below(child, relative + b"/", found)
            finally:
                os.close(child)
        elif stat.S_ISREG(info.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory_fd)
            try:
                found[relative] = _node("file", info, _digest(fd), fd)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(info.st_mode):
            found[relative] = _node("symlink", info, os.readlink(name, dir_fd=directory_fd), None)
        else:
            found[relative] = _node("special", info, None, None)


def files_of(nodes: dict[bytes, Node]) -> dict[bytes, Node]:
    return {path: node for path, node in nodes.items() if node.kind == "file"}


def rsync_changes(first: Path, second: Path, *options: str) -> list[str]:
    """What `rsync -aHAX --checksum` (and `options`) would change to make the
    tree `second` like `first`: its itemized lines, none when they are alike."""
    command = ["rsync", "-aHAX", "--checksum", "--dry-run", "--itemize-changes", *options]
    done = subprocess.run(
        [*command, f"{first}/", f"{second}/"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if line]

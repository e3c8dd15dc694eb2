"""Walking any depth in a bounded number of descriptors.

A depth-first walk that keeps every directory on its path open runs out of
descriptors on a tree a few hundred levels deep (1024 is the default limit
of services and cron), and deep trees cost an attacker nothing. So, as
gnulib's fts does, only the directories nearest the current one stay open:
a deeper level lets go of the shallowest one's descriptors, which are
opened again when the walk climbs back to it, through ".." of the child it
leaves, checked to be the same directory (device and inode) as before. A
directory moved meanwhile is found again by its path from the root, also
checked; one that is neither is reported as gone (Moved), never taken for
another. Depth then costs a few words of memory per level, not a descriptor.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hardsnap.providers import platform
from hardsnap.providers.files import fs

# Levels whose descriptors stay open (a level holds one per parallel tree).
OPEN_LEVELS = 48

Identity = tuple[int, int]


class Moved(OSError):
    """A directory let go of could not be found again as the same one."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ENOENT, "moved or replaced while it was walked", path)


def identity(fd: int) -> Identity:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


# What opening a directory that is not there (any more) fails with; any
# other error (out of descriptors...) is raised.
NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES, errno.EPERM, errno.ESTALE)


def climb(child_fd: int, expected: Identity) -> int | None:
    """Open ".." of the directory `child_fd` when it is the directory
    `expected`; else None."""
    return _checked(lambda: platform.open_directory("..", child_fd), expected)


def reopen(root_fd: int, relative: str, expected: Identity) -> int | None:
    """Open the directory at `relative` below `root_fd`, one component at a
    time following no symlink, when it is the directory `expected`; else None."""
    return _checked(lambda: fs.open_below(root_fd, relative), expected)


def _checked(opening: Callable[[], int], expected: Identity) -> int | None:
    """The descriptor `opening` gives when it is of the directory
    `expected`; None when it is another, or none is there any more."""
    try:
        fd = opening()
    except OSError as error:
        if error.errno not in NOT_THERE:
            raise
        return None
    if identity(fd) != expected:
        os.close(fd)
        return None
    return fd


@dataclass
class Level:
    """One directory of the path, in each of the parallel trees."""

    name: str
    # None where the tree has no such directory, or while let go of.
    fds: list[int | None]
    # The identity of each tree's directory (None where it has none).
    ids: list[Identity | None]
    # Let go of: its descriptors are to be opened again before use.
    released: bool = False
    # What the walk still has to visit in it (callers' use).
    pending: list[str] = field(default_factory=list)


class Descent:
    """The directories open along a walk's path below parallel roots (a
    snapshot and its reference, a source and the snapshot made of it): at
    most OPEN_LEVELS levels hold descriptors. The roots belong to the
    caller; every other descriptor to the descent, which `close` ends."""

    def __init__(self, roots: Sequence[int | None], limit: int = OPEN_LEVELS) -> None:
        ids = [None if fd is None else identity(fd) for fd in roots]
        self.levels = [Level("", list(roots), ids)]
        self.limit = max(limit, 2)
        self._open = 0  # levels below the root holding descriptors

    @property
    def top(self) -> Level:
        return self.levels[-1]

    def path(self) -> str:
        """The current directory, relative to the roots ("" at the roots)."""
        return "/".join(level.name for level in self.levels[1:])

    def descend(self, name: str, required: Sequence[bool] | None = None) -> Level:
        """Enter subdirectory `name` of the current directory in every tree
        that has the current one; return its level. A tree where it cannot
        be opened gets None there, unless `required` says it must be there:
        then the OSError is raised (nothing entered)."""
        parent = self.top
        fds: list[int | None] = []
        try:
            for index, parent_fd in enumerate(parent.fds):
                fd = None
                if parent_fd is not None:
                    try:
                        fd = platform.open_directory(name, parent_fd)
                    except OSError as error:
                        if error.errno not in NOT_THERE or (required and required[index]):
                            raise
                fds.append(fd)
        except BaseException:
            _close(fds)
            raise
        level = Level(name, fds, [None if fd is None else identity(fd) for fd in fds])
        self.levels.append(level)
        self._open += 1
        if self._open > self.limit:
            self._release_shallowest()
        return level

    def ascend(self) -> None:
        """Leave the current directory for its parent, opening the parent
        again if it was let go of. Raise Moved when it cannot be found again
        in a tree that had it (the walk of what is below it then ends)."""
        child = self.levels.pop()
        try:
            if len(self.levels) > 1 and self.top.released:
                self._restore(self.top, child)
        finally:
            _close(child.fds)
            self._open -= 1

    def goto(self, relative: str, required: Sequence[bool] | None = None) -> Level:
        """Make `relative` (a directory below the roots, "" for the roots)
        the current directory: climb to the deepest directory it shares
        with the current one, then enter the rest. Visiting directories in
        the order of their paths costs each an open or two, whatever the
        depth. Raise OSError when a directory on the way cannot be entered
        (the current directory is then the deepest one that could)."""
        current = self.path()
        while current and relative != current and not relative.startswith(current + "/"):
            self.ascend()
            current = current.rpartition("/")[0]
        rest = relative[len(current) :].lstrip("/")
        for name in rest.split("/") if rest else ():
            self.descend(name, required)
        return self.top

    def close(self) -> None:
        """Close every descriptor of the descent (not the roots)."""
        while len(self.levels) > 1:
            _close(self.levels.pop().fds)
        self._open = 0

    def _release_shallowest(self) -> None:
        for level in self.levels[1:-1]:
            if not level.released:
                _close(level.fds)
                level.fds = [None] * len(level.fds)
                level.released = True
                self._open -= 1
                return

    def _restore(self, level: Level, child: Level) -> None:
        """Open a let-go level again: ".." of the child just left, else its
        path from the roots; each checked to be the same directory."""
        relative = self.path()
        fds: list[int | None] = []
        try:
            for index, expected in enumerate(level.ids):
                fd = None
                if expected is not None:
                    child_fd = child.fds[index]
                    if child_fd is not None:
                        fd = climb(child_fd, expected)
                    root_fd = self.levels[0].fds[index]
                    if fd is None and root_fd is not None:
                        fd = reopen(root_fd, relative, expected)
                    if fd is None:
                        raise Moved(relative)
                fds.append(fd)
        except BaseException:
            _close(fds)
            raise
        level.fds = fds
        level.released = False
        self._open += 1
        if self._open > self.limit:
            self._release_shallowest()


def _close(fds: Sequence[int | None]) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)

"""A directory being walked, in the source and the trees made of it.

A frame holds a directory's descriptors in each tree (source, reference,
snapshot being made or, dry, the work an interrupted run left) and what is
left to walk in it. A deep walk lets go of the shallowest frames'
descriptors and finds them again when it climbs back (descend.py): any
depth in a bounded number of descriptors.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from hardsnap.providers.files import fs
from hardsnap.providers.files.descend import Descent, Identity, Moved, climb, identity, reopen
from hardsnap.providers.manifest.reader import KnownHashes

# Frames of one walk whose descriptors stay open (each holds up to four).
OPEN_FRAMES = 48
# The descriptors of a frame, in the order release remembers them.
KINDS = ("source_fd", "reference_fd", "target_fd", "partial_fd")


@dataclass
class Frame:
    """A directory being walked: its descriptors and the subdirectories left."""

    # -1 while the frame is let go of (see release), or when it was not
    # found again; the others are None then.
    source_fd: int
    reference_fd: int | None
    # None in a dry walk.
    target_fd: int | None
    # Relative path of this directory with a trailing "/", "" at the root.
    prefix: str
    # The source directory's stat, given to the target directory.
    info: os.stat_result
    # Names only, made in the target already: a directory is opened and
    # stat'ed when entered (a listing of many subdirectories costs their
    # names, not their stats).
    subdirectories: list[str] = field(default_factory=list)
    # Resuming only: names in the target directory that this walk produced;
    # anything else there is left from an older source and is removed.
    kept: set[str] | None = None
    # (inode, SHA-256) by name of the reference manifest's files of this
    # directory, when there is one.
    reference_hashes: KnownHashes | None = None
    # A dry walk only: this directory in the work an interrupted run left,
    # to count what the next snapshot keeps of it.
    partial_fd: int | None = None
    # False for the roots, whose descriptors belong to the caller.
    owned: bool = True
    # Where the target folds case: the case-folded names placed so far.
    folded: set[str] | None = None
    # Let go of to bound the descriptors a deep walk holds (see release):
    # the identity of each descriptor it had, to find them again.
    released: tuple[Identity | None, ...] | None = None

    def close(self) -> None:
        if not self.owned:
            return
        for fd in (self.source_fd, self.reference_fd, self.target_fd, self.partial_fd):
            if fd is not None and fd >= 0:
                os.close(fd)

    def finished_fd(self) -> int | None:
        """Where files a killed run finished are: the target being built
        (resuming), or, in a dry walk, the work it left."""
        return self.target_fd if self.target_fd is not None else self.partial_fd


def open_frame(roots: Frame, relative: str) -> Frame:
    """Open the directory `relative` ("" for the roots themselves) below the
    roots' source, reference (when it has it) and target (or, dry, the
    work an interrupted run left), one component at a time; raise OSError
    when the source's is not there."""
    source_fd = fs.open_below(roots.source_fd, relative)
    frame = Frame(source_fd, None, None, relative + "/" if relative else "", roots.info)
    try:
        frame.info = os.fstat(source_fd)
        if roots.reference_fd is not None:
            with contextlib.suppress(OSError):
                frame.reference_fd = fs.open_below(roots.reference_fd, relative)
        if roots.target_fd is not None:
            frame.target_fd = fs.open_below(roots.target_fd, relative)
        elif roots.partial_fd is not None:
            with contextlib.suppress(OSError):
                frame.partial_fd = fs.open_below(roots.partial_fd, relative)
    except BaseException:
        frame.close()
        raise
    return frame


class FrameCursor:
    """Frames of directories visited in the order of their paths, below
    the roots, through one descent (descend.py): each costs an open or two
    per tree whatever its depth, in a bounded number of descriptors."""

    def __init__(self, roots: Frame) -> None:
        self.roots = roots
        self._descent = Descent(
            [roots.source_fd, roots.reference_fd, roots.target_fd, roots.partial_fd]
        )
        # The source must have the directory, and the snapshot being made.
        self._required = (True, False, roots.target_fd is not None, False)

    def frame(self, relative: str) -> Frame:
        """The frame of directory `relative` ("" for the roots); valid until
        the next call. Raise OSError when the source's (or the snapshot's)
        cannot be entered."""
        level = self._descent.goto(relative, self._required)
        source_fd, reference_fd, target_fd, partial_fd = level.fds
        assert source_fd is not None
        return Frame(
            source_fd,
            reference_fd,
            target_fd,
            relative + "/" if relative else "",
            os.fstat(source_fd),
            partial_fd=partial_fd,
            owned=False,
        )

    def close(self) -> None:
        self._descent.close()


def release(frame: Frame) -> None:
    """Close a frame's descriptors, remembering what they were."""
    ids: list[Identity | None] = [identity(frame.source_fd)]
    os.close(frame.source_fd)
    frame.source_fd = -1
    for kind in KINDS[1:]:
        fd = getattr(frame, kind)
        ids.append(None if fd is None else identity(fd))
        if fd is not None:
            os.close(fd)
        setattr(frame, kind, None)
    frame.released = tuple(ids)


def restore(frame: Frame, child: Frame, anchor: Frame) -> None:
    """Open a let-go frame again: ".." of the child frame just left, else
    its path below `anchor` (the walk's first frame, never let go of);
    each checked to be the same directory. Raise Moved when its source is
    neither (its other trees are then None where not found)."""
    assert frame.released is not None
    relative = frame.prefix[len(anchor.prefix) :].rstrip("/")
    found: list[int | None] = []
    for kind, expected in zip(KINDS, frame.released, strict=True):
        fd = None
        if expected is not None:
            child_fd = getattr(child, kind)
            if child_fd is not None and child_fd >= 0:
                fd = climb(child_fd, expected)
            anchor_fd = getattr(anchor, kind)
            if fd is None and anchor_fd is not None:
                fd = reopen(anchor_fd, relative, expected)
        found.append(fd)
    source, frame.reference_fd, frame.target_fd, frame.partial_fd = found
    frame.source_fd = -1 if source is None else source
    frame.released = None
    if source is None:
        raise Moved(frame.prefix.rstrip("/"))

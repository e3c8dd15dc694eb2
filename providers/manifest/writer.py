"""Writing a snapshot's manifest (the format is described in manifest.py).

The writer streams one block per directory while the walk goes on; each
worker process writes its own share, absorbed when the worker is done;
the finished manifest reaches the disk with the snapshot (one syncfs) and
is named before the snapshot is.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from typing import IO, Any, NamedTuple

from hardsnap.providers import platform
from hardsnap.providers.files.capabilities import ALL, Keeps
from hardsnap.providers.files.escaping import escape_name
from hardsnap.providers.manifest.directory import (
    MANIFEST_DIRECTORY,
    PARTIAL_SUFFIX,
    check_ours,
    create_exclusive,
    open_manifest_directory,
)
from hardsnap.providers.manifest.format import FORMAT_VERSION
from hardsnap.providers.manifest.reader import ManifestReader

# Lines are written in chunks this big: each walker process holds one
# buffer, so it is kept small (bigger ones wrote no faster).
WRITE_BUFFER = 256 << 10
# The kernel stamps ctimes from a coarse clock that lags the one read
# here by up to a tick (and some filesystems keep coarser ctimes): the walk
# is said to begin this much earlier, so a change made just after it began
# never carries a ctime from before (files changed within the slack are
# compared on xattrs once more, a listxattr each).
CTIME_SLACK_NS = 2 * 10**9
# Inode numbers on one line of the joined section.
JOINED_PER_LINE = 4096


class Recorded(NamedTuple):
    """A file's line where the target keeps less than the source had: the
    copy's size and inode, and the source's mtime, permission bits and
    owner where the target does not keep them (verify names the loss)."""

    st_size: int
    st_mtime_ns: int
    st_mode: int
    st_uid: int
    st_gid: int
    st_ino: int


def recorded(copy: os.stat_result, source: os.stat_result, keeps: Keeps) -> Recorded:
    """What the manifest records of `copy`, made of `source`, on a target
    keeping `keeps`."""
    mtime = copy if keeps.mtime_step_ns == 1 else source
    mode = copy if keeps.modes else source
    owner = copy if keeps.owners or not platform.IS_ROOT else source
    return Recorded(
        copy.st_size, mtime.st_mtime_ns, mode.st_mode, owner.st_uid, owner.st_gid, copy.st_ino
    )


class ManifestWriter:
    """Writes the manifest of a snapshot being made, then publishes it."""

    def __init__(self, target_fd: int, snapshot: str, source: str, keeps: Keeps = ALL) -> None:
        self._target_fd = target_fd
        self._snapshot = snapshot
        with contextlib.suppress(FileExistsError):
            platform.mkdir_at(MANIFEST_DIRECTORY, target_fd, 0o700)
        # Owned by this writer: closed once, by publish(), discard() or close().
        self._directory_fd: int | None = open_manifest_directory(target_fd)
        self._published = False
        self._partial = snapshot + PARTIAL_SUFFIX
        try:
            check_ours(self._directory())
            fd = create_exclusive(self._partial, self._directory())
        except BaseException:
            self.close()
            raise
        self._file: IO[bytes] = open(fd, "wb", buffering=WRITE_BUFFER)  # noqa: SIM115
        # The index lines, kept encoded: a few bytes per directory.
        self._index = bytearray()
        self._offset = 0
        self.files = 0
        self.bytes = 0
        # Inodes given several names in the snapshot, set once it is walked.
        self.joined: list[int] | None = None
        self._write(
            {
                "hardsnap_manifest": FORMAT_VERSION,
                "snapshot": snapshot,
                "source": source,
                # When the walk began (the next snapshot compares xattrs of
                # files whose inode changed since), early by CTIME_SLACK_NS.
                "started_ns": time.time_ns() - CTIME_SLACK_NS,
                # What the target's filesystem keeps, where it is not all.
                **({} if keeps == ALL else {"keeps": keeps.to_json()}),
            }
        )

    def _write(self, record: Any) -> None:
        line = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
        self._file.write(line)
        self._offset += len(line)

    def directory(self, relative: str) -> None:
        """Start the block of a directory ("" for the snapshot's root)."""
        shown = json.dumps(relative, ensure_ascii=True).encode()
        self._add_to_index(shown, self._offset)
        line = b'{"d":' + shown + b"}\n"
        self._file.write(line)
        self._offset += len(line)

    def _add_to_index(self, shown: bytes, offset: int) -> None:
        self._index += b'{"i":[' + shown + b"," + str(offset).encode() + b"]}\n"

    def file(self, name: str, info: os.stat_result | Recorded, sha256: str | None) -> None:
        """Record a file of the current directory, as it stands in the snapshot."""
        self._line(info.st_size, info, info.st_mode & 0o7777, sha256 or "-", name)
        self.files += 1
        self.bytes += info.st_size

    def other(self, name: str, info: os.stat_result, target: str | None) -> None:
        """Record a symlink (with its target text) or a special file of the
        current directory, as it stands in the snapshot."""
        detail = "@" + json.dumps(target, ensure_ascii=True) if target is not None else "-"
        size = (
            platform.device_of(info)
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else 0
        )
        self._line(size, info, info.st_mode, detail, name)

    def _line(
        self, size: int, info: os.stat_result | Recorded, mode: int, detail: str, name: str
    ) -> None:
        line = (
            f"{size}\t{info.st_mtime_ns}\t{mode}\t{info.st_uid}\t"
            f"{info.st_gid}\t{info.st_ino}\t{detail}\t{escape_name(name)}\n"
        ).encode()
        self._file.write(line)
        self._offset += len(line)

    def _write_index_and_trailer(self) -> None:
        index_offset = self._offset
        self._file.write(self._index)
        self._offset += len(self._index)
        trailer: dict[str, int] = {"index": index_offset}
        if self.joined is not None:
            trailer["joined"] = self._offset
            for start in range(0, len(self.joined), JOINED_PER_LINE):
                self._write({"j": self.joined[start : start + JOINED_PER_LINE]})
        self._write({**trailer, "files": self.files, "bytes": self.bytes})

    def part(self, number: int) -> ManifestWriter:
        """A writer for a worker process's share of the same snapshot, to be
        absorbed into this one when the worker is done."""
        part = ManifestWriter.__new__(ManifestWriter)
        part._target_fd = self._target_fd
        part._snapshot = f"{self._snapshot}.part{number}"
        part._directory_fd = os.dup(self._directory())
        part._published = False
        part._partial = part._snapshot + PARTIAL_SUFFIX
        fd = create_exclusive(part._partial, part._directory())
        part._file = open(fd, "wb", buffering=WRITE_BUFFER)  # noqa: SIM115
        part._index = bytearray()
        part._offset = 0
        part.files = 0
        part.bytes = 0
        part.joined = None
        part._write({"hardsnap_manifest_part": FORMAT_VERSION, "snapshot": self._snapshot})
        return part

    def _directory(self) -> int:
        if self._directory_fd is None:
            raise ValueError("the manifest writer is closed")
        return self._directory_fd

    def directory_descriptor(self) -> int:
        """The manifests directory, which a worker needs for its own share."""
        return self._directory()

    def finish_part(self) -> None:
        """End a worker's share (index and trailer) without publishing it."""
        self._write_index_and_trailer()
        self._file.close()
        self.close()

    def absorb(self, number: int) -> None:
        """Append the blocks of a finished worker share, then drop its file."""
        name = f"{self._snapshot}.part{number}{PARTIAL_SUFFIX}"
        fd = platform.open_read(name, self._directory())
        with open(fd, "rb") as part:
            reader = ManifestReader.from_stream(part, name)
            part.seek(0)
            header = part.readline()
            start = len(header)
            shift = self._offset - start
            part.seek(start)
            left = reader.trailer["index"] - start
            while left > 0:
                chunk = part.read(min(left, WRITE_BUFFER))
                if not chunk:
                    break
                self._file.write(chunk)
                left -= len(chunk)
                self._offset += len(chunk)
            for relative, offset in reader.blocks():
                self._add_to_index(json.dumps(relative, ensure_ascii=True).encode(), offset + shift)
            self.files += reader.files
            self.bytes += reader.bytes
        platform.unlink_at(name, self._directory())

    def finish(self) -> None:
        """Write the index and trailer and hand everything to the kernel; the
        caller flushes the filesystem (one syncfs for the snapshot and its
        manifest) before `publish`."""
        self._write_index_and_trailer()
        self._file.flush()
        platform.flush_file(self._file.fileno())
        self._file.close()

    def publish(self) -> None:
        """Give the finished manifest, on disk, its final name."""
        directory = self._directory()
        platform.rename_at(self._partial, self._snapshot, directory)
        self._published = True
        os.fsync(directory)

    def discard(self) -> None:
        """Drop the manifest of a snapshot that failed: the unfinished one, or
        the published one when the snapshot could not take its name after."""
        with contextlib.suppress(OSError):
            self._file.close()
        if self._directory_fd is not None:
            name = self._snapshot if self._published else self._partial
            with contextlib.suppress(OSError):
                platform.unlink_at(name, self._directory_fd)
            # And the shares of workers that never were absorbed.
            share = f"{self._snapshot}.part"
            with contextlib.suppress(OSError):
                for name in platform.list_directory(self._directory_fd):
                    if name.startswith(share) and name.endswith(PARTIAL_SUFFIX):
                        platform.unlink_at(name, self._directory_fd)

    def close(self) -> None:
        """Let go of the manifests directory; later calls do nothing."""
        fd, self._directory_fd = self._directory_fd, None
        if fd is not None:
            os.close(fd)

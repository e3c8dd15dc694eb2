"""Reading snapshot manifests (their format is described in format.py): the
header, the index of directory blocks, one directory's block at a time,
a very wide directory's lines by the hash of their names (BlockIndex), so
memory does not grow with the tree.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import re
import stat
from array import array
from collections.abc import Container, Iterator
from typing import IO, Any, Protocol

from hardsnap.providers import platform
from hardsnap.providers.files.compact import IntTable
from hardsnap.providers.files.escaping import escape_name
from hardsnap.providers.manifest.directory import (
    MANIFEST_DIRECTORY,
    PARTIAL_SUFFIX,
    open_manifest_directory,
)
from hardsnap.providers.manifest.format import (
    Entry,
    ManifestError,
    join,
    name_in,
    split_line,
)

__all__ = ["MANIFEST_DIRECTORY", "PARTIAL_SUFFIX", "ManifestError", "ManifestReader"]

TRAILER_BYTES = 4096
# A block is read this much at a time; a bigger one gets a BlockIndex.
READ_CHUNK = 1 << 20
SMALL_BLOCK_BYTES = 1 << 20
# No file line is longer (a 255-byte name escaped, and the fields before it).
LONGEST_LINE = 8192
# An index line: {"i":[DIR,OFFSET]}, DIR a JSON string.
_INDEX_LINE = re.compile(rb'^\{"i":\[("(?:[^"\\\n]|\\.)*"),(\d+)\]\}$', re.MULTILINE)


class ManifestReader:
    """Reads a published manifest: its summary, one directory's block, or all."""

    def __init__(self, path: str) -> None:
        """Read the manifest file at `path` (a file given by hand; hardsnap's
        own manifests are opened below their target with `in_target`)."""
        try:
            stream: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise ManifestError(f"no manifest {path}") from None
        except OSError as error:
            raise ManifestError(f"cannot read manifest {path}: {error.strerror}") from None
        self._load(stream, path)

    @classmethod
    def in_target(cls, target_fd: int, snapshot: str, shown: str) -> ManifestReader:
        """Open the manifest of `snapshot` in the target open as `target_fd`,
        following no symlink; `shown` names the target in messages."""
        path = os.path.join(shown, MANIFEST_DIRECTORY, snapshot)
        try:
            directory_fd = open_manifest_directory(target_fd)
        except FileNotFoundError:
            raise ManifestError(f"no manifest {path}") from None
        except OSError as error:
            raise ManifestError(f"cannot read manifest {path}: {error.strerror}") from None
        try:
            # O_NONBLOCK: a FIFO planted under a manifest's name must not hang us.
            fd = platform.open_read(snapshot, directory_fd)
        except FileNotFoundError:
            raise ManifestError(f"no manifest {path}") from None
        except OSError as error:
            raise ManifestError(f"cannot read manifest {path}: {error.strerror}") from None
        finally:
            os.close(directory_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ManifestError(f"manifest {path} is not a regular file")
        return cls.from_stream(open(fd, "rb"), path)

    @classmethod
    def from_stream(cls, stream: IO[bytes], path: str) -> ManifestReader:
        reader = cls.__new__(cls)
        reader._load(stream, path)
        return reader

    def _load(self, stream: IO[bytes], path: str) -> None:
        self.path = path
        self._file = stream
        try:
            self.trailer = self._read_trailer()
        except (ValueError, KeyError, TypeError, OSError) as error:
            self._file.close()
            raise ManifestError(f"manifest {path} is damaged ({error})") from None
        # The index, read on first use (a count needs only the trailer): the
        # directories sorted by name, where each of their blocks starts, and
        # every block's start in file order (a block ends where the next starts).
        self._directories: list[str] | None = None
        self._offsets = array("q")
        self._starts = array("q")

    def _index(self) -> list[str]:
        if self._directories is None:
            try:
                self._read_index(self.trailer["index"])
            except (ValueError, KeyError, TypeError, OSError) as error:
                raise ManifestError(f"manifest {self.path} is damaged ({error})") from None
        assert self._directories is not None
        return self._directories

    def descriptor(self) -> int:
        return self._file.fileno()

    @property
    def files(self) -> int:
        return int(self.trailer["files"])

    @property
    def source(self) -> str:
        """The source directory the snapshot was made of (its header says)."""
        first = platform.read_at(self._file.fileno(), TRAILER_BYTES, 0).partition(b"\n")[0]
        try:
            return str(json.loads(first)["source"])
        except (ValueError, KeyError, TypeError) as error:
            raise ManifestError(f"manifest {self.path} is damaged ({error})") from None

    @property
    def bytes(self) -> int:
        return int(self.trailer["bytes"])

    def header(self) -> dict[str, Any]:
        """The manifest's first line: the snapshot, its source, when its walk
        began (started_ns) and what its target kept (keeps), where it says."""
        first = platform.read_at(self._file.fileno(), TRAILER_BYTES, 0).partition(b"\n")[0]
        try:
            document = json.loads(first)
        except ValueError as error:
            raise ManifestError(f"manifest {self.path} is damaged ({error})") from None
        if not isinstance(document, dict):
            raise ManifestError(f"manifest {self.path} is damaged (its first line)")
        return document

    @property
    def started_ns(self) -> int | None:
        """When the snapshot's walk began (None in manifests that do not say)."""
        started = self.header().get("started_ns")
        return started if isinstance(started, int) else None

    def joined(self) -> frozenset[int]:
        """The inodes that have several names in the snapshot: from its
        joined section, or, in a manifest without one, found by reading
        every file line (a few bytes of memory per file, once)."""
        try:
            start = self.trailer.get("joined")
            if start is not None:
                return self._joined_section(int(start))
            inodes = array("q")
            for relative in self.directories():
                for _, fields in self._file_lines(relative):
                    if not fields[6].startswith("@"):
                        inodes.append(int(fields[5]))
        except (ValueError, TypeError, KeyError) as error:
            raise ManifestError(f"manifest {self.path} is damaged ({error})") from None
        return frozenset(a for a, b in itertools.pairwise(sorted(inodes)) if a == b)

    def _joined_section(self, start: int) -> frozenset[int]:
        fd = self._file.fileno()
        data = platform.read_at(fd, os.fstat(fd).st_size - start, start)
        lines = data.rstrip(b"\n").split(b"\n")[:-1]  # the trailer ends it
        joined: set[int] = set()
        for line in lines:
            joined.update(int(inode) for inode in json.loads(line)["j"])
        return frozenset(joined)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ManifestReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_trailer(self) -> dict[str, Any]:
        self._file.seek(0, os.SEEK_END)
        size = self._file.tell()
        self._file.seek(max(0, size - TRAILER_BYTES))
        tail = self._file.read()
        if not tail.endswith(b"\n"):
            raise ValueError("it does not end with its trailer")
        trailer = json.loads(tail.rstrip(b"\n").rsplit(b"\n", 1)[-1])
        if not isinstance(trailer, dict) or "index" not in trailer:
            raise ValueError("it has no trailer")
        return trailer

    def _read_index(self, index_offset: int) -> None:
        """Load the index compactly: a few dozen bytes per directory."""
        fd = self._file.fileno()
        end = self.trailer.get("joined")
        if end is None:  # the index runs to the trailer
            data = platform.read_at(fd, os.fstat(fd).st_size - index_offset, index_offset)
            data = data[: data.rstrip(b"\n").rfind(b"\n") + 1]
        else:
            data = platform.read_at(fd, int(end) - index_offset, index_offset)
        names: list[str] = []
        offsets = array("q")
        for match in _INDEX_LINE.finditer(data):
            shown, offset = match.groups()
            names.append(json.loads(shown) if b"\\" in shown else shown[1:-1].decode())
            offsets.append(int(offset))
        if len(names) != data.count(b"\n"):
            raise ValueError("its index has lines that are not index entries")
        order = sorted(range(len(names)), key=names.__getitem__)
        self._offsets = array("q", (offsets[number] for number in order))
        self._starts = array("q", sorted(offsets))
        if self._starts and (self._starts[0] < 0 or self._starts[-1] >= index_offset):
            raise ValueError("its index points outside its blocks")
        self._starts.append(index_offset)
        self._directories = [names[number] for number in order]

    def _block_offsets(self, relative: str) -> array[int]:
        directories = self._index()
        first = bisect.bisect_left(directories, relative)
        last = bisect.bisect_right(directories, relative, first)
        return self._offsets[first:last]

    def _block_end(self, offset: int) -> int:
        return self._starts[bisect.bisect_right(self._starts, offset)]

    def blocks(self) -> Iterator[tuple[str, int]]:
        """Yield each block's directory and offset."""
        yield from zip(self._index(), self._offsets, strict=True)

    def directories(self) -> list[str]:
        """The directories with a block, sorted, each once."""
        return list(dict.fromkeys(self._index()))

    def block(self, relative: str) -> dict[str, Entry]:
        """Return the entries of one directory by name (empty if unknown)."""
        return dict(self.named(relative))

    def named(
        self, relative: str, names: Container[str] | None = None
    ) -> Iterator[tuple[str, Entry]]:
        """Yield the name and entry of each file of one directory (only of
        those in `names` when given), one at a time."""
        for name, fields in self._file_lines(relative):
            if names is None or name in names:
                yield (
                    name,
                    Entry(
                        join(relative, name),
                        int(fields[0]),
                        int(fields[1]),
                        int(fields[2]),
                        int(fields[3]),
                        int(fields[4]),
                        int(fields[5]),
                        None if fields[6] == "-" or fields[6].startswith("@") else fields[6],
                        json.loads(fields[6][1:]) if fields[6].startswith("@") else None,
                    ),
                )

    def hashes(self, relative: str) -> KnownHashes:
        """Return (inode, digest) by name of one directory's hashed files:
        what a walk needs of its reference. A plain dict for a directory of
        ordinary size (one loop, once per directory of every snapshot:
        kept plain); for a very wide one, a compact index of where each
        file's line is, read again when asked (BlockIndex)."""
        if self.block_bytes(relative) > SMALL_BLOCK_BYTES:
            return BlockIndex(self, relative)
        found: dict[str, tuple[int, str]] = {}
        for start in self._block_offsets(relative):
            # One loop over the block read whole (it is small): once per
            # directory of every snapshot, the walk's own cost.
            data = platform.read_at(self._file.fileno(), self._block_end(start) - start, start)
            header, _, lines = data.partition(b"\n")
            if json.loads(header).get("d") != relative:
                raise ManifestError(f"manifest {self.path} is damaged (bad index for {relative!r})")
            for line in lines.decode("utf-8").split("\n"):
                if not line:
                    continue
                fields = line.split("\t", 7)
                if len(fields) != 8:
                    raise ValueError(f"a file line of {relative!r} has {len(fields)} fields")
                digest = fields[6]
                if digest == "-" or digest[0] == "@":
                    continue
                name = fields[7]
                found[json.loads(name[1:]) if name[0] == "\\" else name] = (int(fields[5]), digest)
        return found

    def block_bytes(self, relative: str) -> int:
        """The size of one directory's blocks."""
        return sum(self._block_end(offset) - offset for offset in self._block_offsets(relative))

    def count_lines(self, relative: str) -> int:
        """How many lines one directory's blocks have (a few more than its
        entries), counted a chunk at a time."""
        fd = self._file.fileno()
        count = 0
        for start in self._block_offsets(relative):
            end = self._block_end(start)
            for position in range(start, end, READ_CHUNK):
                count += platform.read_at(fd, min(READ_CHUNK, end - position), position).count(
                    b"\n"
                )
        return count

    def line_at(self, offset: int) -> str:
        """The file line starting at `offset` (found by _block_lines)."""
        data = platform.read_at(self._file.fileno(), LONGEST_LINE, offset)
        return data.partition(b"\n")[0].decode("utf-8")

    def lines_of(self, relative: str) -> Iterator[tuple[int, str]]:
        """Yield the offset and text of each file line of a directory's
        blocks, read a chunk at a time: memory does not grow with them."""
        fd = self._file.fileno()
        for start in self._block_offsets(relative):
            end = self._block_end(start)
            position, pending, header = start, b"", True
            while position < end:
                # pread, not seek and read: a forked walker shares this
                # descriptor (and so its offset) with its parent.
                chunk = platform.read_at(fd, min(READ_CHUNK, end - position), position)
                if not chunk:
                    break
                offset = position - len(pending)
                position += len(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if header:
                        if json.loads(line).get("d") != relative:
                            raise ManifestError(
                                f"manifest {self.path} is damaged (bad index for {relative!r})"
                            )
                        header = False
                    elif line:
                        yield offset, line.decode("utf-8")
                    offset += len(line) + 1
            if pending:
                raise ValueError(f"the block of {relative!r} is cut short")

    def _file_lines(self, relative: str) -> Iterator[tuple[str, list[str]]]:
        """Yield the name and fields of each file line of a directory's blocks."""
        for _, line in self.lines_of(relative):
            fields = split_line(line, relative)
            yield name_in(fields[7]), fields

    def has_directory(self, relative: str) -> bool:
        """Whether the snapshot has directory `relative` (it has a block)."""
        directories = self._index()
        found = bisect.bisect_left(directories, relative)
        return found < len(directories) and directories[found] == relative

    def entries(self) -> Iterator[tuple[str, dict[str, Entry]]]:
        """Yield every directory's files, directories sorted by name (a
        whole block at a time: for reading a manifest by hand)."""
        for relative in self.directories():
            try:
                yield relative, self.block(relative)
            except (ValueError, TypeError) as error:
                raise ManifestError(f"manifest {self.path} is damaged ({error})") from None

    def entries_of(self, relative: str) -> Iterator[Entry]:
        """Yield one directory's entries one at a time. Raise ManifestError
        when its block is damaged."""
        try:
            for _, entry in self.named(relative):
                yield entry
        except (ValueError, TypeError) as error:
            raise ManifestError(f"manifest {self.path} is damaged ({error})") from None


class KnownHashes(Protocol):
    """(inode, digest) by file name, of one directory of a snapshot."""

    def get(self, name: str) -> tuple[int, str] | None: ...


class BlockIndex:
    """Where each file line of one very wide directory is in its manifest,
    by the hash of its name, in flat arrays (compact.IntTable): a few dozen
    bytes a file where a dict of names and digests took hundreds. A line is
    read again when asked for, and its name checked."""

    def __init__(self, reader: ManifestReader, relative: str) -> None:
        self._reader = reader
        self._lines = IntTable(reader.count_lines(relative))
        for offset, line in reader.lines_of(relative):
            fields = split_line(line, relative)
            if fields[6] != "-" and fields[6][0] != "@":
                self._lines.set(hash(fields[7]), offset)

    def get(self, name: str) -> tuple[int, str] | None:
        offset = self._lines.get(hash(escape_name(name)))
        if offset is None:
            return None
        fields = self._reader.line_at(offset).split("\t", 7)
        if len(fields) != 8 or name_in(fields[7]) != name:
            return None  # another name with the same hash: unknown, read again
        return int(fields[5]), fields[6]


def open_manifest(target_fd: int, snapshot: str, shown: str) -> ManifestReader | None:
    """Return the reader of a snapshot's manifest, or None when it has none
    or it cannot be read (callers report that where it matters)."""
    try:
        return ManifestReader.in_target(target_fd, snapshot, shown)
    except ManifestError:
        return None

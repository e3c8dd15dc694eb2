"""The source edits of the model-based test (tests/faults/test_model.py): new
files, new content, modes, owners, xattrs, renames, deletions, a file
becoming a directory and back. A mixin of the state machine, which holds
the source, the clock and the notes these steps use."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    rule,
)

from tests.faults.model_support import (
    DIRECTORY_MODES,
    EDITS,
    FILE_MODES,
    NAMES,
    OWNERS,
    XATTR_NAMES,
    entries_below,
)


class SourceEdits(RuleBasedStateMachine):
    """Rules that change the source between applies."""

    # -- steps: the source -------------------------------------------------------------------

    def source_entries(self, kind: str) -> list[str]:
        """Relative paths of the source's files or directories ("." included)."""
        wanted = stat.S_ISREG if kind == "file" else stat.S_ISDIR
        return sorted(
            relative for relative, _, info in entries_below(self.source) if wanted(info.st_mode)
        )

    @rule(data=st.data(), edits=st.lists(st.sampled_from(EDITS), min_size=1, max_size=3))
    def edit_the_source(self, data: st.DataObject, edits: list[str]) -> None:
        """One to three edits, each drawing what it changes."""
        for kind in edits:
            edit: Callable[[st.DataObject], None] = {
                "new file": self.new_file,
                "rewrite": self.rewrite,
                "chmod": self.chmod,
                "chown": self.chown,
                "xattr": self.set_xattr,
                "rename": self.rename,
                "delete": self.delete,
                "file to directory": self.file_becomes_a_directory,
                "directory to file": self.directory_becomes_a_file,
            }[kind]
            edit(data)

    def any_entry(self, data: st.DataObject, root: bool = True) -> str | None:
        """A file or directory of the source (the source itself with `root`)."""
        entries = [
            relative
            for relative in self.source_entries("file") + self.source_entries("dir")
            if root or relative != "."
        ]
        return data.draw(st.sampled_from(entries), label="entry") if entries else None

    def new_file(self, data: st.DataObject) -> None:
        directory = data.draw(st.sampled_from(self.source_entries("dir")), label="directory")
        path = self.source / directory / data.draw(st.sampled_from(NAMES), label="name")
        if os.path.lexists(path):
            return
        content = data.draw(st.binary(max_size=300), label="content")
        self.write_file(path, content, data.draw(st.sampled_from(FILE_MODES), label="mode"))
        self.note(f"new file {path.relative_to(self.source)}")

    def rewrite(self, data: st.DataObject) -> None:
        files = self.source_entries("file")
        if not files:
            return
        relative = data.draw(st.sampled_from(files), label="file")
        path = self.source / relative
        content = data.draw(st.binary(max_size=300), label="content")
        self.write_file(path, content, stat.S_IMODE(os.lstat(path).st_mode))
        self.note(f"rewrote {relative}")

    def chmod(self, data: st.DataObject) -> None:
        relative = self.any_entry(data)
        assert relative is not None
        path = self.source / relative
        modes = FILE_MODES if path.is_file() else DIRECTORY_MODES
        mode = data.draw(st.sampled_from(modes), label="mode")
        os.chmod(path, mode)
        self.note(f"chmod {mode:o} {relative}")

    def chown(self, data: st.DataObject) -> None:
        relative = self.any_entry(data)
        assert relative is not None
        uid = data.draw(st.sampled_from(OWNERS), label="uid")
        gid = data.draw(st.sampled_from(OWNERS), label="gid")
        os.chown(self.source / relative, uid, gid, follow_symlinks=False)
        self.note(f"chown {uid}:{gid} {relative}")

    def set_xattr(self, data: st.DataObject) -> None:
        relative = self.any_entry(data)
        assert relative is not None
        path = self.source / relative
        if not hasattr(os, "setxattr"):  # the masked platform run keeps none
            return
        name = data.draw(st.sampled_from(XATTR_NAMES), label="xattr")
        value = data.draw(st.one_of(st.none(), st.binary(max_size=20)), label="value")
        if value is None:
            with contextlib.suppress(OSError):
                os.removexattr(path, name)
        else:
            os.setxattr(path, name, value)
        self.note(f"xattr {name}={value!r} on {relative}")

    def rename(self, data: st.DataObject) -> None:
        relative = self.any_entry(data, root=False)
        if relative is None:
            return
        into = [
            directory
            for directory in self.source_entries("dir")
            if directory != relative and not directory.startswith(relative + "/")
        ]
        directory = data.draw(st.sampled_from(into), label="into")
        destination = self.source / directory / data.draw(st.sampled_from(NAMES), label="as")
        source = self.source / relative
        if os.path.lexists(destination) and (source.is_dir() or destination.is_dir()):
            return
        os.rename(source, destination)
        self.note(f"renamed {relative} -> {destination.relative_to(self.source)}")

    def delete(self, data: st.DataObject) -> None:
        relative = self.any_entry(data, root=False)
        if relative is None:
            return
        path = self.source / relative
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        self.note(f"deleted {relative}")

    def file_becomes_a_directory(self, data: st.DataObject) -> None:
        files = self.source_entries("file")
        if not files:
            return
        relative = data.draw(st.sampled_from(files), label="file")
        path = self.source / relative
        path.unlink()
        path.mkdir()
        if data.draw(st.booleans(), label="filled"):
            self.write_file(path / "inside", b"now a directory", 0o644)
        os.chmod(path, data.draw(st.sampled_from(DIRECTORY_MODES), label="mode"))
        self.note(f"file {relative} became a directory")

    def directory_becomes_a_file(self, data: st.DataObject) -> None:
        directories = [relative for relative in self.source_entries("dir") if relative != "."]
        if not directories:
            return
        relative = data.draw(st.sampled_from(directories), label="directory")
        path = self.source / relative
        shutil.rmtree(path)
        self.write_file(path, data.draw(st.binary(max_size=100), label="content"), 0o644)
        self.note(f"directory {relative} became a file")

"""Files that move under the walk, provoked for real by wrapping the engine's
own steps at one exact moment: changed while copied, vanished, swapped for
symlinks, unreadable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from hardsnap.providers.engine.directories import Walker
from hardsnap.providers.engine.placing import Placer
from tests.among_users.hostile import (
    before_copying,
    leftovers,
)
from tests.world.clock import at, name_of
from tests.world.documents import skipped_paths, snapshot_action
from tests.world.engine import resource_for, take
from tests.world.files import ODD_NS, make_file, rewrite, snapshots_in
from tests.world.site import Site
from tests.world.trees import files_of, tree
from tests.world.users import apply_as_nobody

# -- promise 3: files that move under us ----------------------------------------------


def test_file_changed_while_copied_is_copied_again_and_snapshot_holds_new_content(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "steady.txt", b"steady")
    growing = make_file(site.source / "growing.log", b"first version")
    new_mtime = ODD_NS + 86_400 * 10**9 + 7
    attempts: list[int] = []

    def changing_once() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            rewrite(growing, b"second version, longer than the first", new_mtime)

    before_copying(monkeypatch, growing, changing_once)
    site.write()
    outcome, document = site.apply_json()

    copy = site.taken_at() / "growing.log"
    assert len(attempts) == 2, "a file that changed during its copy must be copied again"
    assert copy.read_bytes() == b"second version, longer than the first"
    assert os.stat(copy).st_mtime_ns == new_mtime
    assert (site.taken_at() / "steady.txt").read_bytes() == b"steady"
    assert snapshot_action(document)["unstable"] == []
    assert "kept changing" not in outcome.stderr


def test_file_changing_on_every_copy_is_reported_unstable_and_next_run_copies_it_afresh(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "steady.txt", b"steady")
    hot = make_file(site.source / "hot.log", b"v0")
    versions: list[bytes] = []

    def changing_always() -> None:
        version = f"version {len(versions) + 1} ".encode() * (len(versions) + 2)
        versions.append(version)
        rewrite(hot, version, ODD_NS + len(versions) * 10**9)

    before_copying(monkeypatch, hot, changing_always)
    site.write()
    outcome, document = site.apply_json()

    assert document["resources"][0]["result"] == "changed"
    assert snapshot_action(document)["unstable"] == ["hot.log"]
    assert "hot.log kept changing" in outcome.stderr
    assert snapshots_in(site.target) == [name_of(at(0))]
    # The last copy went as far as the size the file had when it began
    # (the version before), with what the file held by then.
    assert (site.taken_at() / "hot.log").read_bytes() == versions[-1][: len(versions[-2])]
    assert (site.taken_at() / "steady.txt").read_bytes() == b"steady"

    # The file settles: the next snapshot must hold its real content, not a
    # link to the copy that was taken while it moved.
    monkeypatch.undo()
    site.apply_json(at(1))
    settled = site.taken_at(at(1)) / "hot.log"
    assert settled.read_bytes() == hot.read_bytes()
    assert os.stat(settled).st_mtime_ns == os.stat(hot).st_mtime_ns
    assert os.stat(settled).st_ino != os.stat(site.taken_at() / "hot.log").st_ino


def test_take_snapshot_reports_a_file_changing_on_every_copy_in_unstable(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    hot = make_file(site.source / "hot.log", b"v0")
    counter = [0]

    def changing_always() -> None:
        counter[0] += 1
        rewrite(hot, b"x" * counter[0], ODD_NS + counter[0])

    before_copying(monkeypatch, hot, changing_always)
    report = take(resource_for(site.source, site.target), name_of(at(0)))
    assert report.unstable == ["hot.log"]
    assert report.files_copied == 1
    assert (site.target / name_of(at(0)) / "hot.log").is_file()


def test_file_vanishing_between_listing_and_copying_is_skipped_with_reason_not_fatal(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "kept.txt", b"kept")
    doomed = make_file(site.source / "doomed.txt", b"about to vanish")
    original = Placer.file

    def deleting_first(
        self: Placer, name: str, relative: str, info: os.stat_result, frame: Any
    ) -> None:
        if relative == "doomed.txt":
            doomed.unlink()
        original(self, name, relative, info, frame)

    monkeypatch.setattr(Placer, "file", deleting_first)
    site.write()
    outcome, document = site.apply_json()

    skipped = skipped_paths(document)
    assert "vanished" in skipped["doomed.txt"]
    assert sorted(os.listdir(site.taken_at())) == ["kept.txt"]
    assert "doomed.txt" in outcome.stderr
    assert snapshot_action(document)["files_copied"] == 1


def test_files_vanishing_after_their_directory_was_listed_are_skipped_with_reason(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = site.source / "batch"
    names = [f"file{index}.txt" for index in range(6)]
    for name in names:
        make_file(batch / name, name.encode())
    original = Placer.file
    seen: list[str] = []
    deleted: list[str] = []

    def deleting_siblings(
        self: Placer, name: str, relative: str, info: os.stat_result, frame: Any
    ) -> None:
        # The first file handled in batch/ removes every sibling not yet
        # handled: they were listed, but are gone before they are read.
        if relative.startswith("batch/"):
            seen.append(name)
            if len(seen) == 1:
                for other in names:
                    if other != name:
                        (batch / other).unlink()
                        deleted.append(other)
        original(self, name, relative, info, frame)

    monkeypatch.setattr(Placer, "file", deleting_siblings)
    site.write()
    _, document = site.apply_json()

    skipped = skipped_paths(document)
    assert len(deleted) == 5
    for name in deleted:
        assert "vanished" in skipped[f"batch/{name}"], skipped
    assert os.listdir(site.taken_at() / "batch") == [seen[0]]


def test_directory_vanishing_between_listing_and_entering_is_skipped_with_reason(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(site.source / "kept" / "a.txt", b"a")
    make_file(site.source / "gone" / "deep" / "b.txt", b"b")
    original = Walker.enter

    def removing_first(self: Walker, parent: Any, name: str) -> Any:
        if parent.prefix + name == "gone":
            shutil.rmtree(site.source / "gone")
        return original(self, parent, name)

    monkeypatch.setattr(Walker, "enter", removing_first)
    site.write()
    outcome, document = site.apply_json()

    assert "vanished" in skipped_paths(document)["gone"]
    assert sorted(os.listdir(site.taken_at())) == ["kept"]
    assert (site.taken_at() / "kept" / "a.txt").read_bytes() == b"a"
    assert "gone" in outcome.stderr


def test_file_swapped_for_symlink_before_copy_is_not_followed_and_is_reported(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = make_file(site.root / "outside" / "secret.txt", b"OUTSIDE SECRET")
    swapped = make_file(site.source / "swap.txt", b"innocent")
    make_file(site.source / "kept.txt", b"kept")
    original = Placer.file

    def swapping(self: Placer, name: str, relative: str, info: os.stat_result, frame: Any) -> None:
        if relative == "swap.txt":
            swapped.unlink()
            swapped.symlink_to(outside)
        original(self, name, relative, info, frame)

    monkeypatch.setattr(Placer, "file", swapping)
    site.write()
    _, document = site.apply_json()

    assert "swap.txt" in skipped_paths(document)
    for node in files_of(tree(site.taken_at())).values():
        assert node.data != hashlib.sha256(b"OUTSIDE SECRET").digest()
    assert not (site.taken_at() / "swap.txt").exists()
    assert os.stat(outside).st_nlink == 1


def test_directory_swapped_for_symlink_before_entering_is_not_followed(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = site.root / "outside"
    make_file(outside / "secret.txt", b"OUTSIDE SECRET")
    make_file(site.source / "sub" / "inner.txt", b"inner")
    make_file(site.source / "kept.txt", b"kept")
    original = Walker.enter

    def swapping(self: Walker, parent: Any, name: str) -> Any:
        if parent.prefix + name == "sub":
            (site.source / "sub").rename(site.root / "moved-away")
            (site.source / "sub").symlink_to(outside)
        return original(self, parent, name)

    monkeypatch.setattr(Walker, "enter", swapping)
    site.write()
    _, document = site.apply_json()

    assert "sub" in skipped_paths(document)
    assert not (site.taken_at() / "sub" / "secret.txt").exists()
    assert os.stat(outside / "secret.txt").st_nlink == 1


def test_unreadable_files_and_directories_are_reported_by_path_and_run_completes(
    nobody_dir: Path,
) -> None:
    source = nobody_dir / "src"
    make_file(source / "ok.txt", b"readable")
    make_file(source / "open" / "inner.txt", b"readable too")
    make_file(source / "secret.txt", b"mode 000", 0o000)
    make_file(source / "write-only.txt", b"mode 200", 0o200)
    make_file(source / "locked" / "hidden.txt", b"behind a mode 000 directory")
    make_file(source / "search-only" / "hidden.txt", b"behind a mode 111 directory")
    make_file(source / "list-only" / "listed.txt", b"behind a mode 444 directory")
    hostile = os.path.join(os.fsencode(source), b"open", b"bad-\xff\nname")
    make_file(Path(os.fsdecode(hostile)), b"unreadable, hostile name", 0o000)
    modes = {source / "locked": 0o000, source / "search-only": 0o111, source / "list-only": 0o444}
    outcome = apply_as_nobody(nobody_dir, modes, "--json")
    stdout, stderr, target = outcome.stdout, outcome.stderr, nobody_dir / "dst"
    assert outcome.returncode == 0, outcome
    assert "Traceback" not in stderr, outcome
    document = json.loads(stdout)
    skipped = skipped_paths(document)
    for path in ("secret.txt", "write-only.txt", "locked", "search-only", "list-only/listed.txt"):
        assert path in skipped, outcome
        assert "ermission denied" in skipped[path], outcome
        assert path in stderr, outcome
    assert os.fsdecode(b"open/bad-\xff\nname") in skipped, outcome
    snapshot = target / name_of(at(0))
    assert (snapshot / "ok.txt").read_bytes() == b"readable"
    assert (snapshot / "open" / "inner.txt").read_bytes() == b"readable too"
    assert not (snapshot / "secret.txt").exists()
    assert not (snapshot / "locked").exists()
    assert leftovers(target) == []

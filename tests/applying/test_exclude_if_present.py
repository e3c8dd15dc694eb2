"""exclude_if_present: a directory holding one of the marker names is kept
empty but for that entry (borg's and restic's convention); CACHEDIR.TAG
counts only with the Cache Directory Tagging signature, and never through a
symlink. Plan predicts what apply then counts. The real CLI, real trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.world.clock import START, at, name_of
from tests.world.documents import snapshot_action
from tests.world.files import make_file
from tests.world.site import Site, new_site

SIGNED = b"Signature: 8a477f597d28d172789f06886806bc55\n# made by a test\n"


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """Two directories a marker keeps empty, and three it does not."""
    site = new_site(tmp_path)
    source = site.source
    make_file(source / "cache" / "CACHEDIR.TAG", SIGNED)
    make_file(source / "cache" / "blob.bin", b"x" * 5000)
    make_file(source / "cache" / "deeper" / "more.bin", b"y" * 100)
    make_file(source / "home" / "private" / ".nobackup", b"")
    make_file(source / "home" / "private" / "secret.txt", b"not wanted")
    make_file(source / "home" / "notes.txt", b"wanted")
    # Not the signature: an ordinary file of that name.
    make_file(source / "unsigned" / "CACHEDIR.TAG", b"just a file\n")
    make_file(source / "unsigned" / "data.txt", b"kept")
    # A signed tag reached through a symlink is never followed.
    make_file(source / "linked" / "data.txt", b"kept too")
    os.symlink("../cache/CACHEDIR.TAG", source / "linked" / "CACHEDIR.TAG")
    site.write(exclude_if_present=[".nobackup", "CACHEDIR.TAG"])
    return site


def listing(root: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(directory, name), root)
        for directory, directories, files in os.walk(root)
        for name in directories + files
    )


def test_a_directory_holding_a_marker_keeps_only_the_marker(site: Site) -> None:
    planned = snapshot_action(site.plan_json())
    _, document = site.apply_json()
    done = snapshot_action(document)

    snapshot = site.taken_at()
    assert listing(snapshot) == [
        "a.txt",
        "cache",
        "cache/CACHEDIR.TAG",
        "home",
        "home/notes.txt",
        "home/private",
        "home/private/.nobackup",
        "linked",
        "linked/data.txt",
        "sub",
        "sub/b.txt",
        "unsigned",
        "unsigned/CACHEDIR.TAG",
        "unsigned/data.txt",
    ]
    assert (snapshot / "cache" / "CACHEDIR.TAG").read_bytes() == SIGNED
    assert planned["directories_excluded"] == done["directories_excluded"] == 2
    assert planned["files_to_copy"] == done["files_copied"] == 8


def test_plan_and_apply_say_how_many_directories_were_excluded(site: Site) -> None:
    planned = site.cli("plan")
    assert planned.returncode == 0, planned
    assert "2 directories excluded (exclude_if_present)" in planned.stdout
    applied = site.apply()
    assert applied.returncode == 0, applied
    assert "2 directories excluded (exclude_if_present)" in applied.stdout


def test_removing_the_marker_brings_the_directory_back_and_the_marker_stays_linked(
    site: Site,
) -> None:
    assert site.apply().returncode == 0
    (site.source / "home" / "private" / ".nobackup").unlink()
    _, document = site.apply_json(at(1))
    assert snapshot_action(document)["directories_excluded"] == 1
    second = site.taken_at(at(1))
    assert (second / "home" / "private" / "secret.txt").read_bytes() == b"not wanted"
    tag = "cache/CACHEDIR.TAG"
    first = site.snapshot(name_of(START))
    assert os.stat(second / tag).st_ino == os.stat(first / tag).st_ino


def test_the_source_root_holding_a_marker_keeps_only_the_marker(site: Site) -> None:
    make_file(site.source / ".nobackup", b"")
    _, document = site.apply_json()
    assert snapshot_action(document)["directories_excluded"] == 1
    assert listing(site.taken_at()) == [".nobackup"]


@pytest.mark.parametrize(
    ("written", "wanted"),
    [
        ('".nobackup, CACHEDIR.TAG"', (".nobackup", "CACHEDIR.TAG")),
        ("[.nobackup]", (".nobackup",)),
    ],
)
def test_marker_names_are_a_list_or_a_comma_separated_string(
    site: Site, written: str, wanted: tuple[str, ...]
) -> None:
    site.config.write_text(
        site.config.read_text().replace(
            'exclude_if_present: [".nobackup", "CACHEDIR.TAG"]', f"exclude_if_present: {written}"
        )
    )
    document = site.plan_json()
    assert snapshot_action(document)["directories_excluded"] == len(wanted)


@pytest.mark.parametrize("name", ["cache/CACHEDIR.TAG", "..", "."])
def test_a_marker_that_is_no_entry_name_is_refused_at_its_line(site: Site, name: str) -> None:
    site.write(exclude_if_present=[name])
    done = site.cli("validate")
    assert done.returncode == 2, done
    line = next(
        number
        for number, text in enumerate(site.config.read_text().splitlines(), 1)
        if text.lstrip().startswith("exclude_if_present")
    )
    assert f"hardsnap.yaml:{line}:" in done.stderr, done
    assert '"exclude_if_present" holds names of entries' in done.stderr, done

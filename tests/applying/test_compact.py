"""The compact tables that keep wide directories from costing memory."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hardsnap.providers.files.compact import EMPTY, IntTable
from hardsnap.providers.manifest.format import manifest_path
from hardsnap.providers.manifest.reader import BlockIndex, ManifestReader
from tests.world.clock import at, name_of
from tests.world.files import make_file
from tests.world.site import new_site

keys = st.integers(min_value=-(2**70), max_value=2**70)


@given(st.lists(st.tuples(keys, st.integers(-(2**63), 2**63 - 1)), max_size=300), st.lists(keys))
def test_int_table_answers_as_a_dict_of_the_same_entries(
    entries: list[tuple[int, int]], probes: list[int]
) -> None:
    table = IntTable()
    expected: dict[int, int] = {}
    for key, value in entries:
        table.set(key, value)
        expected[((key + 2**63) % 2**64) - 2**63] = value
    assert len(table) == len(expected)
    for key in [key for key, _ in entries] + probes + [EMPTY]:
        folded = ((key + 2**63) % 2**64) - 2**63
        assert table.get(key) == expected.get(folded), key


def test_int_table_add_counts_and_reserve_keeps_what_it_holds() -> None:
    table = IntTable()
    for round_ in range(3):
        for key in range(1000):
            assert table.add(key * 7919) == round_ + 1
    table.reserve(100_000)
    assert all(table.get(key * 7919) == 3 for key in range(1000))


def test_a_wide_directorys_manifest_block_is_indexed_compactly_and_read_back_exactly(
    tmp_path: Path,
) -> None:
    site = new_site(tmp_path)
    for index in range(12_000):
        make_file(site.source / "wide" / f"file-{index:05d}", b"%d" % index)
    make_file(site.source / "wide" / "odd\nname\\", b"escaped")
    assert site.apply(at(0)).returncode == 0
    with ManifestReader(manifest_path(str(site.target), name_of(at(0)))) as reader:
        index = reader.hashes("wide")
        assert isinstance(index, BlockIndex), "the block is small enough for a dict"
        recorded = {name: (entry.inode, entry.sha256) for name, entry in reader.named("wide")}
        assert len(recorded) == 12_001
        for name, known in recorded.items():
            assert index.get(name) == known, name
        assert index.get("not-there") is None
    snapshot = site.target / name_of(at(0)) / "wide"
    assert recorded["odd\nname\\"][0] == os.lstat(snapshot / "odd\nname\\").st_ino

"""Fixtures the tests of this folder share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Mount
from tests.faults.faults import (
    FILES,
    Spawn,
    build_tree,
)
from tests.world.cli import environment
from tests.world.clock import iso
from tests.world.processes import Applies, Apply
from tests.world.site import Site, empty_site


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start `hardsnap apply -c CONFIG` with a state dir and a clock; every
    process still running at the end of the test is killed."""
    with Applies(tmp_path / "logs") as applies:

        def start(config: Path, state: Path, now: dt.datetime) -> Apply:
            return applies.start(["apply", "-c", str(config)], environment(state, iso(now)))

        yield start


@pytest.fixture
def big_site(tmpfs: Mount) -> Site:
    """A 20k-file source on its own tmpfs, with a config snapshotting it."""
    site = empty_site(tmpfs("big", "size=512m"), min_free_space="1M")
    build_tree(site.source, FILES)
    site.write()
    return site

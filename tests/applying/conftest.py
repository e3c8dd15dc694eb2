"""Fixtures the tests of this folder share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.world.files import make_file
from tests.world.site import Site, empty_site


@pytest.fixture
def world(tmp_path: Path) -> Site:
    site = empty_site(tmp_path)
    make_file(site.source / "a.txt", b"alpha")
    make_file(site.source / "sub" / "b.txt", b"bravo!", 0o600)
    return site

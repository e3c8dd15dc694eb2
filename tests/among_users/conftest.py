"""Fixtures the tests of this folder share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.world.site import Site, empty_site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return empty_site(tmp_path, min_free_space=0)

"""Fixtures the tests of this folder share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """Where the config file under test (nominally) lives; paths resolve against its folder."""
    return tmp_path / "hardsnap.yaml"

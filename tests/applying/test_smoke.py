"""The first thing anyone tries: apply twice, and the second has nothing to do."""

from __future__ import annotations

from pathlib import Path

from tests.world.cli import Cli
from tests.world.files import make_file
from tests.world.site import empty_site


def test_apply_then_apply_again_reports_no_changes(tmp_path: Path, cli: Cli) -> None:
    site = empty_site(tmp_path)
    make_file(site.source / "f.txt", b"x")
    config = site.write()
    first = cli("apply", "-c", config)
    assert first.returncode == 0, first
    second = cli("apply", "-c", config)
    assert second.returncode == 0, second
    assert "No changes" in second.stdout

from pathlib import Path

from tests.world.site import write_config


def test_apply_then_apply_again_reports_no_changes(tmp_path: Path, cli) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "f.txt").write_text("x")
    config = write_config(
        tmp_path / "hardsnap.yaml",
        {
            "name": "r",
            "type": "backup",
            "source_dir": str(source),
            "target_path": str(tmp_path / "dst"),
        },
    )
    first = cli("apply", "-c", config)
    assert first.returncode == 0, first
    second = cli("apply", "-c", config)
    assert second.returncode == 0, second
    assert "No changes" in second.stdout

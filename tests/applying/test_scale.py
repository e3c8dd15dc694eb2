"""A huge directory is streamed: memory does not grow with its entry count."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Mount
from tests.world.cli import hardsnap_command
from tests.world.clock import T0
from tests.world.site import write_config


def peak_rss_of_plan(root: Path, entries: int) -> int:
    """Make a directory of `entries` empty files, run `hardsnap plan` on it
    (a dry walk that opens every file) and return the run's peak RSS in KiB."""
    source = root / f"src{entries}"
    big = source / "big"
    big.mkdir(parents=True)
    fd = os.open(big, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index in range(entries):
            os.close(os.open(f"f{index:07d}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    config = write_config(
        root / f"hardsnap{entries}.yaml",
        {
            "name": "big",
            "type": "backup",
            "source_dir": str(source),
            "target_path": str(root / f"dst{entries}"),
            "min_free_space": 0,
        },
    )
    script = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "assert done.returncode == 0, done\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    environment = dict(os.environ, HARDSNAP_NOW=T0, HARDSNAP_STATE_DIR=str(root / "state"))
    done = subprocess.run(
        [
            "python3",
            "-c",
            script,
            *hardsnap_command(),
            "plan",
            "-c",
            str(config),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    return int(done.stdout.strip())


@pytest.mark.slow
def test_directory_of_300k_entries_is_walked_in_flat_memory(tmpfs: Mount) -> None:
    root = tmpfs("big", "size=256m,nr_inodes=400k")
    small = peak_rss_of_plan(root, 1_000)
    large = peak_rss_of_plan(root, 300_000)
    # Listing 300k entries into memory would cost tens of MiB; streaming
    # them costs nothing that grows.
    assert large - small < 8 * 1024, f"peak RSS {small} KiB at 1k entries, {large} KiB at 300k"

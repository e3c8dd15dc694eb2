"""Benchmark hardsnap side by side with cp -al, cp -a, rsync --link-dest and rsync -a.

Generates deterministic trees (sizes drawn from a skewed distribution, like
real home and /etc trees) in two shapes, "spread" over 42 top-level
directories and "nested" all under home/user, on a fresh journaled ext4
loop image (or, with --shapes usr, a copy of this machine's /usr); runs
each scenario for every tool, interleaved, for several
rounds; prints the machine, filesystem and tool versions, then medians,
min-max, CPU seconds, peak memory (summed PSS over the process and its
workers) and ratios to the anchors, with the anchors' raw seconds.

    python tests/benchmarks/bench.py                 # 100k files, 5 rounds
    python tests/benchmarks/bench.py --files 25000 --rounds 3
    python tests/benchmarks/bench.py --smoke         # tiny, no loop image (CI)
    python tests/benchmarks/bench.py --files 400000 --scenarios unchanged --shapes nested
    python tests/benchmarks/bench.py --scenarios unchanged,changed --shapes usr
    python tests/benchmarks/bench.py --scenarios wide --wide 500000

Scenarios: startup (the interpreter, the libraries hardsnap is built on,
and an apply of a one-file tree: what every run pays); then, for each
shape: first, unchanged, changed, scaling (an unchanged
snapshot under `taskset -c 0` and `taskset -c 0,1`, beside two `cp -al` of
the tree's halves at once under the same: what a second CPU gives this
machine for the same work done in C), jobs (with --jobs 1, 2
and 4), fidelity (symlinks and special files kept, one_file_system on, or
not), settled; then large (40 files of 25-50 MiB, first snapshot) and
reflink (the same on XFS with reflink, against rsync -a, with the space
each copy took); wide (one directory of --wide empty files and one of as
many symlinks: what costs an attacker nothing; a second snapshot, then
diff, verify and state show, each with its peak memory).

Needs root for the loop image (else it runs in --workdir as it is, and says
so). Timings are wall-clock seconds of the whole process, start-up included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from measure import Run, machine, run
from scenarios import (
    HARDSNAP,
    Scenario,
    audits,
    environment,
    fidelity,
    first_snapshot,
    hardsnap,
    jobs,
    reference,
    scaling,
    second_snapshot,
    settled,
    startup,
    sync,
    undo_second,
)
from trees import (
    REAL_TREES,
    SHAPES,
    copy_real_tree,
    du_bytes,
    loop_image,
    make_large_tree,
    make_tree,
    make_wide_tree,
    remove,
    touch_some,
)


@dataclass
class Sample:
    runs: list[Run] = field(default_factory=list)
    # Space a copy took on the filesystem (first snapshots only).
    added: list[int] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(run.wall for run in self.runs)

    def line(self, name: str, anchors: dict[str, float]) -> str:
        walls = [run.wall for run in self.runs]
        ratios = "  ".join(
            f"{self.median() / value:5.2f}x {anchor}" for anchor, value in anchors.items() if value
        )
        cpu = statistics.median(run.cpu for run in self.runs)
        pss = max(run.pss_kib for run in self.runs) / 1024
        space = f"  +{statistics.median(self.added) / (1 << 20):7.1f} MiB" if self.added else ""
        return (
            f"  {name:<30} {self.median():7.3f} s ({min(walls):.3f}-{max(walls):.3f})"
            f"  cpu {cpu:6.2f} s  pss {pss:6.1f} MiB{space}  {ratios}"
        )


def measure(
    title: str, scenarios: dict[str, Scenario], root: Path, rounds: int, anchors: list[str]
) -> dict[str, Sample]:
    samples = {name: Sample() for name in scenarios}
    for _ in range(rounds):
        for name, scenario in scenarios.items():  # interleaved: one of each per round
            measured, added = scenario(root)
            samples[name].runs.append(measured)
            if added is not None:
                samples[name].added.append(added)
    values = {anchor: samples[anchor].median() for anchor in anchors}
    print(title, flush=True)
    for name, sample in samples.items():
        print(sample.line(name, values), flush=True)
    return samples


SCENARIOS = (
    "startup",
    "first",
    "unchanged",
    "changed",
    "scaling",
    "jobs",
    "fidelity",
    "settled",
    "large",
    "reflink",
    "wide",
)
TREE_SCENARIOS = {"first", "unchanged", "changed", "scaling", "jobs", "fidelity", "settled"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--per-directory", type=int, default=20)
    parser.add_argument("--largest", type=int, default=64 << 20, help="cap on a file's size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20260329)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny trees, 1 round, no loop image")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument(
        "--shapes",
        default=",".join(SHAPES),
        help=f"comma-separated, of {', '.join((*SHAPES, *REAL_TREES))}",
    )
    parser.add_argument("--large-files", type=int, default=40)
    parser.add_argument(
        "--wide", type=int, default=500_000, help="entries of the one wide directory"
    )
    parser.add_argument(
        "--image-mib", type=int, default=0, help="loop image size (default: sized to the trees)"
    )
    options = parser.parse_args()
    large_mib = (25, 50)
    if options.smoke:
        options.files, options.rounds, options.large_files, large_mib = 400, 1, 4, (1, 2)
        options.wide = 2_000
    chosen = set(options.scenarios.split(","))
    if chosen - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(chosen - set(SCENARIOS))}; known: {SCENARIOS}")
    shapes = options.shapes.split(",")
    known = (*SHAPES, *REAL_TREES)
    if set(shapes) - set(known):
        parser.error(f"unknown shapes {sorted(set(shapes) - set(known))}; known: {known}")

    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="hardsnap-bench-"))
    images = not options.smoke and os.geteuid() == 0 and shutil.which("mkfs.ext4") is not None
    print(f"{options.rounds} rounds, medians (min-max); timings are whole processes")
    try:
        if "startup" in chosen:
            measure("start-up: fixed costs of every run", startup(), workdir, options.rounds, [])
        if chosen & TREE_SCENARIOS:
            many_files(workdir, options, chosen, shapes, images)
        if "large" in chosen:
            large_files(workdir, options, large_mib, "ext4" if images else None)
        if "wide" in chosen:
            wide_directory(workdir, options, images)
        if "reflink" in chosen:
            if images and shutil.which("mkfs.xfs"):
                large_files(workdir, options, large_mib, "xfs")
            else:
                print("reflink: skipped (needs root, a loop image and mkfs.xfs)")
    finally:
        if not options.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


# Room beyond the trees and their copies on an image: hardsnap keeps its
# default min_free_space of 1 GiB free, and ext4 takes its journal and
# inode tables from the image first.
FREE_MIB = 2048


@contextlib.contextmanager
def filesystem(workdir: Path, kind: str | None, size_mib: int) -> Iterator[tuple[Path, str]]:
    """Where a tree goes: a fresh loop image of `kind`, or `workdir` itself."""
    if kind is None:
        root = workdir / "plain"
        root.mkdir()
        try:
            yield root, f"{workdir} as it is (no loop image: --smoke, not root, or no mkfs)"
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    with loop_image(workdir, size_mib, kind) as root:
        yield root, f"a fresh {kind} loop image ({size_mib} MiB)"


def many_files(
    workdir: Path,
    options: argparse.Namespace,
    chosen: set[str],
    shapes: list[str],
    images: bool,
) -> None:
    made = [shape for shape in shapes if shape not in REAL_TREES]
    # Each tree and up to five copies of it (cp, rsync, hardsnap's first and
    # reference snapshots, and what was rewritten).
    size = len(made) * options.files * 9 * 6 // 1024 + FREE_MIB
    for shape in shapes:
        if shape in REAL_TREES:
            size += du_bytes(REAL_TREES[shape]) * 5 // (1 << 20)
    with filesystem(workdir, "ext4" if images else None, options.image_mib or size) as (
        root,
        where,
    ):
        described = {}
        for shape in shapes:
            if shape in REAL_TREES:
                files, directories, total = copy_real_tree(root / shape, shape)
                origin = f"a copy of {REAL_TREES[shape]}"
            else:
                total = make_tree(
                    root / shape,
                    options.files,
                    options.per_directory,
                    options.seed,
                    options.largest,
                    shape,
                )
                files, directories = options.files, options.files // options.per_directory
                origin = "made"
            described[shape] = (
                f"tree {shape!r} ({origin}): {files} files in {directories} dirs, "
                f"{total / (1 << 20):.0f} MiB, on {where}"
            )
        sync()
        for line in machine(root, HARDSNAP):
            print(line)
        for shape in shapes:
            print(described[shape], flush=True)
            one_shape(root, options, chosen, shape)


def one_shape(root: Path, options: argparse.Namespace, chosen: set[str], shape: str) -> None:
    rounds = options.rounds
    if "first" in chosen:
        anchors = ["cp -a (+sync)", "rsync -a (+sync)"]
        measure(f"{shape}: first snapshot", first_snapshot(shape), root, rounds, anchors)
        for copy in ("cp", "rs", "hs-first"):
            remove(root / copy)
    reference(root, shape)
    anchors = ["cp -al", "rsync --link-dest"]
    if "unchanged" in chosen:
        title = f"{shape}: second snapshot, nothing changed"
        measure(title, second_snapshot(shape, walking_plan=True), root, rounds, anchors)
    if "scaling" in chosen and len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset"):
        title = f"{shape}: second snapshot, nothing changed, on one CPU and on two"
        one_cpu = ["hardsnap on CPU 0", "cp -al in halves on CPU 0"]
        measure(title, scaling(shape), root, rounds, one_cpu)
        for number in range(2):
            remove(root / f"cpal-half{number}")
    if "jobs" in chosen:
        title = f"{shape}: second snapshot, nothing changed, by the number of workers"
        measure(title, jobs(shape), root, rounds, ["hardsnap --jobs 1"])
    if "fidelity" in chosen:
        title = f"{shape}: second snapshot, nothing changed, with symlinks and more kept"
        measure(title, fidelity(shape), root, rounds, ["hardsnap (defaults)"])
    if "changed" in chosen:
        touch_some(
            root / shape, options.files, options.per_directory, options.seed, 0.01, 0.001, shape
        )
        title = f"{shape}: second snapshot, 1% rewritten and 0.1% added"
        measure(title, second_snapshot(shape, walking_plan=False), root, rounds, anchors)
    if "settled" in chosen:
        undo_second(root, shape)
        measure(f"{shape}: window already covered (no walk)", settled(shape), root, rounds, [])
    remove(root / "cpal")
    remove(root / "rsld")


def wide_directory(workdir: Path, options: argparse.Namespace, images: bool) -> None:
    """What costs an attacker nothing: one directory of many empty files,
    and as many symlinks (left out, each one counted) in another. A second
    snapshot against cp -al and rsync, then diff, verify and state show."""
    # Inodes, not bytes, fill it: ext4 makes one per 16 KiB, and the trees
    # and their copies take four per entry.
    size = options.image_mib or options.wide * 4 * 16 // 1024 + FREE_MIB
    with filesystem(workdir, "ext4" if images else None, size) as (root, where):
        make_wide_tree(root / "wide", options.wide)
        sync()
        print(f"tree: {options.wide} empty files in one directory, as many symlinks, on {where}")
        reference(root, "wide")
        anchors = ["cp -al", "rsync --link-dest"]
        title = "wide: second snapshot, nothing changed"
        measure(title, second_snapshot("wide", walking_plan=True), root, options.rounds, anchors)
        undo_second(root, "wide")
        run(hardsnap(root, "apply", "ref-wide", "wide"), env=environment(root / "state-wide", 2))
        measure("wide: auditing two snapshots", audits("wide"), root, options.rounds, [])


def large_files(
    workdir: Path, options: argparse.Namespace, mib: tuple[int, int], kind: str | None
) -> None:
    """A first snapshot of a few big files: on ext4 against cp -a, on XFS
    with reflink against rsync -a (cp -a reflinks there too)."""
    size = options.image_mib or options.large_files * mib[1] * 5 + FREE_MIB
    with filesystem(workdir, kind, size) as (root, where):
        total = make_large_tree(root / "big", options.large_files, options.seed, mib)
        sync()
        print(f"tree: {options.large_files} files, {total / (1 << 20):.0f} MiB, on {where}")
        anchors = ["cp -a (+sync)", "rsync -a (+sync)"]
        title = "first snapshot of big files" + (" (reflinks)" if kind == "xfs" else "")
        measure(title, first_snapshot("big"), root, options.rounds, anchors)


if __name__ == "__main__":
    main()

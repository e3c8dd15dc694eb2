"""Benchmark hardsnap side by side with cp -al, cp -a and rsync --link-dest.

Generates a deterministic tree (sizes drawn from a skewed distribution, like
real home and /etc trees) on a fresh journaled ext4 loop image, then runs
each scenario for every tool, interleaved, for several rounds, and prints
medians, min-max, ratios to the anchors and peak RSS.

    python tests/benchmarks/bench.py                 # 100k files, 5 rounds
    python tests/benchmarks/bench.py --files 25000 --rounds 3
    python tests/benchmarks/bench.py --smoke         # tiny, no loop image (CI)
    python tests/benchmarks/bench.py --files 400000 --scenarios unchanged

Scenarios: first, unchanged, changed, settled (on the many-file tree), large
(40 files of 25-50 MiB, first snapshot) and reflink (the same on XFS with
reflink, against rsync -a, with the space each copy took).

Needs root for the loop image (else it runs in --workdir as it is, and says
so). Timings are wall-clock seconds of the whole process, start-up included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HARDSNAP = [sys.executable, "-m", "hardsnap"]
DAY = "2026-03-{:02d}T06:00:00Z"


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    # Space a copy took on the filesystem (first snapshots only).
    added: list[int] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.seconds)

    def line(self, name: str, anchors: dict[str, float]) -> str:
        ratios = "  ".join(
            f"{self.median() / value:5.2f}x {anchor}" for anchor, value in anchors.items() if value
        )
        spread = f"({min(self.seconds):.3f}-{max(self.seconds):.3f})"
        space = f"  +{statistics.median(self.added) / (1 << 20):7.1f} MiB" if self.added else ""
        return (
            f"  {name:<34} {self.median():7.3f} s  {spread}"
            f"  rss {max(self.rss_kib) / 1024:6.1f} MiB{space}  {ratios}"
        )


TIME = Path("/usr/bin/time").exists()


def run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[float, int]:
    """Run a command; return its wall time and peak RSS (KiB). The RSS comes
    from /usr/bin/time (a small exec'd process, so the benchmark's own memory
    is not counted), else from wait4."""
    with tempfile.NamedTemporaryFile("r") as rss_file:
        prefix = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name] if TIME else []
        started = time.perf_counter()
        process = subprocess.Popen(
            prefix + command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            assert process.stderr is not None
            error = process.stderr.read().decode()[-2000:]
            raise SystemExit(f"{command[:4]} failed ({code}): {error}")
        rss = int(rss_file.read().strip().splitlines()[-1]) if TIME else usage.ru_maxrss
    return elapsed, rss


def sync() -> None:
    os.sync()


# -- the tree ------------------------------------------------------------------


def file_size(rng: random.Random, largest: int) -> int:
    """Skewed sizes: mostly small config-like files, a long tail of big ones."""
    return min(int(rng.lognormvariate(7.6, 1.6)), largest)


def write_file(path: Path, size: int, block: bytes, offset: int) -> None:
    with open(path, "wb") as stream:
        left = size
        while left > 0:
            chunk = block[offset : offset + min(left, len(block) - offset)]
            stream.write(chunk)
            left -= len(chunk)
            offset = 0


def make_tree(root: Path, files: int, per_directory: int, seed: int, largest: int) -> int:
    rng = random.Random(seed)
    total = 0
    block = os.urandom(1 << 20)
    for index in range(files):
        directory = root / f"d{index // per_directory:05d}"
        if index % per_directory == 0:
            directory.mkdir(parents=True)
        size = file_size(rng, largest)
        write_file(directory / f"f{index:07d}.dat", size, block, index % 4096)
        total += size
    return total


def make_large_tree(root: Path, files: int, seed: int, mib: tuple[int, int]) -> int:
    """`files` big files of `mib` MiB (uniform), four to a directory, each
    with its own bytes (so no filesystem could share them by content)."""
    rng = random.Random(seed)
    total = 0
    for index in range(files):
        directory = root / f"big{index // 4:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        size = rng.randint(mib[0] << 20, mib[1] << 20)
        write_file(directory / f"f{index:03d}.bin", size, os.urandom(1 << 20), 0)
        total += size
    return total


def touch_some(
    root: Path, files: int, per_directory: int, seed: int, rewrite: float, add: float
) -> None:
    """Rewrite `rewrite` of the files (new content and mtime), add `add` more."""
    rng = random.Random(seed)
    for index in rng.sample(range(files), int(files * rewrite)):
        path = root / f"d{index // per_directory:05d}" / f"f{index:07d}.dat"
        path.write_bytes(os.urandom(rng.randint(100, 20000)))
    for extra in range(int(files * add)):
        index = rng.randrange(files)
        path = root / f"d{index // per_directory:05d}" / f"new{seed}-{extra}.dat"
        path.write_bytes(os.urandom(rng.randint(100, 20000)))


# -- the filesystem ------------------------------------------------------------


MKFS = {
    "ext4": ["mkfs.ext4", "-q", "-F", "-i", "4096"],
    "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
}


@contextlib.contextmanager
def loop_image(workdir: Path, size_mib: int, kind: str = "ext4") -> Iterator[Path]:
    """A fresh loop image (journaled ext4, or XFS with reflink) mounted
    under `workdir`."""
    image = workdir / f"bench-{kind}.img"
    mount = workdir / f"mnt-{kind}"
    mount.mkdir()
    with open(image, "wb") as stream:
        stream.truncate(size_mib << 20)
    subprocess.run([*MKFS[kind], str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        image.unlink()
        mount.rmdir()


def used_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


def remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


# -- scenarios -----------------------------------------------------------------


def config(root: Path, target: str, source: str) -> Path:
    path = root / f"hardsnap-{target}.yaml"
    path.write_text(
        "resources:\n"
        f"  - name: bench\n    type: backup\n    source_dir: {root / source}\n"
        f"    target_path: {root / target}\n    min_free_space: 0\n    retain: '3650'\n"
    )
    return path


def hardsnap(root: Path, verb: str, target: str, source: str = "src") -> list[str]:
    quiet = ["-q"] if verb == "apply" else []
    return [*HARDSNAP, verb, "-c", str(config(root, target, source)), *quiet]


def environment(root: Path, day: int) -> dict[str, str]:
    return dict(os.environ, HARDSNAP_NOW=DAY.format(day), HARDSNAP_STATE_DIR=str(root / "state"))


# Wall seconds, peak RSS (KiB), and the space the run added (None: not measured).
Measurement = tuple[float, int, int | None]
Scenario = Callable[[Path], Measurement]


def first_snapshot(source: str) -> dict[str, Scenario]:
    """A full copy of the tree in `source`, each measured until its data is
    on disk, with the space it took."""

    def until_synced(root: Path, copy: str, command: list[str], **kwargs: Any) -> Measurement:
        remove(root / copy)
        sync()
        before = used_bytes(root)
        started = time.perf_counter()
        _, rss = run(command, **kwargs)
        sync()
        elapsed = time.perf_counter() - started
        return elapsed, rss, used_bytes(root) - before

    def cp_a(root: Path) -> Measurement:
        return until_synced(root, "cp", ["cp", "-a", str(root / source), str(root / "cp")])

    def rsync_a(root: Path) -> Measurement:
        command = ["rsync", "-a", f"{root / source}/", f"{root / 'rs'}/"]
        return until_synced(root, "rs", command)

    def hardsnap_first(root: Path) -> Measurement:
        remove(root / "state")
        command = hardsnap(root, "apply", "hs-first", source)
        return until_synced(root, "hs-first", command, env=environment(root, 1))

    return {
        "cp -a (+sync)": cp_a,
        "rsync -a (+sync)": rsync_a,
        "hardsnap apply (+sync)": hardsnap_first,
    }


def second_snapshot(walking_plan: bool) -> dict[str, Scenario]:
    """A second snapshot against a first one (set up once by `main`)."""

    def cp_al(root: Path) -> Measurement:
        remove(root / "cpal")
        return *run(["cp", "-al", str(root / "ref" / "2026.060.06.00"), str(root / "cpal")]), None

    def rsync_link_dest(root: Path) -> Measurement:
        remove(root / "rsld")
        reference = root / "ref" / "2026.060.06.00"
        command = [
            "rsync",
            "-a",
            f"--link-dest={reference}",
            f"{root / 'src'}/",
            f"{root / 'rsld'}/",
        ]
        return *run(command), None

    def hardsnap_second(root: Path) -> Measurement:
        remove(root / "ref" / "2026.061.06.00")
        return *run(hardsnap(root, "apply", "ref"), env=environment(root, 2)), None

    def hardsnap_plan(root: Path) -> Measurement:
        # Day 3 has no snapshot yet: the plan walks the tree to predict it.
        return *run(hardsnap(root, "plan", "ref"), env=environment(root, 3)), None

    scenarios: dict[str, Scenario] = {
        "cp -al": cp_al,
        "rsync --link-dest": rsync_link_dest,
        "hardsnap apply": hardsnap_second,
    }
    if walking_plan:
        scenarios["hardsnap plan (walks)"] = hardsnap_plan
    return scenarios


def settled() -> dict[str, Scenario]:
    """What a timer every 5 minutes does: the window already has a snapshot."""

    def plan_settled(root: Path) -> Measurement:
        return *run(hardsnap(root, "plan", "ref"), env=environment(root, 1)), None

    def apply_settled(root: Path) -> Measurement:
        return *run(hardsnap(root, "apply", "ref"), env=environment(root, 1)), None

    return {"hardsnap plan (settled)": plan_settled, "hardsnap apply (settled)": apply_settled}


def measure(
    title: str, scenarios: dict[str, Scenario], root: Path, rounds: int, anchors: list[str]
) -> dict[str, Sample]:
    samples = {name: Sample() for name in scenarios}
    for _ in range(rounds):
        for name, scenario in scenarios.items():  # interleaved: one of each per round
            seconds, rss, added = scenario(root)
            samples[name].seconds.append(seconds)
            samples[name].rss_kib.append(rss)
            if added is not None:
                samples[name].added.append(added)
    values = {anchor: samples[anchor].median() for anchor in anchors}
    print(title, flush=True)
    for name, sample in samples.items():
        print(sample.line(name, values), flush=True)
    return samples


SCENARIOS = ("first", "unchanged", "changed", "settled", "large", "reflink")


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
    parser.add_argument("--large-files", type=int, default=40)
    parser.add_argument(
        "--image-mib", type=int, default=0, help="loop image size (default: sized to the tree)"
    )
    options = parser.parse_args()
    large_mib = (25, 50)
    if options.smoke:
        options.files, options.rounds, options.large_files, large_mib = 400, 1, 4, (1, 2)
    chosen = set(options.scenarios.split(","))
    if chosen - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(chosen - set(SCENARIOS))}; known: {SCENARIOS}")

    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="hardsnap-bench-"))
    images = not options.smoke and os.geteuid() == 0 and shutil.which("mkfs.ext4") is not None
    print(f"{options.rounds} rounds, medians (min-max); timings are whole processes")
    try:
        if chosen & {"first", "unchanged", "changed", "settled"}:
            many_files(workdir, options, chosen, images)
        if "large" in chosen:
            large_files(workdir, options, large_mib, "ext4" if images else None)
        if "reflink" in chosen:
            if images and shutil.which("mkfs.xfs"):
                large_files(workdir, options, large_mib, "xfs")
            else:
                print("reflink: skipped (needs root, a loop image and mkfs.xfs)")
    finally:
        if not options.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


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


def many_files(workdir: Path, options: argparse.Namespace, chosen: set[str], images: bool) -> None:
    size = options.image_mib or max(512, options.files * 9 * 6 // 1024 + 1024)
    with filesystem(workdir, "ext4" if images else None, size) as (root, where):
        total = make_tree(
            root / "src", options.files, options.per_directory, options.seed, options.largest
        )
        sync()
        print(
            f"tree: {options.files} files in {options.files // options.per_directory} dirs, "
            f"{total / (1 << 20):.0f} MiB, on {where}"
        )
        if "first" in chosen:
            measure(
                "first snapshot",
                first_snapshot("src"),
                root,
                options.rounds,
                ["cp -a (+sync)", "rsync -a (+sync)"],
            )
            remove(root / "cp")
            remove(root / "rs")
            remove(root / "hs-first")
        # The reference for the second snapshot, made by hardsnap itself.
        run(hardsnap(root, "apply", "ref"), env=environment(root, 1))
        anchors = ["cp -al", "rsync --link-dest"]
        if "unchanged" in chosen:
            measure(
                "second snapshot, nothing changed",
                second_snapshot(walking_plan=True),
                root,
                options.rounds,
                anchors,
            )
        if "changed" in chosen:
            touch_some(
                root / "src", options.files, options.per_directory, options.seed, 0.01, 0.001
            )
            measure(
                "second snapshot, 1% rewritten and 0.1% added",
                second_snapshot(walking_plan=False),
                root,
                options.rounds,
                anchors,
            )
        if "settled" in chosen:
            measure("window already covered (no walk)", settled(), root, options.rounds, [])


def large_files(
    workdir: Path, options: argparse.Namespace, mib: tuple[int, int], kind: str | None
) -> None:
    """A first snapshot of a few big files: on ext4 against cp -a, on XFS
    with reflink against rsync -a (cp -a reflinks there too)."""
    size = options.image_mib or options.large_files * mib[1] * 5 + 1024
    with filesystem(workdir, kind, size) as (root, where):
        total = make_large_tree(root / "big", options.large_files, options.seed, mib)
        sync()
        print(f"tree: {options.large_files} files, {total / (1 << 20):.0f} MiB, on {where}")
        anchors = ["cp -a (+sync)", "rsync -a (+sync)"]
        title = "first snapshot of big files" + (" (reflinks)" if kind == "xfs" else "")
        measure(title, first_snapshot("big"), root, options.rounds, anchors)


if __name__ == "__main__":
    main()

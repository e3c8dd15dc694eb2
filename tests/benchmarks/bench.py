"""Benchmark hardsnap side by side with cp -al, cp -a and rsync --link-dest.

Generates a deterministic tree (sizes drawn from a skewed distribution, like
real home and /etc trees) on a fresh journaled ext4 loop image, then runs
each scenario for every tool, interleaved, for several rounds, and prints
medians, min-max, ratios to the anchors and peak RSS.

    python tests/benchmarks/bench.py                 # 100k files, 5 rounds
    python tests/benchmarks/bench.py --files 25000 --rounds 3
    python tests/benchmarks/bench.py --smoke         # tiny, no loop image (CI)

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

HARDSNAP = [sys.executable, "-m", "reconcile"]
DAY = "2026-03-{:02d}T06:00:00Z"


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.seconds)

    def line(self, name: str, anchors: dict[str, float]) -> str:
        ratios = "  ".join(
            f"{self.median() / value:5.2f}x {anchor}" for anchor, value in anchors.items() if value
        )
        spread = f"({min(self.seconds):.3f}-{max(self.seconds):.3f})"
        return (
            f"  {name:<34} {self.median():7.3f} s  {spread}"
            f"  rss {max(self.rss_kib) / 1024:6.1f} MiB  {ratios}"
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


def file_size(rng: random.Random) -> int:
    """Skewed sizes: mostly small config-like files, a long tail of big ones."""
    return min(int(rng.lognormvariate(7.6, 1.6)), 64 << 20)


def make_tree(root: Path, files: int, per_directory: int, seed: int) -> int:
    rng = random.Random(seed)
    total = 0
    block = os.urandom(1 << 20)
    for index in range(files):
        directory = root / f"d{index // per_directory:05d}"
        if index % per_directory == 0:
            directory.mkdir(parents=True)
        size = file_size(rng)
        with open(directory / f"f{index:07d}.dat", "wb") as stream:
            left = size
            offset = index % 4096
            while left > 0:
                chunk = block[offset : offset + min(left, len(block) - offset)]
                stream.write(chunk)
                left -= len(chunk)
                offset = 0
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


@contextlib.contextmanager
def ext4_image(workdir: Path, size_mib: int) -> Iterator[Path]:
    """A fresh journaled ext4 loop image mounted under `workdir`."""
    image = workdir / "bench.img"
    mount = workdir / "mnt"
    mount.mkdir()
    with open(image, "wb") as stream:
        stream.truncate(size_mib << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-i", "4096", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        image.unlink()


def remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


# -- scenarios -----------------------------------------------------------------


def config(root: Path, target: str) -> Path:
    path = root / f"hardsnap-{target}.yaml"
    path.write_text(
        "resources:\n"
        f"  - name: bench\n    type: backup\n    source_dir: {root / 'src'}\n"
        f"    target_path: {root / target}\n    min_free_space: 0\n    retain: '3650'\n"
    )
    return path


def hardsnap(root: Path, verb: str, target: str, day: int) -> list[str]:
    return (
        [*HARDSNAP, verb, "-c", str(config(root, target)), "-q"]
        if verb == "apply"
        else [
            *HARDSNAP,
            verb,
            "-c",
            str(config(root, target)),
        ]
    )


def environment(root: Path, day: int) -> dict[str, str]:
    return dict(os.environ, HARDSNAP_NOW=DAY.format(day), HARDSNAP_STATE_DIR=str(root / "state"))


Scenario = Callable[[Path, int], tuple[float, int]]


def first_snapshot(root: Path) -> dict[str, Scenario]:
    """A full copy of the tree, each measured until its data is on disk."""

    def cp_a(root: Path, _: int) -> tuple[float, int]:
        remove(root / "cp")
        started = time.perf_counter()
        _, rss = run(["cp", "-a", str(root / "src"), str(root / "cp")])
        sync()
        return time.perf_counter() - started, rss

    def rsync_a(root: Path, _: int) -> tuple[float, int]:
        remove(root / "rs")
        started = time.perf_counter()
        _, rss = run(["rsync", "-a", f"{root / 'src'}/", f"{root / 'rs'}/"])
        sync()
        return time.perf_counter() - started, rss

    def hardsnap_first(root: Path, round_: int) -> tuple[float, int]:
        remove(root / "hs-first")
        remove(root / "state")
        started = time.perf_counter()
        _, rss = run(hardsnap(root, "apply", "hs-first", 1), env=environment(root, 1))
        sync()
        return time.perf_counter() - started, rss

    return {
        "cp -a (+sync)": cp_a,
        "rsync -a (+sync)": rsync_a,
        "hardsnap apply (+sync)": hardsnap_first,
    }


def second_snapshot(root: Path) -> dict[str, Scenario]:
    """A second snapshot against a first one (set up once by `prepare`)."""

    def cp_al(root: Path, _: int) -> tuple[float, int]:
        remove(root / "cpal")
        return run(["cp", "-al", str(root / "ref" / "2026.060.06.00"), str(root / "cpal")])

    def rsync_link_dest(root: Path, _: int) -> tuple[float, int]:
        remove(root / "rsld")
        reference = root / "ref" / "2026.060.06.00"
        return run(
            ["rsync", "-a", f"--link-dest={reference}", f"{root / 'src'}/", f"{root / 'rsld'}/"]
        )

    def hardsnap_second(root: Path, _: int) -> tuple[float, int]:
        remove(root / "ref" / "2026.061.06.00")
        return run(hardsnap(root, "apply", "ref", 2), env=environment(root, 2))

    def hardsnap_plan(root: Path, _: int) -> tuple[float, int]:
        # Day 3 has no snapshot yet: the plan walks the tree to predict it.
        return run(hardsnap(root, "plan", "ref", 3), env=environment(root, 3))

    return {
        "cp -al": cp_al,
        "rsync --link-dest": rsync_link_dest,
        "hardsnap apply": hardsnap_second,
        "hardsnap plan (walks)": hardsnap_plan,
    }


def settled(root: Path) -> dict[str, Scenario]:
    """What a timer every 5 minutes does: the window already has a snapshot."""

    def plan_settled(root: Path, _: int) -> tuple[float, int]:
        return run(hardsnap(root, "plan", "ref", 1), env=environment(root, 1))

    def apply_settled(root: Path, _: int) -> tuple[float, int]:
        return run(hardsnap(root, "apply", "ref", 1), env=environment(root, 1))

    return {"hardsnap plan (settled)": plan_settled, "hardsnap apply (settled)": apply_settled}


def measure(
    title: str, scenarios: dict[str, Scenario], root: Path, rounds: int, anchors: list[str]
) -> dict[str, Sample]:
    samples = {name: Sample() for name in scenarios}
    for round_ in range(rounds):
        for name, scenario in scenarios.items():  # interleaved: one of each per round
            seconds, rss = scenario(root, round_)
            samples[name].seconds.append(seconds)
            samples[name].rss_kib.append(rss)
    values = {anchor: samples[anchor].median() for anchor in anchors}
    print(title)
    for name, sample in samples.items():
        print(sample.line(name, values))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--per-directory", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20260329)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny tree, 1 round, no loop image")
    parser.add_argument(
        "--image-mib", type=int, default=0, help="loop image size (default: sized to the tree)"
    )
    options = parser.parse_args()
    if options.smoke:
        options.files, options.rounds = 400, 1

    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="hardsnap-bench-"))
    use_image = not options.smoke and os.geteuid() == 0 and shutil.which("mkfs.ext4")
    with contextlib.ExitStack() as stack:
        if use_image:
            size = options.image_mib or max(512, options.files * 9 * 6 // 1024 + 1024)
            root = stack.enter_context(ext4_image(workdir, size))
            where = f"a fresh journaled ext4 loop image ({size} MiB)"
        else:
            root = workdir
            where = f"{workdir} as it is (no loop image: --smoke, not root, or no mkfs.ext4)"
        total = make_tree(root / "src", options.files, options.per_directory, options.seed)
        sync()
        print(
            f"tree: {options.files} files in {options.files // options.per_directory} dirs, "
            f"{total / (1 << 20):.0f} MiB, on {where}; {options.rounds} rounds, medians"
        )
        measure(
            "first snapshot",
            first_snapshot(root),
            root,
            options.rounds,
            ["cp -a (+sync)", "rsync -a (+sync)"],
        )
        remove(root / "cp")
        remove(root / "rs")
        # The reference for the second snapshot, made by hardsnap itself.
        run(hardsnap(root, "apply", "ref", 1), env=environment(root, 1))
        measure(
            "second snapshot, nothing changed",
            second_snapshot(root),
            root,
            options.rounds,
            ["cp -al", "rsync --link-dest"],
        )
        touch_some(root / "src", options.files, options.per_directory, options.seed, 0.01, 0.001)
        measure(
            "second snapshot, 1% rewritten and 0.1% added",
            {k: v for k, v in second_snapshot(root).items() if k != "hardsnap plan (walks)"},
            root,
            options.rounds,
            ["cp -al", "rsync --link-dest"],
        )
        measure("window already covered (no walk)", settled(root), root, options.rounds, [])
        if not use_image:
            shutil.rmtree(root / "src", ignore_errors=True)
    if not options.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

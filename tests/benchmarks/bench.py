"""Benchmark hardsnap side by side with cp -al, cp -a, rsync --link-dest and rsync -a.

Generates deterministic trees (sizes drawn from a skewed distribution, like
real home and /etc trees) in two shapes, "spread" over 42 top-level
directories and "nested" all under home/user, on a fresh journaled ext4
loop image; runs each scenario for every tool, interleaved, for several
rounds; prints the machine, filesystem and tool versions, then medians,
min-max, CPU seconds, peak memory (summed PSS over the process and its
workers) and ratios to the anchors, with the anchors' raw seconds.

    python tests/benchmarks/bench.py                 # 100k files, 5 rounds
    python tests/benchmarks/bench.py --files 25000 --rounds 3
    python tests/benchmarks/bench.py --smoke         # tiny, no loop image (CI)
    python tests/benchmarks/bench.py --files 400000 --scenarios unchanged --shapes nested

Scenarios: startup (the interpreter, the libraries hardsnap is built on,
and an apply of a one-file tree: what every run pays); then, for each
shape: first, unchanged, changed, scaling (an unchanged
snapshot under `taskset -c 0` and `taskset -c 0,1`, beside two `cp -al` of
the tree's halves at once under the same: what a second CPU gives this
machine for the same work done in C), jobs (with --jobs 1, 2
and 4), fidelity (symlinks and special files kept, one_file_system on, or
not), settled; then large (40 files of 25-50 MiB, first snapshot) and
reflink (the same on XFS with reflink, against rsync -a, with the space
each copy took).

Needs root for the loop image (else it runs in --workdir as it is, and says
so). Timings are wall-clock seconds of the whole process, start-up included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from measure import Run, machine, run

HARDSNAP = [sys.executable, "-m", "hardsnap"]
DAY = "2026-03-{:02d}T06:00:00Z"
REFERENCE, SECOND = "2026.060.06.00", "2026.061.06.00"


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


# The tree's shapes: "spread" over 42 top-level directories (like /), or
# "nested", the same directories all under home/user (like a home tree),
# which a walk that splits work by top-level directory cannot share out.
SHAPES = ("spread", "nested")
TOP_DIRECTORIES = 42


def directory_of(index: int, per_directory: int, shape: str) -> str:
    """The relative directory of file `index`: 42 top-level directories,
    each with 8 subdirectories holding the leaves."""
    number = index // per_directory
    relative = f"top{number % TOP_DIRECTORIES:02d}/sub{number // TOP_DIRECTORIES % 8}/d{number:05d}"
    return relative if shape == "spread" else f"home/user/{relative}"


def make_tree(
    root: Path, files: int, per_directory: int, seed: int, largest: int, shape: str
) -> int:
    rng = random.Random(seed)
    total = 0
    block = os.urandom(1 << 20)
    for index in range(files):
        directory = root / directory_of(index, per_directory, shape)
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
    root: Path, files: int, per_directory: int, seed: int, rewrite: float, add: float, shape: str
) -> None:
    """Rewrite `rewrite` of the files (new content and mtime), add `add` more."""
    rng = random.Random(seed)
    for index in rng.sample(range(files), int(files * rewrite)):
        path = root / directory_of(index, per_directory, shape) / f"f{index:07d}.dat"
        path.write_bytes(os.urandom(rng.randint(100, 20000)))
    for extra in range(int(files * add)):
        index = rng.randrange(files)
        path = root / directory_of(index, per_directory, shape) / f"new{seed}-{extra}.dat"
        path.write_bytes(os.urandom(rng.randint(100, 20000)))


# -- the filesystem ------------------------------------------------------------


MKFS = {
    "ext4": ["mkfs.ext4", "-q", "-F", "-i", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0"],
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
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# -- scenarios -----------------------------------------------------------------


# What the fidelity scenario turns on: everything a restore of a whole
# machine needs kept, and the mount table read for one_file_system.
KEEP_ALL = "    symlinks: keep\n    special_files: keep\n    one_file_system: true\n"


def config(root: Path, target: str, source: str, settings: str = "") -> Path:
    path = root / f"hardsnap-{target}{'-keep' if settings else ''}.yaml"
    path.write_text(
        "resources:\n"
        f"  - name: bench\n    type: backup\n    source_dir: {root / source}\n"
        f"    target_path: {root / target}\n    retain: '3650'\n{settings}"
    )
    return path


def hardsnap(
    root: Path, verb: str, target: str, source: str, *options: str, settings: str = ""
) -> list[str]:
    quiet = ["-q"] if verb == "apply" else []
    path = config(root, target, source, settings)
    return [*HARDSNAP, verb, "-c", str(path), *quiet, *options]


def environment(state: Path, day: int) -> dict[str, str]:
    variables = dict(os.environ, HARDSNAP_NOW=DAY.format(day), HARDSNAP_STATE_DIR=str(state))
    # Run from compiled bytecode, as a pip install leaves it (the first run
    # writes it), not compiled afresh at every start.
    variables.pop("PYTHONDONTWRITEBYTECODE", None)
    return variables


# A run, and the space it added (None: not measured).
Measurement = tuple[Run, int | None]
Scenario = Callable[[Path], Measurement]


def first_snapshot(source: str) -> dict[str, Scenario]:
    """A full copy of the tree in `source`, each measured until its data is
    on disk, with the space it took."""

    def until_synced(root: Path, copy: str, command: list[str], **kwargs: object) -> Measurement:
        remove(root / copy)
        sync()
        before = used_bytes(root)
        started = time.perf_counter()
        measured = run(command, **kwargs)  # type: ignore[arg-type]
        sync()
        elapsed = time.perf_counter() - started
        return Run(elapsed, measured.cpu, measured.pss_kib), used_bytes(root) - before

    def cp_a(root: Path) -> Measurement:
        return until_synced(root, "cp", ["cp", "-a", str(root / source), str(root / "cp")])

    def rsync_a(root: Path) -> Measurement:
        command = ["rsync", "-a", f"{root / source}/", f"{root / 'rs'}/"]
        return until_synced(root, "rs", command)

    def hardsnap_first(root: Path) -> Measurement:
        state = root / f"state-first-{source}"
        remove(state)
        command = hardsnap(root, "apply", "hs-first", source)
        return until_synced(root, "hs-first", command, env=environment(state, 1))

    return {
        "cp -a (+sync)": cp_a,
        "rsync -a (+sync)": rsync_a,
        "hardsnap apply (+sync)": hardsnap_first,
    }


def second_snapshot(source: str, walking_plan: bool) -> dict[str, Scenario]:
    """A second snapshot against a first one (made once by `reference`)."""
    target = f"ref-{source}"

    def cp_al(root: Path) -> Measurement:
        remove(root / "cpal")
        sync()
        return run(["cp", "-al", str(root / target / REFERENCE), str(root / "cpal")]), None

    def rsync_link_dest(root: Path) -> Measurement:
        remove(root / "rsld")
        sync()
        command = [
            "rsync",
            "-a",
            f"--link-dest={root / target / REFERENCE}",
            f"{root / source}/",
            f"{root / 'rsld'}/",
        ]
        return run(command), None

    def hardsnap_second(root: Path) -> Measurement:
        state = undo_second(root, source)
        return run(hardsnap(root, "apply", target, source), env=environment(state, 2)), None

    def hardsnap_plan(root: Path) -> Measurement:
        state = undo_second(root, source)
        return run(hardsnap(root, "plan", target, source), env=environment(state, 2)), None

    scenarios: dict[str, Scenario] = {
        "cp -al": cp_al,
        "rsync --link-dest": rsync_link_dest,
        "hardsnap apply": hardsnap_second,
    }
    if walking_plan:
        scenarios["hardsnap plan (walks)"] = hardsnap_plan
    return scenarios


def scaling(source: str) -> dict[str, Scenario]:
    """An unchanged second snapshot on one CPU, then on two."""
    target = f"ref-{source}"

    def on(cpus: str) -> Scenario:
        def scenario(root: Path) -> Measurement:
            state = undo_second(root, source)
            command = ["taskset", "-c", cpus, *hardsnap(root, "apply", target, source)]
            return run(command, env=environment(state, 2)), None

        return scenario

    def halves_on(cpus: str) -> Scenario:
        def scenario(root: Path) -> Measurement:
            commands = []
            for number, half in enumerate(halves(root / target / REFERENCE)):
                copy = root / f"cpal-half{number}"
                remove(copy)
                copy.mkdir()
                commands.append(shlex.join(["cp", "-al", *map(str, half), str(copy)]))
            sync()
            script = " & ".join(commands) + " & wait"
            return run(["taskset", "-c", cpus, "sh", "-c", script]), None

        return scenario

    return {
        "hardsnap on CPU 0": on("0"),
        "hardsnap on CPUs 0,1": on("0,1"),
        # What two CPUs give this machine and filesystem for the same work
        # done by C: the tree in two halves, each linked by a cp -al, both
        # at once.
        "cp -al in halves on CPU 0": halves_on("0"),
        "cp -al in halves on CPUs 0,1": halves_on("0,1"),
    }


def halves(tree: Path) -> tuple[list[Path], list[Path]]:
    """The entries of the first directory below `tree` that has more than
    one, in two halves."""
    entries = sorted(tree.iterdir())
    while len(entries) == 1 and entries[0].is_dir():
        entries = sorted(entries[0].iterdir())
    middle = len(entries) // 2
    return entries[:middle], entries[middle:]


def jobs(source: str) -> dict[str, Scenario]:
    """An unchanged second snapshot with 1, 2 and 4 worker processes: the
    memory each worker adds."""
    target = f"ref-{source}"

    def with_jobs(count: int) -> Scenario:
        def scenario(root: Path) -> Measurement:
            state = undo_second(root, source)
            command = hardsnap(root, "apply", target, source, "--jobs", str(count))
            return run(command, env=environment(state, 2)), None

        return scenario

    return {f"hardsnap --jobs {count}": with_jobs(count) for count in (1, 2, 4)}


def fidelity(source: str) -> dict[str, Scenario]:
    """An unchanged second snapshot with the defaults, and with symlinks and
    special files kept and one_file_system on: what that work costs."""
    target = f"ref-{source}"

    def keeping(settings: str) -> Scenario:
        def scenario(root: Path) -> Measurement:
            state = undo_second(root, source)
            command = hardsnap(root, "apply", target, source, settings=settings)
            return run(command, env=environment(state, 2)), None

        return scenario

    return {"hardsnap (defaults)": keeping(""), "hardsnap (keep all, one fs)": keeping(KEEP_ALL)}


def reference(root: Path, source: str) -> None:
    """The first snapshot the second ones link to, and the state that records
    it (kept aside: each second snapshot starts from it)."""
    state = root / f"state-{source}"
    run(hardsnap(root, "apply", f"ref-{source}", source), env=environment(state, 1))
    shutil.copytree(state, root / f"state-{source}.saved", symlinks=True)


def undo_second(root: Path, source: str) -> Path:
    """Remove the second snapshot (and its manifest) a run made; give back
    the state as it was after the reference; return the state directory."""
    target = root / f"ref-{source}"
    remove(target / SECOND)
    remove(target / ".hardsnap-manifests" / SECOND)
    state = root / f"state-{source}"
    remove(state)
    shutil.copytree(root / f"state-{source}.saved", state, symlinks=True)
    # Every run starts with nothing left to write: hardsnap flushes the
    # filesystem before it names a snapshot, and must not pay for the
    # removal before it (cp and rsync, which never flush, would not).
    sync()
    return state


def settled(source: str) -> dict[str, Scenario]:
    """What a timer every 5 minutes does: the window already has a snapshot."""
    target = f"ref-{source}"
    state_of = lambda root: root / f"state-{source}"  # noqa: E731

    def plan_settled(root: Path) -> Measurement:
        command = hardsnap(root, "plan", target, source)
        return run(command, env=environment(state_of(root), 1)), None

    def apply_settled(root: Path) -> Measurement:
        command = hardsnap(root, "apply", target, source)
        return run(command, env=environment(state_of(root), 1)), None

    return {"hardsnap plan (settled)": plan_settled, "hardsnap apply (settled)": apply_settled}


def startup() -> dict[str, Scenario]:
    """What every run pays before and around its walk: the interpreter, the
    libraries hardsnap is built on, and a whole apply of a one-file tree."""

    def python(root: Path) -> Measurement:
        return run([sys.executable, "-c", "pass"], env=environment(root, 1)), None

    def libraries(root: Path) -> Measurement:
        command = [sys.executable, "-c", "import typer, networkx, ruamel.yaml, diskcache"]
        return run(command, env=environment(root, 1)), None

    def one_file(root: Path) -> Measurement:
        remove(root / "one-target")
        remove(root / "state-one")
        (root / "one").mkdir(exist_ok=True)
        (root / "one" / "file").write_bytes(b"one")
        command = hardsnap(root, "apply", "one-target", "one")
        return run(command, env=environment(root / "state-one", 1)), None

    return {
        "python -c pass": python,
        "import typer, networkx, ...": libraries,
        "hardsnap apply (one file)": one_file,
    }


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
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated")
    parser.add_argument("--large-files", type=int, default=40)
    parser.add_argument(
        "--image-mib", type=int, default=0, help="loop image size (default: sized to the trees)"
    )
    options = parser.parse_args()
    large_mib = (25, 50)
    if options.smoke:
        options.files, options.rounds, options.large_files, large_mib = 400, 1, 4, (1, 2)
    chosen = set(options.scenarios.split(","))
    if chosen - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(chosen - set(SCENARIOS))}; known: {SCENARIOS}")
    shapes = options.shapes.split(",")
    if set(shapes) - set(SHAPES):
        parser.error(f"unknown shapes {sorted(set(shapes) - set(SHAPES))}; known: {SHAPES}")

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


def many_files(
    workdir: Path,
    options: argparse.Namespace,
    chosen: set[str],
    shapes: list[str],
    images: bool,
) -> None:
    size = options.image_mib or max(512, len(shapes) * options.files * 9 * 6 // 1024 + 1024)
    with filesystem(workdir, "ext4" if images else None, size) as (root, where):
        totals = {
            shape: make_tree(
                root / shape,
                options.files,
                options.per_directory,
                options.seed,
                options.largest,
                shape,
            )
            for shape in shapes
        }
        sync()
        for line in machine(root, HARDSNAP):
            print(line)
        for shape in shapes:
            print(
                f"tree {shape!r}: {options.files} files in {options.files // options.per_directory}"
                f" dirs, {totals[shape] / (1 << 20):.0f} MiB, on {where}",
                flush=True,
            )
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

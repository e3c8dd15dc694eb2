"""The benchmark's scenarios: for each, the commands of every tool, each
measured as a whole process on a tree the scenario prepares."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from measure import Run, run
from trees import remove, used_bytes

HARDSNAP = [sys.executable, "-m", "hardsnap"]
DAY = "2026-03-{:02d}T06:00:00Z"
REFERENCE, SECOND = "2026.060.06.00", "2026.061.06.00"


def sync() -> None:
    os.sync()


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


def audits(source: str) -> dict[str, Scenario]:
    """What reads every snapshot of a target: diff of the two, verify of
    both (metadata, then contents too), state show (which measures what
    pruning each would free). The second snapshot must exist."""
    target = f"ref-{source}"

    def command(verb: str, *options: str) -> Scenario:
        def scenario(root: Path) -> Measurement:
            words = verb.split()
            arguments = [*words, "bench", *options] if words[0] != "state" else words
            path = config(root, target, source)
            state = root / f"state-{source}"
            return run([*HARDSNAP, *arguments, "-c", str(path)], env=environment(state, 2)), None

        return scenario

    return {
        "hardsnap diff": command("diff"),
        "hardsnap verify": command("verify"),
        "hardsnap verify --content": command("verify", "--content"),
        "hardsnap state show": command("state show"),
    }

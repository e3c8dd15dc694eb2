"""The benchmark's trees, made deterministically from a seed, and the fresh
loop-mounted filesystems they are made on."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

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
# A real tree: a copy of this machine's /usr (its own mix of sizes, names,
# hard links and symlinks), asked for with --shapes usr.
REAL_TREES = {"usr": Path("/usr")}
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


def copy_real_tree(root: Path, shape: str) -> tuple[int, int, int]:
    """Copy the real tree `shape` to `root` (cp -a, hard links and all);
    return its regular files, directories and bytes."""
    subprocess.run(["cp", "-a", "--", str(REAL_TREES[shape]), str(root)], check=True)
    files = directories = total = 0
    for directory, names, found in os.walk(root):
        directories += len(names)
        for name in found:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(directory, name))
                if stat.S_ISREG(info.st_mode):
                    files += 1
                    total += info.st_size
    return files, directories, total


def du_bytes(path: Path) -> int:
    """The bytes `du` says a tree takes."""
    done = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=False)
    return int(done.stdout.split()[0]) if done.stdout else 0


def touch_real_tree(root: Path, seed: int, rewrite: float, add: float) -> None:
    """Rewrite `rewrite` of a real tree's regular files, add `add` more."""
    rng = random.Random(seed)
    files = sorted(
        os.path.join(directory, name)
        for directory, _, names in os.walk(root)
        for name in names
        if stat.S_ISREG(os.lstat(os.path.join(directory, name)).st_mode)
    )
    for path in rng.sample(files, int(len(files) * rewrite)):
        Path(path).write_bytes(os.urandom(rng.randint(100, 20000)))
    for extra in range(int(len(files) * add)):
        directory = os.path.dirname(rng.choice(files))
        Path(directory, f"new{seed}-{extra}.dat").write_bytes(os.urandom(rng.randint(100, 20000)))


def touch_some(
    root: Path, files: int, per_directory: int, seed: int, rewrite: float, add: float, shape: str
) -> None:
    """Rewrite `rewrite` of the files (new content and mtime), add `add` more."""
    if shape in REAL_TREES:
        touch_real_tree(root, seed, rewrite, add)
        return
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


def make_wide_tree(root: Path, entries: int) -> None:
    """One directory of `entries` empty files and one of as many symlinks."""
    for kind in ("files", "links"):
        (root / kind).mkdir(parents=True)
        fd = os.open(root / kind, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for index in range(entries):
                if kind == "files":
                    os.close(os.open(f"f{index:07d}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
                else:
                    os.symlink("nowhere", f"l{index:07d}", dir_fd=fd)
        finally:
            os.close(fd)

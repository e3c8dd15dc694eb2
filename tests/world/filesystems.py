"""Real NTFS, exFAT, XFS and btrfs filesystems for tests: small images, loop-mounted as root.

hardsnap probes what a target filesystem keeps (SPEC "Platforms and target
filesystems"); these helpers give tests the FUSE drivers a Linux user really
has: NTFS through ntfs-3g and exFAT through exfat-fuse.

    with ntfs_mount(tmp_path, permissions=True) as target:
        ...  # target is the mount point, a fresh NTFS filesystem

Each helper makes `tmp_path/NAME.img` (64 MiB, sparse) unless it exists, mounts
it on `tmp_path/NAME` and unmounts it when the block ends, even on a failing
test. The image is kept: entering a helper again with the same name mounts it
again as it is (to see what survives a remount, or what other mount options
show of it). Where a tool, /dev/fuse, root or the loop mount is missing, the
test is skipped with the reason. Debian packages: ntfs-3g, exfat-fuse,
exfatprogs (mkfs.exfat), fuse3 (fusermount), mount (util-linux).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

IMAGE_MIB = 64


@contextmanager
def ntfs_mount(
    tmp_path: Path,
    permissions: bool = False,
    umask: str | None = None,
    name: str = "ntfs",
    options: Sequence[str] = (),
) -> Iterator[Path]:
    """An NTFS filesystem (mkntfs, mounted by ntfs-3g) on `tmp_path/name`.

    By default ntfs-3g keeps no owners or modes (every entry is root's, 0777)
    and chmod/chown succeed without effect; `permissions=True` keeps them;
    `umask="077"` shows every entry as 0700. `options` are more ntfs-3g
    options, e.g. "windows_names", "acl", "streams_interface=none".
    """
    _require({"mkntfs": "ntfs-3g", "ntfs-3g": "ntfs-3g"})
    chosen = ["loop", *(["permissions"] if permissions else [])]
    chosen += [f"umask={umask}"] if umask is not None else []
    image = _image(tmp_path, name, ["mkntfs", "-F", "-Q", "-q"])
    with _mounted(image, tmp_path / name, ["-t", "ntfs-3g", "-o", ",".join([*chosen, *options])]):
        yield tmp_path / name


@contextmanager
def exfat_mount(tmp_path: Path, umask: str | None = None, name: str = "exfat") -> Iterator[Path]:
    """An exFAT filesystem (mkfs.exfat, mounted by exfat-fuse) on `tmp_path/name`.

    exfat-fuse keeps no hard links, symlinks, FIFOs, owners, modes or xattrs,
    folds case, and keeps mtimes to the second; `umask` is its mount option.
    """
    _require({"mkfs.exfat": "exfatprogs", "mount.exfat-fuse": "exfat-fuse"})
    image = _image(tmp_path, name, ["mkfs.exfat"])
    chosen = ["loop", *([f"umask={umask}"] if umask is not None else [])]
    with _mounted(image, tmp_path / name, ["-t", "exfat-fuse", "-o", ",".join(chosen)]):
        yield tmp_path / name


@contextmanager
def xfs_mount(tmp_path: Path, name: str = "xfs") -> Iterator[Path]:
    """A fresh XFS filesystem with reflinks (mkfs.xfs -m reflink=1) on `tmp_path/name`."""
    _require({"mkfs.xfs": "xfsprogs"}, fuse=False)
    image = _image(tmp_path, name, ["mkfs.xfs", "-q", "-m", "reflink=1"], mib=512)
    with _mounted(image, tmp_path / name, ["-o", "loop"]):
        yield tmp_path / name


@contextmanager
def btrfs_mount(tmp_path: Path, name: str = "btrfs") -> Iterator[Path]:
    """A fresh btrfs filesystem (mkfs.btrfs) on `tmp_path/name`."""
    _require({"mkfs.btrfs": "btrfs-progs", "btrfs": "btrfs-progs"}, fuse=False)
    image = _image(tmp_path, name, ["mkfs.btrfs", "-q"], mib=256)
    with _mounted(image, tmp_path / name, ["-o", "loop"]):
        yield tmp_path / name


def btrfs_subvolume(path: Path) -> Path:
    """Make `path` a btrfs subvolume (btrfs subvolume create)."""
    subprocess.run(["btrfs", "subvolume", "create", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture
def ntfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh ntfs-3g mount with default options (no owners or modes kept)."""
    with ntfs_mount(tmp_path) as point:
        yield point


@pytest.fixture
def ntfs_permissions(tmp_path: Path) -> Iterator[Path]:
    """A fresh ntfs-3g mount with `-o permissions` (owners and modes kept)."""
    with ntfs_mount(tmp_path, permissions=True, name="ntfs-permissions") as point:
        yield point


@pytest.fixture
def exfat(tmp_path: Path) -> Iterator[Path]:
    """A fresh exfat-fuse mount."""
    with exfat_mount(tmp_path) as point:
        yield point


def unmount(point: Path) -> None:
    """Unmount `point` whatever state its FUSE daemon is in: umount, then
    fusermount -u, then a lazy umount -l (busy, or the daemon died)."""
    for command in (["umount"], ["fusermount", "-u"], ["fusermount3", "-u"], ["umount", "-l"]):
        if not is_mounted(point):
            return
        try:
            subprocess.run([*command, str(point)], capture_output=True, check=False)
        except FileNotFoundError:
            continue
    if is_mounted(point):
        raise RuntimeError(f"{point} is still mounted after umount -l")


def is_mounted(point: Path) -> bool:
    """Whether `point` is a mount point in /proc/self/mountinfo (os.path.ismount
    says False for a FUSE mount whose daemon died: its lstat fails)."""
    wanted = os.path.join(os.path.realpath(point.parent), point.name)  # no lstat of point
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as lines:
        for line in lines:
            mount_point = line.split()[4]
            if _unescape(mount_point) == wanted:
                return True
    return False


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def _require(tools: dict[str, str], fuse: bool = True) -> None:
    """Skip unless running as root with each tool (key) on PATH (a missing
    tool names its Debian package, the value) and, with `fuse`, a usable
    /dev/fuse."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem image needs root")
    for tool, package in tools.items():
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install {package})")
    if not fuse:
        return
    try:
        with open("/dev/fuse", "r+b", buffering=0):
            pass
    except OSError as error:
        pytest.skip(f"FUSE is not usable here: /dev/fuse: {error.strerror}")


def _image(tmp_path: Path, name: str, mkfs: list[str], mib: int = IMAGE_MIB) -> Path:
    """tmp_path/name.img, made by mkfs unless it is already there."""
    image = tmp_path / f"{name}.img"
    if image.exists():
        return image
    with open(image, "wb") as stream:
        stream.truncate(mib << 20)
    made = subprocess.run([*mkfs, str(image)], capture_output=True, text=True)
    if made.returncode != 0:
        image.unlink()
        pytest.skip(f"{mkfs[0]} refused: {made.stderr.strip() or made.returncode}")
    return image


@contextmanager
def _mounted(image: Path, point: Path, arguments: list[str]) -> Iterator[None]:
    point.mkdir(exist_ok=True)
    command = ["mount", *arguments, str(image), str(point)]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command (apt-get install mount)")
    if done.returncode != 0 or not is_mounted(point):
        unmount(point)
        pytest.skip(f"{' '.join(command[:-2])} refused: {done.stderr.strip() or done.returncode}")
    try:
        yield
    finally:
        unmount(point)

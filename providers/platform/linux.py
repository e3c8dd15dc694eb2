"""Linux: the kernel's fast paths, each chosen once by whether this
kernel and C library have it, else the portable path of base.py.

copy_file_range (reflinks on XFS and btrfs), syncfs, prctl(PDEATHSIG),
sched_getaffinity, xattrs (ACLs among them), fstatfs's
filesystem magic, and what /proc tells: mounts, flock holders, commands.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import struct
import sys

from hardsnap.providers.platform import base, libc
from hardsnap.providers.platform.base import (
    clone_at as clone_at,
)
from hardsnap.providers.platform.base import (
    next_data as next_data,
)
from hardsnap.providers.platform.base import (
    next_hole as next_hole,
)

# Imported on this system alone (the type checker reads no further elsewhere).
assert sys.platform.startswith("linux")

_COPY_FILE_RANGE = getattr(os, "copy_file_range", None)
_SCHED_GETAFFINITY = getattr(os, "sched_getaffinity", None)
_LISTXATTR = getattr(os, "listxattr", None)
_GETXATTR = getattr(os, "getxattr", None)
_SETXATTR = getattr(os, "setxattr", None)
_SYNCFS = libc.function("syncfs")
_PRCTL = libc.function("prctl")
_FSTATFS = libc.function("fstatfs")
PR_SET_PDEATHSIG = 1
MOUNTINFO = "/proc/self/mountinfo"

# fstatfs's f_type of the filesystems hardsnap names or must not walk into
# (linux/magic.h).
MAGIC = {
    0x0187: "autofs",
    0x1CD1: "devpts",
    0x9FA0: "proc",
    0xEF53: "ext4",
    0x4D44: "vfat",
    0x6969: "nfs",
    0x9660: "iso9660",
    0x27E0EB: "cgroup",
    0x01021994: "tmpfs",
    0x19800202: "mqueue",
    0x2011BAB0: "exfat",
    0x2FC12FC1: "zfs",
    0x42494E4D: "binfmt_misc",
    0x5346544E: "ntfs",
    0x58465342: "xfs",
    0x61756673: "aufs",
    0x6165676C: "pstore",
    0x62656570: "configfs",
    0x62656572: "sysfs",
    0x63677270: "cgroup2",
    0x64626720: "debugfs",
    0x65735543: "fusectl",
    0x65735546: "fuse",
    0x67596969: "rpc_pipefs",
    0x6E736673: "nsfs",
    0x73636673: "securityfs",
    0x73717368: "squashfs",
    0x7366746E: "ntfs3",
    0x74726163: "tracefs",
    0x794C7630: "overlay",
    0x858458F6: "ramfs",
    0x9123683E: "btrfs",
    0x958458F6: "hugetlbfs",
    0xCAFE4A11: "bpf",
    0xDE5E81E4: "efivarfs",
    0xF2F52010: "f2fs",
    0xF97CFF8C: "selinuxfs",
    0xFE534D42: "smb2",
    0xFF534D42: "cifs",
}


def copy_in_kernel(source_fd: int, target_fd: int, offset: int, length: int) -> int | None:
    if _COPY_FILE_RANGE is None:
        return None
    count: int = _COPY_FILE_RANGE(source_fd, target_fd, length, offset, offset)
    return count


def syncs_whole_filesystem() -> bool:
    return _SYNCFS is not None


def sync_filesystem(fd: int) -> None:
    if _SYNCFS is None:
        base.sync_filesystem(fd)
    elif _SYNCFS(fd) != 0:
        os.sync()


def flush_file(fd: int) -> None:
    if _SYNCFS is None:
        os.fsync(fd)


def has_extended_attributes() -> bool:
    return libc.found(_LISTXATTR, _GETXATTR, _SETXATTR)


def extended_attributes(fd: int) -> dict[str, bytes]:
    if _LISTXATTR is None or _GETXATTR is None:
        return base.extended_attributes(fd)
    return {name: _GETXATTR(fd, name) for name in _LISTXATTR(fd)}


def extended_attribute(fd: int, name: str) -> bytes | None:
    if _GETXATTR is None:
        return base.extended_attribute(fd, name)
    try:
        value: bytes = _GETXATTR(fd, name)
    except OSError as error:
        if error.errno in (errno.ENODATA, *base.NOT_SUPPORTED):
            return None
        raise
    return value


def set_extended_attribute(fd: int, name: str, value: bytes) -> None:
    if _SETXATTR is None:
        base.set_extended_attribute(fd, name, value)
    else:
        _SETXATTR(fd, name, value)


def death_signal() -> bool:
    if _PRCTL is None:
        return False
    return bool(_PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0)


def close_descriptors_except(keep: set[int]) -> None:
    # Listed from /proc rather than closed by close_range or up to the
    # getrlimit bound: a unit's system call filter may refuse both.
    base.close_descriptors_except(keep, "/proc/self/fd")


def cpu_count() -> int:
    if _SCHED_GETAFFINITY is None:
        return base.cpu_count()
    return len(_SCHED_GETAFFINITY(0))


def _mounts() -> list[tuple[int, str, str]] | None:
    """(device number, mount point, filesystem type) of each mount, from
    mountinfo lines such as
    `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`;
    None when there is no mountinfo."""
    mounts: list[tuple[int, str, str]] = []
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.split()
                with contextlib.suppress(ValueError, IndexError):
                    major, minor = (int(part) for part in fields[2].split(":"))
                    filesystem = fields[fields.index("-") + 1]
                    point = fields[4].replace("\\040", " ")
                    mounts.append((os.makedev(major, minor), point, filesystem))
    except OSError:
        return None
    return mounts


def mount_types() -> dict[int, str] | None:
    mounts = _mounts()
    if mounts is None:
        return None
    types: dict[int, str] = {}
    for device, _, filesystem in mounts:
        types.setdefault(device, filesystem)
    return types


class _StatFs(ctypes.Structure):
    # f_type is the first field of struct statfs on every Linux; the rest
    # is room for the whole structure.
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 256)]


def filesystem_type(fd: int) -> str | None:
    found = libc.statfs_of(_FSTATFS, fd, _StatFs)
    if found is None:
        return None
    magic = found.f_type & 0xFFFFFFFF
    return MAGIC.get(magic, f"filesystem 0x{magic:x}")


def describe_filesystem(path: str) -> str:
    """'TYPE at MOUNTPOINT' for the filesystem holding `path`, from
    mountinfo, else as base.py finds it."""
    mounts = _mounts()
    try:
        device = os.stat(path).st_dev
    except OSError:
        return "an unknown filesystem"
    if mounts is None:
        return base.describe_filesystem_by(path, filesystem_type)
    real = os.path.realpath(path)
    best: tuple[str, str] | None = None
    for mounted, point, filesystem in mounts:
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if mounted == device and inside and (best is None or len(point) > len(best[0])):
            best = (point, filesystem)
    if best is None:
        return f"device {os.major(device)}:{os.minor(device)}"
    return f"{best[1]} at {best[0]}"


def lock_holder(fd: int) -> int | None:
    """The pid holding an flock on an open file, from /proc/locks."""
    info = os.fstat(fd)
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == wanted:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None


def process_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as stream:
            return stream.read().strip() or None
    except OSError:
        return None


# btrfs ioctls: _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2) and
# _IOW(0x94, 15, struct btrfs_ioctl_vol_args), both structs 4096 bytes.
_SNAP_CREATE_V2 = 0x50009417
_SNAP_DESTROY = 0x5000940F
_SUBVOL_RDONLY = 1 << 1


def snapshot_subvolume(source_fd: int, directory_fd: int, name: str) -> None:
    """Make `name` in `directory_fd` a read-only snapshot of the btrfs
    subvolume open as `source_fd`: by descriptors, no path followed."""
    encoded = os.fsencode(name)
    if len(encoded) >= 4040 or b"/" in encoded:
        raise OSError(errno.EINVAL, "not a name for a subvolume", name)
    arguments = bytearray(struct.pack("=qQQ32s4040s", source_fd, 0, _SUBVOL_RDONLY, b"", encoded))
    fcntl.ioctl(directory_fd, _SNAP_CREATE_V2, arguments, True)


def delete_subvolume(directory_fd: int, name: str) -> None:
    """Delete the btrfs subvolume `name` of `directory_fd` (EINVAL: it is none)."""
    encoded = os.fsencode(name)
    if len(encoded) >= 4088 or b"/" in encoded:
        raise OSError(errno.EINVAL, "not a name for a subvolume", name)
    fcntl.ioctl(directory_fd, _SNAP_DESTROY, bytearray(struct.pack("=q4088s", 0, encoded)), True)

"""macOS: APFS clones (fclonefileat), F_FULLFSYNC, xattrs and ACLs through
the system's calls, statfs for filesystem types. The rest is base.py's."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import sys

from hardsnap.providers.platform import acl, base, libc
from hardsnap.providers.platform.base import (
    close_descriptors_except as close_descriptors_except,
)
from hardsnap.providers.platform.base import copy_in_kernel as copy_in_kernel
from hardsnap.providers.platform.base import cpu_count as cpu_count
from hardsnap.providers.platform.base import death_signal as death_signal
from hardsnap.providers.platform.base import delete_subvolume as delete_subvolume
from hardsnap.providers.platform.base import extended_attribute as extended_attribute
from hardsnap.providers.platform.base import flush_file as flush_file
from hardsnap.providers.platform.base import lock_holder as lock_holder
from hardsnap.providers.platform.base import mount_types as mount_types
from hardsnap.providers.platform.base import next_data as next_data
from hardsnap.providers.platform.base import next_hole as next_hole
from hardsnap.providers.platform.base import process_name as process_name
from hardsnap.providers.platform.base import snapshot_subvolume as snapshot_subvolume
from hardsnap.providers.platform.base import syncs_whole_filesystem as syncs_whole_filesystem

# Imported on this system alone (the type checker reads no further elsewhere).
assert sys.platform == "darwin"

_CLONE = libc.function("fclonefileat")
_LIST = libc.function("flistxattr")
_GET = libc.function("fgetxattr")
_SET = libc.function("fsetxattr")
# The 64-bit-inode statfs (fstatfs64 on Intel; fstatfs is that one on Apple silicon).
_FSTATFS = libc.function("fstatfs64") or libc.function("fstatfs")
CLONE_NOFOLLOW = 0x1
ACL_KINDS = {"extended": 0x100}  # ACL_TYPE_EXTENDED


def clone_at(source_fd: int, directory_fd: int, name: str) -> bool:
    if _CLONE is None:
        return False
    if _CLONE(source_fd, directory_fd, os.fsencode(name), CLONE_NOFOLLOW) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOTSUP, errno.EXDEV, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(error, os.strerror(error), name)


def sync_filesystem(fd: int) -> None:
    """fsync only reaches the drive's cache on macOS: F_FULLFSYNC asks the
    drive to write that cache out too."""
    os.fsync(fd)
    try:
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
    except OSError as error:
        if error.errno not in base.NOT_SUPPORTED:
            raise


def has_extended_attributes() -> bool:
    return libc.found(_LIST, _GET, _SET)


def extended_attributes(fd: int) -> dict[str, bytes]:
    found = acl.read(fd, ACL_KINDS)
    if not libc.found(_LIST, _GET):
        return found
    size = libc.call(_LIST, "flistxattr", fd, None, 0, 0)
    names = ctypes.create_string_buffer(size)
    size = libc.call(_LIST, "flistxattr", fd, names, size, 0)
    for raw in names.raw[:size].split(b"\0"):
        if not raw:
            continue
        length = libc.call(_GET, "fgetxattr", fd, raw, None, 0, 0, 0)
        value = ctypes.create_string_buffer(length)
        length = libc.call(_GET, "fgetxattr", fd, raw, value, length, 0, 0)
        found[os.fsdecode(raw)] = value.raw[:length]
    return found


def set_extended_attribute(fd: int, name: str, value: bytes) -> None:
    if name.startswith(acl.KEY_PREFIX):
        acl.write(fd, name, value, ACL_KINDS)
    elif _SET is None:
        base.set_extended_attribute(fd, name, value)
    else:
        libc.call(_SET, "fsetxattr", fd, os.fsencode(name), value, len(value), 0, 0)


class _StatFs(ctypes.Structure):
    _fields_ = [
        ("f_bsize", ctypes.c_uint32),
        ("f_iosize", ctypes.c_int32),
        ("f_blocks", ctypes.c_uint64),
        ("f_bfree", ctypes.c_uint64),
        ("f_bavail", ctypes.c_uint64),
        ("f_files", ctypes.c_uint64),
        ("f_ffree", ctypes.c_uint64),
        ("f_fsid", ctypes.c_int32 * 2),
        ("f_owner", ctypes.c_uint32),
        ("f_type", ctypes.c_uint32),
        ("f_flags", ctypes.c_uint32),
        ("f_fssubtype", ctypes.c_uint32),
        ("f_fstypename", ctypes.c_char * 16),
        ("f_mntonname", ctypes.c_char * 1024),
        ("f_mntfromname", ctypes.c_char * 1024),
        ("f_flags_ext", ctypes.c_uint32),
        ("f_reserved", ctypes.c_uint32 * 7),
    ]


def filesystem_type(fd: int) -> str | None:
    return libc.type_name_of(_FSTATFS, fd, _StatFs)


def describe_filesystem(path: str) -> str:
    return base.describe_filesystem_by(path, filesystem_type)

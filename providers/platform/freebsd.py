"""FreeBSD: extended attributes (extattr) and ACLs through the system's
calls, statfs for filesystem types. The rest is base.py's (SEEK_DATA and
SEEK_HOLE among it: Python has them there, its typing does not list them)."""

from __future__ import annotations

import ctypes
import errno
import os
import sys

from hardsnap.providers.platform import acl, base, libc
from hardsnap.providers.platform.base import clone_at as clone_at
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
from hardsnap.providers.platform.base import sync_filesystem as sync_filesystem
from hardsnap.providers.platform.base import syncs_whole_filesystem as syncs_whole_filesystem

# Imported on this system alone (the type checker reads no further elsewhere).
assert sys.platform.startswith("freebsd")

NAMESPACES = {"user": 1, "system": 2}  # EXTATTR_NAMESPACE_USER, _SYSTEM
ACL_KINDS = {"nfs4": 4, "access": 2, "default": 3}  # ACL_TYPE_NFS4, _ACCESS, _DEFAULT
_LIST = libc.function("extattr_list_fd")
_GET = libc.function("extattr_get_fd")
_SET = libc.function("extattr_set_fd")
_FSTATFS = libc.function("fstatfs")


def has_extended_attributes() -> bool:
    return libc.found(_LIST, _GET, _SET)


def extended_attributes(fd: int) -> dict[str, bytes]:
    found = acl.read(fd, ACL_KINDS)
    if not libc.found(_LIST, _GET):
        return found
    for prefix, namespace in NAMESPACES.items():
        try:
            size = libc.call(_LIST, "extattr_list_fd", fd, namespace, None, 0)
        except OSError as error:
            if error.errno in (errno.EPERM, errno.EACCES):  # system.* needs root
                continue
            raise
        listing = ctypes.create_string_buffer(size)
        size = libc.call(_LIST, "extattr_list_fd", fd, namespace, listing, size)
        data, at = listing.raw[:size], 0
        while at < len(data):  # each name: one length byte, then the name
            length = data[at]
            raw = data[at + 1 : at + 1 + length]
            at += 1 + length
            value_size = libc.call(_GET, "extattr_get_fd", fd, namespace, raw, None, 0)
            value = ctypes.create_string_buffer(value_size)
            value_size = libc.call(_GET, "extattr_get_fd", fd, namespace, raw, value, value_size)
            found[f"{prefix}.{os.fsdecode(raw)}"] = value.raw[:value_size]
    return found


def set_extended_attribute(fd: int, name: str, value: bytes) -> None:
    if name.startswith(acl.KEY_PREFIX):
        acl.write(fd, name, value, ACL_KINDS)
        return
    prefix, _, bare = name.partition(".")
    namespace = NAMESPACES.get(prefix)
    if _SET is None or namespace is None:
        base.set_extended_attribute(fd, name, value)
        return
    libc.call(_SET, "extattr_set_fd", fd, namespace, os.fsencode(bare), value, len(value))


class _StatFs(ctypes.Structure):
    _fields_ = [
        ("f_version", ctypes.c_uint32),
        ("f_type", ctypes.c_uint32),
        ("f_flags", ctypes.c_uint64),
        ("f_numbers", ctypes.c_uint64 * 11),  # bsize ... asyncreads
        ("f_spare", ctypes.c_uint64 * 10),
        ("f_namemax", ctypes.c_uint32),
        ("f_owner", ctypes.c_uint32),
        ("f_fsid", ctypes.c_int32 * 2),
        ("f_charspare", ctypes.c_char * 80),
        ("f_fstypename", ctypes.c_char * 16),
        ("f_mntfromname", ctypes.c_char * 1024),
        ("f_mntonname", ctypes.c_char * 1024),
    ]


def filesystem_type(fd: int) -> str | None:
    return libc.type_name_of(_FSTATFS, fd, _StatFs)


def describe_filesystem(path: str) -> str:
    return base.describe_filesystem_by(path, filesystem_type)

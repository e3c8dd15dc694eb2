"""The one place where operating systems differ: Linux, macOS and FreeBSD.

`base.py` holds what Python offers on every POSIX system; `linux.py`,
`darwin.py` and `freebsd.py` override what their system does better, each
fast path chosen once by whether it is there. `descriptors.py` (calls
relative to an open directory) and `processes.py` (signals, forked
workers) are the same on all three. Nothing outside this folder touches
os.O_* flags, dir_fd calls, ctypes, /proc, fcntl or signals; and nothing
in its API is a POSIX-only type, so a Windows module can join it.
"""

from __future__ import annotations

import sys

from hardsnap.providers.platform.descriptors import (
    IS_ROOT,
    chmod_at,
    chown_at,
    create_new,
    device_number,
    device_of,
    device_parts,
    effective_uid,
    free_bytes,
    is_read_only,
    link_at,
    list_directory,
    make_node_at,
    mkdir_at,
    open_directory,
    open_own,
    open_private,
    open_read,
    open_source,
    read_at,
    readlink_at,
    rename_at,
    rmdir_at,
    scan_directory,
    set_mode,
    set_owner,
    set_times_at,
    stat_at,
    stored_bytes,
    symlink_at,
    try_lock,
    unlink_at,
    user_name,
    write_at,
)
from hardsnap.providers.platform.processes import (
    INTERRUPT,
    STOPPING_SIGNALS,
    TERMINATE,
    Lifeline,
    ProcessLock,
    alive,
    ask_group_to_end,
    default_stopping_signals,
    exit_now,
    fork,
    group_exists,
    ignore_stopping_signals,
    kill,
    kill_group,
    on_stopping_signals,
    signal_name,
    stopping_signals_held,
    wait_for,
    wait_readable,
)

if sys.platform.startswith("linux"):
    from hardsnap.providers.platform import linux as system
elif sys.platform == "darwin":
    from hardsnap.providers.platform import darwin as system
elif sys.platform.startswith("freebsd"):
    from hardsnap.providers.platform import freebsd as system
else:
    from hardsnap.providers.platform import base as system

NAME = sys.platform
clone_at = system.clone_at
close_descriptors_except = system.close_descriptors_except
copy_in_kernel = system.copy_in_kernel
cpu_count = system.cpu_count
death_signal = system.death_signal
delete_subvolume = system.delete_subvolume
describe_filesystem = system.describe_filesystem
extended_attribute = system.extended_attribute
extended_attributes = system.extended_attributes
has_extended_attributes = system.has_extended_attributes
filesystem_type = system.filesystem_type
flush_file = system.flush_file
lock_holder = system.lock_holder
mount_types = system.mount_types
next_data = system.next_data
next_hole = system.next_hole
process_name = system.process_name
set_extended_attribute = system.set_extended_attribute
snapshot_subvolume = system.snapshot_subvolume
sync_filesystem = system.sync_filesystem
syncs_whole_filesystem = system.syncs_whole_filesystem

__all__ = [
    "INTERRUPT",
    "IS_ROOT",
    "NAME",
    "STOPPING_SIGNALS",
    "TERMINATE",
    "Lifeline",
    "ProcessLock",
    "alive",
    "ask_group_to_end",
    "chmod_at",
    "chown_at",
    "clone_at",
    "close_descriptors_except",
    "copy_in_kernel",
    "cpu_count",
    "create_new",
    "death_signal",
    "default_stopping_signals",
    "delete_subvolume",
    "describe_filesystem",
    "device_number",
    "device_of",
    "device_parts",
    "effective_uid",
    "exit_now",
    "extended_attribute",
    "extended_attributes",
    "filesystem_type",
    "flush_file",
    "fork",
    "free_bytes",
    "group_exists",
    "has_extended_attributes",
    "ignore_stopping_signals",
    "is_read_only",
    "kill",
    "kill_group",
    "link_at",
    "list_directory",
    "lock_holder",
    "make_node_at",
    "mkdir_at",
    "mount_types",
    "next_data",
    "next_hole",
    "on_stopping_signals",
    "open_directory",
    "open_own",
    "open_private",
    "open_read",
    "open_source",
    "process_name",
    "read_at",
    "readlink_at",
    "rename_at",
    "rmdir_at",
    "scan_directory",
    "set_extended_attribute",
    "set_mode",
    "set_owner",
    "set_times_at",
    "signal_name",
    "snapshot_subvolume",
    "stat_at",
    "stopping_signals_held",
    "stored_bytes",
    "symlink_at",
    "sync_filesystem",
    "syncs_whole_filesystem",
    "try_lock",
    "unlink_at",
    "user_name",
    "wait_for",
    "wait_readable",
    "write_at",
]

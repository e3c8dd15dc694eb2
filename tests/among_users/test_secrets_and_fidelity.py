"""Secrets stay private (targets, state and hooks) and a snapshot keeps
everything a restore needs: xattrs, capabilities, ACLs, hard links, holes,
owners.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.among_users.hostile import build_deep_tree
from tests.world.acls import acl_granting_user_1234
from tests.world.cli import Cli
from tests.world.clock import at, iso, name_of
from tests.world.files import ODD_NS, make_file, rewrite, xattrs_supported
from tests.world.site import Site
from tests.world.trees import DIRECTORY_FLAGS, Node, files_of, tree

# -- promise 6: secrets stay private ------------------------------------------------------


@pytest.fixture
def no_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_target_and_state_dir_are_created_0700_even_with_umask_0(
    site: Site, cli: Cli, tmp_path: Path, no_umask: None
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    site.target = tmp_path / "backups"
    state = tmp_path / "state-here"
    site.write()
    outcome = cli("apply", "-c", site.config, "--state-dir", str(state), now=iso(at(0)))
    assert outcome.returncode == 0, outcome
    assert stat.S_IMODE(os.stat(site.target).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for path in (site.target, state):
        for directory, directories, files in os.walk(path):
            for name in [*directories, *files]:
                mode = os.lstat(os.path.join(directory, name)).st_mode
                assert not mode & stat.S_IWOTH, os.path.join(directory, name)


def test_missing_parents_of_target_and_state_dir_are_not_left_writable_by_others(
    site: Site, cli: Cli, tmp_path: Path, no_umask: None
) -> None:
    make_file(site.source / "a.txt", b"alpha")
    site.target = tmp_path / "new-disk" / "backups" / "etc"
    state = tmp_path / "new-state" / "hardsnap"
    site.write()
    outcome = cli("apply", "-c", site.config, "--state-dir", str(state), now=iso(at(0)))
    assert outcome.returncode == 0, outcome
    for created in (
        tmp_path / "new-disk",
        tmp_path / "new-disk" / "backups",
        tmp_path / "new-state",
    ):
        mode = stat.S_IMODE(os.stat(created).st_mode)
        # A group- or world-writable parent lets another user swap the
        # target for a symlink of their choosing.
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH), f"{created} created {oct(mode)}"


def test_hooks_get_paths_only_through_env_and_a_target_with_shell_syntax_never_runs(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    make_file(site.source / "a.txt", b"alpha")
    hostile_source = tmp_path / "src;touch pwned-source;`touch pwned-tick`"
    site.source.rename(hostile_source)
    site.source = hostile_source
    site.target = tmp_path / "t$(touch pwned)"
    marks = tmp_path / "marks"
    marks.mkdir()
    pre = f"printf '%s' \"$HARDSNAP_TARGET\" > {marks / 'pre'}"
    post = f'printf \'%s|%s\' "$HARDSNAP_SOURCE" "$HARDSNAP_SNAPSHOT" > {marks / "post"}'
    site.write(pre_command=pre, post_command=post)
    launched: list[tuple[list[str], dict[str, Any]]] = []

    class SpyPopen(subprocess.Popen[bytes]):
        def __init__(self, args: Any, *rest: Any, **options: Any) -> None:
            argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
            launched.append(([os.fsdecode(argument) for argument in argv], options))
            super().__init__(args, *rest, **options)

    def no_system(command: str) -> int:
        raise AssertionError(f"os.system called with {command!r}")

    monkeypatch.setattr(subprocess, "Popen", SpyPopen)
    monkeypatch.setattr(os, "system", no_system)
    site.apply_json()

    assert (marks / "pre").read_text() == str(site.target)
    assert (marks / "post").read_text() == f"{hostile_source}|{site.target / name_of(at(0))}"
    pwned = list(tmp_path.rglob("pwned*"))
    assert pwned == []
    assert (site.target / name_of(at(0)) / "a.txt").read_bytes() == b"alpha"
    shells = [argv for argv, _ in launched if argv[0].endswith("sh")]
    assert shells == [["/bin/sh", "-c", pre], ["/bin/sh", "-c", post]]
    for argv, options in launched:
        assert not options.get("shell"), argv
        assert not any(str(site.target) in argument for argument in argv), argv


def snapshot_settled(site: Site, *settled: Path) -> tuple[dict[bytes, Node], Path]:
    """Give `settled` an old mtime back (made in them since), snapshot the
    source: the source's tree and the snapshot's directory."""
    for path in settled:
        os.utime(path, ns=(ODD_NS, ODD_NS))
    site.write()
    source = tree(site.source)
    site.apply_json()
    return source, site.taken_at()


# -- promise 7: fidelity ---------------------------------------------------------------------


def test_user_xattrs_on_files_and_directories_are_kept_on_copies_and_links(site: Site) -> None:
    xattrs_supported(site.source)
    note = make_file(site.source / "note.txt", b"note")
    folder = site.source / "folder"
    make_file(folder / "inner.txt", b"inner")
    os.setxattr(note, "user.plain", b"value")
    os.setxattr(note, "user.binary", b"\x00\xff\n" * 300)
    os.setxattr(folder, "user.folder", b"on a directory")
    os.setxattr(site.source, "user.root", b"on the source root")
    source, copy = snapshot_settled(site, folder)
    assert tree(copy) == source
    site.apply_json(at(1))
    assert tree(site.taken_at(at(1))) == source
    copy = tree(site.taken_at(at(1)))[b"note.txt"]
    assert ("user.plain", b"value") in copy.xattrs


def test_xattr_change_alone_reaches_the_next_snapshot(site: Site) -> None:
    xattrs_supported(site.source)
    note = make_file(site.source / "note.txt", b"note")
    os.setxattr(note, "user.tag", b"old")
    site.write()
    site.apply_json()
    # Content, size, mtime and mode stay the same: only the attribute changes.
    os.setxattr(note, "user.tag", b"new")
    site.apply_json(at(1))
    assert os.getxattr(site.taken_at(at(1)) / "note.txt", "user.tag") == b"new"
    assert os.getxattr(site.taken_at() / "note.txt", "user.tag") == b"old"


def capability_of_net_raw() -> bytes:
    """A version 2 security.capability value granting cap_net_raw, effective."""
    return struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


@pytest.mark.linux_only(reason="xattr calls")
def test_as_root_trusted_and_security_xattrs_and_capabilities_are_kept(site: Site) -> None:
    if os.geteuid() != 0:
        pytest.skip("trusted.* and security.* xattrs need root")
    tool = make_file(site.source / "tool", b"#!/bin/sh\n", 0o755)
    os.chown(tool, 1234, 5678)
    folder = site.source / "folder"
    folder.mkdir()
    try:
        os.setxattr(tool, "trusted.hardsnap", b"trusted value")
        os.setxattr(tool, "security.hardsnap", b"security value")
        os.setxattr(tool, "security.capability", capability_of_net_raw())
        os.setxattr(folder, "trusted.folder", b"on a directory")
    except OSError as error:
        pytest.skip(f"filesystem refuses trusted/security xattrs: {error.strerror}")
    source, copy = snapshot_settled(site, tool, folder)
    snapshot = tree(copy)
    assert snapshot == source
    assert ("security.capability", capability_of_net_raw()) in snapshot[b"tool"].xattrs
    assert (snapshot[b"tool"].uid, snapshot[b"tool"].gid) == (1234, 5678)


@pytest.mark.linux_only(reason="xattr calls")
def test_posix_acls_on_files_and_directories_are_kept(site: Site) -> None:
    shared = make_file(site.source / "shared.txt", b"shared")
    folder = site.source / "folder"
    make_file(folder / "inner.txt", b"inner")
    access, default = acl_granting_user_1234(6, 4, 4, 0), acl_granting_user_1234(7, 5, 5, 0)
    try:
        os.setxattr(shared, "system.posix_acl_access", access)
        os.setxattr(folder, "system.posix_acl_default", default)
    except OSError as error:
        pytest.skip(f"filesystem refuses POSIX ACLs: {error.strerror}")
    source, copy = snapshot_settled(site, shared, folder)
    assert tree(copy) == source
    assert os.getxattr(copy / "shared.txt", "system.posix_acl_access") == access
    assert os.getxattr(copy / "folder", "system.posix_acl_default") == default
    getfacl = shutil.which("getfacl")
    if getfacl:
        for relative in ("shared.txt", "folder"):
            shown = [
                subprocess.run(
                    [getfacl, "-p", "--omit-header", str(root / relative)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                for root in (site.source, copy)
            ]
            assert shown[0] == shown[1]


def test_hard_linked_names_stay_one_inode_on_first_copy_and_after_a_change(site: Site) -> None:
    first = make_file(site.source / "a", b"three names")
    os.link(first, site.source / "b")
    (site.source / "sub").mkdir()
    os.link(first, site.source / "sub" / "c")
    pair = make_file(site.source / "x", b"two names")
    os.link(pair, site.source / "y")
    site.write()

    site.apply_json()
    old = site.taken_at()
    trio = {os.stat(old / name).st_ino for name in ("a", "b", "sub/c")}
    duo = {os.stat(old / name).st_ino for name in ("x", "y")}
    assert len(trio) == 1 and len(duo) == 1 and trio != duo
    assert os.stat(old / "a").st_nlink == 3
    assert os.stat(old / "x").st_nlink == 2

    rewrite(first, b"three names, changed", ODD_NS + 10**9)
    os.link(pair, site.source / "sub" / "z")
    site.apply_json(at(1))
    new = site.taken_at(at(1))
    changed = {os.stat(new / name).st_ino for name in ("a", "b", "sub/c")}
    assert len(changed) == 1 and changed != trio
    assert (new / "sub" / "c").read_bytes() == b"three names, changed"
    assert (old / "sub" / "c").read_bytes() == b"three names"
    kept = {os.stat(new / name).st_ino for name in ("x", "y", "sub/z")}
    assert len(kept) == 1
    assert os.stat(new / "a").st_nlink == 3


def test_hard_linked_names_deeper_than_path_max_stay_one_inode(site: Site) -> None:
    directories = build_deep_tree(site.source)
    # Link within the deepest directory, with short relative names.
    fd = os.open(site.source, DIRECTORY_FLAGS)
    for part in directories[-1].split(b"/"):
        child = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
        os.close(fd)
        fd = child
    try:
        os.link("file.txt", "second-name.txt", src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
    site.write()
    site.apply_json()
    snapshot = files_of(tree(site.taken_at()))
    bottom = directories[-1] + b"/"
    assert snapshot[bottom + b"file.txt"].inode == snapshot[bottom + b"second-name.txt"].inode


SPARSE_SIZE = 64 << 20


def test_sparse_files_stay_sparse_with_identical_content(site: Site) -> None:
    middle = site.source / "middle.img"
    with open(middle, "wb") as handle:
        handle.truncate(SPARSE_SIZE)
        handle.seek(SPARSE_SIZE // 2)
        handle.write(b"\xab" * 4096)
    at_ends = site.source / "ends.img"
    with open(at_ends, "wb") as handle:
        handle.write(b"head" * 1024)
        handle.truncate(SPARSE_SIZE)
        handle.seek(SPARSE_SIZE - 4096)
        handle.write(b"tail" * 1024)
    all_hole = site.source / "hole.img"
    with open(all_hole, "wb") as handle:
        handle.truncate(SPARSE_SIZE)
    if os.stat(middle).st_blocks * 512 >= SPARSE_SIZE:
        pytest.skip("the filesystem under tmp_path does not keep holes")
    site.write()
    source = tree(site.source)
    site.apply_json()
    snapshot = tree(site.taken_at())
    assert snapshot == source
    for name in ("middle.img", "ends.img", "hole.img"):
        copy = os.stat(site.taken_at() / name)
        assert copy.st_size == SPARSE_SIZE
        assert copy.st_blocks * 512 <= 1 << 20, f"{name}: {copy.st_blocks} blocks"


def test_restore_with_cp_a_equals_the_source_on_content_mode_mtime_owner_and_xattrs(
    site: Site, tmp_path: Path
) -> None:
    if shutil.which("cp") is None:
        pytest.skip("needs cp")
    xattrs_supported(site.source)
    root = os.geteuid() == 0
    make_file(site.source / "plain.txt", b"plain", 0o640, ODD_NS + 1)
    private = make_file(site.source / "conf" / "private.key", b"key", 0o600, ODD_NS + 2)
    tool = make_file(site.source / "bin" / "tool", b"#!/bin/sh\necho hi\n", 0o755, ODD_NS + 3)
    hard = make_file(site.source / "bin" / "hard", b"linked", 0o644, ODD_NS + 4)
    os.link(hard, site.source / "conf" / "hard-too")
    os.setxattr(private, "user.origin", b"vault")
    os.setxattr(site.source / "conf", "user.kind", b"directory")
    if root:
        os.chown(private, 1234, 5678)
        os.chown(tool, 1234, 1234)
        os.chmod(tool, 0o4755)
        os.chown(site.source / "conf", 1234, 5678)
        os.setxattr(tool, "trusted.kept", b"root only")
    os.chmod(site.source / "conf", 0o2750)
    os.chmod(site.source / "bin", 0o755)
    for directory, mtime in (("conf", ODD_NS + 10), ("bin", ODD_NS + 11), (".", ODD_NS + 12)):
        os.utime(site.source / directory, ns=(mtime, mtime))
    site.write()

    site.apply_json()
    sources = [tree(site.source)]
    # A later snapshot, mostly links, after one change.
    rewrite(site.source / "plain.txt", b"plain, edited", ODD_NS + 20)
    os.utime(site.source, ns=(ODD_NS + 12, ODD_NS + 12))
    site.apply_json(at(1))
    sources.append(tree(site.source))

    for day, source in enumerate(sources):
        restored = tmp_path / f"restored-{day}"
        subprocess.run(["cp", "-a", str(site.taken_at(at(day))), str(restored)], check=True)
        assert tree(restored) == source, f"restore of day {day}"
    restored_tree = tree(tmp_path / "restored-1")
    assert restored_tree[b"conf/private.key"].xattrs == (("user.origin", b"vault"),)
    assert stat.S_IMODE(os.stat(tmp_path / "restored-1" / "conf").st_mode) == 0o2750
    if root:
        assert restored_tree[b"bin/tool"].mode == 0o4755
        assert (restored_tree[b"conf/private.key"].uid, restored_tree[b"conf/private.key"].gid) == (
            1234,
            5678,
        )
    assert restored_tree[b"bin/hard"].inode == restored_tree[b"conf/hard-too"].inode
